"""Configuration: the shipped files load; bad configuration is refused at start with the key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.errors import ConfigError
from ingest.plugins import load_checked_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str, carriers: bool = True) -> Path:
    path = tmp_path / "cdr.toml"
    include = f'include = ["{REPO}/config/carriers/*.toml"]\n' if carriers else ""
    path.write_text(include + text)
    return path


def test_the_shipped_configuration_loads_with_both_carriers():
    config = load_config(REPO / "config" / "cdr.toml", env={})
    assert set(config.carriers) >= {"hero", "techconnections"}
    # Relative to config/, the file's folder: the repository's var/, whatever the working directory.
    assert config.database_url == f"sqlite:///{REPO}/config/../var/cdr.sqlite"
    assert config.staging_dir == REPO / "config" / "../var/staging"
    assert {s.options["path"] for s in config.sources} == {
        f"{REPO}/config/../var/dropbox/{d}" for d in ("hero/daily", "hero/monthly", "techconnections")}
    assert config.carriers["techconnections"].same_name_rule is True
    assert config.carriers["hero"].same_name_rule is False


def test_environment_overrides_database_and_staging(tmp_path):
    env = {"CDR_DATABASE_URL": "postgresql://db/x", "CDR_STAGING_DIR": "/srv/staging"}
    config = load_config(write(tmp_path, '[database]\nurl = "sqlite:///a.db"\n'), env=env)
    assert config.database_url == "postgresql://db/x" and str(config.staging_dir) == "/srv/staging"


def test_cdr_config_names_the_file(tmp_path):
    path = write(tmp_path, "")
    assert load_config(env={"CDR_CONFIG": str(path)}).path == path
    with pytest.raises(ConfigError, match="not found"):
        load_config(env={"CDR_CONFIG": str(tmp_path / "missing.toml")})


def test_rules_classify_names_with_billing_period(tmp_path):
    config = load_config(write(tmp_path, """
