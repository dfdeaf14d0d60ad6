"""``kind = "ftp"``, ``"ftps"`` (explicit) and ``"ftps-implicit"`` against a real pyftpdlib server on
127.0.0.1 (``tests/ftp_server.py``): the whole remote contract over each, then the failures an operator
meets (wrong password, untrusted certificate, server down, dropped transfers, failed listings)."""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.errors import ConfigError
from tests.conftest import app_with
from tests.conftest import catalog_rows as catalog
from tests.ftp_server import PASSWORD, USER, FtpTestServer, certificate_fingerprint
from tests.records import record, render
from tests.remote_contract import RemoteContract, dirs_toml, make_remote_source, put


class FtpRemote:
    """The ``remote`` object of the contract, for one running server."""

    def __init__(self, server: FtpTestServer, kind: str, password_file: Path):
        self.server = server
        self.root = server.root
        self.kind = kind
        self.password_file = password_file

    def path(self, local: Path) -> str:
        return self.server.path(local)

    @contextmanager
    def denied(self, local: Path):
        """The server answers 550 to RETR of ``local``: its user lacks the read permission there."""
        overrides = self.server.server.handler.authorizer.user_table[USER]["operms"]
        key = os.path.normcase(os.path.realpath(local))
        overrides[key] = ("eladfmwMT", False)  # the test user's permissions but "r" (RETR)
        try:
            yield
        finally:
            del overrides[key]

    def options(self, **overrides) -> dict:
        options = {"host": "127.0.0.1", "port": self.server.port, "username": USER,
                   "password_file": str(self.password_file), "timeout_seconds": 10}
        if self.server.ca is not None:
            options["ca_file"] = str(self.server.ca_file)
        options.update(overrides)
        return {key: value for key, value in options.items() if value is not None}

    def source_toml(self, name: str, dirs: list[dict], **options) -> str:
        merged = self.options(**options)
        lines = ["[[sources]]", f"name = {json.dumps(name)}", f"kind = {json.dumps(self.kind)}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in merged.items()]
        return "\n".join(lines) + "\n" + dirs_toml(dirs)


def _remote(tmp_path, kind: str, **server_options):
    root = tmp_path / "served"
    root.mkdir()
    password_file = tmp_path / "ftp-password"
    password_file.write_text(PASSWORD + "\n")
    mode = {"ftp": "ftp", "ftps": "ftps", "ftps-implicit": "ftps-implicit"}[kind]
    server = FtpTestServer(root, mode, certificate_dir=tmp_path, **server_options).start()
    return server, FtpRemote(server, kind, password_file)


@pytest.fixture(params=["ftp", "ftps", "ftps-implicit"])
def kind(request):
    return request.param


def _serving(tmp_path, kind: str, data_expected: bool):
    server, remote = _remote(tmp_path, kind)
    yield remote
    server.stop()
    if server.ca is not None:
        # Every data connection of the test resumed the control connection's TLS session.
        assert server.server.tls_data_fresh == 0
        if data_expected:
            assert server.server.tls_data_reused > 0


@pytest.fixture
def any_remote(tmp_path, kind):
    yield from _serving(tmp_path, kind, data_expected=False)


def _fixture_for(kind_name: str):
    @pytest.fixture
    def remote(self, tmp_path):
        yield from _serving(tmp_path, kind_name, data_expected=True)
    return remote


class TestFtpSource(RemoteContract):
    remote = _fixture_for("ftp")


class TestExplicitFtpsSource(RemoteContract):
    remote = _fixture_for("ftps")


class TestImplicitFtpsSource(RemoteContract):
    remote = _fixture_for("ftps-implicit")


# -- helpers -------------------------------------------------------------------------------------------


@pytest.fixture
def made(apps):
    return lambda make_config, remote, dirs=None, **options: make_remote_source(make_config, remote, apps, dirs,
                                                                                 **options)


def collected(app):
    with app.catalog.read() as conn:
        return conn.exec_driver_sql("SELECT path FROM remote_collected").fetchall()


# -- failures ------------------------------------------------------------------------------------------


def test_a_wrong_password_is_a_permanent_error_and_nothing_is_staged(make_config, any_remote, made, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    app, collector = made(make_config, any_remote, stable_listings=1, password_file=str(wrong))
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
    result = collector.collect()
    assert result.received == [] and catalog(app) == []
    [error] = result.errors
    assert "login refused" in error and "530" in error
    assert result.failed_permanently  # retrying will not help until someone fixes the password
    assert "not-the-password" not in error


def test_the_right_password_from_an_environment_variable(make_config, any_remote, made, monkeypatch):
    monkeypatch.setenv("CDR_TEST_FTP_PASSWORD", PASSWORD)
    app, collector = made(make_config, any_remote, stable_listings=1, password_file=None,
                          password="${CDR_TEST_FTP_PASSWORD}")
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
    result = collector.collect()
    assert result.errors == [] and len(result.received) == 1


def test_a_password_written_in_the_file_is_refused(make_config, any_remote):
    with pytest.raises(ConfigError, match="secrets are not written in the file"):
        app_with(make_config, any_remote.source_toml("remote", [{"path": "/daily"}], password_file=None,
                                                     password=PASSWORD))


@pytest.mark.parametrize("kind", ["ftps", "ftps-implicit"])
def test_an_untrusted_certificate_is_refused(make_config, any_remote, made):
    # Not given the test CA: the system store does not know it.
    app, collector = made(make_config, any_remote, stable_listings=1, ca_file=None)
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
    result = collector.collect()
    assert result.received == [] and catalog(app) == []
    [error] = result.errors
    assert "TLS certificate not trusted" in error
    assert result.failed_permanently


@pytest.mark.parametrize("kind", ["ftps", "ftps-implicit"])
def test_a_pinned_certificate(make_config, any_remote, made):
    server = any_remote.server
    pin = certificate_fingerprint(server.certificate_pem)
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
    app, collector = made(make_config, any_remote, stable_listings=1, certificate_sha256=pin.upper())
    assert len(collector.collect().received) == 1
    other_app, other = made(make_config, any_remote, stable_listings=1, certificate_sha256="ab" * 32)
    result = other.collect()
    assert result.received == [] and "does not match certificate_sha256" in result.errors[0]
    assert result.failed_permanently


@pytest.mark.parametrize("kind", ["ftp"])
def test_plain_ftp_takes_no_tls_options(make_config, any_remote):
    with pytest.raises(ConfigError, match="ca_file"):
        app_with(make_config, any_remote.source_toml("remote", [{"path": "/daily"}], ca_file="/etc/hosts"))


def test_an_unreachable_server_is_a_transient_error(make_config, any_remote, made):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app, collector = made(make_config, any_remote, stable_listings=1, port=closed_port)
    result = collector.collect()
    assert result.received == []
    [error] = result.errors
    assert "connection refused" in error and str(closed_port) in error
    assert not result.failed_permanently  # worth retrying later


def test_the_password_appears_nowhere(make_config, any_remote, made, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
    app, collector = made(make_config, any_remote, stable_listings=1, after="move", move_to="/missing/dir")
    result = collector.collect()
    assert len(result.received) == 1
    failing = tmp_path / "other-password"
    failing.write_text(PASSWORD + "-wrong\n")
    bad_app, bad = made(make_config, any_remote, stable_listings=1, password_file=str(failing))
    errors = result.errors + bad.collect().errors
    assert errors and caplog.text
    [stored] = catalog(app)
    scheme = "ftp" if any_remote.kind == "ftp" else "ftps"
    assert stored["origin"] == f"{scheme}://{USER}@127.0.0.1:{any_remote.server.port}/daily/hero_cdr_20261001.csv"
    for text in errors + [caplog.text, stored["origin"]]:
        assert PASSWORD not in text


# -- faults --------------------------------------------------------------------------------------------


def test_a_transfer_dropped_midway_is_not_collected_and_the_next_pass_takes_it(make_config, any_remote, made):
    data = render([record(i) for i in range(2000)])
    assert len(data) > 50_000
    put(any_remote.root / "daily" / "hero_cdr_20261001.csv", data)
    app, collector = made(make_config, any_remote, stable_listings=1)
    any_remote.server.faults["RETR"] = 20_000
    dropped = collector.collect()
    assert dropped.received == [] and dropped.errors
    assert "transfer" in dropped.errors[0] and not dropped.failed_permanently
    assert "RETR" not in any_remote.server.faults  # the fault did fire
    assert catalog(app) == [] and collected(app) == []
    again = collector.collect()
    assert again.errors == [] and [r.name for r in again.received] == ["hero_cdr_20261001.csv"]
    [stored] = catalog(app)
    assert app.staging.path_of(stored["blob"]).read_bytes() == data


def test_a_listing_that_fails_midway_reports_and_does_not_advance_state(make_config, any_remote, made):
    daily = any_remote.root / "daily"
    put(daily / "a.csv", render([record(1)]))
    put(daily / "b.csv", render([record(2)]))
    app, collector = made(make_config, any_remote)  # two stable listings needed
    first = collector.collect()
    assert first.errors == [] and first.received == []  # both seen once
    any_remote.server.faults["MLSD"] = "first-line"
    broken = collector.collect()
    assert "MLSD" not in any_remote.server.faults  # the fault did fire
    assert broken.received == [] and broken.errors and "listing" in broken.errors[0]
    assert not broken.failed_permanently
    # Had the partial listing been used, one file would have been taken now and the other's first sighting
    # forgotten; instead both are taken by the next healthy pass.
    healthy = collector.collect()
    assert healthy.errors == [] and sorted(r.name for r in healthy.received) == ["a.csv", "b.csv"]


def test_a_missing_directory_is_a_permanent_error(make_config, any_remote, made):
    app, collector = made(make_config, any_remote, dirs=[{"path": "/nowhere", "carrier": "hero"}])
    result = collector.collect()
    [error] = result.errors
    assert "/nowhere" in error and "550" in error and result.failed_permanently


@pytest.mark.parametrize("kind", ["ftps", "ftps-implicit"])
def test_tls_1_2_data_connections_resume_the_control_session(make_config, tmp_path, kind, made):
    from OpenSSL import SSL

    server, remote = _remote(tmp_path, kind, tls_max_version=SSL.TLS1_2_VERSION)
    try:
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        app, collector = made(make_config, remote, stable_listings=1)
        result = collector.collect()
        assert result.errors == [] and len(result.received) == 1
    finally:
        server.stop()
    # listing + download, both resumed (a fresh session would have been refused with 522)
    assert server.server.tls_data_reused >= 2 and server.server.tls_data_fresh == 0


def test_a_server_that_never_answers_is_a_timeout(make_config, any_remote, made):
    with socket.socket() as silent:  # accepts connections (the kernel does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        app, collector = made(make_config, any_remote, stable_listings=1, port=silent.getsockname()[1],
                              timeout_seconds=0.5)
        result = collector.collect()
    assert result.received == []
    [error] = result.errors
    assert "timed out" in error
    assert not result.failed_permanently


@pytest.mark.parametrize("kind", ["ftp", "ftps"])
def test_a_server_without_mlsd_is_listed_with_list(make_config, tmp_path, kind, made):
    server, remote = _remote(tmp_path, kind, mlsd=False)
    try:
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        app, collector = made(make_config, remote, stable_listings=1)
        transport = collector.connect()
        try:
            [entry] = transport.list("/daily")
            assert "MLSD" not in server.server.handler.proto_cmds
        finally:
            transport.close()
        # LIST shows minutes (UTC from this server), not seconds
        assert (entry.name, entry.size, entry.is_file) == ("hero_cdr_20261001.csv", path.stat().st_size, True)
        assert entry.mtime == int(path.stat().st_mtime) // 60 * 60
        result = collector.collect()
        assert result.errors == [] and [r.name for r in result.received] == ["hero_cdr_20261001.csv"]
    finally:
        server.stop()
