"""The radius-detail format (FreeRADIUS detail files of Cisco gateways), beyond the contract
(tests/test_format_contract.py): escapes, repeats, Cisco-AVPair pairs, prefixes, v4 enumerations, Cisco times
and their flags, keys with the row-hash fallback, and errors naming the line and the attribute."""

from __future__ import annotations

import copy
import json

import pytest

from ingest.errors import ConfigError
from ingest.formats.spec import builtin_format_tables, parse_format
from tests.format_contract import SAMPLES, parse, parse_error

HEADER = "Wed Feb 11 14:57:41 2026"


def spec(**changes):
    table = copy.deepcopy(builtin_format_tables()["radius-detail"])
    table.update(changes)
    return parse_format("radius-detail" if not changes else "radius-variant", table)


def record(*lines: str, status: str = "Stop", seconds: str | None = "112", unique: str | None = "u1",
           header: str = HEADER, timestamp: str = "1770821861") -> str:
    """One detail record: the header, the given attribute lines (without their TAB), the usual ones, a blank line."""
    body = list(lines) + [f"Acct-Status-Type = {status}"]
    if seconds is not None:
        body.append(f"Acct-Session-Time = {seconds}")
    if unique is not None:
        body.append(f'Acct-Unique-Session-Id = "{unique}"')
    body.append(f"Timestamp = {timestamp}")
    return header + "\n" + "".join(f"\t{line}\n" for line in body) + "\n"


def rows(text: str | bytes, format_spec=None):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse(format_spec or spec(), "detail", data, None).rows


def extra(row) -> dict:
    return json.loads(row["extra"] or "{}")


def error(text: str | bytes, format_spec=None):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_error(format_spec or spec(), "detail", data, None)


# -- values ---------------------------------------------------------------------------------------------------


def test_quoted_values_are_unescaped():
    text = record(r'User-Name = "a\"b\\c"', r'Called-Station-Id = "tab\there"', r'NAS-Port-Id = "line\nbreak"',
                  r'Reply-Message = "caf\303\251 \q"')
    (row,) = rows(text)
    assert row["user_name"] == 'a"b\\c'
    assert row["called_number"] == "tab\there"
    assert extra(row)["NAS-Port-Id"] == "line\nbreak"
    assert extra(row)["Reply-Message"] == "café \\q"  # octal bytes decoded as UTF-8; an unknown escape kept


def test_a_repeated_attribute_keeps_every_value_in_order():
    (row,) = rows(record('Cisco-AVPair = "a=1"', 'Cisco-AVPair = "b=2"', 'Cisco-AVPair = "c=3"'))
    assert {k: v for k, v in extra(row).items() if k.startswith("Cisco")} == {
        "Cisco-AVPair": "a=1", "Cisco-AVPair[2]": "b=2", "Cisco-AVPair[3]": "c=3"}


def test_avpairs_give_attributes_the_record_does_not_have():
    text = (record('Cisco-AVPair = "call-id=first@10.0.0.1"', 'Cisco-AVPair = "call-id=second@10.0.0.1"')
            + record('call-id = "own@10.0.0.2"', 'Cisco-AVPair = "call-id=pair@10.0.0.2"', unique="u2"))
    first, second = rows(text)
    assert first["sip_call_id"] == "first@10.0.0.1"  # the first pair wins
    assert "call-id" not in extra(first)  # read by a field
    assert extra(first)["Cisco-AVPair[2]"] == "call-id=second@10.0.0.1"
    assert second["sip_call_id"] == "own@10.0.0.2"  # the record's own attribute wins


def test_a_pair_no_field_reads_is_in_extra_under_its_name_but_not_in_the_row_hash():
    with_pair = rows(record('Cisco-AVPair = "media_duration=0"', status="Start", seconds=None))[0]
    assert extra(with_pair)["media_duration"] == "0"
    assert extra(with_pair)["Cisco-AVPair"] == "media_duration=0"
    off = rows(record('Cisco-AVPair = "media_duration=0"', status="Start", seconds=None), spec(avpairs=[]))[0]
    assert "media_duration" not in extra(off)
    assert with_pair["record_key"] == off["record_key"]  # the hash is of the record's own attributes


