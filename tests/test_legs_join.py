"""Joining call legs into xDRs (ingest.legs), end to end on both databases: real FreeRADIUS detail files
(tests/radius.py writes them as the server does) received and loaded by the real intake and loader in the built-in
``radius-detail`` format, customer data through the importers, the ``cdr`` commands through click, security alerts
mailed to a real SMTP server (aiosmtpd) on loopback, and a crash in the middle of joining in a real subprocess."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ingest.app import App
from ingest.billing.customers import import_file
from ingest.billing.run import build_run, lock_run
from ingest.catalog import files as catalog_files
from ingest.catalog.schema import (
    bill_exceptions,
    bill_lines,
    billed_sources,
    billing_events,
    leg_files,
    legs,
    pending_legs,
    xdrs,
)
from ingest.cli import cli
from ingest.intake import Origin, receive
from ingest.legs.join import join_legs
from ingest.legs.views import list_alerts, list_orphans, list_xdrs, show_xdr, waiting_calls
from ingest.load import load_queued
from ingest.plugins import load_checked_config
from tests.interop_servers import free_port
from tests.radius import at, cisco_leg, pbx_leg

GW_A, GW_B, PBX = "10.0.0.1", "10.0.0.2", "10.0.1.1"
NETWORK = f"""
[carriers.network]
format = "radius-detail"
default_type = "acct"

[[nodes]]
name = "gw-a"
ip = "{GW_A}"
[[nodes]]
name = "gw-b"
ip = "{GW_B}"
[[nodes]]
name = "pbx"
ip = "{PBX}"
kind = "pbx"

