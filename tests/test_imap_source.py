"""The IMAP collector against a real Dovecot (tests/imap_server.py): messages taken once and flagged or moved,
plus-address routing from the recipient headers, a UIDVALIDITY change, crashes between staging and marking,
TLS and login refusals, oversized messages. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from ingest.catalog.schema import mail_folders, mail_messages
from ingest.collectors import collector_for
from ingest.plugins import load_checked_config as load_config  # with the collectors' checks of the sources
from ingest.daemon import run_pass
from ingest.errors import ConfigError
from tests.conftest import app_with, wait_until
from tests.conftest import catalog_rows as rows
from tests.imap_server import PASSWORD, UTF8_PASSWORD, dovecot_server
from tests.records import record, render
from tests.test_mail import carrier_email as lf_email

ENV = "CDR_TEST_IMAP_PASSWORD"
FLAG = "$CdrCollected"


def carrier_email(**kwargs) -> bytes:
    return lf_email(**kwargs).replace(b"\n", b"\r\n")


def bare_email(subject: str, text: str, sender: str = "billing@herotel.example",
               to: str = "cdrs@billing.example.com", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@herotel.example>"
    message.set_content(text)
    return message


def simple_email(subject: str, filename: str, body: bytes, to: str = "cdrs@billing.example.com",
                 **headers: str) -> bytes:
    message = bare_email(subject, "Attached.", to=to, **headers)
    message.add_attachment(body, maintype="text", subtype="csv", filename=filename)
    return message.as_bytes().replace(b"\n", b"\r\n")


@pytest.fixture(scope="session")
def dovecot():
    with dovecot_server() as server:
        yield server


@pytest.fixture
def user(dovecot, monkeypatch):
    monkeypatch.setenv(ENV, PASSWORD)
    return dovecot.add_user()


def imap_toml(dovecot, user, name="carrier-mail", **options) -> str:
    settings = {"host": "127.0.0.1", "port": dovecot.imaps_port, "username": user.name, "password": f"${{{ENV}}}",
                "ca_file": str(dovecot.ca_file), "timeout_seconds": 10, **options}
    lines = ["[[sources]]", f'name = "{name}"', 'kind = "imap"']
    for key, value in settings.items():
        lines.append(f"{key} = {value}" if isinstance(value, (int, float)) else f'{key} = "{_escaped(value)}"')
    return "\n".join(lines) + "\n"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\")


def make(make_config, apps, dovecot, user, **options):
    app = app_with(make_config, imap_toml(dovecot, user, **options))
    apps.append(app)
    return app, collector_for(app, app.config.source("carrier-mail"))


def taken(app):
    with app.catalog.read() as conn:
        return [dict(r) for r in conn.execute(select(mail_messages).order_by(mail_messages.c.uid)).mappings()]


def test_a_message_is_taken_once_then_flagged_and_never_marked_read(make_config, apps, dovecot, user):
    uid = dovecot.deliver(user, carrier_email())
    app, collector = make(make_config, apps, dovecot, user)
    result = collector.collect()
    assert result.errors == []
    assert sorted((r.name, r.status) for r in result.received) == [
        ("TC_SDR_202610.csv", "queued"), ("hero_cdr_20261001.csv", "queued"), ("invite.ics", "ignored"),
        ("logo.png", "ignored"), ("x-icon.png", "ignored")]
    flags = dovecot.flags(user)[uid]
    assert FLAG in flags and "\\Seen" not in flags
    [message] = taken(app)
    assert (message["uid"], message["files"], message["message_id"]) == (uid, 5, "<oct-cdrs@herotel.example>")
    origin = next(r for r in rows(app) if r["name"] == "hero_cdr_20261001.csv")["origin"]
    assert "billing@herotel.example" in origin and "October" in origin
    again = collector.collect()
    assert again.errors == [] and again.received == [] and len(rows(app)) == 5


def test_the_same_file_in_a_later_email_is_held_as_a_duplicate(make_config, apps, dovecot, user):
    csv = render([record(1), record(2)])
    dovecot.deliver(user, simple_email("first send", "hero_cdr_20261001.csv", csv))
    dovecot.deliver(user, simple_email("resent", "hero_cdr_20261001.csv", csv))
    app, collector = make(make_config, apps, dovecot, user)
    result = collector.collect()
    assert result.errors == []
    assert [(r.status, r.reason) for r in result.received] == [("queued", None), ("held", "duplicate-content")]
    assert len(taken(app)) == 2


def test_move_after_processing_creates_the_folder_and_empties_the_inbox(make_config, apps, dovecot, user):
    dovecot.deliver(user, carrier_email())
    dovecot.deliver(user, simple_email("second", "hero_cdr_20261002.csv", render([record(7)])))
    app, collector = make(make_config, apps, dovecot, user, after="move", processed_folder="Processed")
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 6
    assert dovecot.uids(user, "INBOX") == [] and len(dovecot.uids(user, "Processed")) == 2
    dovecot.deliver(user, simple_email("third", "hero_cdr_20261003.csv", render([record(8)])))
    later = collector.collect()
    assert [r.name for r in later.received] == ["hero_cdr_20261003.csv"]
    assert len(dovecot.uids(user, "Processed")) == 3 and len(rows(app)) == 7


def test_plus_address_routing_from_the_recipient_headers(make_config, apps, dovecot, user):
    # Delivered to the +hero-daily route through a list address: Delivered-To carries the route.
    dovecot.deliver(user, simple_email("routed", "usage_20261001.csv", render([record(1)]),
                                       to="all-billing@billing.example.com",
                                       Delivered_To="cdrs+hero-daily@billing.example.com"))
    dovecot.deliver(user, simple_email("unrouted", "usage_20261002.csv", render([record(2)])))
    app, collector = make(make_config, apps, dovecot, user)
    assert collector.collect().errors == []
    stored = {r["name"]: r for r in rows(app)}
    assert (stored["usage_20261001.csv"]["carrier"], stored["usage_20261001.csv"]["cadence"]) == ("hero", "daily")
    # No route and no file rule: recorded as ignored with the reason, not lost.
    assert (stored["usage_20261002.csv"]["status"], stored["usage_20261002.csv"]["reason"]) == (
        "ignored", "unrecognised")


def test_a_source_carrier_routes_mail_whose_addresses_do_not(make_config, apps, dovecot, user):
    dovecot.deliver(user, simple_email("plain", "hero_cdr_20261001.csv", render([record(1)]),
                                       to="billing@reseller.example"))
    app, collector = make(make_config, apps, dovecot, user, carrier="hero")
    assert collector.collect().errors == []
    [row] = rows(app)
    assert (row["carrier"], row["status"]) == ("hero", "queued")


def test_a_uidvalidity_change_neither_skips_new_mail_nor_takes_old_mail_again(make_config, apps, dovecot, user):
    first = simple_email("october 1", "hero_cdr_20261001.csv", render([record(1)]))
    second = simple_email("october 2", "hero_cdr_20261002.csv", render([record(2)]))
    assert [dovecot.deliver(user, m, "Carriers") for m in (first, second)] == [1, 2]
    app, collector = make(make_config, apps, dovecot, user, folder="Carriers")
    assert len(collector.collect().received) == 2
    before = dovecot.uidvalidity(user, "Carriers")

    # The folder is rebuilt (a restore from a backup taken before the flags were set): every UID renumbered.
    # The new message now has UID 1, which under the old UIDVALIDITY was "october 1", already taken.
    with dovecot.client(user) as box:
        box.folder.delete("Carriers")
    third = simple_email("october 3", "hero_cdr_20261003.csv", render([record(3)]))
    assert [dovecot.deliver(user, m, "Carriers") for m in (third, first, second)] == [1, 2, 3]
    after = dovecot.uidvalidity(user, "Carriers")
    assert after != before

    result = collector.collect()
    assert result.errors == []
    assert [r.name for r in result.received] == ["hero_cdr_20261003.csv"]  # old mail recognised, not re-taken
    assert all(FLAG in flags for flags in dovecot.flags(user, "Carriers").values())
    assert len(rows(app)) == 3 and all(r["status"] == "queued" for r in rows(app))
    with app.catalog.read() as conn:
        assert conn.execute(select(mail_folders.c.uidvalidity)).scalar() == after
    assert [(m["uidvalidity"], m["uid"]) for m in taken(app) if m["uidvalidity"] == after] == [
        (after, 1), (after, 2), (after, 3)]


@pytest.mark.parametrize("fault", ["imap.staged", "imap.recorded"])
@pytest.mark.parametrize("after", ["flag", "move"])
def test_a_crash_between_staging_and_marking_loses_nothing_and_takes_nothing_twice(make_config, dovecot, user,
                                                                                    fault, after):
    uid = dovecot.deliver(user, carrier_email())
    options = {"after": after, "processed_folder": "Processed"} if after == "move" else {}
    toml = imap_toml(dovecot, user, **options)
    env = {**os.environ, "CDR_CONFIG": str(make_config(toml)), "CDR_FAULT": fault}
    killed = subprocess.run([sys.executable, "-m", "ingest.cli", "collect", "--no-load"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 86, killed.stderr
    # The server still shows the message as not taken.
    assert FLAG not in dovecot.flags(user)[uid] and dovecot.uids(user, "INBOX") == [uid]
    app = app_with(make_config, toml)
    try:
        staged = sorted((r["id"], r["name"], r["status"]) for r in rows(app))
        assert len(staged) == 5 and len(taken(app)) == (1 if fault == "imap.recorded" else 0)
        sessions = 4  # the delivery, the killed collector's, and the two checks above
        assert len(dovecot.wait_for_sessions(user, sessions)) == sessions
        result, _ = run_pass(app, "carrier-mail")
        assert result.errors == []
        recovery = dovecot.wait_for_sessions(user, sessions + 1)[sessions]
        # Recorded before the crash: only marked now, its body not downloaded again.
        assert recovery["body_count"] == (0 if fault == "imap.recorded" else 1)
        # Taken again, the parts return as the files already recorded: none held as duplicates of themselves.
        assert sorted((r["id"], r["name"], r["status"]) for r in rows(app)) == staged
        assert len(taken(app)) == 1
        if after == "move":
            assert dovecot.uids(user, "INBOX") == [] and len(dovecot.uids(user, "Processed")) == 1
        else:
            assert FLAG in dovecot.flags(user)[uid]
    finally:
        app.close()


def test_a_stopping_mailbox_takes_no_further_message(make_config, apps, dovecot, user):
    uid = dovecot.deliver(user, simple_email("one", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user)
    collector.stopping.set()  # the daemon is stopping: the message waits for the next pass
    assert collector.collect().received == [] and taken(app) == []
    assert FLAG not in dovecot.flags(user)[uid]
    collector.stopping.clear()
    assert len(collector.collect().received) == 1 and FLAG in dovecot.flags(user)[uid]


def test_an_oversized_message_is_reported_and_left_while_others_are_taken(make_config, apps, dovecot, user):
    big = dovecot.deliver(user, simple_email("big", "hero_cdr_20261001.csv", render([record(i) for i in range(1, 400)])))
    small = dovecot.deliver(user, simple_email("small", "hero_cdr_20261002.csv", render([record(500)])))
    app, collector = make(make_config, apps, dovecot, user, max_message_bytes=20_000)
    result = collector.collect()
    assert [r.name for r in result.received] == ["hero_cdr_20261002.csv"]
    # That message fails, not the mailbox: the pass is a success and the message is reported (cdr status).
    assert result.errors == [] and len(result.entry_errors) == 1
    assert f"UID {big}" in result.entry_errors[0] and "left in the mailbox" in result.entry_errors[0]
    flags = dovecot.flags(user)
    assert FLAG not in flags[big] and FLAG in flags[small]


def test_max_messages_bounds_a_pass_and_the_next_pass_goes_on(make_config, apps, dovecot, user):
    for day in (1, 2, 3):
        dovecot.deliver(user, simple_email(f"day {day}", f"hero_cdr_2026100{day}.csv", render([record(day)])))
    app, collector = make(make_config, apps, dovecot, user, max_messages=2)
    assert [r.name for r in collector.collect().received] == ["hero_cdr_20261001.csv", "hero_cdr_20261002.csv"]
    assert [r.name for r in collector.collect().received] == ["hero_cdr_20261003.csv"]


def test_starttls_works_as_well(make_config, apps, dovecot, user):
    dovecot.deliver(user, simple_email("over starttls", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user, security="starttls", port=dovecot.imap_port)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1


def test_plain_imap_is_allowed_to_this_machine_only(make_config, apps, dovecot, user):
    dovecot.deliver(user, simple_email("plain", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user, security="plain", port=dovecot.imap_port)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1


def test_an_untrusted_certificate_is_refused_before_login(make_config, apps, dovecot, user, tmp_path):
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    dovecot.deliver(user, simple_email("x", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user, ca_file=str(other_ca))
    result = collector.collect()
    assert result.failed_permanently and "certificate not trusted" in result.errors[0]
    assert rows(app) == []


def test_a_refused_login_is_permanent_and_never_shows_the_password(make_config, apps, dovecot, user, monkeypatch):
    monkeypatch.setenv(ENV, "Wrong-imap-password-42")
    dovecot.deliver(user, simple_email("x", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user)
    result = collector.collect()
    assert result.failed_permanently and "login refused" in result.errors[0]
    assert "Wrong-imap-password-42" not in result.errors[0] and rows(app) == []


def test_a_password_that_is_not_ascii_logs_in_and_a_wrong_one_is_refused_unshown(make_config, apps, dovecot,
                                                                                   monkeypatch):
    user = dovecot.add_user(UTF8_PASSWORD)
    dovecot.deliver(user, simple_email("utf8", "hero_cdr_20261001.csv", render([record(1)])))
    monkeypatch.setenv(ENV, UTF8_PASSWORD)
    app, collector = make(make_config, apps, dovecot, user)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1
    monkeypatch.setenv(ENV, "Fälsch-Passwort-99")
    refused = collector_for(app, app.config.source("carrier-mail")).collect()
    assert refused.failed_permanently and "login refused" in refused.errors[0]
    assert "Fälsch-Passwort-99" not in refused.errors[0] and "Fälsch" not in refused.errors[0]


def test_a_message_with_no_attachments_is_recorded_as_ignored_not_dropped(make_config, apps, dovecot, user):
    message = bare_email("Your October invoice is ready: download it from the portal", "Log in to download your CDRs.")
    uid = dovecot.deliver(user, message.as_bytes())
    app, collector = make(make_config, apps, dovecot, user)
    assert collector.collect().errors == []
    [row] = rows(app)
    assert (row["status"], row["reason"], row["name"]) == (
        "ignored", "not-a-carrier-file", "Your October invoice is ready: download it from the portal.eml")
    assert "no attachments" in row["error"] and FLAG in dovecot.flags(user)[uid]
    assert b"Log in to download" in app.staging.path_of(row["blob"]).read_bytes()


def test_a_message_that_cannot_be_opened_is_recorded_and_never_blocks_later_mail(make_config, apps, dovecot, user):
    forward = bare_email("Fwd: broken", "FYI", sender="staff@reseller.example")
    forward.add_attachment(b"placeholder", maintype="message", subtype="rfc822", filename="original.eml")
    broken = forward.as_bytes()
    encoded = broken.split(b"Content-Transfer-Encoding: base64", 1)
    # Broken base64 padding in the forwarded email, as a mangling relay leaves it.
    broken = encoded[0] + b"Content-Transfer-Encoding: base64" + encoded[1].replace(b"cGxhY2Vob2xkZXI=", b"cGxhY2Vob2xkZXI")
    first = dovecot.deliver(user, broken.replace(b"\n", b"\r\n"))
    second = dovecot.deliver(user, simple_email("good", "hero_cdr_20261001.csv", render([record(1)])))
    app, collector = make(make_config, apps, dovecot, user)
    result = collector.collect()
    assert result.errors == []
    stored = {r["name"]: r for r in rows(app)}
    assert stored["hero_cdr_20261001.csv"]["status"] == "queued"
    assert stored["original.eml"]["status"] == "ignored" and "cannot be decoded" in stored["original.eml"]["error"]
    assert FLAG in dovecot.flags(user)[first] and FLAG in dovecot.flags(user)[second]


def test_messages_that_cannot_be_taken_never_use_up_max_messages(make_config, apps, dovecot, user):
    big = dovecot.deliver(user, simple_email("big", "hero_cdr_20261001.csv", render([record(i) for i in range(1, 400)])))
    dovecot.deliver(user, simple_email("small", "hero_cdr_20261002.csv", render([record(500)])))
    app, collector = make(make_config, apps, dovecot, user, max_message_bytes=20_000, max_messages=1)
    result = collector.collect()
    assert [r.name for r in result.received] == ["hero_cdr_20261002.csv"] and f"UID {big}" in result.entry_errors[0]


def test_a_missing_folder_is_a_permanent_error(make_config, apps, dovecot, user):
    app, collector = make(make_config, apps, dovecot, user, folder="No Such Folder")
    result = collector.collect()
    assert result.failed_permanently and "No Such Folder" in result.errors[0]


def test_an_unreachable_server_is_transient(make_config, apps, dovecot, user):
    from tests.interop_servers import free_port

    app, collector = make(make_config, apps, dovecot, user, port=free_port())
    result = collector.collect()
    assert result.errors and not result.failed_permanently


@pytest.mark.parametrize("options, key, words", [
    ({"security": "plain", "host": "imap.example.com"}, "security", "in clear"),
    ({"after": "move"}, "processed_folder", "required"),
    ({"after": "move", "processed_folder": "INBOX"}, "processed_folder", "differ"),
    ({"flag": "\\Deleted"}, "flag", "keyword"),
    ({"flag": "\\Seen"}, "flag", "people reading the mailbox set it too"),
    ({"flag": "two words"}, "flag", "keyword"),
    ({"security": "ssl"}, "security", "one of"),
    ({"carrier": "nobody"}, "carrier", "unknown carrier"),
])
def test_configuration_mistakes_are_refused_at_start(make_config, dovecot, user, options, key, words):
    with pytest.raises(ConfigError) as refused:
        load_config(make_config(imap_toml(dovecot, user, **options)), env={})
    assert refused.value.key.endswith(key) and words in str(refused.value)


def test_a_literal_password_is_refused(make_config, dovecot, user):
    with pytest.raises(ConfigError, match="password"):
        load_config(make_config(imap_toml(dovecot, user, password="literal-secret")), env={})


def test_the_daemon_polls_the_mailbox_and_watches_the_maildir_and_loads_both(make_config, dovecot, user, tmp_path):
    import threading

    from ingest.daemon import run_daemon
    from tests.test_maildir import deliver, maildir_toml

    maildir = tmp_path / "Maildir"
    app = app_with(make_config, imap_toml(dovecot, user, interval_seconds=0.5, jitter_seconds=0)
                   + maildir_toml("mail-drop", maildir))
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, kwargs={"app": app, "stop": stop}, daemon=True)
    try:
        dovecot.deliver(user, simple_email("by imap", "hero_cdr_20261001.csv", render([record(1)])))
        daemon.start()
        wait_until(lambda: (maildir / "new").is_dir(), what="the Maildir to be made")
        deliver(maildir, simple_email("by maildir", "hero_cdr_20261002.csv", render([record(2)])), "9.M9.host")
        dovecot.deliver(user, simple_email("later by imap", "hero_cdr_20261003.csv", render([record(3)])))
        wait_until(lambda: sorted((r["name"], r["status"], r["source"]) for r in rows(app)) == [
            ("hero_cdr_20261001.csv", "loaded", "carrier-mail"), ("hero_cdr_20261002.csv", "loaded", "mail-drop"),
            ("hero_cdr_20261003.csv", "loaded", "carrier-mail")],
            what=lambda: f"three files loaded; have {[(r['name'], r['status']) for r in rows(app)]}")
    finally:
        stop.set()
        daemon.join(timeout=30)
        app.close()
    assert not daemon.is_alive()
    assert all(FLAG in flags for flags in dovecot.flags(user).values())