def test_avpairs_can_be_turned_off():
    (row,) = rows(record('Cisco-AVPair = "call-id=x@10.0.0.1"'), spec(avpairs=[]))
    assert row["sip_call_id"] is None


def test_a_value_repeating_its_name_loses_it_and_one_without_it_is_kept():
    text = (record('h323-conf-id = "h323-conf-id=110003F6 52FA39EB"', 'h323-call-origin = "h323-call-origin=answer"')
            + record('h323-conf-id = "110003F6 52FA39EB"', 'h323-call-origin = "originate"',
                     'h323-gw-id = "h323-conf-id=not mine"', unique="u2"))
    first, second = rows(text)
    assert (first["conf_id"], first["call_origin"]) == ("110003F6 52FA39EB", "answer")
    assert (second["conf_id"], second["call_origin"]) == ("110003F6 52FA39EB", "originate")
    assert extra(second)["h323-gw-id"] == "h323-conf-id=not mine"  # another attribute's name stays


def test_v4_enumerations_lose_their_colons_but_ipv6_addresses_do_not():
    (row,) = rows(record("Framed-IPv6-Address = ::1", "NAS-IPv6-Address = ::ffff:10.0.0.1",
                         "Packet-Type = ::Accounting-Request", status="::Stop"))
    assert row["status_type"] == "Stop"
    assert extra(row)["Framed-IPv6-Address"] == "::1"
    assert extra(row)["NAS-IPv6-Address"] == "::ffff:10.0.0.1"
    assert extra(row)["Packet-Type"] == "Accounting-Request"


def test_an_attribute_written_without_spaces_around_its_equals_sign_is_read():
    (row,) = rows(record('User-Name="bob"', "NAS-IP-Address =10.0.0.1"))
    assert (row["user_name"], row["nas_ip"]) == ("bob", "10.0.0.1")


def test_the_header_date_is_kept_and_crlf_lines_read_the_same():
    text = record('User-Name = "alice"')
    (plain,) = rows(text)
    (crlf,) = rows(text.replace("\n", "\r\n"))
    assert extra(plain)["Detail-Date"] == HEADER
    assert plain == crlf


# -- Cisco times ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, utc, flag", [
    ("18:55:41.000 GMT+4 Tue Feb 11 2014", "2014-02-11 14:55:41", None),
    ("20:25:41.000 GMT+05:30 Tue Feb 11 2014", "2014-02-11 14:55:41", None),
    ("11:55:41.000 GMT-3 Tue Feb 11 2014", "2014-02-11 14:55:41", None),
    ("09:55:41.000 EST Tue Feb 11 2014", "2014-02-11 14:55:41", None),
    ("10:55:41.000 EDT Fri Jul 11 2014", "2014-07-11 14:55:41", None),
    ("15:55:41.000 CET Tue Feb 11 2014", "2014-02-11 14:55:41", None),
    ("*14:55:41.000 UTC Tue Feb 11 2014", "2014-02-11 14:55:41", "*"),
    (".14:55:41 GMT Tue Feb 11 2014", "2014-02-11 14:55:41", "."),
    ("01:00:00.000 GMT+4 Sat Jan 1 2000", "1999-12-31 21:00:00", None),
])
def test_cisco_times_are_read_into_utc_with_their_flag(given, utc, flag):
    (row,) = rows(record(f'h323-setup-time = "h323-setup-time={given}"'))
    assert (row["setup_time"], row["clock_flag"]) == (utc, flag)


def test_an_unknown_zone_fails_naming_the_line_and_the_attribute():
    text = record('User-Name = "alice"', 'h323-setup-time = "14:55:41.000 XYZ Tue Feb 11 2014"')
    err = error(text)
    assert (err.line, err.field) == (3, "h323-setup-time")
    assert "unknown time zone" in err.reason


