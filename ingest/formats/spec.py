"""A file format's configuration (``[formats.<name>]``, docs/formats.md), checked once into a FormatSpec.

:func:`parse_format` refuses every bad key or value with a ConfigError naming the key path and the reason; what
it returns is valid (constants are converted once, here), so that reading a file never fails on the format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

from ingest.errors import ConfigError
from ingest.layouts import LAYOUTS, Layout

FORMAT_KINDS = ("delimited", "fixed", "json", "auto", "radius-detail")
HEADER_MODES = ("first", "none", "names+types", "auto")  # and skip:N
RECORD_KINDS = ("call", "charge", "leg")
TYPES = ("text", "int", "decimal", "date", "datetime", "epoch", "duration", "cisco-time", "cisco-clock-flag")
# The types a field of each layout kind may be read as; the first is the default.
TYPES_BY_KIND = {
    # int: a whole number, kept as its digits (an id that must be numeric); cisco-clock-flag: the mark before a
    # Cisco time (* or .), null when there is none
    "text": ("text", "int", "cisco-clock-flag"),
    "int": ("int", "duration"),
    "money": ("decimal",),
    "date": ("date", "datetime"),
    "utc": ("datetime", "epoch", "cisco-time"),
}
UNITS = {"epoch": ("seconds", "milliseconds"), "duration": ("seconds", "hh:mm:ss", "minutes")}
# strftime directives Arrow's strptime and Python's both read.
_DIRECTIVES = set("aAbBdHIjmMpSyYzZfeTDFR%")


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical field of one layout gets its value."""

    name: str
    kind: str  # the layout's kind of the field: text, int, money, date, utc
    type: str  # how the text is read (see TYPES_BY_KIND)
    column: str | None = None
    also: str | None = None
    value: str | None = None  # a constant (validated at parse time)
    format: str | None = None
    timezone: str | None = None
    unit: str | None = None
    map: tuple[tuple[str, str], ...] = ()
    default: str | None = None
    required: bool = False  # an empty value fails the file (set too for the layout's required fields)


@dataclass(frozen=True)
class FixedColumn:
    name: str
    start: int  # 1-based, in characters
    width: int


@dataclass(frozen=True)
class Condition:
    column: str
    values: tuple[str, ...]  # equals x -> (x,); in [..] -> the list
    ignore_case: bool = False


@dataclass(frozen=True)
class Rule:
    when: tuple[Condition, ...]
    record: str  # call | charge | skip


@dataclass(frozen=True)
class FormatSpec:
    name: str
    description: str = ""
    kind: str = "delimited"
    delimiter: str = ","  # one character, or "auto"
    quote: str = '"'  # "" for none
    header: str = "first"  # first | none | skip | names+types | auto
    header_skip: int = 0  # skip:N
    columns: tuple[str, ...] = ()
    fixed_columns: tuple[FixedColumn, ...] = ()
    column_names: str = "exact"  # exact | loose
    min_columns: int | None = None
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    decimal_separator: str = "."
    timezone: str = "UTC"
    record: str = "call"
    rules: tuple[Rule, ...] = ()
    key: tuple[str, ...] | str = "row"  # column names, or "row"
    duplicate_rows: Mapping[str, str | None] = field(default_factory=dict)  # kind -> once|distinct|None (default)
    fields: Mapping[str, Mapping[str, FieldSpec]] = field(default_factory=dict)  # kind -> field -> spec
    hook: str | None = None
    key_else: str | None = None  # "row": a record missing a key column is keyed by its row's hash
    avpairs: tuple[str, ...] = ()  # (radius-detail) attributes whose "name=value" values give attributes

    @property
    def kinds(self) -> frozenset[str]:
        """The record kinds this format can produce."""
        return frozenset({self.record} | {rule.record for rule in self.rules}) - {"skip"}

    def layout(self, kind: str) -> Layout:
        return LAYOUTS[kind]

    def duplicates(self, kind: str) -> str:
        return self.duplicate_rows.get(kind) or LAYOUTS[kind].default_duplicate_rows


_FORMAT_KEYS = {"kind", "delimiter", "quote", "header", "columns", "column_names", "min_columns", "encoding",
                "encoding_errors", "decimal_separator", "timezone", "record", "records", "key", "duplicate_rows",
                "hook", "description", "fields", "call_fields", "charge_fields", "leg_fields", "key_else",
                "avpairs"}
