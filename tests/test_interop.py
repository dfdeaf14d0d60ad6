"""Interop with the servers carriers actually run: OpenSSH's sshd (SFTP) and vsftpd (FTPS), from Debian's
packages, started on free high ports (see tests/interop_servers.py). vsftpd requires the data connection
to reuse the control connection's TLS session (``require_ssl_reuse=YES``, its default)."""

from __future__ import annotations

import json

import trustme

from ingest.collectors import collector_for
from tests.conftest import app_with
from tests.interop_servers import openssh_server, vsftpd_server
from tests.records import record, render
from tests.remote_contract import dirs_toml, put


def source(kind: str, dirs: list[dict], **options) -> str:
    lines = ["[[sources]]", 'name = "interop"', f'kind = "{kind}"', "stable_listings = 1"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n" + dirs_toml(dirs)


def test_sftp_against_openssh_sshd(make_config, tmp_path):
    share = tmp_path / "share" / "daily"
    data = render([record(1), record(2)])
    put(share / "hero_cdr_20261001.csv", data)
    with openssh_server(tmp_path / "sshd") as sshd:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
        app = app_with(make_config, source(
            "sftp", [{"path": str(share), "carrier": "hero", "type": "cdr", "cadence": "daily"}],
            host="127.0.0.1", port=sshd.port, username=sshd.user, private_key_file=str(sshd.client_key),
            known_hosts=str(known_hosts), after="move", move_to=str(tmp_path / "share" / "processed")))
        try:
            collector = collector_for(app, app.config.source("interop"))
            result = collector.collect()
            assert result.errors == [] and [r.name for r in result.received] == ["hero_cdr_20261001.csv"]
            assert collector.collect().received == []
            collector.close()
        finally:
            app.close()
    assert (tmp_path / "share" / "processed" / "hero_cdr_20261001.csv").read_bytes() == data
    assert not (share / "hero_cdr_20261001.csv").exists()


def test_explicit_ftps_against_vsftpd_requiring_tls_session_reuse(make_config, tmp_path):
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    with open(cert_file, "wb") as out:
        for blob in server_cert.cert_chain_pems:
            out.write(blob.bytes())
    root = tmp_path / "anon"
    data = render([record(1), record(2)])
    put(root / "daily" / "hero_cdr_20261001.csv", data)
    password = tmp_path / "anonymous.pw"
    password.write_text("anonymous@\n")
    with vsftpd_server(tmp_path / "vsftpd", root, ca_file, cert_file, key_file) as ftpd:
        app = app_with(make_config, source(
            "ftps", [{"path": "/daily", "carrier": "hero", "type": "cdr", "cadence": "daily"}],
            host="127.0.0.1", port=ftpd.port, username="anonymous", password_file=str(password),
            ca_file=str(ca_file)))
        try:
            collector = collector_for(app, app.config.source("interop"))
            result = collector.collect()
            assert result.errors == [], result.errors
            [got] = result.received
            with app.catalog.read() as conn:
                from ingest.catalog import files as catalog_files

                stored = catalog_files.get_file(conn, got.id)
            assert app.staging.path_of(stored["blob"]).read_bytes() == data
            collector.close()
        finally:
            app.close()
