"""``kind = "sftp"`` (paramiko) against a real asyncssh SFTP server on 127.0.0.1 (``tests/sftp_server.py``):
the whole remote-collector contract, then authentication, host-key verification, secrets, faults and
hostile names."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import asyncssh
import pytest

from ingest.catalog import remote as remote_state
from ingest.collectors import collector_for
from ingest.collectors.sftp import fingerprint
from ingest.errors import ConfigError, PermanentError, TransientError
from tests.conftest import app_with, catalog_rows
from tests.interop_servers import free_port
from tests.records import record, render
from tests.remote_contract import RemoteContract, dirs_toml, put
from tests.sftp_server import OwnedSFTPServer, SftpServer, host_key_line

USER = "hero-ops"
PASSWORD_ENV = "CDR_TEST_SFTP_PASSWORD"


@pytest.fixture
def password():
    return f"pw-{uuid.uuid4().hex}"  # distinctive, so a leak is found by a plain substring search


@pytest.fixture
def server(tmp_path, password):
    root = tmp_path / "sftp-root"
    root.mkdir()
    with SftpServer(root, passwords={USER: password}) as running:
        yield running


class SftpRemote:
    """The ``remote`` object of the contract, plus what the tests below need."""

    def __init__(self, server: SftpServer, tmp_path: Path, monkeypatch, password: str):
        self.server = server
        self.root = server.root
        self.password = password
        self.tmp_path = tmp_path
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text(server.known_hosts_line())
        monkeypatch.setenv(PASSWORD_ENV, password)

    def path(self, local: Path) -> str:
        return self.server.path(local)

    @contextmanager
    def denied(self, local: Path):
        refused = os.fsencode(self.path(local))
        normal = self.server.sftp_class

        class Locked(normal):
            def open(self, path, pflags, attrs):
                if path.endswith(refused):
                    raise asyncssh.SFTPPermissionDenied("not yours")
                return super().open(path, pflags, attrs)

        self.server.sftp_class = Locked
        try:
            yield
        finally:
            self.server.sftp_class = normal

    def source_toml(self, name: str, dirs: list[dict], **options) -> str:
        base = {"host": self.server.host, "port": self.server.port, "username": USER,
                "password": "${%s}" % PASSWORD_ENV, "known_hosts": str(self.known_hosts), "timeout_seconds": 10}
        base.update(options)
        lines = ["[[sources]]", f"name = {json.dumps(name)}", 'kind = "sftp"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in base.items() if value is not None]
        return "\n".join(lines) + "\n" + dirs_toml(dirs)


@pytest.fixture
def remote(server, tmp_path, monkeypatch, password):
    return SftpRemote(server, tmp_path, monkeypatch, password)


class TestSftpSource(RemoteContract):
    """The whole contract over SFTP (password auth, host key pinned in known_hosts)."""


# -- helpers ---------------------------------------------------------------------------------------------


def source(make_config, remote, apps, **options):
    daily = remote.root / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    dirs = [{"path": remote.path(daily), "carrier": "hero", "type": "cdr", "cadence": "daily"}]
    options.setdefault("stable_listings", 1)
    app = app_with(make_config, remote.source_toml("remote", dirs, **options))
    apps.append(app)
    return app, collector_for(app, app.config.source("remote"))


def staged_blobs(app) -> list[Path]:
    return [p for p in app.staging.blobs.rglob("*") if p.is_file()] + [p for p in app.staging.tmp.iterdir()]


def collected(app, directory="/daily"):
    with app.catalog.read() as conn:
        return remote_state.collected_keys(conn, "remote", directory)


def write_key(tmp_path: Path, algorithm: str, passphrase: str | None = None, **kwargs) -> tuple[Path, asyncssh.SSHKey]:
    key = asyncssh.generate_private_key(algorithm, **kwargs)
    path = tmp_path / f"id_{algorithm}_{uuid.uuid4().hex[:6]}"
    path.write_bytes(key.export_private_key("openssh", passphrase=passphrase))
    path.chmod(0o600)
    return path, key


DATA = render([record(1), record(2)])


def put_daily(remote, name="hero_cdr_20261001.csv", data=DATA) -> Path:
    return put(remote.root / "daily" / name, data)


# -- authentication --------------------------------------------------------------------------------------


def test_password_auth_collects(make_config, remote, apps):
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    result = collector.collect()
    assert result.errors == [] and [r.name for r in result.received] == ["hero_cdr_20261001.csv"]
    [row] = catalog_rows(app)
    assert app.staging.path_of(row["blob"]).read_bytes() == DATA
    assert row["origin"] == f"sftp://{USER}@127.0.0.1:{remote.server.port}/daily/hero_cdr_20261001.csv"
    assert remote.server.auth_attempts == [("password", USER)]


@pytest.mark.parametrize("algorithm, kwargs", [
    ("ssh-ed25519", {}),
    ("ecdsa-sha2-nistp256", {}),
    ("ecdsa-sha2-nistp384", {}),
    ("ssh-rsa", {"key_size": 2048}),
])
def test_key_auth(make_config, remote, apps, tmp_path, algorithm, kwargs):
    key_file, key = write_key(tmp_path, algorithm, **kwargs)
    remote.server.authorized_keys[USER] = [key.public_data]
    app, collector = source(make_config, remote, apps, password=None, private_key_file=str(key_file))
    put_daily(remote)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1
    assert remote.server.auth_attempts and {m for m, _ in remote.server.auth_attempts} == {"publickey"}


def test_a_key_the_server_does_not_accept_is_refused(make_config, remote, apps, tmp_path):
    key_file, _ = write_key(tmp_path, "ssh-ed25519")  # never authorized
    app, collector = source(make_config, remote, apps, password=None, private_key_file=str(key_file))
    put_daily(remote)
    with pytest.raises(PermanentError, match="authentication refused"):
        collector.connect()
    result = collector.collect()
    assert result.received == [] and "authentication refused" in result.errors[0]


def test_passphrase_protected_key(make_config, remote, apps, tmp_path, monkeypatch):
    passphrase = f"pp-{uuid.uuid4().hex}"
    key_file, key = write_key(tmp_path, "ssh-ed25519", passphrase=passphrase)
    remote.server.authorized_keys[USER] = [key.public_data]
    (tmp_path / "passphrase").write_text(passphrase + "\n")
    app, collector = source(make_config, remote, apps, password=None, private_key_file=str(key_file),
                            private_key_passphrase_file=str(tmp_path / "passphrase"))
    put_daily(remote)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1

    # the same key with a wrong passphrase: refused, and the passphrase is never shown
    monkeypatch.setenv("CDR_TEST_WRONG_PASSPHRASE", "not-" + passphrase)
    app2, wrong = source(make_config, remote, apps, password=None, private_key_file=str(key_file),
                         private_key_passphrase="${CDR_TEST_WRONG_PASSPHRASE}")
    with pytest.raises(PermanentError, match="cannot load private key") as caught:
        wrong.connect()
    assert passphrase not in str(caught.value)
    # without any passphrase: refused with a clear reason
    app3, missing = source(make_config, remote, apps, password=None, private_key_file=str(key_file))
    with pytest.raises(PermanentError, match="protected"):
        missing.connect()


def test_a_wrong_password_is_a_permanent_error_reported_by_the_pass(make_config, remote, apps, monkeypatch):
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + remote.password)
    with pytest.raises(PermanentError, match="authentication refused"):
        collector.connect()
    result = collector.collect()
    assert result.received == []
    assert len(result.errors) == 1 and "authentication refused" in result.errors[0]
    assert catalog_rows(app) == [] and staged_blobs(app) == [] and collected(app) == set()


# -- host keys -------------------------------------------------------------------------------------------


def test_an_unknown_host_key_is_refused_before_any_credential_is_sent(make_config, remote, apps):
    other = asyncssh.generate_private_key("ssh-ed25519")
    before = host_key_line("[127.0.0.1]:1", other) + host_key_line("elsewhere.example", other)
    remote.known_hosts.write_text(before)
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    with pytest.raises(PermanentError) as caught:
        collector.connect()
    message = str(caught.value)
    assert "unknown" in message and f"[127.0.0.1]:{remote.server.port}" in message
    assert remote.server.fingerprint in message
    result = collector.collect()
    assert result.received == [] and "unknown" in result.errors[0] and catalog_rows(app) == []
    assert remote.server.auth_attempts == []  # the password never went to an unverified host
    assert remote.known_hosts.read_text() == before  # nothing was added


def test_a_changed_host_key_is_refused(make_config, remote, apps):
    other = asyncssh.generate_private_key("ssh-ed25519")
    remote.known_hosts.write_text(remote.server.known_hosts_line(other))
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    with pytest.raises(PermanentError) as caught:
        collector.connect()
    message = str(caught.value)
    assert "CHANGED" in message and f"[127.0.0.1]:{remote.server.port}" in message
    assert remote.server.fingerprint in message
    result = collector.collect()
    assert result.received == [] and "CHANGED" in result.errors[0]
    assert remote.server.auth_attempts == []


def test_a_known_key_of_another_type_does_not_let_a_different_key_in(make_config, remote, apps):
    other = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    remote.known_hosts.write_text(remote.server.known_hosts_line(other))
    app, collector = source(make_config, remote, apps)
    with pytest.raises(PermanentError, match="CHANGED"):
        collector.connect()


def test_a_hashed_known_hosts_entry_is_honoured(make_config, remote, apps):
    import paramiko

    entry = remote.server.known_hosts_line().split()
    hashed = paramiko.HostKeys.hash_host(entry[0])
    remote.known_hosts.write_text(f"{hashed} {entry[1]} {entry[2]}\n")
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    assert len(collector.collect().received) == 1


def test_a_pinned_fingerprint_works_and_a_wrong_pin_is_refused(make_config, remote, apps):
    put_daily(remote)
    app, collector = source(make_config, remote, apps, known_hosts=None, host_key_fingerprint=remote.server.fingerprint)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1

    wrong_pin = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    app2, pinned_wrong = source(make_config, remote, apps, known_hosts=None, host_key_fingerprint=wrong_pin)
    attempts = len(remote.server.auth_attempts)
    with pytest.raises(PermanentError) as caught:
        pinned_wrong.connect()
    assert "pinned" in str(caught.value) and remote.server.fingerprint in str(caught.value)
    assert len(remote.server.auth_attempts) == attempts
    assert pinned_wrong.collect().received == [] and len(catalog_rows(app2)) == 1  # only the first one


def test_our_fingerprint_matches_asyncssh(remote):
    import base64

    import paramiko

    blob = remote.server.host_key.export_public_key("openssh").split()[1]
    assert fingerprint(paramiko.Ed25519Key(data=base64.b64decode(blob))) == remote.server.fingerprint


# -- secrets ---------------------------------------------------------------------------------------------


def test_the_password_never_appears_in_errors_logs_or_origin(make_config, remote, apps, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    app, collector = source(make_config, remote, apps)
    put_daily(remote)
    assert len(collector.collect().received) == 1
    [row] = catalog_rows(app)
    assert remote.password not in row["origin"] and USER in row["origin"]

    monkeypatch.setenv(PASSWORD_ENV, remote.password + "-wrong")
    failed = collector.collect()
    assert failed.errors
    everything = "\n".join(failed.errors) + caplog.text + "".join(str(r.args) for r in caplog.records)
    assert remote.password not in everything and "-wrong" not in everything
    assert "authentication refused" in caplog.text  # the log did record the failure


# -- faults ----------------------------------------------------------------------------------------------


def test_a_connection_dropped_mid_transfer_leaves_nothing_collected_and_the_next_pass_takes_it(make_config, remote, apps):
    data = os.urandom(4 << 20)

    class Dropping(OwnedSFTPServer):
        def read(self, file_obj, offset, size):
            served.append(size)
            if sum(served) > (1 << 20):
                self.connection.abort()  # the network goes away mid-transfer
            return super().read(file_obj, offset, size)

    served: list[int] = []
    remote.server.sftp_class = Dropping
    app, collector = source(make_config, remote, apps)
    put_daily(remote, "hero_cdr_20261001.csv.gz", data)
    result = collector.collect()
    assert result.received == [] and len(result.errors) == 1
    assert "transfer interrupted" in result.errors[0] or "connection" in result.errors[0].lower()
    assert sum(served) > (1 << 20)  # the transfer really started
    assert catalog_rows(app) == [] and staged_blobs(app) == [] and collected(app) == set()

    remote.server.sftp_class = OwnedSFTPServer
    again = collector.collect()
    assert again.errors == [] and len(again.received) == 1
    [row] = catalog_rows(app)
    assert app.staging.path_of(row["blob"]).read_bytes() == data
    assert collected(app) != set()


def test_a_large_file_arrives_whole(make_config, remote, apps):
    data = os.urandom(9 << 20) + b"tail"
    app, collector = source(make_config, remote, apps)
    put_daily(remote, "hero_cdr_20261001.csv.gz", data)
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1
    [row] = catalog_rows(app)
    assert app.staging.path_of(row["blob"]).read_bytes() == data


def test_a_failing_listing_is_reported_and_does_not_advance_the_state(make_config, remote, apps):
    class ListingFails(OwnedSFTPServer):
        async def scandir(self, path):
            raise asyncssh.SFTPFailure("listing is broken today")
            yield  # an async generator, as asyncssh expects

    app, collector = source(make_config, remote, apps, stable_listings=2)
    put_daily(remote)
    remote.server.sftp_class = ListingFails
    result = collector.collect()
    assert result.received == [] and len(result.errors) == 1 and "/daily" in result.errors[0]
    with app.catalog.read() as conn:
        assert remote_state.pending(conn, "remote") == {}  # the failed pass counted as no observation

    remote.server.sftp_class = OwnedSFTPServer
    assert collector.collect().received == []  # first sighting
    assert len(collector.collect().received) == 1  # second, stable


def test_an_unreachable_server_is_a_transient_error(make_config, remote, apps):
    port = free_port()
    app, collector = source(make_config, remote, apps, port=port)
    with pytest.raises(TransientError):
        collector.connect()
    result = collector.collect()
    assert result.received == [] and len(result.errors) == 1
    assert f"127.0.0.1:{port}" in result.errors[0] and "refused" in result.errors[0].lower()


def test_a_missing_directory_is_reported(make_config, remote, apps):
    app, collector = source(make_config, remote, apps)
    transport = collector.connect()
    try:
        with pytest.raises(PermanentError, match="no such file"):
            transport.list("/no-such-dir")
        with pytest.raises(PermanentError, match="no such file"):
            transport.open("/daily/nothing.csv")
    finally:
        transport.close()


def test_a_dropped_connection_while_reading_raises_transient_error_from_the_stream(make_config, remote, apps):
    put_daily(remote, "big.bin", os.urandom(8 << 20))
    app, collector = source(make_config, remote, apps)
    transport = collector.connect()
    try:
        stream = transport.open("/daily/big.bin")
        with stream:
            assert len(stream.read(1 << 16)) == 1 << 16
            remote.server.drop_connections()
            with pytest.raises(TransientError):
                while stream.read(1 << 20):
                    pass
    finally:
        transport.close()


# -- hostile names ---------------------------------------------------------------------------------------


def test_names_escaping_the_directory_are_refused_and_never_staged(make_config, remote, apps):
    outside = b"outside the directory: must never be staged\n"
    put(remote.root / "evil.csv", outside)  # where "/daily/../evil.csv" would lead
    put_daily(remote)
    reported = [b"/evil.csv", b"x/../../evil.csv", b"evil\n.csv", b"evil\r.csv", b"../evil.csv", b"..\\evil.csv"]

    class Hostile(OwnedSFTPServer):
        async def scandir(self, path):
            async for name in super().scandir(path):
                yield name
            for filename in reported:
                attrs = asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_REGULAR, size=len(outside),
                                           permissions=stat.S_IFREG | 0o644, uid=0, gid=0,
                                           atime=int(time.time()) - 3600, mtime=int(time.time()) - 3600)
                yield asyncssh.SFTPName(filename, attrs=attrs)

    remote.server.sftp_class = Hostile
    app, collector = source(make_config, remote, apps)
    result = collector.collect()
    assert [r.name for r in result.received] == ["hero_cdr_20261001.csv"]
    assert result.errors == [] and len(result.entry_errors) == len(reported)
    for name in reported:
        assert any("not a plain file name" in e and repr(name.decode()) in e for e in result.entry_errors), name
    assert [row["name"] for row in catalog_rows(app)] == ["hero_cdr_20261001.csv"]
    assert all(p.read_bytes() != outside for p in staged_blobs(app))
    assert collected(app) == {("/daily/hero_cdr_20261001.csv", len(DATA), int(os.stat(remote.root / "daily" / "hero_cdr_20261001.csv").st_mtime))}


def test_ecdsa_keys_without_a_comment_load(tmp_path):
    """paramiko's own OpenSSH ECDSA parser refuses about half of these; ours must take every one."""
    from ingest.collectors.sftp import load_private_key

    for index in range(12):
        key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
        path = tmp_path / f"k{index}"
        path.write_bytes(key.export_private_key("openssh"))
        assert load_private_key(str(path), None).asbytes() == key.public_data


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, key", [
    ({"password": None}, "password"),
    ({"known_hosts": None}, "known_hosts"),
    ({"host_key_fingerprint": "SHA256:abc"}, "host_key_fingerprint"),
    ({"known_hosts": None, "host_key_fingerprint": "md5:00"}, "host_key_fingerprint"),
    ({"password": "inline-secret"}, "password"),
    ({"private_key_passphrase": "${CDR_TEST_SFTP_PASSWORD}"}, "private_key_passphrase"),
    ({"known_hosts": "/no/such/known_hosts"}, "known_hosts"),
    ({"port": 70000}, "port"),
])
def test_configuration_is_checked(make_config, remote, apps, options, key):
    with pytest.raises(ConfigError) as caught:
        source(make_config, remote, apps, **options)
    assert caught.value.key.endswith(key)
    assert "inline-secret" not in str(caught.value)