[tariffs.standard]
[[tariffs.standard.usage]]
carrier = "network"
per_minute = "0.02"
increment_seconds = 60
"""
CUSTOMERS = ("account,name,tariff\nacme,Acme Ltd,standard\nalice,Alice,standard\nbob,Bob,standard\n"
             "carol,Carol,standard\npete,Pete,standard\neasycall,EasyCall,standard\n")
NUMBERS = ("number,account,valid_from,valid_to,number_type\n01632960001,acme,2026-01-01,,geographic\n"
           "12065558899,easycall,2026-01-01,,geographic\n")
CONF = "110003F6 52FA39EB 8C3F0012 3B1F9C1A"


@pytest.fixture
def app(make_config, tmp_path):
    application = App(load_checked_config(make_config(NETWORK), env={}), actor="tester")
    for kind, content in (("customers", CUSTOMERS), ("numbers", NUMBERS)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(content)
        import_file(application, kind, path, actor="tester")
    yield application
    application.close()


def load(app, text: str, name: str) -> dict:
    """Receive and load one detail file (joining follows the load); its catalog row."""
    [got] = receive(app, io.BytesIO(text.encode()), Origin("upload", name, carrier="network", file_type="acct"))
    load_queued(app)
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, got.id)
    assert row["status"] in ("loaded", "held"), (row["status"], row["error"])
    return row


def four_leg_call(conf: str = CONF, start: float = 0, user: str = "01632960001") -> tuple[str, str]:
    """The classic call PSTN -> gw-a -> IP -> gw-b -> PSTN: (gw-a's detail file, gw-b's), each with the Start and
    Stop of its two legs. gw-b authenticates the call by gw-a's address (its User-Name is gw-a's IP)."""
    setup, connect, end = at(start), at(start + 5), at(start + 305)
    common = dict(conf_id=conf, setup=setup, calling=user, called="07700900123")
    a = [cisco_leg(**common, nas_ip=GW_A, user_name=user, origin="answer", call_type="Telephony",
                   session_id=f"{conf[:8]}-a1", status=status, connect=connect, disconnect=end)
         for status in ("Start", "Stop")]
    a += [cisco_leg(**common, nas_ip=GW_A, user_name=user, origin="originate", call_type="VoIP", remote=GW_B,
                    session_id=f"{conf[:8]}-a2", status=status, connect=connect, disconnect=end)
          for status in ("Start", "Stop")]
    b = [cisco_leg(**common, nas_ip=GW_B, user_name=GW_A, origin="answer", call_type="VoIP", remote=GW_A,
                   session_id=f"{conf[:8]}-b1", status=status, connect=connect, disconnect=end, prefixed=False)
         for status in ("Start", "Stop")]
    b += [cisco_leg(**common, nas_ip=GW_B, user_name=GW_A, origin="originate", call_type="Telephony",
                    remote="192.0.2.9", session_id=f"{conf[:8]}-b2", status=status, connect=connect,
                    disconnect=end, cause="10")
          for status in ("Start", "Stop")]
    return "".join(a), "".join(b)


def counts(app) -> dict[str, int]:
    with app.catalog.read() as conn:
        return {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (("legs", legs), ("xdrs", xdrs), ("pending", pending_legs))}


@pytest.mark.parametrize("order", ["gw-a first", "gw-b first"])
def test_the_four_leg_call_is_one_xdr_whichever_file_comes_first(app, order):
    a, b = four_leg_call()
    files = [(a, "detail-gw-a"), (b, "detail-gw-b")]
    if order == "gw-b first":
        files.reverse()
    load(app, *files[0])
    assert list_xdrs(app) == []  # half the call: it waits for the other gateway
    assert [w["call_id"] for w in waiting_calls(app)] == [CONF]
    load(app, *files[1])
    [x] = list_xdrs(app)
    assert (x["call_id"], x["account"], x["user_name"], x["status"], x["leg_count"]) == (CONF, "acme", "01632960001",
                                                                                  "complete", 8)
    assert (x["charged_seconds"], x["call_seconds"]) == (300, 300)
    assert (x["calling_number"], x["called_number"], x["disconnect_cause"]) == ("01632960001", "07700900123", "10")
    assert (x["setup_time"], x["connect_time"], x["disconnect_time"]) == (at(0), at(5), at(305))
    assert sorted(x["gateways"].split(",")) == ["gw-a", "gw-b"]
    shown = show_xdr(app, x["id"])
    assert sorted((leg["nas_ip"], leg["call_origin"], leg["status_type"]) for leg in shown["legs"]) == sorted(
        (gw, origin, status) for gw in (GW_A, GW_B) for origin in ("answer", "originate")
        for status in ("Start", "Stop"))
    assert waiting_calls(app) == [] and list_orphans(app) == [] and list_alerts(app) == []


def test_a_resent_detail_file_adds_nothing(app):
    a, b = four_leg_call()
    load(app, a, "detail-gw-a")
    load(app, b, "detail-gw-b")
    before = counts(app)
    assert before == {"legs": 8, "xdrs": 1, "pending": 0}
    resent = load(app, b, "detail-gw-b.1")  # the same bytes again: held as a duplicate
    assert resent["status"] == "held"
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(app.config.path), "release", str(resent["id"])],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert counts(app) == before  # released and loaded: every leg already there, nothing joined twice
    # A file holding the same records and one more (a rotated detail file): only the new leg is added.
    extra = cisco_leg(conf_id="AAAA0001 00000000 00000000 00000001", nas_ip=GW_B, user_name="acme",
                      origin="answer", session_id="solo-1", setup=at(400), connect=at(401), disconnect=at(461),
                      remote="203.0.113.5")
    rotated = load(app, b + extra, "detail-gw-b.2")
    assert rotated["status"] == "held" and counts(app) == before  # records already loaded: held for a decision
    result = runner.invoke(cli, ["--config", str(app.config.path), "release", str(rotated["id"])],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert counts(app) == {"legs": 9, "xdrs": 2, "pending": 0}
    assert [x["call_id"] for x in list_xdrs(app)] == [CONF, "AAAA0001 00000000 00000000 00000001"]
    assert list_orphans(app) == []


def test_a_trusted_gateways_call_waits_and_takes_the_trusted_gateways_account(app):
    a, b = four_leg_call(user="acme")
    load(app, b, "detail-gw-b")  # gw-b names gw-a (a trusted node) as the User-Name: wait for gw-a
    assert list_xdrs(app) == [] and list_alerts(app) == []
    load(app, a, "detail-gw-a")
    [x] = list_xdrs(app)
    assert (x["account"], x["user_name"], x["party"]) == ("acme", "acme", "gateways")


def test_an_untrusted_gateways_call_is_charged_at_once(app):
    # A customer's own gateway (not a node) sends the call to gw-b: gw-b's record is the whole call.
    text = "".join(cisco_leg(conf_id="CCCC0001 00000000 00000000 00000001", nas_ip=GW_B, user_name="acme",
                             origin=origin, session_id=f"cust-{origin}", setup=at(0), connect=at(2),
                             disconnect=at(62), remote=remote)
                   for origin, remote in (("answer", "203.0.113.5"), ("originate", "192.0.2.9")))
    load(app, text, "detail-gw-b")
    [x] = list_xdrs(app)
    assert (x["account"], x["status"], x["charged_seconds"], x["gateways"]) == ("acme", "complete", 60, "gw-b")
    assert waiting_calls(app) == []


def test_an_unknown_account_raises_exactly_one_alert(app, caplog):
    text = cisco_leg(conf_id="DDDD0001 00000000 00000000 00000001", nas_ip=GW_B, user_name="intruder",
                     origin="answer", session_id="x-1", setup=at(0), connect=at(1), disconnect=at(31),
                     remote="198.51.100.7")
    with caplog.at_level(logging.WARNING, logger="ingest.legs"):
        load(app, text, "detail-gw-b")
    [x] = list_xdrs(app)
    assert (x["account"], x["reason"]) == (None, "no-account")
    [alert] = list_alerts(app)
    assert (alert["call_id"], alert["user_name"], alert["remote_address"], alert["gateway"], alert["xdr_id"],
            alert["call_time"]) == ("DDDD0001 00000000 00000000 00000001", "intruder", "198.51.100.7", "gw-b",
                                    x["id"], at(0))
    warnings = [r.getMessage() for r in caplog.records if "security alert" in r.getMessage()]
    assert len(warnings) == 1 and "'intruder'" in warnings[0] and "198.51.100.7" in warnings[0]
    join_legs(app)  # joining again raises nothing new
    assert len(list_alerts(app)) == 1
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "alerts", "--json"], catch_exceptions=False)
    assert [a["user_name"] for a in json.loads(result.output)] == ["intruder"]


def test_an_alert_is_mailed_to_the_configured_address(make_config, tmp_path):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = make_config(NETWORK + f'[alerts]\nmail_to = "noc@example.com"\nsmtp_host = "127.0.0.1"\n'
                                       f"smtp_port = {port}\n")
        application = App(load_checked_config(config, env={}), actor="tester")
        try:
            load(application, cisco_leg(conf_id="EEEE0001", nas_ip=GW_A, user_name="mallory", origin="answer",
                                        session_id="m-1", setup=at(0), connect=at(1), disconnect=at(11),
                                        remote="198.51.100.8"), "detail-gw-a")
            [(recipients, content)] = inbox.messages
            assert recipients == ["noc@example.com"]
            assert "security alert: 1 call with no account" in content and "EEEE0001" in content
            assert "'mallory'" in content and "198.51.100.8" in content
            [alert] = list_alerts(application)
            assert alert["mailed_at"] is not None and alert["mail_error"] is None
        finally:
            application.close()
    finally:
        controller.stop()


def test_an_alert_that_cannot_be_mailed_is_kept_with_the_error_and_mailed_by_the_next_join(make_config):
    from aiosmtpd.controller import Controller

    port = free_port()
    config = make_config(NETWORK + f'[alerts]\nmail_to = "noc@example.com"\nsmtp_host = "127.0.0.1"\n'
                                   f"smtp_port = {port}\n")
    application = App(load_checked_config(config, env={}), actor="tester")
    try:
        load(application, cisco_leg(conf_id="EEEE0002", nas_ip=GW_A, user_name="mallory", origin="answer",
                                    session_id="m-2", setup=at(0), connect=at(1), disconnect=at(11)), "detail-gw-a")
        [alert] = list_alerts(application)  # nothing listens on the port yet
        assert alert["mailed_at"] is None and alert["mail_error"]
        assert "\n" not in alert["mail_error"]

        class Inbox:
            messages: list[str] = []

            async def handle_DATA(self, server, session, envelope):
                self.messages.append(envelope.content.decode())
                return "250 OK"

        controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            join_legs(application)  # nothing new to join: the alert not mailed yet is mailed now
            [alert] = list_alerts(application)
            assert alert["mailed_at"] is not None and alert["mail_error"] is None
            [content] = Inbox.messages
            assert "EEEE0002" in content and "'mallory'" in content
            join_legs(application)  # and only once
            assert len(Inbox.messages) == 1
        finally:
            controller.stop()
    finally:
        application.close()


# -- PBX calls: the reference's three examples ("Understanding Charged duration and Call duration in xDRs") -----

def pbx_call(call_id: str, sessions: list[tuple], start: float = 0) -> str:
    """A PBX's records of one call, one per session: (session, User-Name, called, seconds, details[, seconds after
    the call's setup that it was connected])."""
    records = []
    for session, user, called, seconds, details, *connected in sessions:
        records.append(pbx_leg(call_id=call_id, nas_ip=PBX, user_name=user, session_id=f"{call_id}-{session}",
                               setup=at(start), connect=at(start + (connected[0] if connected else 0)),
                               seconds=seconds, calling="02079460100", called=called, details=details))
    return "".join(records)


