"""Input built to do harm: archives that expand without bound as a whole, and drop folders whose folders or
entries point somewhere else."""

from __future__ import annotations

import gzip
import io
import logging
import os
import pwd
import zipfile

import pytest

from ingest.catalog import files as catalog_files
from ingest.collectors.dropfolder import DropFolder
from ingest.collectors.maildir import Maildir
from ingest.intake import Origin, receive
from ingest.watch import watch_once
from tests.conftest import app_with, wait_until
from tests.conftest import catalog_rows as rows
from tests.test_dropfolder import Runner, drop, feed, source_toml
from tests.test_imap_source import carrier_email
from tests.test_maildir import deliver, maildir_toml

MEMBER = 200_000  # bytes of zeros per zip member: each far under the per-member limits set below


def bomb_zip(members: int) -> bytes:
    """A zip of ``members`` members of highly compressible content, each within the per-member limits,
    written member by member (streamed) as a bomb's maker would."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            with archive.open(f"hero_cdr_202610{index % 28 + 1:02d}_{index}.csv", "w") as member:
                member.write(b"0" * MEMBER)
    return buffer.getvalue()


def offer(app, data: bytes, name: str):
    return receive(app, io.BytesIO(data), Origin("upload", name))


def failed_row(app, got) -> dict:
    with app.catalog.read() as conn:
        stored = catalog_files.get_file(conn, got.id)
    assert (stored["status"], stored["reason"]) == ("failed", "unreadable")
    return stored


# -- archives bounded as a whole -----------------------------------------------------------------------


@pytest.fixture
def limited(make_config, apps):
    def make(intake: str):
        app = app_with(make_config, "[intake]\n" + intake)
        apps.append(app)
        return app

    return make


def test_a_zip_of_many_members_each_within_limits_is_bounded_in_total(limited):
    app = limited(f"max_expanded_bytes = {MEMBER}\nmax_archive_expanded_bytes = {10 * MEMBER}\n")
    bomb = bomb_zip(50)

    [got] = offer(app, bomb, "october.zip")  # one failed file, not 50 members

    stored = failed_row(app, got)
    assert stored["error"] == (f"october.zip: the zip as a whole expands beyond {10 * MEMBER} bytes "
                               "(intake.max_archive_expanded_bytes); refused as a possible decompression bomb")
    assert app.staging.path_of(stored["blob"]).read_bytes() == bomb
    assert len(rows(app)) == 1


def test_a_zip_of_many_members_each_under_the_ratio_floor_is_bounded_by_its_ratio_as_a_whole(limited):
    # Each member is under the ratio floor (so its own ratio is never checked), the whole far past it.
    app = limited(f"max_ratio = 50\nratio_floor_bytes = {2 * MEMBER}\n")

    [got] = offer(app, bomb_zip(50), "october.zip")

    assert "the zip as a whole expands more than 50:1 (intake.max_ratio)" in failed_row(app, got)["error"]


def test_a_zip_within_its_limits_as_a_whole_is_taken_member_by_member(limited):
    app = limited(f"max_expanded_bytes = {MEMBER}\nmax_archive_expanded_bytes = {3 * MEMBER}\n")
    got = offer(app, bomb_zip(3), "october.zip")
    assert [(g.status, g.reason) for g in got] == [("queued", None)] + [("held", "duplicate-content")] * 2


def test_a_gzip_is_bounded_as_an_archive_too_all_its_gzip_members_together(limited):
    app = limited(f"max_archive_expanded_bytes = {10 * MEMBER}\n")
    bomb = b"".join(gzip.compress(b"0" * MEMBER) for _ in range(20))  # concatenated gzip members: one content

    [got] = offer(app, bomb, "hero_cdr_20261001.csv.gz")

    stored = failed_row(app, got)
    assert f"expands beyond {10 * MEMBER} bytes (intake.max_archive_expanded_bytes)" in stored["error"]
    assert app.staging.path_of(stored["blob"]).read_bytes() == bomb


# -- drop folders trust nothing in them ----------------------------------------------------------------


@pytest.fixture
def dropfolder(tmp_path, make_config, apps):
    """``dropfolder(**options) -> (app, collector)`` on ``tmp_path/drop``; the collector closed after."""
    made: list[DropFolder] = []

    def make(**options):
        app = app_with(make_config, source_toml("drop", tmp_path / "drop", **options))
        apps.append(app)
        made.append(DropFolder(app, app.config.source("drop")))
        return app, made[-1]

    (tmp_path / "drop").mkdir()
    yield make
    for collector in made:
        collector.close()


def nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


def make_foreign(done) -> None:
    done.mkdir()
    os.chown(done, nobody(), -1)


def make_symlink(done) -> None:
    elsewhere = done.parent.parent / "elsewhere"
    elsewhere.mkdir()
    done.symlink_to(elsewhere, target_is_directory=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
@pytest.mark.parametrize("spoil, why", [(make_symlink, "is a symlink"), (make_foreign, "belongs to nobody")])
def test_nothing_is_taken_from_a_folder_whose_done_folder_is_unsafe_until_it_is_fixed(dropfolder, tmp_path,
                                                                                     spoil, why):
    app, collector = dropfolder(settle_seconds=0)
    folder, done = tmp_path / "drop", tmp_path / "drop" / "done"
    spoil(done)
    drop(folder / "hero_cdr_20261001.csv", feed(1))

    for _ in range(2):  # every pass says why, and takes nothing
        result = collector.collect()
        assert result.received == []
        [error] = result.errors
        assert error.startswith(f"{done} {why}") and "none is taken from this folder until" in error
    assert rows(app) == [] and (folder / "hero_cdr_20261001.csv").read_bytes() == feed(1)
    assert not (tmp_path / "elsewhere").exists() or list((tmp_path / "elsewhere").iterdir()) == []

    done.unlink() if done.is_symlink() else done.rmdir()  # fixed
    [got] = collector.collect().received
    assert got.status == "queued" and (done / "hero_cdr_20261001.csv").read_bytes() == feed(1)


def test_a_done_folder_swapped_for_a_symlink_during_a_pass_receives_nothing(dropfolder, tmp_path, monkeypatch):
    app, collector = dropfolder(settle_seconds=0)
    folder, done = tmp_path / "drop", tmp_path / "drop" / "done"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    real_receive = app.staging.receive
    swapped = []

    def swap_then_receive(stream):  # the pass checked done/ (absent) before; the dropper swaps it in now
        if not swapped:
            done.symlink_to(elsewhere, target_is_directory=True)
            swapped.append(True)
        return real_receive(stream)

    monkeypatch.setattr(app.staging, "receive", swap_then_receive)
    result = collector.collect()

    assert result.received == [] and "is a symlink" in result.errors[0]
    assert list(elsewhere.iterdir()) == [] and (folder / "hero_cdr_20261001.csv").read_bytes() == feed(1)
    [recorded] = rows(app)
    done.unlink()
    [again] = collector.collect().received  # the same delivery, once fixed: the row already recorded
    assert again.id == recorded["id"] and (done / "hero_cdr_20261001.csv").read_bytes() == feed(1)


def test_a_maildir_whose_cur_folder_is_a_symlink_takes_nothing(tmp_path, make_config, apps):
    root = tmp_path / "Maildir"
    app = app_with(make_config, maildir_toml("mail-drop", root))
    apps.append(app)
    message = deliver(root, carrier_email(), "1790000000.M1P1.host")
    (root / "cur").rmdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "cur").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    collector = Maildir(app, app.config.source("mail-drop"))

    result = collector.collect()

    assert result.received == [] and "is a symlink" in result.errors[0]
    assert message.exists() and list((tmp_path / "elsewhere").iterdir()) == [] and rows(app) == []


def test_symlinks_and_left_dot_files_are_reported_not_taken_and_logged_once_per_run(dropfolder, tmp_path, caplog):
    app, _ = dropfolder(rescan_seconds=0.05)
    folder = tmp_path / "drop"
    outside = drop(tmp_path / "hero_cdr_20261001.csv", feed(1))
    (folder / "hero_cdr_20261001.csv").symlink_to(outside)
    (folder / "broken.csv").symlink_to(tmp_path / "nowhere")
    drop(folder / ".hero_cdr_20261002.csv", feed(2), age=120)  # left: not written for settle_seconds (60)
    drop(folder / ".being-written.csv", feed(3), age=0)  # a writer's temporary name, still being written
    reports = ["broken.csv: a symlink; never followed nor taken (put the file itself here)",
               "hero_cdr_20261001.csv: a symlink; never followed nor taken (put the file itself here)",
               ".hero_cdr_20261002.csv: a hidden (dot) name; never taken (rename it without the dot)"]

    [once] = watch_once(app)
    assert sorted(once.errors) == sorted(reports) and once.received == []

    caplog.clear()
    with caplog.at_level(logging.WARNING), Runner(app) as runner:
        wait_until(lambda: len(runner.passes) >= 5, what="five passes")
    assert all(sorted(p[0].errors) == sorted(reports) for p in runner.passes)
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sorted(r.getMessage() for r in logged) == sorted(f"drop folder drop: {e}" for e in reports)
    assert all((r.event, r.source) == ("watch_error", "drop") for r in logged)
    assert rows(app) == [] and outside.read_bytes() == feed(1)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["hero_cdr_20261001.csv", "broken.csv", ".hero_cdr_20261002.csv", ".being-written.csv"])


def test_a_name_with_a_line_break_is_reported_on_one_line(dropfolder, tmp_path):
    app, collector = dropfolder()
    (tmp_path / "drop" / "evil\nWARNING forged.csv").symlink_to(tmp_path)
    [error] = collector.collect().errors
    assert error.startswith("evil_WARNING forged.csv: a symlink") and "\n" not in error
