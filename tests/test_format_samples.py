"""Format-specific behaviour of the built-in formats, beyond the contract (tests/test_format_contract.py)."""

from __future__ import annotations

import copy
import json

import pytest

from ingest.errors import ParseError
from ingest.formats.spec import builtin_format_tables, parse_format
from tests.format_contract import SAMPLES, parse, parse_error

M = 1_000_000


def spec(name: str, **changes):
    table = copy.deepcopy(builtin_format_tables()[name])
    table.update(changes)
    return parse_format(name if not changes else f"{name}-variant", table)


def sample(name: str, file: str) -> bytes:
    return (SAMPLES / name / file).read_bytes()


# -- asterisk-csv -------------------------------------------------------------------------------------------


def test_asterisk_a_stray_byte_in_a_caller_name_loads_as_a_replacement_character():
    data = sample("asterisk-csv", "Master.csv").replace("Núñez".encode(), b"N\xfa\xf1ez", 1)  # Latin-1 bytes
    parsed = parse(spec("asterisk-csv"), "Master.csv", data, "csv")
    clids = [json.loads(r["extra"])["clid"] for r in parsed.rows]
    assert '"José N\ufffd\ufffdez" <1002>' in clids
    assert len(parsed.rows) == 5 and parsed.rows_dropped == 0  # the two rows now differ: both kept


def test_asterisk_times_are_read_in_the_format_timezone():
    """A PBX that logs local time: a copy of the format with its zone gives UTC (BST is UTC+1 in October)."""
    data = sample("asterisk-csv", "Master.csv")
    parsed = parse(spec("asterisk-csv", timezone="Europe/London"), "Master.csv", data, "csv")
    first = parsed.rows[0]
    assert (first["start_time"], first["answer_time"], first["end_time"]) == (
        "2026-10-01 08:00:00", "2026-10-01 08:00:07", "2026-10-01 08:02:13")


def test_asterisk_fewer_than_the_sixteen_standard_columns_fail():
    data = b'"","1001","200","from-internal","x","SIP/1","","Dial","","2026-10-01 09:00:00","","2026-10-01 09:00:01"\n'
    err = parse_error(spec("asterisk-csv"), "Master.csv", data, "csv")
    assert err.line == 1 and "fields" in err.reason


# -- freeswitch-csv -----------------------------------------------------------------------------------------


def test_freeswitch_a_uuid_is_required():
    data = sample("freeswitch-csv", "Master.csv").replace(b'"e34619ac-e752-11e3-8c07-65b6c3cdac7d"', b'""')
    err = parse_error(spec("freeswitch-csv"), "Master.csv", data, "csv")
    assert (err.line, err.field) == (4, "uuid")


# -- cucm-cdr -----------------------------------------------------------------------------------------------


def test_cucm_cmr_rows_are_skipped_and_a_call_never_connected_has_no_answer_time():
    parsed = parse(spec("cucm-cdr"), "cdr", sample("cucm-cdr", "cdr_StandAloneCluster_01_202610010005_1234"), None)
    assert [r["carrier_record_id"][-2:] for r in parsed.rows] == ["01", "02", "04"]  # 03 is the CMR
    assert [r["answer_time"] for r in parsed.rows] == ["2026-10-01 09:00:07", None, "2026-10-01 10:00:05"]
    assert all(json.loads(r["extra"])["cdrRecordType"] == "1" for r in parsed.rows)


def test_cucm_the_header_names_its_columns_in_any_order():
    data = sample("cucm-cdr", "cdr_StandAloneCluster_01_202610010005_1234").decode()
    lines = [line.split(",") for line in data.split("\n")]
    # pkid is quoted text and has no comma; moving the columns of every row keeps the file the same data.
    order = list(reversed(range(len(lines[0]))))
    moved = "\n".join(",".join(cells[i] for i in order) for cells in lines).encode()
    before = parse(spec("cucm-cdr"), "cdr", data.encode(), None).rows
    after = parse(spec("cucm-cdr"), "cdr", moved, None).rows
    for a, b in zip(before, after):
        assert {k: v for k, v in a.items() if k != "extra"} == {k: v for k, v in b.items() if k != "extra"}
        assert json.loads(a["extra"]) == json.loads(b["extra"])


def test_cucm_a_types_row_alone_is_no_record():
    data = sample("cucm-cdr", "cdr_StandAloneCluster_01_202610010005_1234").split(b"\n")
    assert parse(spec("cucm-cdr"), "cdr", b"\n".join(data[:2]), None).rows == []


# -- generic-charges-csv ------------------------------------------------------------------------------------


def test_generic_charges_header_names_are_loose_and_in_any_order():
    data = (b"Cost,Customer Reference,Product-Code,period_start,Quantity,Currency\n"
            b"9.99,ACME-9,X1,2026-11-01,3,NZD\n")
    (row,) = parse(spec("generic-charges-csv"), "c.csv", data, "csv").rows
    assert (row["cost"], row["customer_reference"], row["product_code"], row["period_start"], row["quantity"],
            row["currency"]) == (9_990_000, "ACME-9", "X1", "2026-11-01", 3 * M, "NZD")


@pytest.mark.parametrize("column, value, reason", [
    ("cost", "", "required"),
    ("cost", "12,50", "decimal"),
    ("period_end", "31/10/2026", "date"),
    ("quantity", "1.1234567", "decimal"),
])
def test_generic_charges_refuse(column, value, reason):
    header = "customer_reference,period_end,quantity,cost"
    values = {"customer_reference": "A", "period_end": "2026-10-31", "quantity": "1", "cost": "1.00"}
    values[column] = value
    row = ",".join(f'"{values[c]}"' for c in header.split(","))
    data = f"{header}\nA,2026-10-31,1,1.00\n{row}\n".encode()
    err = parse_error(spec("generic-charges-csv"), "c.csv", data, "csv")
    assert (err.line, err.field) == (3, column)
    assert reason in err.reason


def test_generic_charges_need_a_cost_column():
    with pytest.raises(ParseError) as info:
        list(parse(spec("generic-charges-csv"), "c.csv", b"customer_reference,quantity\nA,1\n", "csv").rows)
    assert (info.value.line, info.value.field) == (1, "cost")


def test_asterisk_rows_of_both_widths_in_one_file():
    """Master.csv is appended to for ever: turning on loguniqueid / loguserfield (or upgrading Asterisk) in the
    middle of its life leaves 16-column rows followed by wider ones. Each row is read at its own width."""
    data = sample("asterisk-csv", "Master.csv") + sample("asterisk-csv", "Master-uniqueid.csv")
    parsed = parse(spec("asterisk-csv"), "Master.csv", data, "csv")
    assert [r["carrier_record_id"] for r in parsed.rows] == [None] * 4 + ["1790000000.1", "1790000100.7",
                                                                         "1790000140.9"]
    assert json.loads(parsed.rows[-1]["extra"])["linkedid"] == "1790000100.7"
