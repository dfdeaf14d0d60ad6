"""The inbound SMTP listener, driven by smtplib: routing by address, no open relay, the size limit, and a
250 only once the attachments are staged."""

from __future__ import annotations

import smtplib

import pytest

from ingest.config import SmtpSettings
from ingest.errors import DatabaseBusy
from ingest.smtp import SmtpListener
from tests.conftest import catalog_rows as rows
from tests.interop_servers import free_port
from tests.test_mail import carrier_email as lf_email


def carrier_email(**kwargs) -> bytes:
    """On the wire, as a mail client sends it: CRLF line ends."""
    return lf_email(**kwargs).replace(b"\n", b"\r\n")


@pytest.fixture
def listener(app):
    settings = SmtpSettings(domain="billing.example.com", port=free_port(), max_message_bytes=200_000)
    with SmtpListener(app, settings) as running:
        yield running


def test_a_mailed_message_is_staged_before_250(app, listener):
    with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
        refused = client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())
    assert refused == {}
    got = sorted((r["name"], r["status"]) for r in rows(app))
    assert ("hero_cdr_20261001.csv", "queued") in got and ("logo.png", "ignored") in got
    assert all(r["source"] == "smtp" for r in rows(app))


def test_the_issue_scenario_two_files_two_ignored_then_two_held_two_ignored(app, listener):
    """A message with a CDR file, an SDR file and two signature images, mailed twice."""
    outcomes = []
    for _ in range(2):
        before = {r["id"] for r in rows(app)}
        with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
            client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email(invite=False))
        outcomes.append(sorted((r["name"], r["status"]) for r in rows(app) if r["id"] not in before))
    assert outcomes[0] == [("TC_SDR_202610.csv", "queued"), ("hero_cdr_20261001.csv", "queued"),
                           ("logo.png", "ignored"), ("x-icon.png", "ignored")]
    assert outcomes[1] == [("TC_SDR_202610.csv", "held"), ("hero_cdr_20261001.csv", "held"),
                           ("logo.png", "ignored"), ("x-icon.png", "ignored")]
    held = [r for r in rows(app) if r["status"] == "held"]
    assert {r["reason"] for r in held} == {"duplicate-content"}


def test_plus_address_routes_the_carrier(app, listener):
    with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
        client.sendmail("x@carrier.example", ["cdrs+hero-daily@billing.example.com"],
                        carrier_email(to="cdrs+hero-daily@billing.example.com"))
    stored = {r["name"]: r for r in rows(app)}
    assert (stored["hero_cdr_20261001.csv"]["carrier"], stored["hero_cdr_20261001.csv"]["cadence"]) == ("hero", "daily")


@pytest.mark.parametrize("recipient", ["someone@billing.example.com", "cdrs@elsewhere.example.org",
                                       "cdrs+nobody@billing.example.com"])
def test_unknown_recipients_are_refused_so_it_is_never_an_open_relay(app, listener, recipient):
    with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.sendmail("spammer@example.net", [recipient], carrier_email())
    assert caught.value.recipients[recipient][0] == 550
    assert rows(app) == []


def test_an_oversized_message_is_refused(app, listener):
    big = carrier_email() + b"X" * 300_000
    with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected)) as caught:
            client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], big)
    code = getattr(caught.value, "smtp_code", 552)
    assert code == 552
    assert rows(app) == []


def test_smtp_settings_are_checked():
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="domain"):
        SmtpSettings.of({})
    with pytest.raises(ConfigError, match="unknown key"):
        SmtpSettings.of({"domain": "a.example", "relay": True})
    with pytest.raises(ConfigError, match="AUTH needs STARTTLS"):
        SmtpSettings.of({"domain": "a.example", "auth_username": "u", "auth_password_file": __file__})
    with pytest.raises(ConfigError, match="not written in the file"):
        SmtpSettings.of({"domain": "a.example", "auth_username": "u", "auth_password": "hunter2",
                         "tls_cert_file": "c", "tls_key_file": "k"})