def durations(app, call_id: str) -> list[tuple[str, int, int, dict[str, str]]]:
    found = [x for x in list_xdrs(app) if x["call_id"] == call_id]
    return sorted((x["account"], x["charged_seconds"], x["call_seconds"], show_xdr(app, x["id"])["details"])
                  for x in found)


def test_pbx_example_1_call_forwarding(app):
    # Mary calls Bob; Bob's follow-me forwards the call to Carol; Mary and Carol speak for 5 minutes.
    load(app, pbx_call("fwd-1@pbx", [
        ("bob", "bob", "201", 300, {"media_duration": "0"}),
        ("carol", "carol", "202", 300, {"media_duration": "300", "via_ext": "201", "acli": "02079460100"}),
    ]), "detail-pbx")
    assert durations(app, "fwd-1@pbx") == [
        ("bob", 300, 0, {"media_duration": "0"}),  # Bob pays for the call but did not speak
        ("carol", 300, 300, {"acli": "02079460100", "media_duration": "300", "via_ext": "201"}),
    ]


def test_pbx_example_2_blind_transfer(app):
    # Alice calls Bob; after a minute Bob transfers her to Carol; Alice and Carol speak for 10 minutes.
    load(app, pbx_call("xfer-1@pbx", [
        ("alice", "alice", "201", 660, {"media_duration": "660"}),
        ("bob-in", "bob", "201", 60, {"media_duration": "60"}),
        ("bob-redirect", "bob", "202", 600, {"media_duration": "0", "via_ext": "201"}, 60),
        ("carol", "carol", "202", 600, {"media_duration": "600", "via_ext": "201"}, 60),
    ]), "detail-pbx")
    assert [(account, charged, call) for account, charged, call, _ in durations(app, "xfer-1@pbx")] == [
        ("alice", 660, 660),  # the whole call: 1 minute with Bob, 10 with Carol
        ("bob", 60, 60),  # the incoming call from Alice
        ("bob", 600, 0),  # the redirected call to Carol: billed to Bob, who did not speak
        ("carol", 600, 600),
    ]


