"""The format contract (tests/format_contract.py), run for every built-in format on its samples
(tests/samples/formats/<format>/), each with the records it must give."""

from __future__ import annotations

from ingest.formats.spec import builtin_format_tables
from tests.format_contract import FormatContract, Sample, pytest_generate_tests  # noqa: F401 (the hook)

M = 1_000_000  # money is kept in millionths

# -- hero-feed: the same three calls in the four formats the feed serves --------------------------------------

HERO_RECORDS = (
    dict(layout="call", carrier_record_id="1048571", account_code="81234567", direction="outbound",
         call_type="Mobile", bill_date="2026-10-01", local_date=None, local_time="01:05:09",
         start_time="2026-10-01 00:05:09", answer_time=None, end_time=None, utc_offset="1",
         a_number="01632960123", b_number="07700900111", bill_number="01632960123", billed_seconds=60,
         connected_seconds=42, charge=138_000, charge_excl=115_000, currency="GBP", description="Mobile - O2",
         release_cause="0016", status="Ok",
         extra={"ConnectSeconds": "3", "FreeUnitsUsed": "0", "TextDesc2": "UK mobile, O2", "ServiceType": "STD",
                "BillingGroup": "Default", "CallingGroup": "Default", "Profile": "Default"}),
    dict(layout="call", carrier_record_id="1048572", call_type="International", start_time="2026-10-01 08:30:00",
         b_number="0033142685300", bill_number="01632960124", billed_seconds=180, connected_seconds=151,
         charge=1_200_000, charge_excl=1 * M, description="International - France, Paris",
         extra={"TextDesc2": 'Fixed line, "Paris 1er"', "BillingGroup": "Sales"}),
    dict(layout="call", carrier_record_id="1048573", direction="inbound", call_type="Freephone",
         start_time="2026-10-01 13:00:01", billed_seconds=0, connected_seconds=0, charge=0, charge_excl=0,
         release_cause="0017", status="Busy", extra={"ConnectSeconds": "12"}),
)


class TestHeroFeed(FormatContract):
    format_name = "hero-feed"
    samples = (
        Sample("hero_cdr_20261001.csv", "csv", HERO_RECORDS),  # header, CRLF
        Sample("hero_cdr_20261001.txt", "txt", HERO_RECORDS),  # tab separated, no header
        Sample("hero_cdr_20261001_pipe.txt", "pipe", HERO_RECORDS),  # pipe separated, header
        Sample("hero_cdr_20261001_pipe.txt", "txt", HERO_RECORDS),  # ... named .txt: the delimiter is sniffed
        Sample("hero_cdr_20261001.json", "json", HERO_RECORDS),  # numbers as JSON numbers
    )

    def test_the_same_calls_in_every_format_have_the_same_keys(self):
        keys = {sample.file: [r["record_key"] for r in self.parse(sample).rows] for sample in self.samples}
        assert len({tuple(k) for k in keys.values()}) == 1, keys


# -- techconnections-feed: calls and service fees in one file --------------------------------------------------

TC_RECORDS = (
    dict(layout="call", carrier_record_id="5000001", account_code="AC1001", call_type="Mobile",
         bill_date="2026-10-01", local_date="2026-10-02", local_time="13:05:09", start_time="2026-10-02 00:05:09",
         utc_offset="13", a_number="6493001234", b_number="64211234567", billed_seconds=60, connected_seconds=47,
         charge=230_000, charge_excl=200_000, currency="NZD", description="Mobile - One NZ", status="Ok",
         extra={"ConnectSeconds": "4", "TextDesc2": "NZ mobile", "ServiceType": "BUS1"}),
    dict(layout="charge", carrier_record_id="5000002", customer_reference="AC1001", number_reference="6493001234",
         product_code="Line Rental", description="Line rental, October 2026", charge_date="2026-10-01",
         period_start=None, period_end=None, quantity=1 * M, unit_cost=None, cost=25 * M, cost_incl=28_750_000,
         currency="NZD", extra={"Date": "2026-10-01", "UTCOffset": "13", "Seconds": "0"}),
    dict(layout="charge", carrier_record_id="5000003", customer_reference="AC1002", product_code="broadband",
         description="Fibre 300/100", charge_date="2026-10-01", cost=75 * M, cost_incl=86_250_000, quantity=1 * M,
         extra={"UTCDateTime": "2026-10-01 11:00:00"}),
    dict(layout="charge", carrier_record_id="5000004", product_code="Porting", description="Number port-in fee",
         number_reference="6493005678", cost=10 * M, cost_incl=11_500_000),
    dict(layout="call", carrier_record_id="5000005", direction="onnet", call_type="Onnet",
         start_time="2026-10-01 20:15:00", b_number="6493001234", billed_seconds=0, charge=0, charge_excl=0,
         release_cause="0019", status="No Answer"),
)


