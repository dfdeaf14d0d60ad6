"""``cdr doctor``: every check passes on a healthy configuration (SQLite and PostgreSQL), and each thing that
is wrong fails in one line naming it, against the real test servers (SFTP, FTP/FTPS, Dovecot, the billing
feed stand-in). Doctor changes nothing: no database created or migrated, nothing fetched or recorded."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import asyncssh
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ingest.catalog.db import HEAD_REVISION
from ingest.cli import cli
from ingest.collectors.base import Collector
from tests.conftest import POSTGRES_URL, REPO, app_with
from tests.feed_server import FeedServer
from tests.ftp_server import PASSWORD as FTP_PASSWORD
from tests.ftp_server import FtpTestServer
from tests.imap_server import dovecot_server
from tests.interop_servers import free_port
from tests.records import record, render
from tests.remote_contract import dirs_toml, put
from tests.sftp_server import OwnedSFTPServer, SftpServer
from tests.test_directory_source import _without_dac_override
from tests.test_ftp_source import FtpRemote
from tests.test_imap_source import ENV as IMAP_ENV
from tests.test_imap_source import carrier_email, imap_toml
from tests.test_sftp_source import PASSWORD_ENV, SftpRemote

DATA = render([record(1), record(2)])


def doctor(config: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["--config", str(config), "doctor", *args], env=env, catch_exceptions=False)


def checks(config: Path, env: dict | None = None) -> dict[str, dict]:
    """``cdr doctor --json``, by check name."""
    result = doctor(config, "--json", env=env)
    shown = json.loads(result.stdout)
    assert all(set(item) == {"check", "ok", "detail"} for item in shown)
    return {item["check"]: item for item in shown}


def failed_line(result, check: str) -> str:
    """The one line of a failed check; the run exited 1 naming it on stderr."""
    [line] = [line for line in result.stdout.splitlines() if line.startswith(f"FAIL  {check}: ")]
    assert result.exit_code == 1 and check in result.stderr.splitlines()[-1], (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return line


def sqlite_config(tmp_path: Path, extra: str = "") -> Path:
    """A configuration on SQLite, for checks where no database is involved."""
    path = tmp_path / "cdr.toml"
    path.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n[database]\nurl = "sqlite:///{tmp_path}/cdr.sqlite"\n'
                    f'[staging]\ndir = "{tmp_path}/staging"\n' + extra)
    return path


def dropfolder_toml(name: str, path: Path, kind: str = "dropfolder") -> str:
    return f'[[sources]]\nname = "{name}"\nkind = "{kind}"\npath = "{path}"\n' + (
        'carrier = "hero"\n' if kind == "dropfolder" else "")


def catalog_counts(app) -> dict[str, int]:
    with app.catalog.read() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("files", "remote_collected", "remote_pending", "source_state")}


# -- the whole run -----------------------------------------------------------------------------------------


def test_a_healthy_configuration_passes_every_check(make_config, apps, tmp_path):
    drop, share = tmp_path / "drop", tmp_path / "share"
    drop.mkdir()
    share.mkdir()
    app = app_with(make_config, dropfolder_toml("drop", drop) + '[[sources]]\nname = "share"\nkind = "directory"\n'
                   + dirs_toml([{"path": str(share), "carrier": "hero", "type": "cdr"}]))
    apps.append(app)
    app.catalog  # the schema, at head
    config = app.config.path

    result = doctor(config)
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert all(line.startswith("ok    ") for line in result.stdout.splitlines())
    found = checks(config)
    assert list(found) == ["config", "database", "staging", "carrier hero", "carrier techconnections", "source drop",
                           f"source share {share}"]
    assert all(item["ok"] for item in found.values())
    assert found["config"]["detail"].startswith(str(config))
    assert found["database"]["detail"].endswith(f"reachable; schema at head ({HEAD_REVISION})")
    assert "GiB free" in found["staging"]["detail"]
    assert found[f"source share {share}"]["detail"] == "listed: 0 files (nothing fetched)"


def test_a_new_database_is_neither_created_nor_migrated(make_config, database_url):
    config = make_config()
    found = checks(config)
    assert found["database"]["ok"], found["database"]
    if database_url.startswith("sqlite"):
        assert "not created yet" in found["database"]["detail"]
        assert not Path(make_url(database_url).database).exists()
    else:
        assert "empty: the schema is created by the first command" in found["database"]["detail"]
        schema = database_url.rsplit("%3D", 1)[1]
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()[0]
        assert tables == 0


def test_a_schema_behind_is_reported_with_the_migrations_pending_and_not_migrated(app):
    with app.catalog.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    result = doctor(app.config.path)
    line = failed_line(result, "database")
    pending = int(HEAD_REVISION) - 4  # the migrations are numbered one after another
    assert line.endswith(f"reachable; schema behind, {pending} migrations pending (0004 -> {HEAD_REVISION}); the next "
                         "other cdr command applies them")
    assert app.catalog.current_revision() == "0004"


@pytest.mark.parametrize("where", ["postgresql-closed-port", "sqlite-not-a-database"])
def test_an_unreachable_database_fails_in_one_line(tmp_path, where):
    if where.startswith("postgresql"):
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    else:
        (tmp_path / "cdr.sqlite").write_bytes(b"not a database, but a file of the same name " * 100)
        url = f"sqlite:///{tmp_path}/cdr.sqlite"
    config = sqlite_config(tmp_path)
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/cdr.sqlite", url))
    result = doctor(config)
    line = failed_line(result, "database")
    assert line.startswith(f"FAIL  database: {url} (database.url in {config}): unreachable: ")
    assert result.stderr == "error: 1 check failed: database\n"
    assert any(line.startswith("ok    staging: ") for line in result.stdout.splitlines())  # the others still ran


def test_a_database_password_is_masked(tmp_path, postgres_available):
    password = f"Pw-{uuid.uuid4().hex}"
    url = make_url(POSTGRES_URL).set(password=password).render_as_string(hide_password=False)
    config = sqlite_config(tmp_path)
    result = doctor(config, env={"CDR_DATABASE_URL": url})
    assert password not in result.output
    assert "postgres:***@127.0.0.1" in result.stdout and "(CDR_DATABASE_URL)" in result.stdout


def test_a_configuration_refused_is_the_one_failed_check(tmp_path):
    config = sqlite_config(tmp_path, "[intake]\nmax_ratio = 0\n")
    result = doctor(config)
    assert result.stdout == "FAIL  config: configuration error at intake.max_ratio: must be a whole number of at least 1\n"
    assert result.exit_code == 1 and result.stderr == "error: 1 check failed: config\n"


def test_a_staging_folder_that_cannot_be_written_fails(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    staging.chmod(0o555)
    with _without_dac_override():
        result = doctor(sqlite_config(tmp_path))
    assert failed_line(result, "staging") == f"FAIL  staging: {staging} is not writable by this user"


# -- drop folders and Maildirs ---------------------------------------------------------------------------------


def _missing(folder: Path) -> None:
    pass


def _a_file(folder: Path) -> None:
    folder.write_text("not a folder")


def _read_only(folder: Path) -> None:
    folder.mkdir()
    folder.chmod(0o555)


def _done_is_a_symlink(folder: Path) -> None:
    folder.mkdir()
    (folder.parent / "elsewhere").mkdir()
    (folder / "done").symlink_to(folder.parent / "elsewhere", target_is_directory=True)


def _done_read_only(folder: Path) -> None:
    folder.mkdir()
    (folder / "done").mkdir(mode=0o555)


@pytest.mark.parametrize("kind, spoil, why", [
    ("dropfolder", _missing, "{folder} does not exist"),
    ("dropfolder", _a_file, "{folder} is not a folder"),
    ("dropfolder", _read_only, "{folder} is not writable by this user"),
    ("dropfolder", _done_is_a_symlink, "{folder}/done is a symlink: files are never moved into it"),
    ("dropfolder", _done_read_only, "{folder}/done is not writable by this user"),
    ("maildir", _missing, "{folder}/new does not exist"),
], ids=["missing", "a-file", "read-only", "done-a-symlink", "done-read-only", "maildir-missing"])
def test_a_drop_folder_or_maildir_that_cannot_be_used_fails_naming_the_source(tmp_path, kind, spoil, why):
    folder = tmp_path / "drop"
    spoil(folder)
    config = sqlite_config(tmp_path, dropfolder_toml("hero-drop", folder, kind))
    with _without_dac_override():  # root writes wherever the permission bits say not
        result = doctor(config)
    line = failed_line(result, "source hero-drop")
    assert line.startswith(f"FAIL  source hero-drop: {kind}: {why.format(folder=folder)}")


def test_a_usable_maildir_passes(tmp_path):
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    found = checks(sqlite_config(tmp_path, dropfolder_toml("mail", tmp_path / "Maildir", "maildir")))
    assert found["source mail"] == {"check": "source mail", "ok": True,
                                    "detail": f"maildir: {tmp_path}/Maildir/new writable; cur/ safe"}


def test_a_missing_directory_of_a_mounted_share_fails_naming_it(tmp_path):
    there, gone = tmp_path / "there", tmp_path / "gone"
    there.mkdir()
    config = sqlite_config(tmp_path, '[[sources]]\nname = "share"\nkind = "directory"\n'
                           + dirs_toml([{"path": str(there)}, {"path": str(gone)}]))
    result = doctor(config)
    assert failed_line(result, f"source share {gone}") == (f"FAIL  source share {gone}: {gone}: "
                                                            "No such file or directory")
    assert f"ok    source share {there}: listed: 0 files (nothing fetched)" in result.stdout


# -- SFTP ---------------------------------------------------------------------------------------------------


@pytest.fixture
def sftp(tmp_path, monkeypatch):
    password = f"pw-{uuid.uuid4().hex}"
    root = tmp_path / "sftp-root"
    (root / "daily").mkdir(parents=True)
    with SftpServer(root, passwords={"hero-ops": password}) as server:
        opened: list[bytes] = []

        class Noting(OwnedSFTPServer):
            def open(self, path, pflags, attrs):
                opened.append(path)
                return super().open(path, pflags, attrs)

        server.sftp_class = Noting
        remote = SftpRemote(server, tmp_path, monkeypatch, password)
        remote.opened = opened
        yield remote


def sftp_source(remote, *dirs: str) -> str:
    return remote.source_toml("hero-sftp", [{"path": d, "carrier": "hero", "type": "cdr"} for d in dirs or ["/daily"]],
                              stable_listings=1, min_age_seconds=0, after="delete")


def test_sftp_connects_logs_in_and_lists_but_fetches_and_records_nothing(make_config, apps, sftp):
    put(sftp.root / "daily" / "hero_cdr_20261001.csv", DATA)
    app = app_with(make_config, sftp_source(sftp))
    apps.append(app)
    config = app.config.path
    before = catalog_counts(app)

    result = doctor(config)
    assert result.exit_code == 0, result.output
    assert (f"ok    source hero-sftp: sftp: host key verified, logged in to sftp://hero-ops@127.0.0.1:{sftp.server.port}"
            in result.stdout)
    assert "ok    source hero-sftp /daily: listed: 1 file (nothing fetched)" in result.stdout
    # after = "delete" would have removed a fetched file: it is there, never opened, and nothing is recorded
    assert (sftp.root / "daily" / "hero_cdr_20261001.csv").read_bytes() == DATA and sftp.opened == []
    assert catalog_counts(app) == before == {"files": 0, "remote_collected": 0, "remote_pending": 0,
                                             "source_state": 0}


def test_sftp_with_a_changed_host_key_fails_before_any_credential_is_sent(tmp_path, sftp):
    sftp.known_hosts.write_text(sftp.server.known_hosts_line(asyncssh.generate_private_key("ssh-ed25519")))
    result = doctor(sqlite_config(tmp_path, sftp_source(sftp)))
    line = failed_line(result, "source hero-sftp")
    assert "host key of [127.0.0.1]:" in line and "has CHANGED" in line and "refusing to connect" in line
    assert sftp.server.auth_attempts == []


def test_sftp_with_a_refused_login_fails_and_never_shows_the_password(tmp_path, sftp, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + sftp.password)
    result = doctor(sqlite_config(tmp_path, sftp_source(sftp)), "--json")
    assert sftp.password not in result.output
    [failed] = [item for item in json.loads(result.stdout) if not item["ok"]]
    assert failed["check"] == "source hero-sftp"
    assert failed["detail"] == (f"sftp: authentication refused by sftp://hero-ops@127.0.0.1:{sftp.server.port} "
                                "(password)")


def test_sftp_with_a_missing_remote_directory_fails_naming_it(tmp_path, sftp):
    result = doctor(sqlite_config(tmp_path, sftp_source(sftp, "/daily", "/monthly")))
    line = failed_line(result, "source hero-sftp /monthly")
    assert line.endswith("/monthly: no such file or directory")
    assert "ok    source hero-sftp /daily: listed: 0 files (nothing fetched)" in result.stdout


# -- FTP and FTPS ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["ftp", "ftps", "ftps-implicit"])
def ftp(request, tmp_path):
    root = tmp_path / "served"
    (root / "daily").mkdir(parents=True)
    password_file = tmp_path / "ftp-password"
    password_file.write_text(FTP_PASSWORD + "\n")
    with FtpTestServer(root, request.param, certificate_dir=tmp_path) as server:
        yield FtpRemote(server, request.param, password_file)


def test_ftp_logs_in_and_lists_each_directory_but_fetches_nothing(tmp_path, ftp):
    put(ftp.root / "daily" / "hero_cdr_20261001.csv", DATA)
    dirs = [{"path": "/daily", "carrier": "hero", "type": "cdr"}, {"path": "/monthly", "carrier": "hero"}]
    config = sqlite_config(tmp_path, ftp.source_toml("hero-ftp", dirs, stable_listings=1, min_age_seconds=0,
                                                     after="delete"))
    result = doctor(config)
    tls = "" if ftp.kind == "ftp" else f"TLS ({'explicit' if ftp.kind == 'ftps' else 'implicit'}) certificate verified, "
    assert f"ok    source hero-ftp: {ftp.kind}: {tls}logged in to " in result.stdout
    assert "ok    source hero-ftp /daily: listed: 1 file (nothing fetched)" in result.stdout
    assert "no such file or permission denied" in failed_line(result, "source hero-ftp /monthly")
    assert (ftp.root / "daily" / "hero_cdr_20261001.csv").read_bytes() == DATA  # after = "delete": never fetched
    assert not (tmp_path / "cdr.sqlite").exists()  # nothing recorded: the catalog was not even opened


def test_ftp_with_a_refused_login_fails_and_never_shows_the_password(tmp_path, ftp):
    ftp.password_file.write_text("wrong-" + FTP_PASSWORD + "\n")
    config = sqlite_config(tmp_path, ftp.source_toml("hero-ftp", [{"path": "/daily"}]))
    result = doctor(config)
    assert "login refused" in failed_line(result, "source hero-ftp")
    assert FTP_PASSWORD not in result.output


# -- IMAP, the billing feed, SMTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot():
    with dovecot_server() as server:
        yield server


def test_imap_logs_in_and_selects_the_folder_but_takes_nothing(tmp_path, dovecot, monkeypatch):
    user = dovecot.add_user()
    monkeypatch.setenv(IMAP_ENV, user.password)
    uid = dovecot.deliver(user, carrier_email())
    result = doctor(sqlite_config(tmp_path, imap_toml(dovecot, user, name="mail")))
    assert result.exit_code == 0, result.output
    assert (f"ok    source mail: imap: logged in to imap 127.0.0.1:{dovecot.imaps_port} as {user.name!r}, folder "
            "'INBOX' selected, 1 message waiting (nothing fetched); taken messages are flagged $CdrCollected"
            in result.stdout)
    assert dovecot.flags(user)[uid] == set()  # neither taken (flagged) nor read


def test_imap_with_a_refused_login_or_a_missing_folder_fails_naming_the_source(tmp_path, dovecot, monkeypatch):
    user = dovecot.add_user()
    monkeypatch.setenv(IMAP_ENV, "wrong-" + user.password)
    refused = doctor(sqlite_config(tmp_path, imap_toml(dovecot, user, name="mail")))
    assert f"login refused for {user.name!r}" in failed_line(refused, "source mail")
    assert user.password not in refused.output
    monkeypatch.setenv(IMAP_ENV, user.password)
    missing = doctor(sqlite_config(tmp_path, imap_toml(dovecot, user, name="mail", folder="Carriers")))
    assert "cannot open folder 'Carriers'" in failed_line(missing, "source mail")


def feed_toml(url: str) -> str:
    return (f'[[sources]]\nname = "hero-feed"\nkind = "billing_feed"\nurl = "{url}"\nlogin = "81234567"\n'
            'password = "${CDR_TEST_FEED_PASSWORD}"\ncarrier = "hero"\ninterval_seconds = 900\n')


def test_a_billing_feed_is_reached_but_never_queried(tmp_path, monkeypatch):
    monkeypatch.setenv("CDR_TEST_FEED_PASSWORD", "Monkey123")
    with FeedServer() as feed:
        feed.add(record(1))
        found = checks(sqlite_config(tmp_path, feed_toml(feed.url)))
        assert feed.requests == []  # not one query: the cursor and the 10-minute floor are the collector's
    port = feed.url.split(":")[2].split("/")[0]
    assert found["source hero-feed"] == {
        "check": "source hero-feed", "ok": True,
        "detail": f"billing_feed: 127.0.0.1:{port} resolves and connects (plain HTTP, local); login and records not "
                  "checked (a query needs the cursor and the carriers allow one per 10 minutes)"}
    stopped = doctor(sqlite_config(tmp_path, feed_toml(feed.url)))  # the server is gone now
    assert failed_line(stopped, "source hero-feed") == f"FAIL  source hero-feed: billing_feed: 127.0.0.1:{port}: " \
                                                       "Connection refused"


def test_the_smtp_listener_port_and_tls_files_are_checked(tmp_path):
    port = free_port()
    smtp = f'[smtp]\ndomain = "billing.example.com"\nport = {port}\n'
    assert checks(sqlite_config(tmp_path, smtp))["smtp"] == {
        "check": "smtp", "ok": True,
        "detail": f"can listen on 127.0.0.1:{port} for cdrs@billing.example.com; no STARTTLS configured"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = doctor(sqlite_config(tmp_path, smtp))
    assert failed_line(busy, "smtp") == (f"FAIL  smtp: cannot listen on 127.0.0.1:{port}: Address already in use "
                                         "(by something that does not answer as an SMTP server)")
    (tmp_path / "smtp.pem").write_text("not a certificate")
    bad_tls = doctor(sqlite_config(tmp_path, smtp + f'tls_cert_file = "{tmp_path}/smtp.pem"\n'
                                                    f'tls_key_file = "{tmp_path}/smtp.pem"\n'))
    assert "do not load as a certificate and its key" in failed_line(bad_tls, "smtp")


def test_the_smtp_check_passes_while_the_daemons_own_listener_holds_the_port(tmp_path, apps):
    from ingest.app import App
    from ingest.config import load_config
    from ingest.smtp import SmtpListener

    port = free_port()
    config = sqlite_config(tmp_path, f'[smtp]\ndomain = "billing.example.com"\nport = {port}\n')
    app = App(load_config(config, env={}), actor="tester")
    apps.append(app)
    listener = SmtpListener(app, app.config.smtp).start()
    try:
        shown = checks(config)["smtp"]
    finally:
        listener.stop()
    assert shown["ok"] and shown["detail"].startswith(f"a listener answers on 127.0.0.1:{port}: 220 ")


def test_a_kind_without_a_check_of_its_own_says_only_its_configuration_was_accepted(tmp_path, apps):
    class Pigeon(Collector):
        kind = "pigeon"

        def collect(self):
            raise AssertionError("doctor never collects")

    app = app_with(lambda extra: sqlite_config(tmp_path, extra), dropfolder_toml("coop", tmp_path))
    apps.append(app)
    [result] = Pigeon(app, app.config.source("coop")).check()
    assert result.view() == {"check": "source coop", "ok": True,
                             "detail": "pigeon: configuration valid; nothing more is checked for this kind"}


def test_each_carrier_names_its_format_and_where_it_comes_from(tmp_path):
    from ingest.config import load_config
    from ingest.doctor import check_carriers

    path = sqlite_config(tmp_path, '[formats.acme-cdr]\nkey = ["Id"]\n[formats.acme-cdr.fields]\n'
                                   'carrier_record_id = { column = "Id" }\nstart_time = { column = "Start" }\n'
                                   'charge = { column = "Cost" }\n[carriers.acme]\nformat = "acme-cdr"\n')
    config = load_config(path, env={})
    found = {result.check: result.view() for result in check_carriers(config)}
    assert found["carrier hero"] == {"check": "carrier hero", "ok": True,
                                     "detail": f"format hero-feed (built-in); {len(config.carriers['hero'].rules)} "
                                               "file rules"}
    assert found["carrier acme"] == {"check": "carrier acme", "ok": True,
                                     "detail": f"format acme-cdr ({config.path}); 0 file rules"}


def test_a_carrier_whose_format_is_unknown_or_does_not_compile_fails_naming_it(tmp_path):
    from dataclasses import replace

    from ingest.config import load_config
    from ingest.doctor import check_carriers

    # A format that parses (the configuration loads) but does not compile: its hook names no module.
    path = sqlite_config(tmp_path, '[formats.broken]\nkey = ["Id"]\nhook = "no_such_module_here:fix"\n'
                                   '[formats.broken.fields]\ncarrier_record_id = { column = "Id" }\n'
                                   'start_time = { column = "Start" }\ncharge = { column = "Cost" }\n'
                                   '[carriers.zed]\nformat = "broken"\n')
    config = load_config(path, env={})
    hero = config.carriers["hero"]
    broken = replace(config, carriers={"acme": replace(hero, name="acme", format="nope"),
                                       "zed": config.carriers["zed"]})
    acme, zed = (result.view() for result in check_carriers(broken))
    assert acme["check"] == "carrier acme" and not acme["ok"]
    assert acme["detail"].startswith("configuration error at formats.nope: unknown format 'nope' (known: ")
    assert zed["check"] == "carrier zed" and not zed["ok"]
    assert zed["detail"].startswith("configuration error at formats.broken.hook: cannot load "
                                    "'no_such_module_here:fix'")
    assert "\n" not in acme["detail"] + zed["detail"]


def test_doctor_fails_the_carrier_whose_format_is_broken_and_passes_the_others(tmp_path):
    path = sqlite_config(tmp_path, '[formats.broken]\nkey = ["Id"]\nhook = "no_such_module_here:fix"\n'
                                   '[formats.broken.fields]\ncarrier_record_id = { column = "Id" }\n'
                                   'start_time = { column = "Start" }\ncharge = { column = "Cost" }\n'
                                   '[carriers.zed]\nformat = "broken"\n')
    result = doctor(path)
    line = failed_line(result, "carrier zed")
    assert "formats.broken.hook: cannot load 'no_such_module_here:fix'" in line
    found = checks(path)
    assert found["carrier hero"]["ok"] and found["carrier techconnections"]["ok"]


def test_doctor_has_help_with_an_example():
    result = CliRunner().invoke(cli, ["doctor", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "cdr doctor" in result.output