[carriers.acme]
parser = "hero"
[[carriers.acme.files]]
regex = '^ACME-(?P<year>\\d{4})(?P<month>\\d{2})\\.sdr\\.csv$'
type = "sdr"
cadence = "monthly"
[[carriers.acme.files]]
pattern = "acme_{year}{month}{day}_*.csv"
type = "cdr"
cadence = "daily"
format = "csv"
""", carriers=False), env={})
    monthly = config.classify("ACME-202610.sdr.csv")
    assert (monthly.carrier, monthly.file_type, monthly.cadence, monthly.billing_period) == ("acme", "sdr", "monthly", "2026-10")
    daily = config.classify("ACME_20261105_part1.csv")  # case-insensitive by default
    assert (daily.file_type, daily.cadence, daily.billing_period) == ("cdr", "daily", "2026-11")
    assert config.classify("acme_20261305_x.csv") is None  # month 13 is not a date
    assert config.classify("other.csv") is None


@pytest.mark.parametrize("text, key, reason", [
    ("[carriers.x]\nparser = 'nope'\n", "carriers.x.parser", "unknown parser"),
    ("[carriers.x]\nparser = 'hero'\nsame_name_rule = 'yes'\n", "carriers.x.same_name_rule", "true or false"),
    ("[carriers.x]\nparser = 'hero'\nsame_name_rul = true\n", "carriers.x.same_name_rul", "unknown key"),
    ("[carriers.x]\nparser = 'hero'\n[[carriers.x.files]]\npattern = 'a_{yr}.csv'\ntype = 'cdr'\ncadence = 'daily'\n",
     "carriers.x.files[0].pattern", "unknown placeholder"),
    ("[carriers.x]\nparser = 'hero'\n[[carriers.x.files]]\nregex = 'a(['\ntype = 'cdr'\ncadence = 'daily'\n",
     "carriers.x.files[0].regex", "invalid pattern"),
    ("[carriers.x]\nparser = 'hero'\n[[carriers.x.files]]\npattern = 'a.csv'\ntype = 'xdr'\ncadence = 'daily'\n",
     "carriers.x.files[0].type", "must be one of cdr, sdr"),
    ("[carriers.x]\nparser = 'hero'\n[[carriers.x.files]]\npattern = 'a_{month}.csv'\ntype = 'cdr'\ncadence = 'daily'\n",
     "carriers.x.files[0]", "both {year} and {month}"),
    ("[carriers.x]\nparser = 'hero'\noptions = { colour = 'red' }\n", "carriers.x.options.colour", "unknown option"),
    ("[intake]\nmax_ratio = 0\n", "intake.max_ratio", "at least 1"),
    ("[[sources]]\nname = 'a'\nkind = 'telepathy'\n", "sources[0].kind", "unknown kind"),
    ("[[sources]]\nname = 'a'\nkind = 'dropfolder'\n", "sources[0].path", "required"),
    ("[[sources]]\nname = 'a'\nkind = 'dropfolder'\npath = 'x'\ncarrier = 'nobody'\n", "sources[0].carrier", "unknown carrier"),
    ("[[sources]]\nname = 'a'\nkind = 'dropfolder'\npath = 'x'\n[[sources]]\nname = 'a'\nkind = 'dropfolder'\npath = 'y'\n",
     "sources[1].name", "used twice"),
    ("colour = 1\n", "colour", "unknown key"),
    ("[database\n", "cdr.toml", "not valid TOML"),
])
def test_bad_configuration_is_refused_with_key_and_reason(tmp_path, text, key, reason):
    # What cdr runs on: the configuration, then each source's options by its collector (ingest.plugins).
    with pytest.raises(ConfigError) as caught:
        load_checked_config(write(tmp_path, text, carriers=False), env={})
    assert caught.value.key.endswith(key)
    assert reason in caught.value.reason


def test_the_cli_refuses_bad_configuration_at_start(tmp_path):
    from click.testing import CliRunner

    from ingest.cli import cli

    path = write(tmp_path, "[carriers.x]\nparser = 'nope'\n", carriers=False)
    result = CliRunner().invoke(cli, ["--config", str(path), "files"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: configuration error at carriers.x.parser: unknown parser 'nope'")


def test_configuration_alone_does_not_check_collector_options(tmp_path):
    """ingest.config reads the file on its own; the sources' options are the collectors' (ingest.plugins)."""
    path = write(tmp_path, "[[sources]]\nname = 'a'\nkind = 'telepathy'\n", carriers=False)
    assert [s.kind for s in load_config(path, env={}).sources] == ["telepathy"]
    with pytest.raises(ConfigError, match="unknown kind 'telepathy'"):
        load_checked_config(path, env={})


def test_the_cli_refuses_an_unknown_source_kind_and_a_bad_option_at_start(tmp_path):
    from click.testing import CliRunner

    from ingest.cli import cli

    for text, line in (("[[sources]]\nname = 'a'\nkind = 'telepathy'\n",
                        "error: configuration error at sources[0].kind: unknown kind 'telepathy' (known: "),
                       ("[[sources]]\nname = 'a'\nkind = 'dropfolder'\n",
                        "error: configuration error at sources[0].path: ")):
        result = CliRunner().invoke(cli, ["--config", str(write(tmp_path, text, carriers=False)), "files"])
        assert result.exit_code == 1 and result.output.strip().startswith(line), result.output
        assert len(result.output.strip().splitlines()) == 1


# -- carriers and their formats -------------------------------------------------------------------------------


def carrier(tmp_path, text: str, name: str = "x"):
    return load_config(write(tmp_path, text, carriers=False), env={}).carriers[name]


def test_the_shipped_carriers_name_their_formats():
    config = load_config(REPO / "config" / "cdr.toml", env={})
    assert config.carriers["hero"].format == "hero-feed"
    assert config.carriers["techconnections"].format == "techconnections-feed"
    assert config.carriers_using("hero-feed") == ("hero",)
    assert {"hero-feed", "techconnections-feed"} <= set(config.format_definitions)
    assert config.format_definitions["hero-feed"].builtin


def test_parser_names_of_before_formats_mean_the_built_in_formats(tmp_path):
    assert carrier(tmp_path, "[carriers.x]\nparser = 'hero'\n").format == "hero-feed"
    tc = carrier(tmp_path, "[carriers.x]\nparser = 'techconnections'\n")
    assert tc.format == "techconnections-feed"
    assert not hasattr(tc, "parser")  # the legacy spelling is read as the format; nothing keeps it
    both = carrier(tmp_path, "[carriers.x]\nparser = 'hero'\nformat = 'hero-feed'\n")
    assert both.format == "hero-feed"


@pytest.mark.parametrize("value", ["csv", "txt", "pipe", "json"])
def test_a_carrier_format_naming_a_file_format_is_its_file_format(tmp_path, value):
    """`format = "csv"` meant the default file format before record formats; it still does."""
    spec = carrier(tmp_path, f"[carriers.x]\nparser = 'hero'\nformat = '{value}'\n")
    assert (spec.format, spec.file_format) == ("hero-feed", value)
    spec = carrier(tmp_path, f"[carriers.x]\nformat = 'hero-feed'\nfile_format = '{value}'\n")
    assert (spec.format, spec.file_format) == ("hero-feed", value)


def test_the_file_format_is_the_default_of_a_rule_that_gives_none(tmp_path):
    config = load_config(write(tmp_path, """