class TestTechConnectionsFeed(FormatContract):
    format_name = "techconnections-feed"
    samples = (
        Sample("TC_CDR_20261001.csv", "csv", TC_RECORDS),  # UTF-8 BOM, header
        Sample("TC_CDR_20261001.json", "json", TC_RECORDS),
    )


# -- asterisk-csv ---------------------------------------------------------------------------------------------


class TestAsteriskCsv(FormatContract):
    format_name = "asterisk-csv"
    samples = (
        Sample("Master.csv", None, (
            dict(layout="call", carrier_record_id=None, account_code="", a_number="1001", b_number="01632960999",
                 start_time="2026-10-01 09:00:00", answer_time="2026-10-01 09:00:07",
                 end_time="2026-10-01 09:02:13", connected_seconds=126, billed_seconds=126, status="ANSWERED",
                 charge=None, extra={"clid": '"Alice Smith" <1001>', "dcontext": "from-internal",
                                     "channel": "SIP/1001-00000001", "lastapp": "Dial",
                                     "lastdata": "SIP/trunk/01632960999,60,tT", "duration": "133",
                                     "amaflags": "DOCUMENTATION"}),
            # The same row twice in the file: one record (duplicate_rows = once).
            dict(layout="call", account_code="sales", a_number="1002", b_number="200", answer_time=None,
                 end_time="2026-10-01 09:05:20", connected_seconds=0, status="NO ANSWER",
                 extra={"clid": '"José Núñez" <1002>'}),
            dict(layout="call", a_number="01632960555", b_number="s", start_time="2026-10-01 23:59:58",
                 answer_time=None, end_time="2026-10-02 00:00:01", status="FAILED",
                 extra={"clid": '"" <01632960555>', "amaflags": "BILLING"}),
            dict(layout="call", a_number="1003", b_number="*97", answer_time="2026-10-01 10:00:00",
                 connected_seconds=45, extra={"clid": '"Reception, front desk" <1003>', "lastapp": "VoiceMailMain"}),
        ), rows_dropped=1),
        # loguniqueid and loguserfield on, a version that adds peeraccount, linkedid, sequence: 21 columns.
        Sample("Master-uniqueid.csv", "csv", (
            dict(layout="call", carrier_record_id="1790000000.1", a_number="1001", connected_seconds=126,
                 extra={"linkedid": "1790000000.1", "sequence": "1"}),
            dict(layout="call", carrier_record_id="1790000100.7", a_number="1001", b_number="1004",
                 start_time="2026-10-01 11:00:00", connected_seconds=60,
                 extra={"userfield": "project-42", "linkedid": "1790000100.7", "sequence": "2"}),
            dict(layout="call", carrier_record_id="1790000140.9", a_number="1004", b_number="1005",
                 answer_time="2026-10-01 11:00:44", connected_seconds=19,
                 extra={"clid": '"Bob" <1004>', "linkedid": "1790000100.7", "sequence": "3"}),
        )),
    )


# -- freeswitch-csv -------------------------------------------------------------------------------------------