def test_pbx_example_3_auto_attendant_queue(app):
    # Alice dials EasyCall's auto-attendant (12065558899), goes to the Sales queue, after 2 minutes reaches Pete,
    # and they speak for 7 minutes.
    load(app, pbx_call("aa-1@pbx", [
        ("alice", "alice", "12065558899", 540, {"media_duration": "540"}),
        ("aa", "12065558899", "pete", 540, {"media_duration": "0", "via_hg": "sales"}),
        ("pete", "pete", "pete", 420, {"media_duration": "420", "via_hg": "sales", "acli": "alice"}, 120),
    ]), "detail-pbx")
    assert durations(app, "aa-1@pbx") == [
        ("alice", 540, 540, {"media_duration": "540"}),
        ("easycall", 540, 0, {"media_duration": "0", "via_hg": "sales"}),  # the auto-attendant's number's account
        ("pete", 420, 420, {"acli": "alice", "media_duration": "420", "via_hg": "sales"}),
    ]


def test_a_call_that_never_completes_is_closed_by_the_window_and_reported(app):
    started = cisco_leg(conf_id="FFFF0001", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-1",
                        status="Start", setup=at(0))
    load(app, started, "detail-gw-a-1")
    assert list_xdrs(app) == [] and len(waiting_calls(app)) == 1
    # Three hours later by the accounting clock: still within the 4-hour window.
    load(app, cisco_leg(conf_id="FFFF0002", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-2",
                        setup=at(3 * 3600), connect=at(3 * 3600 + 1), disconnect=at(3 * 3600 + 11)), "detail-gw-a-2")
    assert [x["call_id"] for x in list_xdrs(app)] == ["FFFF0002"]
    # Five hours later: the first call is closed, flagged incomplete, its leg an orphan.
    load(app, cisco_leg(conf_id="FFFF0003", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-3",
                        setup=at(5 * 3600), connect=at(5 * 3600 + 1), disconnect=at(5 * 3600 + 11)), "detail-gw-a-3")
    [closed] = list_xdrs(app, incomplete=True)
    assert (closed["call_id"], closed["status"], closed["reason"], closed["account"]) == (
        "FFFF0001", "incomplete", "no-stop", "acme")
    [orphan] = list_orphans(app)
    assert (orphan["call_id"], orphan["reason"], orphan["xdr_id"], orphan["status_type"]) == (
        "FFFF0001", "no-stop", closed["id"], "Start")
    # A leg of that call arriving now is late: an orphan, never a second xDR.
    load(app, cisco_leg(conf_id="FFFF0001", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-1",
                        setup=at(0), connect=at(1), disconnect=at(61), received=at(5 * 3600 + 20)), "detail-gw-a-4")
    assert len(list_xdrs(app)) == 3
    assert sorted(o["reason"] for o in list_orphans(app)) == ["late", "no-stop"]
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "legs", "orphans", "--json"],
                                catch_exceptions=False)
    assert sorted(o["reason"] for o in json.loads(result.output)) == ["late", "no-stop"]