def test_a_time_that_is_not_a_cisco_time_fails_at_its_line():
    text = record('User-Name = "alice"') + record('h323-connect-time = "14:55:41.000 UTC Mon Feb 30 2026"', unique="u2")
    err = error(text)
    assert (err.line, err.field) == (9, "h323-connect-time")
    assert "not a Cisco time" in err.reason


# -- keys -----------------------------------------------------------------------------------------------------


def test_a_stop_is_keyed_by_its_session_and_a_start_or_a_record_without_a_session_by_its_hash():
    start, stop, anonymous = rows(record(status="Start", seconds=None) + record()
                                  + record(unique=None, timestamp="1770821862"))
    assert stop["record_key"] == "u1\x1fStop\x1f112"
    assert start["record_key"].startswith("h:") and anonymous["record_key"].startswith("h:")


def test_a_file_sent_again_gives_the_same_keys_and_a_record_given_twice_is_one():
    text = record(status="Start", seconds=None) + record()
    assert [r["record_key"] for r in rows(text)] == [r["record_key"] for r in rows(text)]
    parsed = parse(spec(), "detail", (text + record(status="Start", seconds=None)).encode(), None)
    assert len(parsed.rows) == 2 and parsed.rows_dropped == 1


def test_key_else_row_applies_to_delimited_files_too():
    table = {"kind": "delimited", "key": ["ID"], "key_else": "row",
             "fields": {"carrier_record_id": {"column": "ID"}, "start_time": {"column": "Start"}}}
    got = parse(parse_format("t", table), "t.csv", b"ID,Start\n7,2026-03-01 10:00:00\n,2026-03-01 11:00:00\n", "csv").rows
    assert got[0]["record_key"] == "7" and got[1]["record_key"].startswith("h:")
    strict = parse_format("t", {k: v for k, v in table.items() if k != "key_else"})
    without = parse_error(strict, "t.csv", b"ID,Start\n,2026-03-01 11:00:00\n", "csv")
    assert (without.line, without.field) == (2, "ID")


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, field, words", [
    ("\tgarbage", None, "not an attribute line"),
    ("\tUser Name = x", None, "not an attribute line"),
    ('\tUser-Name = "unterminated', "User-Name", "unterminated quoted string"),
    ('\tUser-Name = "ends with an escaped quote\\"', "User-Name", "unterminated quoted string"),
    ("\tAcct-Input-Octets = 1", None, None),  # fine: the control case
    ("not a date", None, "not a record header"),
])
def test_a_bad_line_fails_naming_its_line(line, field, words):
    text = record('User-Name = "alice"')
    lines = text.split("\n")
    lines.insert(2, line)  # the third line
    text = "\n".join(lines)
    if words is None:
        assert len(rows(text)) == 1
        return
    err = error(text)
    assert (err.line, err.field) == (3, field), str(err)
    assert words in err.reason


def test_a_bad_number_fails_at_its_attribute_line():
    err = error(record('User-Name = "alice"') + record('User-Name = "bob"', seconds="12x", unique="u2"))
    assert (err.line, err.field, err.value) == (11, "Acct-Session-Time", "12x")


def test_a_record_without_its_timestamp_fails_at_its_header():
    text = record() + HEADER + '\n\tAcct-Status-Type = Stop\n\tUser-Name = "x"\n'
    err = error(text)
    assert (err.line, err.field) == (7, "Timestamp")


def test_an_attribute_before_any_header_fails():
    err = error("\tUser-Name = \"x\"\n" + record())
    assert err.line == 1 and "before the first record header" in err.reason


def test_a_file_cut_in_the_middle_of_a_line_fails_at_that_line():
    text = record() + record(unique="u2")
    err = error(text[: text.rindex("Timestamp") + 15])
    assert err.line == 11 and "truncated" in err.reason


def test_undecodable_bytes_fail_strictly_and_load_as_replacement_characters_with_replace():
    data = record('User-Name = "al\xffce"').encode("utf-8").replace("\xff".encode("utf-8"), b"\xff")
    err = error(data)
    assert err.line == 2 and "not valid utf-8" in err.reason
    (row,) = rows(data, spec(encoding_errors="replace"))
    assert row["user_name"] == "al\ufffdce"