class TestFreeswitchCsv(FormatContract):
    format_name = "freeswitch-csv"
    samples = (
        Sample("Master.csv", "csv", (
            dict(layout="call", carrier_record_id="a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d", a_number="1001",
                 b_number="01632960999", account_code="81234567", start_time="2026-10-01 09:00:00",
                 answer_time="2026-10-01 09:00:07", end_time="2026-10-01 09:02:13", connected_seconds=126,
                 billed_seconds=126, release_cause="NORMAL_CLEARING",
                 extra={"caller_id_name": "Alice Smith", "context": "default", "duration": "133",
                        "bleg_uuid": "a5d1b3e2-e752-11e3-8bfc-65b6c3cdac7d", "read_codec": "PCMA",
                        "write_codec": "PCMA"}),
            dict(layout="call", carrier_record_id="e29ff0ae-e752-11e3-8bff-65b6c3cdac7d", a_number="1002",
                 b_number="+441632960888", answer_time=None, end_time="2026-10-01 09:05:30", connected_seconds=0,
                 release_cause="NO_ANSWER", extra={"context": "public"}),
            dict(layout="call", carrier_record_id="e2fe712e-e752-11e3-8c03-65b6c3cdac7d",
                 start_time="2026-10-01 23:59:50", end_time="2026-10-02 00:01:05", connected_seconds=70,
                 extra={"caller_id_name": "Outbound, Sales", "read_codec": "G722"}),
            dict(layout="call", carrier_record_id="e34619ac-e752-11e3-8c07-65b6c3cdac7d", b_number="999",
                 answer_time=None, release_cause="USER_BUSY"),
        )),
    )


# -- cucm-cdr -------------------------------------------------------------------------------------------------


class TestCucmCdr(FormatContract):
    format_name = "cucm-cdr"
    samples = (
        # A names row, a types row, three CDRs and a CMR (skipped); no newline at the end.
        Sample("cdr_StandAloneCluster_01_202610010005_1234", None, (
            dict(layout="call", carrier_record_id="a5d6c0d8-6e1c-4bf1-9b0c-8d3c1f0e1a01",
                 start_time="2026-10-01 09:00:00", answer_time="2026-10-01 09:00:07",
                 end_time="2026-10-01 09:02:13", connected_seconds=126, billed_seconds=126, a_number="3002",
                 b_number="901632960999", account_code="40021", release_cause="16",
                 extra={"cdrRecordType": "1", "globalCallID_callManagerId": "1", "globalCallID_callId": "7090",
                        "origLegCallIdentifier": "16778873", "destCause_value": "0",
                        "originalCalledPartyNumber": "901632960999", "origDeviceName": "SEP001122334455",
                        "destDeviceName": "GW_PSTN_01", "comment": 'Transfer "held" call',
                        "globalCallId_ClusterId": "StandAloneCluster"}),
            dict(layout="call", carrier_record_id="a5d6c0d8-6e1c-4bf1-9b0c-8d3c1f0e1a02",
                 start_time="2026-10-01 09:05:00", answer_time=None, end_time="2026-10-01 09:05:20",
                 connected_seconds=0, b_number="3005", release_cause="0",
                 extra={"destCause_value": "16", "dateTimeConnect": None}),
            dict(layout="call", carrier_record_id="a5d6c0d8-6e1c-4bf1-9b0c-8d3c1f0e1a04",
                 start_time="2026-10-01 09:59:59", answer_time="2026-10-01 10:00:05",
                 end_time="2026-10-01 10:01:10", connected_seconds=65, a_number="01632960555", b_number="3010",
                 extra={"originalCalledPartyNumber": "3002", "lastRedirectDn": "3002", "origIpAddr": "-1274505344"}),
        )),
    )


# -- generic-charges-csv --------------------------------------------------------------------------------------

_RENTAL = dict(layout="charge", customer_reference="ACME-001", product_code="LR-ANALOG",
               description="Line rental, analogue", period_start="2026-10-01", period_end="2026-10-31",
               charge_date=None, quantity=1 * M, unit_cost=12_500_000, cost=12_500_000, cost_incl=None,
               currency="GBP", carrier_record_id=None)


class TestGenericChargesCsv(FormatContract):
    format_name = "generic-charges-csv"
    samples = (
        Sample("charges_202610.csv", "csv", (
            dict(_RENTAL, number_reference="01632960123"),
            # Two identical rows: two lines rented at the same price (duplicate_rows = distinct).
            dict(_RENTAL, number_reference="01632960124"),
            dict(_RENTAL, number_reference="01632960124"),
            dict(layout="charge", customer_reference="ACME-002", product_code="BB-FTTP-500",
                 description='Broadband, FTTP 500 "business"', cost=45 * M, quantity=1 * M),
            dict(layout="charge", product_code="SIP-CH", quantity=2_500_000, unit_cost=3_333_333, cost=8_333_333,
                 currency="GBP"),
        )),
    )


# -- radius-detail: one call through two Cisco gateways, four legs, each a Start and a Stop ---------------------