def test_the_daemon_runs_the_listener_and_loads_what_is_mailed(make_config):
    import threading
    import time

    from ingest.daemon import run_daemon
    from tests.conftest import app_with

    port = free_port()
    app = app_with(make_config, f'[smtp]\ndomain = "billing.example.com"\nport = {port}\n')
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, kwargs={"app": app, "stop": stop}, daemon=True)
    try:
        daemon.start()
        deadline = time.monotonic() + 20
        while True:  # the listener comes up with the daemon
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the listener did not start"
                time.sleep(0.05)
        while {r["name"]: r["status"] for r in rows(app)}.get("hero_cdr_20261001.csv") != "loaded":
            assert time.monotonic() < deadline, rows(app)
            time.sleep(0.05)
    finally:
        stop.set()
        daemon.join(timeout=30)
        app.close()
    assert not daemon.is_alive()


@pytest.fixture
def tls_listener(app, tmp_path, monkeypatch):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "billing.example.com")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    with open(cert_file, "wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("CDR_TEST_SMTP_PW", "mail-secret-9d2")
    settings = SmtpSettings.of({
        "domain": "billing.example.com", "port": free_port(), "tls_cert_file": str(cert_file),
        "tls_key_file": str(key_file), "require_tls": True, "auth_username": "staff",
        "auth_password": "${CDR_TEST_SMTP_PW}", "allowed_senders": {"hero": ["@herotel.example"]}})
    with SmtpListener(app, settings) as running:
        running.ca_file = ca_file
        yield running


def tls_client(listener):
    import ssl

    client = smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10)
    client.starttls(context=ssl.create_default_context(cafile=str(listener.ca_file)))
    return client


def test_starttls_and_auth_are_required_and_work(app, tls_listener):
    with smtplib.SMTP("127.0.0.1", tls_listener.settings.port, timeout=10) as plain:
        with pytest.raises(smtplib.SMTPException):  # no STARTTLS: refused
            plain.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())
    with tls_client(tls_listener) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("staff", "wrong")
    with tls_client(tls_listener) as client:
        with pytest.raises(smtplib.SMTPSenderRefused):  # TLS but no AUTH
            client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())
    assert rows(app) == []
    with tls_client(tls_listener) as client:
        client.login("staff", "mail-secret-9d2")
        assert client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email()) == {}
    assert any(r["name"] == "hero_cdr_20261001.csv" for r in rows(app))


def test_allowed_senders_per_carrier(app, tls_listener):
    with tls_client(tls_listener) as client:
        client.login("staff", "mail-secret-9d2")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.sendmail("someone@elsewhere.example", ["cdrs+hero@billing.example.com"], carrier_email())
        assert caught.value.recipients["cdrs+hero@billing.example.com"][0] == 550
        assert client.sendmail("billing@herotel.example", ["cdrs+hero@billing.example.com"], carrier_email()) == {}


@pytest.mark.parametrize("fault", [DatabaseBusy("catalog database busy"), RuntimeError("a bug of ours")])
def test_a_failure_to_store_answers_451_so_the_sender_keeps_the_message(app, listener, monkeypatch, fault):
    import ingest.smtp

    def failing(*_args, **_kwargs):
        raise fault

    with monkeypatch.context() as patched:
        patched.setattr(ingest.smtp, "take_message", failing)
        with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())
    assert refused.value.smtp_code == 451 and rows(app) == []
    failing_state = listener_state(app)
    assert failing_state["state"] == "failing" and "billing@herotel.example" in failing_state["last_error"]
    with smtplib.SMTP("127.0.0.1", listener.settings.port, timeout=10) as client:  # the sender's retry
        assert client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email()) == {}
    assert len(rows(app)) == 5
    recovered = listener_state(app)  # cdr status: the listener took mail since; the error is history
    assert (recovered["state"], recovered["last_error"]) == ("listener", failing_state["last_error"])
    assert recovered["last_error_at"] < recovered["last_success"]


def listener_state(app) -> dict:
    from ingest.catalog import sources as source_states
    from ingest.smtp import SOURCE

    with app.catalog.read() as conn:
        [state] = [s for s in source_states.overview(conn, [], listeners=[SOURCE]) if s["source"] == SOURCE]
    return state
