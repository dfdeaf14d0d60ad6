"""``cdr formats list`` and ``cdr formats check``: the installed ``cdr`` command, run as a real process on a SQLite
configuration (the shipped carriers, plus a format of the test's own in an included file). Checking a file loads
nothing: the catalog is never even opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ingest.formats.engine", reason="the formats engine (ingest.formats) is not here yet")

REPO = Path(__file__).resolve().parent.parent
CDR = str(Path(sys.executable).with_name("cdr"))
BUILTINS = ("hero-feed", "techconnections-feed", "asterisk-csv", "freeswitch-csv", "cucm-cdr", "generic-charges-csv")
HERO_SAMPLE = REPO / "samples" / "hero" / "hero_cdr_20261001.csv"
TC_SAMPLE = REPO / "tests" / "samples" / "formats" / "techconnections-feed" / "TC_CDR_20261001.csv"

ACME = """\
[formats.acme-cdr]
description = "Acme's calls, semicolons and day-first dates"
delimiter = ";"
key = ["CallID"]
[formats.acme-cdr.fields]
carrier_record_id = { column = "CallID" }
start_time = { column = "Start", type = "datetime", format = "%d/%m/%Y %H:%M:%S" }
billed_seconds = { column = "Duration", type = "duration", unit = "hh:mm:ss" }
charge_excl = { column = "Cost", type = "decimal" }
b_number = { column = "Dialled" }
currency = { value = "GBP" }
"""


@pytest.fixture
def config(tmp_path) -> Path:
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "acme.toml").write_text(ACME)
    path = tmp_path / "cdr.toml"
    path.write_text(f'include = ["{REPO}/config/carriers/*.toml", "formats/*.toml"]\n'
                    f'[database]\nurl = "sqlite:///{tmp_path}/db/cdr.sqlite"\n[staging]\ndir = "{tmp_path}/staging"\n'
                    '[carriers.acme]\nformat = "acme-cdr"\n')
    return path


def cdr(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    return subprocess.run([CDR, "--config", str(config), "formats", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=config.parent)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_list_shows_the_built_in_formats_and_the_configurations_own(config):
    done = cdr(config, "list")
    assert done.returncode == 0, done.stderr
    for name in (*BUILTINS, "acme-cdr"):
        assert name in done.stdout
    shown = json.loads(cdr(config, "list", "--json").stdout)
    by_name = {entry["name"]: entry for entry in shown}
    assert set(BUILTINS) | {"acme-cdr"} <= set(by_name)
    assert by_name["hero-feed"]["origin"] == "built-in" and by_name["hero-feed"]["carriers"] == ["hero"]
    assert by_name["hero-feed"]["key"] == "ID" and by_name["hero-feed"]["records"] == ["call"]
    assert by_name["techconnections-feed"]["records"] == ["call", "charge"]
    assert by_name["cucm-cdr"]["carriers"] == []
    acme = by_name["acme-cdr"]
    assert acme["origin"] == str(config.parent / "formats" / "acme.toml")
    assert (acme["carriers"], acme["key"], acme["kind"]) == (["acme"], "CallID", "delimited")
    assert acme["description"] == "Acme's calls, semicolons and day-first dates"


def test_check_of_a_good_file_shows_its_records_and_loads_nothing(config, tmp_path):
    done = cdr(config, "check", str(HERO_SAMPLE), "--carrier", "hero")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "format hero-feed" in done.stdout and "100001" in done.stdout and "3 calls" in done.stdout
    assert "2026-10-01T09:15:03Z" in done.stdout
    assert not (tmp_path / "db").exists() and not (tmp_path / "staging").exists()  # no catalog, nothing staged

    shown = json.loads(cdr(config, "check", str(HERO_SAMPLE), "--carrier", "hero", "--json").stdout)
    assert (shown["ok"], shown["format"], shown["file_format"], shown["counts"], shown["error"]) == (
        True, "hero-feed", "csv", {"call": 3}, None)
    first = shown["records"][0]
    assert first["kind"] == "call" and first["carrier_record_id"] == "100001"
    assert first["start_time"] == "2026-10-01T09:15:03Z"  # ISO 8601 with Z
    assert first["charge"] == "0.084" and first["charge_excl"] == "0.07"  # money as exact decimal text
    assert isinstance(shown["rows_dropped"], int)


def test_check_shows_the_first_records_of_each_kind_with_the_kind(config):
    shown = json.loads(cdr(config, "check", str(TC_SAMPLE), "--carrier", "techconnections", "--limit", "1",
                           "--json").stdout)
    assert shown["ok"] and set(shown["counts"]) == {"call", "charge"}
    assert sorted(record["kind"] for record in shown["records"]) == ["call", "charge"]  # one of each
    charge = next(record for record in shown["records"] if record["kind"] == "charge")
    assert "." in charge["cost"]  # decimal text
    text = cdr(config, "check", str(TC_SAMPLE), "--carrier", "techconnections", "--limit", "1")
    assert text.returncode == 0 and "\ncall, row " in text.stdout and "\ncharge, row " in text.stdout
    assert "the first 1 of each kind shown" in text.stdout


def test_check_reads_with_the_configurations_own_format(config, tmp_path):
    path = tmp_path / "acme_20261001.csv"
    path.write_text("CallID;Start;Duration;Cost;Dialled\nA1;01/10/2026 10:00:00;00:01:05;0.125;0207946000\n")
    shown = json.loads(cdr(config, "check", str(path), "--carrier", "acme", "--json").stdout)
    [call] = shown["records"]
    assert (call["carrier_record_id"], call["start_time"], call["billed_seconds"], call["charge_excl"],
            call["currency"]) == ("A1", "2026-10-01T10:00:00Z", 65, "0.125", "GBP")


def test_check_of_a_bad_file_exits_1_naming_the_line_and_the_field(config, tmp_path):
    lines = HERO_SAMPLE.read_text().splitlines(keepends=True)
    cells = lines[2].split(",")
    cells[14] = "12x"  # Charge
    lines[2] = ",".join(cells)
    bad = tmp_path / "hero_cdr_20261001.csv"
    bad.write_text("".join(lines))
    done = cdr(config, "check", str(bad), "--carrier", "hero")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("error: ") and "line 3" in line and "Charge" in line, line

    as_json = cdr(config, "check", str(bad), "--carrier", "hero", "--json")
    assert as_json.returncode == 1 and "Traceback" not in as_json.stderr
    error = json.loads(as_json.stdout)["error"]
    assert error["line"] == 3 and "Charge" in error["field"] and error["value"] == "12x"
    assert error["file"] and error["reason"]


def test_check_refuses_an_unknown_carrier_and_a_file_that_is_not_text_in_one_line(config, tmp_path):
    done = cdr(config, "check", str(HERO_SAMPLE), "--carrier", "nobody")
    assert done.returncode == 1 and one_line(done.stderr).startswith("error: unknown carrier 'nobody'")
    pdf = tmp_path / "hero_cdr_20261002.csv"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    done = cdr(config, "check", str(pdf), "--carrier", "hero")
    assert done.returncode == 1 and "PDF" in one_line(done.stderr)


def test_check_reads_a_gzipped_file(config, tmp_path):
    import gzip

    path = tmp_path / "hero_cdr_20261001.csv.gz"
    path.write_bytes(gzip.compress(HERO_SAMPLE.read_bytes()))
    shown = json.loads(cdr(config, "check", str(path), "--carrier", "hero", "--json").stdout)
    assert shown["ok"] and shown["counts"] == {"call": 3} and shown["file_format"] == "csv"


def test_a_mistake_in_a_configured_format_is_one_line_at_start(config):
    (config.parent / "formats" / "acme.toml").write_text(ACME.replace('unit = "hh:mm:ss"', 'unit = "fortnights"'))
    done = cdr(config, "list")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("error: configuration error at ") and "formats.acme-cdr" in line and "unit" in line


def test_formats_commands_have_help_with_an_example(config):
    for args in (("--help",), ("list", "--help"), ("check", "--help")):
        done = cdr(config, *args)
        assert done.returncode == 0 and "Example:" in done.stdout
