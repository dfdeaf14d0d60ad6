"""A Maildir as a drop folder, and saved emails dropped in a drop folder: messages taken on sight, moved to
cur/ as Seen, never taken twice (a crash between the intake and the move included). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ingest.collectors import collector_for
from ingest.collectors.maildir import Maildir
from tests.conftest import app_with
from tests.records import record, render
from tests.test_dropfolder import Runner, loaded_names, rows, wait_until
from tests.test_imap_source import carrier_email, simple_email

QUEUED_AND_IGNORED = [("TC_SDR_202610.csv", "queued"), ("hero_cdr_20261001.csv", "queued"),
                      ("invite.ics", "ignored"), ("logo.png", "ignored"), ("x-icon.png", "ignored")]


def maildir_toml(name: str, path: Path, kind: str = "maildir", **options) -> str:
    lines = ["[[sources]]", f"name = {json.dumps(name)}", f'kind = "{kind}"', f"path = {json.dumps(str(path))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def deliver(root: Path, message: bytes, unique: str) -> Path:
    """As a delivery agent does: write under tmp/, then rename into new/."""
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    staging = root / "tmp" / unique
    staging.write_bytes(message)
    os.rename(staging, root / "new" / unique)
    return root / "new" / unique


@pytest.fixture
def maildir(tmp_path, make_config, apps):
    root = tmp_path / "Maildir"

    def make(**options) -> tuple:
        app = app_with(make_config, maildir_toml("mail-drop", root, **options))
        apps.append(app)
        return app, collector_for(app, app.config.source("mail-drop"))

    return root, make


def test_a_delivered_message_is_taken_then_moved_to_cur_as_seen(maildir):
    root, make = maildir
    app, collector = make()
    deliver(root, carrier_email(), "1790000000.M1P1.host")
    result = collector.collect()
    assert result.errors == []
    assert sorted((r.name, r.status) for r in result.received) == QUEUED_AND_IGNORED
    assert os.listdir(root / "new") == [] and os.listdir(root / "cur") == ["1790000000.M1P1.host:2,S"]
    assert collector.collect().received == [] and len(rows(app)) == 5
    assert all(r["source"] == "mail-drop" for r in rows(app))


def test_flags_already_on_a_message_are_kept(maildir):
    root, make = maildir
    app, collector = make()
    deliver(root, carrier_email(), "1790000001.M2P2.host:2,F")
    assert collector.collect().errors == []
    assert os.listdir(root / "cur") == ["1790000001.M2P2.host:2,FS"]


def test_the_same_file_in_a_second_message_is_held(maildir):
    root, make = maildir
    app, collector = make()
    csv = render([record(1)])
    deliver(root, simple_email("first", "hero_cdr_20261001.csv", csv), "1.M1.host")
    deliver(root, simple_email("again", "hero_cdr_20261001.csv", csv), "2.M2.host")
    result = collector.collect()
    assert sorted((r.status, r.reason) for r in result.received) == [("held", "duplicate-content"), ("queued", None)]


def test_a_crash_between_intake_and_move_takes_the_message_once(maildir, monkeypatch):
    root, make = maildir
    app, collector = make()
    deliver(root, carrier_email(), "3.M3.host")

    def crash(*_args):
        raise KeyboardInterrupt("killed after the intake committed")

    monkeypatch.setattr(Maildir, "_move_done", crash)
    with pytest.raises(KeyboardInterrupt):
        collector.collect()
    first = sorted((r["id"], r["name"], r["status"]) for r in rows(app))
    assert len(first) == 5 and os.listdir(root / "new") == ["3.M3.host"]
    monkeypatch.undo()
    again = collector_for(app, app.config.source("mail-drop")).collect()
    assert again.errors == []
    # The parts come back as the rows already recorded: nothing held as a duplicate of itself.
    assert sorted((r["id"], r["name"], r["status"]) for r in rows(app)) == first
    assert os.listdir(root / "cur") == ["3.M3.host:2,S"]


def test_the_source_carrier_routes_messages_whose_addresses_do_not(maildir):
    root, make = maildir
    app, collector = make(carrier="hero", cadence="monthly")
    deliver(root, simple_email("plain", "usage.csv", render([record(1)]), to="someone@reseller.example"), "4.M4.host")
    assert collector.collect().errors == []
    [row] = rows(app)
    assert (row["carrier"], row["cadence"]) == ("hero", "monthly")


def test_the_watcher_takes_a_message_the_moment_it_is_delivered_and_loads_it(maildir):
    root, make = maildir
    app, _ = make()
    with Runner(app):
        assert (root / "new").is_dir() and (root / "tmp").is_dir()  # made as a delivery agent would
        deliver(root, carrier_email(), "5.M5.host")
        wait_until(lambda: loaded_names(app) == {"TC_SDR_202610.csv", "hero_cdr_20261001.csv"},
                   what="the message's two files loaded")
    assert os.listdir(root / "cur") == ["5.M5.host:2,S"]


def test_a_saved_email_dropped_in_a_drop_folder_is_opened(tmp_path, make_config, apps):
    folder = tmp_path / "drop"
    folder.mkdir()
    app = app_with(make_config, maildir_toml("drop", folder, kind="dropfolder"))
    apps.append(app)
    saved = folder / "Fwd Your October CDRs.eml"
    saved.write_bytes(carrier_email())
    old = time.time() - 120
    os.utime(saved, (old, old))
    result = collector_for(app, app.config.source("drop"), settle_from_mtime=True).collect()
    assert result.errors == []
    assert sorted((r.name, r.status) for r in result.received) == QUEUED_AND_IGNORED
    assert os.listdir(folder / "done") == ["Fwd Your October CDRs.eml"]


def test_a_reused_unique_name_never_overwrites_a_message_in_cur(maildir):
    root, make = maildir
    app, collector = make()
    deliver(root, simple_email("first", "hero_cdr_20261001.csv", render([record(1)])), "6.M6.host")
    assert collector.collect().errors == []
    deliver(root, simple_email("second", "hero_cdr_20261002.csv", render([record(2)])), "6.M6.host")
    assert collector.collect().errors == []
    kept = {name: (root / "cur" / name).read_bytes() for name in os.listdir(root / "cur")}
    assert len(kept) == 2 and b"first" in kept.pop("6.M6.host:2,S")
    [(again, second)] = kept.items()
    assert again.startswith("6.M6.host.") and again.endswith(":2,S") and b"second" in second


def test_the_recipient_route_comes_before_the_source_carrier_as_for_imap(maildir):
    root, make = maildir
    app, collector = make(carrier="techconnections")
    deliver(root, simple_email("routed", "usage.csv", render([record(1)]), to="cdrs+hero-daily@billing.example.com"),
            "7.M7.host")
    assert collector.collect().errors == []
    [row] = rows(app)
    assert (row["carrier"], row["cadence"]) == ("hero", "daily")


def test_two_watchers_moving_one_message_at_once_leave_one_copy_in_cur_and_no_error(maildir, monkeypatch):
    root, make = maildir
    app, slow = make()
    _, fast = make()  # a second watcher process on the same Maildir
    message = deliver(root, carrier_email(), "8.M8.host")
    real_unlink, raced = os.unlink, []

    def the_other_moves_it_in_between(path, *args, **kwargs):
        # This watcher linked the message into cur/ and is about to unlink it from new/: the other one
        # takes the same delivery now, finds the name in cur/ taken, and by the very same message.
        if os.fspath(path) == str(message) and not raced:
            raced.append(None)
            raced[0] = fast.collect()
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", the_other_moves_it_in_between)
    result = slow.collect()

    [other] = raced
    assert (result.errors, other.errors) == ([], [])
    assert len(rows(app)) == 5 and os.listdir(root / "new") == []
    assert os.listdir(root / "cur") == ["8.M8.host:2,S"]
