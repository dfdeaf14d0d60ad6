"""Configuration: the shipped files load; bad configuration is refused at start with the key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.errors import ConfigError

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
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, carriers=False), env={})
    assert caught.value.key.endswith(key)
    assert reason in caught.value.reason


def test_the_cli_refuses_bad_configuration_at_start(tmp_path):
    from click.testing import CliRunner

    from ingest.cli import cli

    path = write(tmp_path, "[carriers.x]\nparser = 'nope'\n", carriers=False)
    result = CliRunner().invoke(cli, ["--config", str(path), "files"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: configuration error at carriers.x.parser: unknown parser 'nope'")