[carriers.x]
format = "hero-feed"
file_format = "pipe"
[[carriers.x.files]]
pattern = "x_{year}{month}.*"
type = "cdr"
cadence = "monthly"
[[carriers.x.files]]
pattern = "j_{year}{month}.*"
type = "cdr"
cadence = "monthly"
format = "json"
""", carriers=False), env={})
    assert config.classify("x_202610.dat").file_format == "pipe"
    assert config.classify("j_202610.dat").file_format == "json"


@pytest.mark.parametrize("text, key, reason", [
    ("[carriers.x]\nsame_name_rule = true\n", "carriers.x.format", "is required"),
    ("[carriers.x]\nformat = 'acme-cdr'\n", "carriers.x.format", "unknown format 'acme-cdr' (known: "),
    ("[carriers.x]\nformat = 3\n", "carriers.x.format", "the name of a format"),
    ("[carriers.x]\nformat = 'hero-feed'\nfile_format = 'xml'\n", "carriers.x.file_format", "one of csv, txt"),
    ("[carriers.x]\nformat = 'csv'\nfile_format = 'json'\n", "carriers.x.format", "file_format says 'json'"),
    ("[carriers.x]\nparser = 'generic'\n", "carriers.x.parser", "[formats.NAME]"),
    ("[carriers.x]\nparser = 'hero'\nformat = 'techconnections-feed'\n", "carriers.x.parser", "give format alone"),
    ("[carriers.x]\nformat = 'techconnections-feed'\n[carriers.x.options]\nservice_call_types = ['Rental']\n",
     "carriers.x.options.service_call_types", "[[formats.NAME.records]]"),
    ("[carriers.x]\nformat = 'techconnections-feed'\n[carriers.x.options]\nservice_when_no_bparty = false\n",
     "carriers.x.options.service_when_no_bparty", "moved"),
    ("[carriers.x]\nformat = 'hero-feed'\n[[carriers.x.files]]\npattern = 'a.csv'\ntype = 'cdr'\ncadence = 'daily'\n"
     "format = 'hero-feed'\n", "carriers.x.files[0].format", "must be one of csv, txt, pipe, json"),
    ("[formats.csv]\nkind = 'delimited'\n", "formats.csv", "named like a file format"),
    ("[formats]\nacme = 3\n", "formats.acme", "must be a table"),
])
def test_bad_carrier_formats_are_refused_with_key_and_reason(tmp_path, text, key, reason):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, carriers=False), env={})
    assert caught.value.key.endswith(key), caught.value
    assert reason in caught.value.reason, caught.value


def test_the_cli_refuses_the_generic_parser_pointing_to_formats(tmp_path):
    from click.testing import CliRunner

    from ingest.cli import cli

    path = write(tmp_path, "[carriers.x]\nparser = 'generic'\n", carriers=False)
    result = CliRunner().invoke(cli, ["--config", str(path), "files"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: configuration error at carriers.x.parser: there is no generic parser")
    assert "docs/formats.md" in line


def test_an_included_file_may_define_formats_but_not_twice(tmp_path):
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.toml").write_text("[formats.acme]\ndescription = 'one'\n")
    (tmp_path / "more" / "b.toml").write_text("[formats.acme]\ndescription = 'two'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, 'include = ["more/*.toml"]\n', carriers=False), env={})
    assert caught.value.key == "formats.acme" and "defined twice" in caught.value.reason
    (tmp_path / "more" / "b.toml").write_text("[carriers.b]\nsame_name_rule = 1\n[database]\nurl = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, 'include = ["more/*.toml"]\n', carriers=False), env={})
    assert "may only define [carriers.*], [formats.*] and [tariffs.*]" in caught.value.reason


# -- formats parsed (needs the formats engine, ingest.formats) ------------------------------------------------

ACME = """
[formats.acme-cdr]
description = "Acme's calls"
kind = "delimited"
header = "first"
key = ["CallID"]
[formats.acme-cdr.fields]
carrier_record_id = { column = "CallID" }
start_time = { column = "Start", type = "datetime" }
billed_seconds = { column = "Duration", type = "int" }
"""


def engine():
    return pytest.importorskip("ingest.formats.spec", reason="the formats engine (ingest.formats) is not here yet")


def test_a_format_from_an_included_file_is_parsed_at_load_and_known_by_its_file(tmp_path):
    engine()
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "acme.toml").write_text(ACME)
    config = load_config(write(tmp_path, 'include = ["formats/*.toml"]\n[carriers.acme]\nformat = "acme-cdr"\n',
                               carriers=False), env={})
    assert config.format_definitions["acme-cdr"].origin == str(tmp_path / "formats" / "acme.toml")
    assert config.format_of("acme") is config.formats["acme-cdr"] is config.format_of(config.carriers["acme"])
    assert config.carriers_using("acme-cdr") == ("acme",)
    # Every built-in is there too, parsed when asked for.
    assert {"hero-feed", "techconnections-feed", "asterisk-csv", "freeswitch-csv", "cucm-cdr",
            "generic-charges-csv"} <= set(config.formats)


def test_a_configured_format_with_a_built_ins_name_replaces_it(tmp_path):
    engine()
    config = load_config(write(tmp_path, ACME.replace("acme-cdr", "hero-feed") + "[carriers.x]\nparser = 'hero'\n",
                               carriers=False), env={})
    definition = config.format_definitions["hero-feed"]
    assert not definition.builtin and definition.origin == str(tmp_path / "cdr.toml")
    assert definition.table["description"] == "Acme's calls"
    assert config.format_of("x") is config.formats["hero-feed"]


def test_a_mistake_in_a_configured_format_fails_at_load_naming_its_key(tmp_path):
    engine()
    text = ACME + "colour = 'red'\n"  # a key of [formats.acme-cdr.fields]: an unknown field
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, carriers=False), env={})
    assert "formats.acme-cdr" in caught.value.key and "colour" in str(caught.value)


def test_a_carriers_parser_is_compiled_once_per_configuration(tmp_path):
    engine()
    config = load_config(REPO / "config" / "cdr.toml", env={})
    first, second = config.parser_for("hero"), config.parser_for("hero")
    assert first is not second  # each counts its own file
    assert first.compiled is second.compiled and first.spec is config.format_of("hero")