# The keys of a delimited file's shape, which a detail file (kind "radius-detail") does not take.
_NOT_FOR_DETAIL = ("delimiter", "quote", "header", "columns", "min_columns", "decimal_separator")
# What a radius-detail format reads as name=value pairs unless it says otherwise.
DEFAULT_AVPAIRS = ("Cisco-AVPair",)
_FIELD_KEYS = {"column", "also", "value", "type", "format", "timezone", "unit", "map", "default", "required"}


def _str(where: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and value == ""):
        raise ConfigError(where, "must be a non-empty text" if not empty else "must be a text")
    return value


def _choice(where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(where, f"must be one of {', '.join(repr(c) for c in choices)}")
    return value


def check_timezone(where: str, name: Any) -> str:
    _str(where, name)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(where, f"not an IANA time zone: {name!r}") from None
    return name


def check_strftime(where: str, pattern: Any) -> str:
    _str(where, pattern)
    for match in re.finditer(r"%(.?)", pattern):
        if match.group(1) not in _DIRECTIVES:
            raise ConfigError(where, f"unknown strftime directive %{match.group(1)} in {pattern!r}")
    if not re.search(r"%[dejDFYy]|%[HIMST]", pattern):
        raise ConfigError(where, f"names no date or time part: {pattern!r}")
    return pattern


def _columns(where: str, table: Mapping[str, Any], kind: str) -> tuple[tuple[str, ...], tuple[FixedColumn, ...]]:
    value = table.get("columns")
    if value is None:
        return (), ()
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}.columns", "must be a non-empty list")
    if kind == "fixed":
        fixed = []
        for i, col in enumerate(value):
            at = f"{where}.columns[{i}]"
            if not isinstance(col, dict) or set(col) != {"name", "start", "width"}:
                raise ConfigError(at, "must be a table { name, start, width }")
            for key in ("start", "width"):
                if not isinstance(col[key], int) or isinstance(col[key], bool) or col[key] < 1:
                    raise ConfigError(f"{at}.{key}", "must be a whole number >= 1")
            fixed.append(FixedColumn(_str(f"{at}.name", col["name"]), col["start"], col["width"]))
        names = tuple(c.name for c in fixed)
    else:
        names = tuple(_str(f"{where}.columns[{i}]", col) for i, col in enumerate(value))
        fixed = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{where}.columns[{i}]", f"column {name!r} listed twice")
        seen.add(name)
    return names, tuple(fixed)


def column_key(name: str) -> str:
    """A column name matched loosely: whatever its case, spaces, underscores and hyphens."""
    return re.sub(r"[\s_-]+", "", name.strip("\ufeff")).lower()


