"""Progress: on a terminal, staging and loading a file over 8 MiB draw a bar (bytes, rows/s, elapsed) on stderr;
``--quiet`` or output that is not a terminal draw none. The library reports through a callback the CLI passes
down (once per chunk or batch), and never draws anything itself."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from ingest import admin
from ingest.catalog import files as catalog_files
from ingest.load import load_queued
from ingest.progress import BAR_MIN_BYTES, ProgressBars
from tests.conftest import REPO
from tests.records import record, render

BAR_TEXT = ("MiB", "rows/s", "0:00:")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A Hero CSV of more than 8 MiB (about ten of the parser's blocks, so a load reports several batches)."""
    path = tmp_path_factory.mktemp("big") / "october usage.csv"
    rows = [record(i, TextDesc2="Vodafone, mobile call to a number far away") for i in range(1, 45_001)]
    path.write_bytes(render(rows))
    assert path.stat().st_size > BAR_MIN_BYTES
    return path


def cdr(app, *args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", "--config", str(app.config.path), *args]


def on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with stdin, stdout and stderr a pseudo-terminal; its exit status and all it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        try:
            os.chdir(REPO)
            os.execvpe(command[0], command, {**os.environ, "TERM": "xterm", "COLUMNS": "100"})
        finally:
            os._exit(127)
    output = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child has exited and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def upload_args(big_file, *more: str) -> list[str]:
    return ["upload", str(big_file), "--carrier", "hero", "--type", "cdr", *more]


def test_upload_of_a_big_file_on_a_terminal_shows_staging_and_loading_bars(app, big_file):
    code, output = on_a_terminal(cdr(app, *upload_args(big_file)))
    assert code == 0, output
    assert "staging october usage.csv" in output and "loading #1 october usage" in output
    for text in BAR_TEXT:
        assert text in output, output
    assert "#1 october usage.csv: loaded, 45000 records" in output


def test_load_and_retry_on_a_terminal_show_a_bar(app, big_file):
    assert subprocess.run(cdr(app, *upload_args(big_file, "--no-load")), capture_output=True).returncode == 0
    with app.catalog.write() as conn:  # a load that failed for something since fixed
        catalog_files.transition(conn, 1, "failed", allowed_from=("queued",), actor="tester", action="failed",
                                 why="catalog database busy", reason="load-error", error="catalog database busy")
    code, output = on_a_terminal(cdr(app, "load"))
    assert code == 0 and "rows/s" not in output, output  # nothing queued
    code, output = on_a_terminal(cdr(app, "retry", "1"))
    assert code == 0, output
    assert "loading #1 october usage" in output and "rows/s" in output, output
    assert "#1 october usage.csv: loaded, 45000 records" in output
    assert subprocess.run(cdr(app, *upload_args(big_file, "--no-load")), capture_output=True).returncode == 0
    with app.catalog.write() as conn:  # its content again: released, and loaded by `cdr load`
        catalog_files.transition(conn, 2, "queued", allowed_from=("held",), actor="tester", action="released",
                                 released=True)
    code, output = on_a_terminal(cdr(app, "load"))
    assert code == 0, output
    assert "loading #2 october usage" in output and "rows/s" in output, output


def test_quiet_on_a_terminal_shows_no_bar(app, big_file):
    code, output = on_a_terminal(cdr(app, *upload_args(big_file, "--quiet")))
    assert code == 0, output
    assert output.strip() == "#1 october usage.csv: loaded, 45000 records"


def test_output_that_is_not_a_terminal_shows_no_bar(app, big_file):
    result = subprocess.run(cdr(app, *upload_args(big_file)), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == "#1 october usage.csv: loaded, 45000 records"


class Recorder:
    """A progress factory that keeps every report of every task."""

    def __init__(self):
        self.tasks: dict[str, tuple[int, list[tuple[int, int]]]] = {}

    def __call__(self, what: str, total: int):
        reports: list[tuple[int, int]] = []
        self.tasks[what] = (total, reports)
        return lambda done, rows: reports.append((done, rows))


def increasing(reports: list[tuple[int, int]]) -> bool:
    return all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(reports, reports[1:]))


def test_the_library_reports_increasing_counts_once_per_chunk_and_batch(app, big_file):
    recorder = Recorder()
    received = admin.upload(app, big_file, carrier="hero", file_type="cdr", progress=recorder)
    admin.load_now(app, received, progress=recorder)
    size = big_file.stat().st_size
    total, staged = recorder.tasks["staging october usage.csv"]
    assert total == size and len(staged) > 1 and increasing(staged)
    assert staged[-1] == (size, 0)
    total, loaded = recorder.tasks["loading #1 october usage.csv"]
    assert total == size and len(loaded) > 1 and increasing(loaded)
    assert loaded[-1] == (size, 45_000)  # every row, and the whole content read
    assert len(loaded) < 100  # once per batch, not per row


def test_a_released_file_reports_its_set_based_load_too(app, big_file, tmp_path):
    admin.load_now(app, admin.upload(app, big_file, carrier="hero", file_type="cdr"))
    resend = tmp_path / "resend.csv"
    resend.write_bytes(big_file.read_bytes() + render([record(45_001)], header=False))
    [held] = admin.upload(app, resend, carrier="hero", file_type="cdr")
    assert admin.load_now(app, [held])[held.id].status == "held"  # overlap
    admin.release(app, held.id)
    recorder = Recorder()
    [result] = load_queued(app, progress=recorder)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 1, 45_000)
    _, loaded = recorder.tasks[f"loading #{held.id} resend.csv"]
    assert len(loaded) > 1 and increasing(loaded) and loaded[-1][1] == 45_001


def test_bars_are_drawn_only_on_a_terminal_for_big_files_and_never_when_quiet():
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal, open(os.devnull, "w") as not_a_terminal:
        assert ProgressBars(stream=not_a_terminal)("loading x", BAR_MIN_BYTES) is None
        assert ProgressBars(quiet=True, stream=terminal)("loading x", BAR_MIN_BYTES) is None
        with ProgressBars(stream=terminal) as bars:
            assert bars("loading small", BAR_MIN_BYTES - 1) is None
            assert bars("loading big", BAR_MIN_BYTES) is not None
    os.close(leader)