def test_a_trusted_gateway_that_never_reports_closes_the_call_incomplete_without_an_alert(app):
    _, b = four_leg_call(conf="99990001 00000000 00000000 00000001")
    load(app, b, "detail-gw-b")
    load(app, cisco_leg(conf_id="99990002", nas_ip=GW_A, user_name="acme", origin="answer", session_id="n-2",
                        setup=at(6 * 3600), connect=at(6 * 3600 + 1), disconnect=at(6 * 3600 + 2)), "detail-gw-a")
    [closed] = list_xdrs(app, incomplete=True)
    assert (closed["reason"], closed["account"], closed["leg_count"]) == ("no-record-from-node:gw-a", None, 4)
    assert list_alerts(app) == []


def test_cdr_legs_close_runs_the_window_on_the_machines_clock(app):
    load(app, cisco_leg(conf_id="ABCD0001", nas_ip=GW_A, user_name="acme", origin="answer", session_id="c-1",
                        status="Start", setup=at(0)), "detail-gw-a")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(app.config.path), "legs", "join", "--json"], catch_exceptions=False)
    assert json.loads(result.output)["waiting_calls"] == 1
    result = runner.invoke(cli, ["--config", str(app.config.path), "--by", "admin", "legs", "close", "--json"],
                           catch_exceptions=False)
    assert json.loads(result.output) == {"files_taken": 0, "legs_taken": 0, "xdrs": 1, "incomplete": 1,
                                              "orphans": 1, "late": 0, "waiting_calls": 0, "alerts": 0}
    with app.catalog.read() as conn:  # each join that did something is audited: who, when, what
        events = conn.execute(select(billing_events.c.actor, billing_events.c.action, billing_events.c.detail)
                              .where(billing_events.c.subject == "legs").order_by(billing_events.c.id)).all()
    assert [(actor, action) for actor, action, _ in events] == [("tester", "join"), ("admin", "close")]
    assert json.loads(events[-1][2])["xdrs"] == 1


def test_xdrs_are_billed_once_like_calls(app):
    a, b = four_leg_call()
    load(app, a, "detail-gw-a")
    load(app, b, "detail-gw-b")
    load(app, cisco_leg(conf_id="DDDD0009", nas_ip=GW_B, user_name="intruder", origin="answer", session_id="i-9",
                        setup=at(50), connect=at(51), disconnect=at(81)), "detail-gw-b-2")
    summary = build_run(app, "2026-02")
    assert summary.lines == 1
    with app.catalog.read() as conn:
        [line] = conn.execute(select(bill_lines)).mappings().all()
        [exception] = conn.execute(select(bill_exceptions)).mappings().all()
    assert (line["source_kind"], line["account"], line["seconds"], line["retail"], line["number"]) == (
        "xdr", "acme", 300, Decimal("0.10"), "01632960001")  # 300 s at 0.02 a minute
    assert (exception["source_kind"], exception["exception"], exception["reason"]) == ("xdr", "unmatched",
                                                                                       "no-account")
    lock_run(app, summary.run_id)
    join_legs(app)  # joining again changes nothing billed
    with app.catalog.read() as conn:
        assert conn.execute(select(billed_sources.c.source_kind, billed_sources.c.source_id)).all() == [
            ("xdr", line["source_id"])]
    assert build_run(app, "2026-03").lines == 0  # never billed again