def parse_format(name: str, table: dict, where: str | None = None) -> FormatSpec:
    """Check one ``[formats.NAME]`` table; ConfigError(key path, reason) for anything wrong."""
    where = where or f"formats.{name}"
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table")
    for key in table:
        if key not in _FORMAT_KEYS:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_FORMAT_KEYS))})")
    kind = _choice(f"{where}.kind", table.get("kind", "delimited"), FORMAT_KINDS)
    if kind == "radius-detail":
        for key in _NOT_FOR_DETAIL:
            if key in table:
                raise ConfigError(f"{where}.{key}", 'not for kind "radius-detail" (its records are attribute lines)')
    elif "avpairs" in table:
        raise ConfigError(f"{where}.avpairs", 'only for kind "radius-detail"')
    delimiter = table.get("delimiter", "auto" if kind == "auto" else ",")
    if not isinstance(delimiter, str) or (len(delimiter) != 1 and delimiter != "auto") or delimiter in "\r\n":
        raise ConfigError(f"{where}.delimiter", 'must be one character (not a newline), or "auto"')
    if kind == "auto" and delimiter != "auto":
        raise ConfigError(f"{where}.delimiter", 'kind "auto" decides the delimiter per file: leave it out')
    quote = table.get("quote", '"')
    if not isinstance(quote, str) or len(quote) > 1 or quote in ("\r", "\n") or (quote and quote == delimiter):
        raise ConfigError(f"{where}.quote", 'must be one character other than the delimiter, or "" for none')
    header_value = table.get("header", "none" if kind == "fixed" else "first")
    header_skip = 0
    if isinstance(header_value, str) and re.fullmatch(r"skip:\d+", header_value):
        header, header_skip = "skip", int(header_value[5:])
    else:
        header = _choice(f"{where}.header", header_value, HEADER_MODES + ("skip:N",))
        if header == "skip:N":
            raise ConfigError(f"{where}.header", "skip:N takes a number of lines: skip:2")
    if kind == "fixed" and header not in ("none", "skip"):
        raise ConfigError(f"{where}.header", 'a fixed-width file takes "none" or "skip:N"')
    columns, fixed_columns = _columns(where, table, kind)
    if not columns and (header in ("none", "skip", "auto") or kind == "fixed"):
        raise ConfigError(f"{where}.columns", f'required with header "{header_value}"'
                          if kind != "fixed" else "required for a fixed-width file")
    column_names = _choice(f"{where}.column_names", table.get("column_names", "exact"), ("exact", "loose"))
    if column_names == "loose":
        keys: dict[str, str] = {}
        for i, col in enumerate(columns):
            if column_key(col) in keys:
                raise ConfigError(f"{where}.columns[{i}]", f"{col!r} and {keys[column_key(col)]!r} are one name "
                                  "with loose column names")
            keys[column_key(col)] = col
    min_columns = table.get("min_columns")
    if min_columns is not None:
        if header not in ("none", "skip", "auto") or kind in ("fixed", "json"):
            raise ConfigError(f"{where}.min_columns", 'only for delimited files with header "none", "skip:N" or "auto"')
        if not isinstance(min_columns, int) or isinstance(min_columns, bool) or not 1 <= min_columns <= len(columns):
            raise ConfigError(f"{where}.min_columns", f"must be a whole number from 1 to {len(columns)} (the columns)")
    encoding = _str(f"{where}.encoding", table.get("encoding", "utf-8"))
    import codecs

    try:
        codecs.getincrementaldecoder(encoding)
    except LookupError:
        raise ConfigError(f"{where}.encoding", f"unknown encoding {encoding!r}") from None
    encoding_errors = _choice(f"{where}.encoding_errors", table.get("encoding_errors", "strict"), ("strict", "replace"))
    decimal_separator = _choice(f"{where}.decimal_separator", table.get("decimal_separator", "."), (".", ","))
    if decimal_separator == delimiter:
        raise ConfigError(f"{where}.decimal_separator", "is the delimiter")
    timezone = check_timezone(f"{where}.timezone", table.get("timezone", "UTC"))
    record = _choice(f"{where}.record", table.get("record", "call"), RECORD_KINDS)
    rules = _rules(f"{where}.records", table.get("records", []))
    key_value = table.get("key", "row")
    if key_value == "row":
        key: tuple[str, ...] | str = "row"
    elif isinstance(key_value, list) and key_value:
        key = tuple(_str(f"{where}.key[{i}]", col) for i, col in enumerate(key_value))
    else:
        raise ConfigError(f"{where}.key", 'must be a list of columns, or "row"')
    key_else = table.get("key_else")
    if key_else is not None:
        _choice(f"{where}.key_else", key_else, ("row",))
        if key == "row":
            raise ConfigError(f"{where}.key_else", "only with a key of columns")
    avpairs_value = table.get("avpairs", list(DEFAULT_AVPAIRS) if kind == "radius-detail" else [])
    if not isinstance(avpairs_value, list):
        raise ConfigError(f"{where}.avpairs", "must be a list of attribute names")
    avpairs = tuple(_str(f"{where}.avpairs[{i}]", name) for i, name in enumerate(avpairs_value))
    kinds = frozenset({record} | {rule.record for rule in rules}) - {"skip"}
    duplicate_rows = _duplicates(f"{where}.duplicate_rows", table.get("duplicate_rows"))
    hook = table.get("hook")
    if hook is not None and (not isinstance(hook, str) or not re.fullmatch(r"[\w.]+:\w+", hook)):
        raise ConfigError(f"{where}.hook", 'must be "module:function"')
    description = _str(f"{where}.description", table.get("description", ""), empty=True)
    fields = _all_fields(where, table, kinds, decimal_separator, timezone)
    spec = FormatSpec(
        name=name, description=description, kind=kind, delimiter=delimiter, quote=quote, header=header,
        header_skip=header_skip, columns=columns, fixed_columns=fixed_columns, column_names=column_names,
        min_columns=min_columns, encoding=encoding, encoding_errors=encoding_errors,
        decimal_separator=decimal_separator, timezone=timezone, record=record, rules=rules, key=key,
        duplicate_rows=duplicate_rows, fields=fields, hook=hook, key_else=key_else, avpairs=avpairs)
    _check_column_refs(where, spec, table)
    return spec


