"""``cdr status`` tells the admin, for every source kind (remote, drop folder, Maildir, the SMTP listener,
uploads), the files taken and the last one; a last error with its time, current only when later than the last
success; and the entries a listing saw that wait for the next one."""

from __future__ import annotations

import json
import smtplib

from click.testing import CliRunner

from ingest.cli import cli
from ingest.smtp import SmtpListener
from tests.conftest import app_with
from tests.test_event_logs import drop_with_a_symlink
from tests.interop_servers import free_port
from tests.records import record, render
from tests.remote_contract import put
from tests.test_daemon import share_source
from tests.test_maildir import deliver, maildir_toml
from tests.test_smtp import carrier_email


def status(config) -> dict:
    shown = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert shown.exit_code == 0, shown.output
    return {source["source"]: source for source in json.loads(shown.stdout)["sources"]}


def cdr(config, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_status_shows_the_last_file_and_the_count_for_every_kind_of_source(make_config, tmp_path):
    share, inbox, mail = tmp_path / "share", tmp_path / "inbox", tmp_path / "Maildir"
    inbox.mkdir()
    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    port = free_port()
    extra = (share_source("share", share)
             + f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\ncarrier = "hero"\ntype = "cdr"\n'
             'min_age_seconds = 0\nsettle_seconds = 0\n'
             + maildir_toml("mail-drop", mail)
             + f'[smtp]\ndomain = "billing.example.com"\nport = {port}\n')
    config = make_config(extra)
    assert {name: source["state"] for name, source in status(config).items()} == {
        "share": "never run", "drop": "watched", "mail-drop": "watched", "smtp": "listener"}

    assert cdr(config, "collect").exit_code == 0
    (inbox / "hero_cdr_20261002.csv").write_bytes(render([record(2)]))
    (inbox / "hero_cdr_20261003.csv").write_bytes(render([record(3)]))
    deliver(mail, carrier_email(), "1790000000.M1P1.host")
    assert cdr(config, "watch", "--once").exit_code == 0
    app = app_with(make_config, extra)
    try:
        with SmtpListener(app, app.config.smtp), smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("billing@herotel.example", ["cdrs+hero@billing.example.com"], carrier_email(invite=False))
    finally:
        app.close()
    (tmp_path / "by-hand.csv").write_bytes(render([record(9)]))
    assert cdr(config, "upload", str(tmp_path / "by-hand.csv"), "--carrier", "hero", "--type", "cdr").exit_code == 0

    shown = status(config)
    assert list(shown) == ["share", "drop", "mail-drop", "smtp", "upload"]
    taken = {name: (source["kind"], source["files"], source["last_file"]) for name, source in shown.items()}
    assert taken["share"] == ("directory", 1, "hero_cdr_20261001.csv")
    assert taken["drop"] == ("dropfolder", 2, "hero_cdr_20261003.csv")
    assert taken["mail-drop"][:2] == ("maildir", 5) and taken["smtp"][:2] == ("smtp", 4)
    assert taken["upload"] == ("upload", 1, "by-hand.csv")
    assert all(source["last_file_at"].endswith("Z") for source in shown.values())

    table = cdr(config, "status").stdout.splitlines()
    assert table[0].split()[:7] == ["SOURCE", "KIND", "STATE", "FILES", "LAST_FILE", "LAST_FILE_AT", "ENTRIES_WAITING"]
    [drop] = [line for line in table if line.startswith("drop ")]
    assert drop.split()[:5] == ["drop", "dropfolder", "watched", "2", "hero_cdr_20261003.csv"]


def test_a_last_error_is_current_only_when_later_than_the_last_success(make_config, tmp_path):
    share = tmp_path / "share"
    config = make_config(share_source("share", share))
    assert cdr(config, "collect").exit_code == 1  # not mounted
    failing = status(config)["share"]
    assert (failing["state"], failing["error_current"]) == ("failing", True) and "share" in failing["last_error"]
    [line] = [line for line in cdr(config, "status").stdout.splitlines() if line.startswith("share: last error")]
    assert "before its last success" not in line

    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    assert cdr(config, "collect").exit_code == 0
    recovered = status(config)["share"]
    assert (recovered["state"], recovered["error_current"]) == ("ok", False)
    assert recovered["last_error"] == failing["last_error"] and recovered["last_error_at"] == failing["last_error_at"]
    [line] = [line for line in cdr(config, "status").stdout.splitlines() if line.startswith("share: last error")]
    assert "before its last success" in line and failing["last_error"] in line

    share.rename(tmp_path / "unmounted-again")
    assert cdr(config, "collect").exit_code == 1
    again = status(config)["share"]
    assert (again["state"], again["error_current"]) == ("failing", True)
    assert again["last_error_at"] > again["last_success"] and again["files"] == 1


def test_a_first_listing_says_what_it_saw_and_takes_it_once_unchanged_on_the_next(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    put(share / "hero_cdr_20261002.csv", render([record(2)]))
    config = make_config(share_source("share", share).replace("stable_listings = 1", "stable_listings = 2"))
    first = cdr(config, "collect")
    assert first.exit_code == 0
    assert first.stdout.splitlines() == [
        "share: 2 entries seen and waiting: each is taken once the next listing shows it unchanged"]
    [as_json] = json.loads(cdr(config, "collect", "--json").stdout)  # the second listing takes them
    assert (len(as_json["received"]), as_json["entries_waiting"]) == (2, 0)
    put(share / "hero_cdr_20261003.csv", render([record(3)]))
    cdr(config, "collect")
    shown = status(config)["share"]
    assert (shown["entries_waiting"], shown["files"], shown["last_file"]) == (1, 2, "hero_cdr_20261002.csv")


def test_a_drop_folders_files_it_cannot_take_are_shown_with_their_time_until_gone(make_config, tmp_path):
    config = drop_with_a_symlink(make_config, tmp_path)
    inbox = tmp_path / "inbox"
    cdr(config, "watch", "--once")
    shown = status(config)["drop"]
    assert shown["state"] == "watched" and shown["entry_errors_at"]
    assert shown["entry_errors"] == ["linked.csv: a symlink; never followed nor taken (put the file itself here)"]
    assert "drop: not taken: linked.csv: a symlink" in cdr(config, "status").stdout
    (inbox / "linked.csv").unlink()
    cdr(config, "watch", "--once")
    assert status(config)["drop"]["entry_errors"] == []