def test_an_empty_file_has_no_records():
    assert rows("") == [] and rows("\n\n") == []


# -- reading in chunks ----------------------------------------------------------------------------------------


def test_records_read_across_chunks_are_the_same(monkeypatch):
    data = (SAMPLES / "radius-detail" / "detail-20260211").read_bytes()
    whole = rows(data)
    monkeypatch.setattr("ingest.formats.detail.CHUNK_SIZE", 300)  # each record its own chunk, or several
    assert rows(data) == whole
    bad = data.replace(b"Acct-Session-Time = 112", b"Acct-Session-Time = 11x")
    err = error(bad)
    assert err.field == "Acct-Session-Time" and bad.split(b"\n")[err.line - 1].endswith(b"11x")


# -- the format's configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, key, words", [
    ({"header": "first"}, "header", "not for kind"),
    ({"columns": ["a"]}, "columns", "not for kind"),
    ({"kind": "delimited"}, "avpairs", "only for kind"),
    ({"key": "row"}, "key_else", "only with a key of columns"),
    ({"key_else": "hash"}, "key_else", "must be one of"),
    ({"leg_fields": {"setup_time": {"column": "h323-setup-time", "type": "cisco-time", "timezone": "UTC"}}},
     "leg_fields.setup_time.timezone", "not for cisco-time"),
    ({"leg_fields": {"session_id": {"column": "x", "type": "cisco-time"}}}, "leg_fields.session_id.type",
     "a text field"),
])
def test_the_configuration_is_checked(changes, key, words):
    with pytest.raises(ConfigError) as info:
        spec(**changes)
    assert info.value.key == f"formats.radius-variant.{key}"
    assert words in info.value.reason


# -- the user-facing samples (samples/radius/, the README's examples) -----------------------------------------


def test_the_user_samples_hold_three_calls_of_four_legs_across_two_gateways():
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "samples" / "radius"
    legs = []
    for gateway, nas in (("gw-a", "10.0.0.1"), ("gw-b", "10.0.0.2")):
        got = rows((folder / f"detail-20260211-{gateway}").read_bytes())
        assert len(got) == 12 and {r["nas_ip"] for r in got} == {nas}
        legs += got
    stops = [r for r in legs if r["status_type"] == "Stop"]
    assert sorted({r["conf_id"] for r in stops}) == [f"A000000{n} 00000000 00000000 0000000{n}" for n in (1, 2, 3)]
    first = [r for r in stops if r["conf_id"].startswith("A0000001")]
    assert {(r["call_origin"], r["call_type"]) for r in first} == {
        ("answer", "Telephony"), ("originate", "VoIP"), ("answer", "VoIP"), ("originate", "Telephony")}
    assert {r["disconnect_time"] for r in first} == {"2026-02-11 14:57:41"}  # gw-b writes GMT+4


def test_the_earliest_error_is_reported_whatever_chunk_fails_first(monkeypatch):
    """A bad value in the first chunk is reported before undecodable bytes further on (transcoding reads
    ahead of the chunks being parsed)."""
    monkeypatch.setattr("ingest.formats.detail.CHUNK_SIZE", 200)
    for before in (0, 1, 6):  # the bad byte in the same read as the bad value, the next one, further on
        text = record(seconds="12x") + "".join(record(unique=f"u{i}") for i in range(2, 2 + before))
        data = text.encode("latin-1") + record('User-Name = "caf\xe9"', unique="u9").encode("latin-1")
        err = error(data, spec(encoding="ascii"))
        assert (err.line, err.field) == (3, "Acct-Session-Time"), (before, str(err))
    err = error(record().encode() + record('User-Name = "caf\xe9"', unique="u9").encode("latin-1"),
                spec(encoding="ascii"))
    assert err.line == 8 and "not valid ascii" in err.reason
