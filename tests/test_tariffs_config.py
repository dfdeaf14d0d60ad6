"""Tariffs, carriers' product maps and wholesale tariffs in the configuration: typed, exact, refused at start with
the key and the reason when wrong."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ingest.billing.tariffs import FixedRate, UsageRate
from ingest.config import load_config
from ingest.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

TARIFFS = """
[tariffs.standard]
[[tariffs.standard.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "12.00"
[[tariffs.standard.fixed]]
transaction_type = "broadband"
number_type = "fttp"
charge = "pro-rata"
amount = "30"
[[tariffs.standard.fixed]]
charge = "markup"
markup_percent = "20"
[[tariffs.standard.usage]]
call_type = "Mobile"
per_minute = "0.15"
increment_seconds = 60
minimum_seconds = 60
[[tariffs.standard.usage]]
markup_percent = "10"
[tariffs.hero-wholesale]
wholesale = true
[[tariffs.hero-wholesale.usage]]
per_minute = "0.012345"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cdr.toml"
    path.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n' + text)
    return path


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert "\n" not in str(caught.value)
    return caught.value


def test_tariffs_products_and_wholesale_tariff_are_read_exactly(tmp_path):
    config = load_config(write(tmp_path, TARIFFS + """
[carriers.acme]
format = "generic-charges-csv"
wholesale_tariff = "hero-wholesale"
[carriers.acme.products]
"LR01" = "line-rental"
"0016" = "broadband"
[billing]
currency = "EUR"
"""), env={})
    standard = config.tariffs["standard"]
    assert not standard.wholesale and config.tariffs["hero-wholesale"].wholesale
    assert standard.fixed == (
        FixedRate(index=0, charge="fixed", amount=Decimal("12.00"), transaction_type="line-rental"),
        FixedRate(index=1, charge="pro-rata", amount=Decimal("30"), transaction_type="broadband", number_type="fttp"),
        FixedRate(index=2, charge="markup", markup_percent=Decimal("20")),
    )
    assert [rate.specificity for rate in standard.fixed] == [1, 2, 0]
    assert standard.usage == (
        UsageRate(index=0, per_minute=Decimal("0.15"), increment_seconds=60, minimum_seconds=60, call_type="Mobile"),
        UsageRate(index=1, markup_percent=Decimal("10")),
    )
    assert str(config.tariffs["hero-wholesale"].usage[0].per_minute) == "0.012345"
    acme = config.carriers["acme"]
    assert acme.products == {"LR01": "line-rental", "0016": "broadband"}  # codes stay text
    assert acme.wholesale_tariff == "hero-wholesale"
    assert config.billing.currency == "EUR"
    assert config.carriers["hero"].products == {} and config.carriers["hero"].wholesale_tariff is None


def test_no_tariffs_and_the_default_currency(tmp_path):
    config = load_config(write(tmp_path, ""), env={})
    assert config.tariffs == {} and config.billing.currency == "GBP"


def test_an_included_file_may_define_tariffs(tmp_path):
    (tmp_path / "tariffs.toml").write_text(TARIFFS)
    config = load_config(_with_include(tmp_path, "tariffs.toml"), env={})
    assert set(config.tariffs) == {"standard", "hero-wholesale"}


def _with_include(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "cdr.toml"
    path.write_text(f'include = ["{REPO}/config/carriers/*.toml", "{name}"]\n')
    return path


@pytest.mark.parametrize("text, key, reason", [
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\namount = 12.00\n', "tariffs.t.fixed[0].amount",
     'write it as a string ("12.0"): a TOML float is not exact'),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "flat"\namount = "1"\n', "tariffs.t.fixed[0].charge",
     "must be one of fixed, pro-rata, markup"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\n', "tariffs.t.fixed[0].amount", "is required"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "markup"\namount = "1"\nmarkup_percent = "5"\n',
     "tariffs.t.fixed[0].amount", "does not apply here: a markup takes markup_percent"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\namount = "0.0000001"\n', "tariffs.t.fixed[0].amount",
     "'0.0000001' has more than 6 decimal places"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\namount = "twelve"\n', "tariffs.t.fixed[0].amount",
     "'twelve' is not a decimal number"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\namount = "-1"\n', "tariffs.t.fixed[0].amount",
     "must not be negative"),
    ('[tariffs.t]\n[[tariffs.t.fixed]]\ncharge = "fixed"\namount = "1"\nproduct = "x"\n',
     "tariffs.t.fixed[0].product", "unknown key"),
    ('[tariffs.t]\n[[tariffs.t.usage]]\ncall_type = "Mobile"\n', "tariffs.t.usage[0]",
     "give either per_minute or markup_percent"),
    ('[tariffs.t]\n[[tariffs.t.usage]]\nper_minute = "0.1"\nmarkup_percent = "5"\n', "tariffs.t.usage[0]",
     "give either per_minute or markup_percent"),
    ('[tariffs.t]\n[[tariffs.t.usage]]\nper_minute = "0.1"\nincrement_seconds = 0\n',
     "tariffs.t.usage[0].increment_seconds", "must be a whole number of at least 1"),
    ('[tariffs.t]\nwholesale = "yes"\n', "tariffs.t.wholesale", "must be true or false"),
    ('[tariffs.t]\nfixed = "x"\n', "tariffs.t.fixed", "must be an array of tables"),
    ('[carriers.hero2]\nformat = "hero-feed"\nwholesale_tariff = "nope"\n', "carriers.hero2.wholesale_tariff",
     "'nope' is not a wholesale tariff (wholesale ones: none)"),
    ('[tariffs.retail]\n[carriers.hero2]\nformat = "hero-feed"\nwholesale_tariff = "retail"\n',
     "carriers.hero2.wholesale_tariff", "'retail' is not a wholesale tariff"),
    ('[carriers.hero2]\nformat = "hero-feed"\n[carriers.hero2.products]\nLR = 1\n', "carriers.hero2.products",
     "must map product codes to transaction types"),
    ('[billing]\ncurrency = "pounds"\n', "billing.currency", "is not an ISO 4217 code"),
    ('[billing]\nvat = "20"\n', "billing.vat", "unknown key"),
])
def test_wrong_tariffs_are_refused_naming_key_and_reason(tmp_path, text, key, reason):
    error = refused(tmp_path, text)
    assert error.key == key
    assert reason in error.reason
