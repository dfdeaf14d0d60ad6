"""Tariffs, as the configuration states them (``[tariffs.NAME]``), typed and checked once at start.

A retail tariff prices what a customer is billed; customers name one in their ``tariff`` column. A wholesale
tariff (``wholesale = true``) prices what a carrier is expected to cost, for margin tracking; a carrier names
one as ``[carriers.NAME] wholesale_tariff``. Both have the same rules:

- ``[[tariffs.NAME.fixed]]`` prices charges (carrier transactions). Match keys, each optional:
  ``transaction_type``, ``feature``, ``number_type``, ``carrier``. ``charge``: ``fixed`` (``amount`` per unit of the
  charge's quantity), ``pro-rata`` (``amount`` for a whole month, times the charge's period month by month: the
  days it covers of each month over that month's days, summed, so 10-31 October is 22/31 and 17 December to 16
  January one whole month) or ``markup`` (the carrier cost plus ``markup_percent``).
- ``[[tariffs.NAME.usage]]`` prices calls. Match keys, each optional: ``call_type``, ``direction``, ``carrier``.
  ``per_minute`` on the billed seconds (rounded up to ``increment_seconds``, at least ``minimum_seconds`` for a
  call that lasted at all), or ``markup_percent`` on the carrier's charge.

The most specific rate wins: the one with the most match keys given; among equals, the first in the file. Money
and percentages are written as strings (``amount = "12.00"``): a TOML float is refused, because it is not exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ConfigError
from ..layouts import MONEY_SCALE

FIXED_CHARGES = ("fixed", "pro-rata", "markup")
FIXED_KEYS = ("transaction_type", "feature", "number_type", "carrier")
USAGE_KEYS = ("call_type", "direction", "carrier")


@dataclass(frozen=True)
class FixedRate:
    """One ``[[tariffs.NAME.fixed]]`` rate. ``index``: its place in the tariff's list (0 first)."""

    index: int
    charge: str  # fixed | pro-rata | markup
    amount: Decimal | None = None  # fixed, pro-rata
    markup_percent: Decimal | None = None  # markup
    transaction_type: str | None = None
    feature: str | None = None
    number_type: str | None = None
    carrier: str | None = None

    @property
    def specificity(self) -> int:
        """How many match keys it gives: the most specific matching rate wins."""
        return sum(getattr(self, key) is not None for key in FIXED_KEYS)


@dataclass(frozen=True)
class UsageRate:
    """One ``[[tariffs.NAME.usage]]`` rate: ``per_minute`` or ``markup_percent``, never both."""

    index: int
    per_minute: Decimal | None = None
    markup_percent: Decimal | None = None
    increment_seconds: int = 1
    minimum_seconds: int = 0
    call_type: str | None = None
    direction: str | None = None
    carrier: str | None = None

    @property
    def specificity(self) -> int:
        return sum(getattr(self, key) is not None for key in USAGE_KEYS)


@dataclass(frozen=True)
class Tariff:
    name: str
    wholesale: bool = False
    fixed: tuple[FixedRate, ...] = ()
    usage: tuple[UsageRate, ...] = ()


def parse_tariffs(table: Any, key: str = "tariffs") -> dict[str, Tariff]:
    """Every ``[tariffs.NAME]`` of the configuration, checked. ConfigError names the key and the reason."""
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table of tariff tables")
    return {name: _tariff(name, entry, f"{key}.{name}") for name, entry in sorted(table.items())}


def _tariff(name: str, table: Any, key: str) -> Tariff:
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    _only(table, key, {"wholesale", "fixed", "usage"})
    wholesale = table.get("wholesale", False)
    if not isinstance(wholesale, bool):
        raise ConfigError(f"{key}.wholesale", "must be true or false")
    fixed = tuple(_fixed(i, entry, f"{key}.fixed[{i}]") for i, entry in enumerate(_array(table, "fixed", key)))
    usage = tuple(_usage(i, entry, f"{key}.usage[{i}]") for i, entry in enumerate(_array(table, "usage", key)))
    return Tariff(name=name, wholesale=wholesale, fixed=fixed, usage=usage)


def _array(table: dict, name: str, key: str) -> list:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ConfigError(f"{key}.{name}", f"must be an array of tables ([[{key}.{name}]])")
    return value


def _fixed(index: int, table: dict, key: str) -> FixedRate:
    _only(table, key, {"charge", "amount", "markup_percent", *FIXED_KEYS})
    charge = table.get("charge")
    if charge not in FIXED_CHARGES:
        raise ConfigError(f"{key}.charge", f"must be one of {', '.join(FIXED_CHARGES)}")
    if charge == "markup":
        _absent(table, key, "amount", "a markup takes markup_percent")
        markup, amount = _decimal(table, "markup_percent", key, required=True), None
    else:
        _absent(table, key, "markup_percent", f"a {charge} charge takes amount")
        markup, amount = None, _decimal(table, "amount", key, required=True)
    return FixedRate(index=index, charge=charge, amount=amount, markup_percent=markup,
                     **{name: _text(table, name, key) for name in FIXED_KEYS})


def _usage(index: int, table: dict, key: str) -> UsageRate:
    _only(table, key, {"per_minute", "markup_percent", "increment_seconds", "minimum_seconds", *USAGE_KEYS})
    per_minute = _decimal(table, "per_minute", key)
    markup = _decimal(table, "markup_percent", key)
    if (per_minute is None) == (markup is None):
        raise ConfigError(key, "give either per_minute or markup_percent")
    increment = _whole(table, "increment_seconds", key, default=1, minimum=1)
    minimum = _whole(table, "minimum_seconds", key, default=0, minimum=0)
    return UsageRate(index=index, per_minute=per_minute, markup_percent=markup, increment_seconds=increment,
                     minimum_seconds=minimum, **{name: _text(table, name, key) for name in USAGE_KEYS})


def _only(table: dict, key: str, allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _absent(table: dict, key: str, name: str, why: str) -> None:
    if name in table:
        raise ConfigError(f"{key}.{name}", f"does not apply here: {why}")


def _text(table: dict, name: str, key: str) -> str | None:
    value = table.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{key}.{name}", "must be a non-empty string")
    return value


def _whole(table: dict, name: str, key: str, default: int, minimum: int) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}.{name}", f"must be a whole number of at least {minimum}")
    return value


def _decimal(table: dict, name: str, key: str, required: bool = False) -> Decimal | None:
    """An exact decimal written as a string (or a whole number), at most MONEY_SCALE decimal places."""
    value = table.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{key}.{name}", "is required")
        return None
    if isinstance(value, float):
        raise ConfigError(f"{key}.{name}", f'write it as a string ("{value}"): a TOML float is not exact')
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{key}.{name}", 'must be a decimal written as a string, e.g. "12.00"')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{key}.{name}", f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ConfigError(f"{key}.{name}", f"{value!r} is not a decimal number")
    if number < 0:
        raise ConfigError(f"{key}.{name}", "must not be negative")
    if number.as_tuple().exponent < -MONEY_SCALE:  # type: ignore[operator]
        raise ConfigError(f"{key}.{name}", f"{value!r} has more than {MONEY_SCALE} decimal places")
    return number