def test_a_large_transfer_dropped_early_fails_cleanly(make_config, remote, apps):
    """Dropped while paramiko's prefetch thread is still sending read requests: the pass reports a
    TransientError and no thread dies with an unhandled exception (pytest would turn that into an error)."""
    served: list[int] = []

    class DropsEarly(OwnedSFTPServer):
        def read(self, file_obj, offset, size):
            served.append(size)
            if len(served) == 2:
                self.connection.abort()
            return super().read(file_obj, offset, size)

    remote.server.sftp_class = DropsEarly
    app, collector = source(make_config, remote, apps)
    put_daily(remote, "hero_cdr_20261001.csv.gz", os.urandom(48 << 20))
    result = collector.collect()
    assert result.received == [] and len(result.errors) == 1
    assert catalog_rows(app) == [] and staged_blobs(app) == [] and collected(app) == set()


def test_a_transfer_that_ends_early_is_not_a_complete_file(make_config, remote, apps):
    """A server answering EOF before the listed size: the stream raises TransientError, it never just ends."""

    class EndsEarly(OwnedSFTPServer):
        def read(self, file_obj, offset, size):
            if offset >= (1 << 20):
                raise asyncssh.SFTPEOFError("no more today")
            return super().read(file_obj, offset, size)

    put_daily(remote, "big.bin", os.urandom(3 << 20))
    remote.server.sftp_class = EndsEarly
    app, collector = source(make_config, remote, apps)
    transport = collector.connect()
    try:
        with transport.open("/daily/big.bin") as stream:
            with pytest.raises(TransientError, match=f"ended after {1 << 20} of {3 << 20} bytes"):
                while stream.read(1 << 20):
                    pass
    finally:
        transport.close()