def test_an_incomplete_xdr_is_an_exception_of_the_run_not_a_line(app):
    load(app, cisco_leg(conf_id="FFFF0001", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-1",
                        status="Start", setup=at(0)), "detail-gw-a-1")
    load(app, cisco_leg(conf_id="FFFF0003", nas_ip=GW_A, user_name="acme", origin="answer", session_id="f-3",
                        setup=at(5 * 3600), connect=at(5 * 3600 + 1), disconnect=at(5 * 3600 + 61)), "detail-gw-a-3")
    build_run(app, "2026-02")
    with app.catalog.read() as conn:
        assert conn.execute(select(bill_exceptions.c.exception, bill_exceptions.c.reason)).all() == [
            ("incomplete", "no-stop")]
        assert conn.execute(select(func.count()).select_from(bill_lines)).scalar_one() == 1


CDR = [sys.executable, "-m", "ingest.cli"]


def cdr(config: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CDR_CONFIG": str(config)}
    env.pop("CDR_FAULT", None)
    if fault:
        env["CDR_FAULT"] = fault
    return subprocess.run([*CDR, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_crash_in_the_middle_of_joining_loses_nothing(app, tmp_path):
    a, b = four_leg_call()
    load(app, a, "detail-gw-a")
    path = tmp_path / "detail-gw-b"
    path.write_text(b)
    # The load commits, then the process dies inside the join that follows it, before the join commits.
    crashed = cdr(app.config.path, "upload", str(path), "--carrier", "network", "--type", "acct",
                  fault="legs.before-commit")
    assert crashed.returncode == 86, crashed.stderr
    assert counts(app) == {"legs": 8, "xdrs": 0, "pending": 4}  # the legs loaded; gw-a's still pending
    with app.catalog.read() as conn:
        assert conn.execute(select(func.count()).select_from(leg_files)).scalar_one() == 1  # gw-b's not taken
    again = cdr(app.config.path, "legs", "join", "--json", fault="legs.before-commit")
    assert again.returncode == 86 and counts(app)["xdrs"] == 0
    done = cdr(app.config.path, "legs", "join", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["xdrs"] == 1
    assert counts(app) == {"legs": 8, "xdrs": 1, "pending": 0}
    [x] = list_xdrs(app)
    assert (x["leg_count"], x["account"]) == (8, "acme")
    assert cdr(app.config.path, "legs", "join", "--json").returncode == 0
    assert counts(app) == {"legs": 8, "xdrs": 1, "pending": 0}


def test_cdr_xdrs_lists_and_shows(app):
    a, b = four_leg_call()
    load(app, a, "detail-gw-a")
    load(app, b, "detail-gw-b")
    runner = CliRunner()
    base = ["--config", str(app.config.path)]
    listed = json.loads(runner.invoke(cli, [*base, "xdrs", "--account", "acme", "--period", "2026-02", "--json"],
                                      catch_exceptions=False).output)
    assert [x["call_id"] for x in listed] == [CONF]
    assert json.loads(runner.invoke(cli, [*base, "xdrs", "--period", "2026-03", "--json"]).output) == []
    assert json.loads(runner.invoke(cli, [*base, "xdrs", "--incomplete", "--json"]).output) == []
    shown = json.loads(runner.invoke(cli, [*base, "xdrs", "show", str(listed[0]["id"]), "--json"],
                                     catch_exceptions=False).output)
    assert len(shown["legs"]) == 8 and shown["details"] == {}
    assert shown["legs"][0]["extra"]  # every attribute the format did not map is kept with the leg
    text = runner.invoke(cli, [*base, "xdrs"], catch_exceptions=False).output
    assert CONF in text and "acme" in text
    missing = runner.invoke(cli, [*base, "xdrs", "show", "999"])
    assert missing.exit_code != 0 and "no xDR 999" in missing.output and "Traceback" not in missing.output


def test_nodes_are_checked_when_the_configuration_loads(make_config):
    from ingest.config import load_config
    from ingest.errors import ConfigError

    for extra, key in (('[[nodes]]\nname = "x"\nip = "not-an-ip"\n', "nodes[0].ip"),
                       ('[[nodes]]\nname = "x"\nip = "10.0.0.9"\nkind = "router"\n', "nodes[0].kind"),
                       ('[[nodes]]\nname = "x"\nip = "10.0.0.9"\n[[nodes]]\nname = "y"\nip = "10.0.0.9"\n',
                        "nodes[1].ip"),
                       ('[[nodes]]\nname = "x"\nip = "10.0.0.9"\ndetails = { via = "a" }\n', "nodes[0].details.via"),
                       ("[legs]\nwindow_hours = 0\n", "legs.window_hours"),
                       ('[alerts]\nmail_to = "noc@example.com"\n', "alerts.smtp_host")):
        with pytest.raises(ConfigError) as caught:
            load_config(make_config(extra), env={})
        assert key in str(caught.value)