def _rules(where: str, value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        raise ConfigError(where, "must be a list of tables ([[...records]])")
    rules = []
    for i, rule in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(at, "must be a table")
        for key in rule:
            if key not in ("when", "record"):
                raise ConfigError(f"{at}.{key}", "unknown key (known: record, when)")
        if "when" not in rule:
            raise ConfigError(f"{at}.when", "required")
        record = _choice(f"{at}.record", rule.get("record"), (*RECORD_KINDS, "skip"))
        when = rule["when"]
        conditions = when if isinstance(when, list) else [when]
        if not conditions:
            raise ConfigError(f"{at}.when", "must hold at least one condition")
        parsed = []
        for j, cond in enumerate(conditions):
            cat = f"{at}.when" + (f"[{j}]" if isinstance(when, list) else "")
            if not isinstance(cond, dict):
                raise ConfigError(cat, "must be a table { column, equals | in, ignore_case }")
            for key in cond:
                if key not in ("column", "equals", "in", "ignore_case"):
                    raise ConfigError(f"{cat}.{key}", "unknown key (known: column, equals, ignore_case, in)")
            column = _str(f"{cat}.column", cond.get("column"))
            if ("equals" in cond) == ("in" in cond):
                raise ConfigError(cat, "takes one of equals or in")
            if "equals" in cond:
                values = (_str(f"{cat}.equals", cond["equals"], empty=True).strip(),)
            else:
                listed = cond["in"]
                if not isinstance(listed, list) or not listed:
                    raise ConfigError(f"{cat}.in", "must be a non-empty list of texts")
                values = tuple(_str(f"{cat}.in[{k}]", v, empty=True).strip() for k, v in enumerate(listed))
            ignore_case = cond.get("ignore_case", False)
            if not isinstance(ignore_case, bool):
                raise ConfigError(f"{cat}.ignore_case", "must be true or false")
            if ignore_case:
                values = tuple(v.lower() for v in values)
            parsed.append(Condition(column, values, ignore_case))
        rules.append(Rule(tuple(parsed), record))
    return tuple(rules)


def _duplicates(where: str, value: Any) -> dict[str, str | None]:
    if value is None:
        return {}
    if isinstance(value, str):
        _choice(where, value, ("once", "distinct"))
        return {kind: value for kind in RECORD_KINDS}
    if isinstance(value, dict):
        out: dict[str, str | None] = {}
        for kind, v in value.items():
            _choice(f"{where}.{kind}", kind, RECORD_KINDS)
            out[kind] = _choice(f"{where}.{kind}", v, ("once", "distinct"))
        return out
    raise ConfigError(where, 'must be "once" or "distinct", or a table of them by record kind')


def _all_fields(where: str, table: Mapping[str, Any], kinds: frozenset[str], decimal_separator: str,
                timezone: str) -> dict[str, dict[str, FieldSpec]]:
    sections: dict[str, Any] = {}
    for section in ("fields", *(f"{kind}_fields" for kind in RECORD_KINDS)):
        value = table.get(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{section}", "must be a table of fields")
        sections[section] = value
    out: dict[str, dict[str, FieldSpec]] = {}
    for kind in RECORD_KINDS:
        layout = LAYOUTS[kind]
        merged: dict[str, FieldSpec] = {}
        for section in ("fields", f"{kind}_fields"):
            for fname, ftable in sections[section].items():
                at = f"{where}.{section}.{fname}"
                if section == "fields":
                    if not any(fname in LAYOUTS[k].names for k in RECORD_KINDS):
                        raise ConfigError(at, "no such field in the call, charge or leg layout")
                    if fname not in layout.names:
                        continue
                elif fname not in layout.names:
                    raise ConfigError(at, f"no such field in the {kind} layout")
                merged[fname] = parse_field(at, fname, layout.field(fname).kind, ftable, decimal_separator,
                                            timezone, layout.field(fname).required)
        if kind in kinds:
            out[kind] = merged
    return out


def parse_field(where: str, name: str, kind: str, table: Any, decimal_separator: str = ".",
                timezone: str = "UTC", layout_required: bool = False) -> FieldSpec:
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table { column = ..., ... }")
    for key in table:
        if key not in _FIELD_KEYS:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_FIELD_KEYS))})")
    allowed = TYPES_BY_KIND[kind]
    ftype = table.get("type", allowed[0])
    if ftype not in allowed:
        if ftype not in TYPES:
            raise ConfigError(f"{where}.type", f"unknown type {ftype!r} (known: {', '.join(TYPES)})")
        raise ConfigError(f"{where}.type", f"a {kind} field is read as {' or '.join(allowed)}, not {ftype}")
    column = table.get("column")
    value = table.get("value")
    if (column is None) == (value is None):
        raise ConfigError(where, "takes one of column or value")
    if column is not None:
        _str(f"{where}.column", column)
    also = table.get("also")
    if also is not None:
        _str(f"{where}.also", also)
        if column is None:
            raise ConfigError(f"{where}.also", "needs a column")
    fmt = table.get("format")
    if ftype in ("cisco-time", "cisco-clock-flag"):
        for key in ("format", "timezone", "unit"):
            if key in table:
                raise ConfigError(f"{where}.{key}", f"not for {ftype} (a Cisco time names its own zone)")
    if fmt is not None and ftype in UNITS:
        # A duration's or an epoch's format is its unit: `{ type = "duration", format = "hh:mm:ss" }` reads as
        # `unit = "hh:mm:ss"` does.
        _choice(f"{where}.format", fmt, UNITS[ftype])
        if table.get("unit", fmt) != fmt:
            raise ConfigError(f"{where}.format", "give the unit once (format and unit differ)")
        table = {**table, "unit": fmt}
        fmt = None
    elif fmt is not None:
        if ftype not in ("date", "datetime"):
            raise ConfigError(f"{where}.format", "only for date and datetime")
        check_strftime(f"{where}.format", fmt)
    tz = table.get("timezone")
    if tz is not None:
        if ftype != "datetime":
            raise ConfigError(f"{where}.timezone", "only for datetime")
        check_timezone(f"{where}.timezone", tz)
    unit = table.get("unit")
    if unit is not None:
        if ftype not in UNITS:
            raise ConfigError(f"{where}.unit", "only for epoch and duration")
        _choice(f"{where}.unit", unit, UNITS[ftype])
    elif ftype in UNITS:
        unit = "seconds"
    mapping = table.get("map", {})
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfigError(f"{where}.map", "must be a table of texts")
    default = table.get("default")
    if default is not None:
        _str(f"{where}.default", default, empty=True)
        if value is not None:
            raise ConfigError(f"{where}.default", "a constant value needs no default")
    if value is not None:
        _str(f"{where}.value", value, empty=True)
    required = table.get("required", False)
    if not isinstance(required, bool):
        raise ConfigError(f"{where}.required", "must be true or false")
    spec = FieldSpec(name=name, kind=kind, type=ftype, column=column, also=also, value=value, format=fmt,
                     timezone=tz, unit=unit, map=tuple((k.strip(), v) for k, v in mapping.items()),
                     default=default, required=required or layout_required)
    # Constants and defaults are converted once, here: a bad one is a configuration error, not a file's.
    from .convert import convert_constant

    for key, text in (("value", value), ("default", default)):
        if text is not None and text.strip():
            reason = convert_constant(spec, text, decimal_separator, timezone)
            if reason is not None:
                raise ConfigError(f"{where}.{key}", f"{reason}: {text!r}")
    if value is not None and spec.required and not value.strip():
        raise ConfigError(f"{where}.value", "the field is required: the value must not be empty")
    return spec