def test_permission_denied_on_one_file_is_reported_and_the_others_are_taken(make_config, remote, apps):
    class Locked(OwnedSFTPServer):
        def open(self, path, pflags, attrs):
            if path.endswith(b"locked.csv"):
                raise asyncssh.SFTPPermissionDenied("not yours")
            return super().open(path, pflags, attrs)

    put_daily(remote, "a_locked.csv", render([record(1)]))
    put_daily(remote, "b_open.csv", render([record(2)]))
    remote.server.sftp_class = Locked
    app, collector = source(make_config, remote, apps)
    transport = collector.connect()
    try:
        with pytest.raises(PermanentError, match="permission denied"):
            transport.open("/daily/a_locked.csv")
    finally:
        transport.close()
    result = collector.collect()
    assert [r.name for r in result.received] == ["b_open.csv"]
    assert result.errors == [] and len(result.entry_errors) == 1
    assert "a_locked.csv" in result.entry_errors[0] and "permission denied" in result.entry_errors[0]
    assert [p for p, _, _ in collected(app)] == ["/daily/b_open.csv"]


def test_a_server_that_never_answers_times_out(make_config, remote, apps):
    with socket.socket() as silent:  # accepts TCP (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        app, collector = source(make_config, remote, apps, port=silent.getsockname()[1], timeout_seconds=1)
        started = time.monotonic()
        with pytest.raises(TransientError, match="no SSH handshake|timed out|banner"):
            collector.connect()
        assert time.monotonic() - started < 10