_CONF = "110003F6 52FA39EB 8C3F0012 3B1F9C1A"
_LEG = dict(layout="leg", conf_id=_CONF, user_name="01632960123", calling_number="01632960123",
            called_number="01632960999", setup_time="2026-02-11 14:55:41")
_STOP = dict(status_type="Stop", connect_time="2026-02-11 14:55:49", disconnect_time="2026-02-11 14:57:41",
             session_seconds=112, disconnect_cause="10")
_START = dict(status_type="Start", connect_time=None, disconnect_time=None, session_seconds=None,
              disconnect_cause=None)
# gw-a (10.0.0.1, UTC times, the server keeps Cisco's "name=" prefixes): leg 1 answer/Telephony, leg 2
# originate/VoIP; gw-b (10.0.0.2, GMT+4 times, a v4 server: prefixes stripped, "::Start"): leg 3 answer/VoIP,
# leg 4 originate/Telephony, whose clock is not synchronised (*).
_L1 = dict(_LEG, session_id="0000001F", unique_session_id="5a1e0c3d2e4b5a6f", nas_ip="10.0.0.1", call_origin="answer",
           call_type="Telephony", sip_call_id=None, remote_address=None, clock_flag=None)
_L2 = dict(_LEG, session_id="00000020", unique_session_id="7b2f1d4e3f5c6b70", nas_ip="10.0.0.1",
           call_origin="originate", call_type="VoIP", sip_call_id="4A7C1E00@10.0.0.1", remote_address="10.0.0.2")
_L3 = dict(_LEG, session_id="00000A01", unique_session_id="9c3a2e5f4a6d7c81", nas_ip="10.0.0.2", call_origin="answer",
           call_type="VoIP", sip_call_id="4A7C1E00@10.0.0.1", remote_address="10.0.0.1", clock_flag=None)
_L4 = dict(_LEG, session_id="00000A02", unique_session_id="ad4b3f6a5b7e8d92", nas_ip="10.0.0.2",
           call_origin="originate", call_type="Telephony", sip_call_id=None, clock_flag="*")


class TestRadiusDetail(FormatContract):
    format_name = "radius-detail"
    samples = (
        Sample("detail-20260211", None, (
            dict(_L1, **_START, event_time="2026-02-11 14:55:41",
                 extra={"Detail-Date": "Wed Feb 11 14:55:41 2026", "h323-gw-id": "gw-a.",
                        "Cisco-AVPair": f"h323-incoming-conf-id={_CONF}", "NAS-Port-Id": "ISDN 0:D:1"}),
            dict(_L2, **_START, event_time="2026-02-11 14:55:41",
                 extra={"Cisco-AVPair": "call-id=4A7C1E00@10.0.0.1",
                        "Cisco-AVPair[2]": f"h323-incoming-conf-id={_CONF}"}),
            dict(_L3, **_START, event_time="2026-02-11 14:55:42", extra={"Packet-Type": "Accounting-Request"}),
            dict(_L4, **_START, event_time="2026-02-11 14:55:42"),
            dict(_L2, **_STOP, event_time="2026-02-11 14:57:41", record_key="7b2f1d4e3f5c6b70\x1fStop\x1f112",
                 extra={"Cisco-AVPair[3]": "release-source=4", "Cisco-AVPair[4]": 'h323-ivr-out=Tariff:"Peak" café',
                        "Acct-Output-Packets": "111"}),
            dict(_L1, **_STOP, event_time="2026-02-11 14:57:41", extra={"Request-Authenticator": "Verified"}),
            dict(_L4, **_STOP, event_time="2026-02-11 14:57:42"),
            # The last record, with no blank line after it.
            dict(_L3, **_STOP, event_time="2026-02-11 14:57:42", record_key="9c3a2e5f4a6d7c81\x1fStop\x1f112"),
        )),
    )

    def test_a_start_is_keyed_by_its_hash_and_a_stop_by_its_session(self):
        rows = self.parse(self.samples[0]).rows
        assert [r["record_key"].startswith("h:") for r in rows] == [True] * 4 + [False] * 4


def test_every_builtin_format_runs_the_contract():
    tested = {cls.format_name for cls in FormatContract.__subclasses__()}
    assert set(builtin_format_tables()) == tested == {
        "hero-feed", "techconnections-feed", "asterisk-csv", "freeswitch-csv", "cucm-cdr", "generic-charges-csv",
        "radius-detail"}