def _check_column_refs(where: str, spec: FormatSpec, table: Mapping[str, Any]) -> None:
    """With positional columns (header none/skip:N, fixed width), every column named must be one of them."""
    if spec.header not in ("none", "skip") or not spec.columns:
        return
    known = {spec_key(spec, c) for c in spec.columns}

    def check(at: str, col: str) -> None:
        if spec_key(spec, col) not in known:
            raise ConfigError(at, f"no column {col!r} in columns")

    if isinstance(spec.key, tuple):
        for i, col in enumerate(spec.key):
            check(f"{where}.key[{i}]", col)
    for i, rule in enumerate(spec.rules):
        for cond in rule.when:
            check(f"{where}.records[{i}].when", cond.column)
    for kind, fields in spec.fields.items():
        for fname, f in fields.items():
            section = "fields" if fname in table.get("fields", {}) else f"{kind}_fields"
            for key in ("column", "also"):
                col = getattr(f, key)
                if col is not None:
                    check(f"{where}.{section}.{fname}.{key}", col)


def spec_key(spec: FormatSpec, name: str) -> str:
    """How a column name is matched in this format (loose or exact)."""
    return column_key(name) if spec.column_names == "loose" else name


def builtin_format_tables() -> dict[str, dict]:
    """{name: table} of the built-in formats, from ``ingest/formats/builtin/*.toml`` (``[formats.<name>]``)."""
    out: dict[str, dict] = {}
    folder = resources.files("ingest.formats") / "builtin"
    if not folder.is_dir():
        return out
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        for fname, ftable in data.get("formats", {}).items():
            out[fname] = ftable
    return out


__all__ = ["Condition", "FieldSpec", "FixedColumn", "FormatSpec", "Rule", "builtin_format_tables", "column_key",
           "parse_format", "spec_key"]