def test_a_read_that_stalls_times_out(make_config, remote, apps):
    import asyncio

    gate: dict = {}  # one event for every stalled read, opened at the end of the test

    class Stalls(OwnedSFTPServer):
        async def read(self, file_obj, offset, size):
            if offset >= (1 << 20):
                if "event" not in gate:
                    gate.update(event=asyncio.Event(), loop=asyncio.get_running_loop())
                await asyncio.wait_for(gate["event"].wait(), 30)
            return super().read(file_obj, offset, size)

    put_daily(remote, "big.bin", os.urandom(2 << 20))
    remote.server.sftp_class = Stalls
    app, collector = source(make_config, remote, apps, timeout_seconds=1)
    transport = collector.connect()
    try:
        with transport.open("/daily/big.bin") as stream:
            with pytest.raises(TransientError, match="timed out"):
                while stream.read(1 << 20):
                    pass
    finally:
        if "event" in gate:
            gate["loop"].call_soon_threadsafe(gate["event"].set)
        transport.close()


@pytest.mark.parametrize("known_type", ["ssh-rsa", "ecdsa-sha2-nistp256"])
def test_a_server_with_several_host_keys_is_asked_for_the_type_known_hosts_holds(make_config, tmp_path, password,
                                                                                   monkeypatch, apps, known_type):
    root = tmp_path / "multi-root"
    root.mkdir()
    known = asyncssh.generate_private_key(known_type, **({"key_size": 2048} if known_type == "ssh-rsa" else {}))
    with SftpServer(root, passwords={USER: password}, extra_host_keys=[known]) as multi:
        remote = SftpRemote(multi, tmp_path, monkeypatch, password)
        remote.known_hosts.write_text(multi.known_hosts_line(known))  # not the ed25519 key it prefers
        app, collector = source(make_config, remote, apps)
        put_daily(remote)
        result = collector.collect()
        assert result.errors == [] and len(result.received) == 1


def test_after_move_creates_a_missing_move_to_directory(make_config, remote, apps):
    """As the directory kind does (found against OpenSSH's sshd: a missing folder made the move fail)."""
    target = remote.root / "archive" / "2026" / "10"
    app, collector = source(make_config, remote, apps, after="move", move_to=remote.path(target))
    path = put_daily(remote)
    assert len(collector.collect().received) == 1
    assert not path.exists() and (target / "hero_cdr_20261001.csv").read_bytes() == DATA
    put(remote.root / "blocked", b"a file where a folder should be")
    app2, blocked = source(make_config, remote, apps, after="move", move_to=remote.path(remote.root / "blocked"))
    transport = blocked.connect()
    try:
        with pytest.raises(PermanentError, match="not a directory"):
            transport.rename("/daily/x.csv", "/blocked/x.csv")
    finally:
        transport.close()
