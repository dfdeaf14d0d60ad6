"""Converting a column of text into a canonical field's values, vectorised (Arrow compute).

Each converter takes the trimmed, mapped text of one column (empty where the file gives nothing) and returns
the values in the layout's Arrow type (null where empty) and a mask of the rows whose text is not valid. A
column already in canonical form (what well-behaved carriers send) passes Arrow's strict casts and is taken
as it is; only a column that does not is run through the lenient normalisation, which also finds the bad rows.
"""

from __future__ import annotations

import re
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ingest.layouts import MONEY_SCALE

from .spec import FieldSpec

# A whole number that fits int64: up to 18 digits, or 19 starting 1-8 (leading zeros allowed).
_INT = r"^[+-]?0*(\d{1,18}|[1-8]\d{18})$"
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_UTC_FMT = "%Y-%m-%d %H:%M:%S"
# Money: a count of millionths in int64, so amounts from -9223372036854.775808 to 9223372036854.775807. Read
# through a decimal of 19 digits (13 before the point): wide enough for every such amount; the cast of its
# unscaled integers to int64 refuses what goes beyond.
_MONEY_DIGITS = 19
_MONEY = pa.decimal128(_MONEY_DIGITS, MONEY_SCALE)
_MONEY_UNSCALED = pa.decimal128(_MONEY_DIGITS, 0)
_MONEY_MAX = str(2 ** 63 - 1)  # the most millionths, and the most negative's digits below
_MONEY_MIN = str(2 ** 63)
OUT_OF_RANGE = (f"out of range (an amount is from -{_MONEY_MIN[:-MONEY_SCALE]}.{_MONEY_MIN[-MONEY_SCALE:]} "
                f"to {_MONEY_MAX[:-MONEY_SCALE]}.{_MONEY_MAX[-MONEY_SCALE:]})")


def reason(f: FieldSpec) -> str:
    """What a bad value of this field is not."""
    if f.type == "text":
        return "contains a NUL character"
    if f.type == "int":
        return "not a whole number (or out of range)"
    if f.type == "decimal":
        return f"not a decimal amount (at most {MONEY_SCALE} decimal places)"
    if f.type == "date":
        return f"not a date ({f.format})" if f.format else "not a date (YYYY-MM-DD, DD/MM/YYYY or YYYYMMDD)"
    if f.type == "datetime":
        return (f"not a date and time ({f.format})" if f.format
                else "not a date and time (YYYY-MM-DD HH:MM:SS, with T or a space, optional Z or offset)")
    if f.type == "epoch":
        return f"not a Unix time in {f.unit}"
    if f.type == "duration":
        return f"not a duration ({f.unit})"
    if f.type in ("cisco-time", "cisco-clock-flag"):
        return "not a Cisco time (such as '18:55:41.000 GMT+4 Tue Feb 11 2014', optionally after * or .)"
    raise ValueError(f.type)  # pragma: no cover


class Context:
    """What a conversion needs beyond the field: the format's decimal separator and time zone."""

    def __init__(self, decimal_separator: str = ".", timezone: str = "UTC"):
        self.decimal_separator = decimal_separator
        self.timezone = timezone


def gap_reason(zone: str) -> str:
    """Why a local time skipped when the clocks go forward is bad."""
    return (f"not a date and time: it does not exist in {zone} "
            "(a daylight saving gap: the clocks go forward past it)")


def convert(f: FieldSpec, values: pa.Array, ctx: Context, trimmed: bool = True,
            explain: list[tuple[pa.Array, str]] | None = None) -> tuple[pa.Array, pa.Array]:
    """(converted values, mask of bad rows). ``values``: the field's text, no nulls, trimmed unless ``trimmed``
    is false (text fields are taken as given); empty text gives null (text fields keep it) and is never bad
    here (required-ness is checked by the caller). Untrimmed text is first tried as it is: a column in canonical
    form converts without being trimmed. ``explain``, when given, receives (mask, reason) for bad rows with a
    more precise reason than :func:`reason` (an amount out of range, a time in a daylight saving gap); each
    mask is within the bad mask."""
    n = len(values)
    if not trimmed and not (f.type == "text" and f.kind == "text"):
        fast = _fast(f, values, ctx)
        if fast is not None:
            return fast, _none_bad(n)
        values = pc.utf8_trim_whitespace(values)
    if f.type == "text" and f.kind == "text":  # as given, but no NUL: PostgreSQL cannot store one in text
        data = values.buffers()[2]
        if data is None or b"\x00" not in data.to_pybytes():
            return values, _none_bad(n)
        bad = pc.fill_null(pc.match_substring(values, "\x00"), False)
        return values, bad
    empty = pc.equal(values, "")
    has_empty = pc.any(empty).as_py() if n else False
    present = pc.if_else(empty, pa.scalar(None, pa.string()), values) if has_empty else values
    converter = _CONVERTERS[f.type]
    out, ok, *notes = converter(f, present, ctx)
    if f.kind == "text":  # an id read as a whole number: kept as its canonical digits
        out = pc.cast(out, pa.string())
    # Bad: given (not empty) and not known good (an unknown, null, verdict is bad).
    bad = pc.invert(pc.fill_null(ok, False)) if ok is not None else _none_bad(n)
    if has_empty:
        bad = pc.and_kleene(bad, pc.invert(empty))
    out = pc.if_else(bad, pa.scalar(None, out.type), out) if ok is not None else out
    if explain is not None and ok is not None:
        for mask, why in (notes[0] if notes else ()):
            mask = pc.and_(pc.fill_null(mask, False), bad)
            if pc.any(mask).as_py():
                explain.append((mask, why))
    return out, bad


def _fast(f: FieldSpec, values: pa.Array, ctx: Context) -> pa.Array | None:
    """The column converted if every value is already canonical (no spaces, nothing empty); else None."""
    try:
        # Arrow's casts also read '0x10' (int) and '1e3' (decimal): only plain digits and signs go this way.
        if f.type == "int" and f.kind != "text" and _only(values, b"0123456789-"):
            return pc.cast(values, pa.int64())
        if f.type == "decimal" and ctx.decimal_separator == "." and _only(values, b"0123456789.-"):
            return _millionths(pc.cast(values, _MONEY))
        if f.type == "date" and not f.format:
            pc.cast(values, pa.date32())  # strict: exactly YYYY-MM-DD, a real day
            return None if pc.any(_year_zero(values)).as_py() else values
        if f.type == "datetime" and f.kind == "utc" and not f.format and (f.timezone or ctx.timezone) == "UTC":
            return _canonical_utc(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _only(values: pa.Array, allowed: bytes) -> bool:
    """Whether a text column's bytes are all among ``allowed`` (one C-speed pass)."""
    data = values.buffers()[2]
    return data is None or not data.to_pybytes().translate(None, allowed)


def _none_bad(n: int) -> pa.Array:
    return pc.fill_null(pa.nulls(n, pa.bool_()), False)


# Each: (values in the Arrow type of the field's kind, ok mask or None when every present value is good).
# Null in (empty) gives null out; the ok mask is null or True there.


def _int(f: FieldSpec, present: pa.Array, ctx: Context):
    if _only(present, b"0123456789-"):
        try:
            return pc.cast(present, pa.int64()), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    ok = pc.match_substring_regex(present, _INT)
    unsigned = pc.replace_substring_regex(present, r"^\+", "")  # Arrow's cast refuses a leading '+'
    return pc.cast(pc.if_else(ok, unsigned, None), pa.int64()), ok


def _decimal(f: FieldSpec, present: pa.Array, ctx: Context):
    """Money as int64 millionths; ok mask, and the rows out of range (well formed, but beyond int64)."""
    if ctx.decimal_separator == ",":  # '1,50'; a '.' (a thousands separator?) is refused
        present = pc.if_else(pc.match_substring(present, "."), pa.scalar("."), pc.replace_substring(present, ",", "."))
    ok = pc.match_substring_regex(present, _DECIMAL)
    if pc.all(pc.fill_null(ok, True)).as_py():
        try:
            return _millionths(pc.cast(present, _MONEY)), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    # Some value is malformed, has too many decimal places or is out of range: row by row, vectorised.
    parts = pc.extract_regex(pc.if_else(ok, present, None), r"^(?P<sign>[+-]?)0*(?P<int>\d*)(?:\.(?P<frac>\d*?)0*)?$")
    frac = pc.struct_field(parts, "frac")
    whole = pc.struct_field(parts, "int")
    ok = pc.and_kleene(ok, pc.less_equal(pc.utf8_length(frac), MONEY_SCALE))
    # The count of millionths, unsigned, without leading zeros: in range when it has fewer digits than the
    # int64 bound, or as many and is not above it (texts of equal length compare as numbers).
    magnitude = pc.binary_join_element_wise(whole, pc.utf8_rpad(frac, MONEY_SCALE, "0"), "")
    negative = pc.equal(pc.struct_field(parts, "sign"), "-")
    size = pc.utf8_length(whole)
    within = pc.or_kleene(
        pc.less(size, _MONEY_DIGITS - MONEY_SCALE),
        pc.and_kleene(pc.equal(size, _MONEY_DIGITS - MONEY_SCALE),
                      pc.less_equal(magnitude, pc.if_else(negative, _MONEY_MIN, _MONEY_MAX))))
    out_of_range = pc.and_kleene(ok, pc.invert(within))
    ok = pc.and_kleene(ok, within)
    digits = pc.binary_join_element_wise(pc.if_else(negative, "-", ""), magnitude, "")
    return pc.cast(pc.if_else(ok, digits, None), pa.int64()), ok, [(out_of_range, OUT_OF_RANGE)]


def _millionths(decimals: pa.Array) -> pa.Array:
    # The unscaled integers of the decimal are the millionths: the same storage, read at scale 0. The cast to
    # int64 refuses (ArrowInvalid) an amount beyond it.
    return pc.cast(decimals.view(_MONEY_UNSCALED), pa.int64())


def _date(f: FieldSpec, present: pa.Array, ctx: Context):
    if f.format:
        parsed, ok = _strptime(present, f.format)
        return pc.strftime(parsed, format="%Y-%m-%d"), ok
    try:
        pc.cast(present, pa.date32())  # strict: exactly YYYY-MM-DD, a real day
        if not pc.any(_year_zero(present)).as_py():
            return present, None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    iso = _to_iso_date(present)
    ok = pc.and_kleene(pc.match_substring_regex(iso, _ISO_DATE), _round_trips(iso, "%Y-%m-%d"))
    return pc.if_else(ok, iso, None), ok


def _datetime(f: FieldSpec, present: pa.Array, ctx: Context):
    zone = f.timezone or ctx.timezone
    if f.format:
        parsed, ok = _strptime(present, f.format)
        offset = None
        if "%z" not in f.format and "%Z" not in f.format:
            parsed = pc.cast(parsed, pa.timestamp("s")) if parsed.type.tz else parsed
        else:  # Arrow gives the instant (UTC) for a pattern with an offset
            parsed, offset = pc.cast(parsed, pa.timestamp("s", "UTC")), True
    else:
        if f.kind == "utc" and zone == "UTC":
            fast = _canonical_utc(present)
            if fast is not None:
                return fast, None
        parsed, ok, offset = _lenient_datetime(present)
    if f.kind == "date":  # the date as written, whatever its zone
        return pc.strftime(parsed, format="%Y-%m-%d"), ok
    if offset is True:
        return pc.strftime(pc.cast(parsed, pa.timestamp("s")), format=_UTC_FMT), ok
    utc, ok, gap = _to_utc(parsed, ok, offset, zone)
    notes = [] if gap is None else [(gap, gap_reason(zone))]
    return pc.strftime(utc, format=_UTC_FMT), ok, notes


def _to_utc(local: pa.Array, ok: pa.Array | None, offset: pa.Array | None, zone: str):
    """Naive timestamps to naive UTC: those with an offset (seconds east of UTC) by it, the others as local
    times in ``zone``. An ambiguous local time (the hour repeated when clocks go back) is taken as the earliest;
    one that does not exist (skipped when they go forward) is bad. (utc, ok, the rows in such a gap or None)."""
    gap = None
    if zone != "UTC":
        zoned = pc.assume_timezone(local, timezone=zone, ambiguous="earliest", nonexistent="earliest")
        utc = pc.cast(zoned, pa.timestamp("s"))
        exists = pc.equal(pc.cast(pc.local_timestamp(zoned), pa.timestamp("s")), local)
        if offset is not None:
            exists = pc.or_kleene(exists, pc.is_valid(offset))
        gap = pc.invert(exists)
        ok = exists if ok is None else pc.and_kleene(ok, exists)
    else:
        utc = local
    if offset is not None:
        shifted = pc.subtract(pc.cast(local, pa.int64()), pc.fill_null(offset, 0))
        utc = pc.if_else(pc.is_valid(offset), pc.cast(shifted, pa.timestamp("s")), utc)
    return utc, ok, gap


_LENIENT = (r"^(?P<date>\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4})[T ](?P<hm>\d{2}:\d{2})(?P<s>:\d{2})?(?:\.\d+)?"
            r"\s*(?P<zone>Z|UTC|[+-]\d{2}(?::?\d{2})?)?$")


def _lenient_datetime(present: pa.Array):
    """'YYYY-MM-DD HH:MM[:SS[.fff]]' with ' ' or 'T', or 'DD/MM/YYYY HH:MM[:SS]', and an optional Z / UTC /
    +HH[:MM] offset: (naive timestamps as written, ok mask, offset in seconds east (null: none given))."""
    parts = pc.extract_regex(present, _LENIENT)
    date = pc.struct_field(parts, "date")
    date = pc.replace_substring_regex(date, r"^(\d{2})/(\d{2})/(\d{4})$", r"\3-\2-\1")
    seconds = pc.struct_field(parts, "s")
    seconds = pc.if_else(pc.equal(seconds, ""), ":00", seconds)
    iso = pc.binary_join_element_wise(date, pc.binary_join_element_wise(pc.struct_field(parts, "hm"), seconds, ""),
                                      " ")
    ok = _round_trips(iso, _UTC_FMT)
    parsed = pc.strptime(pc.if_else(ok, iso, None), format=_UTC_FMT, unit="s", error_is_null=True)
    zone = pc.struct_field(parts, "zone")
    offset = None
    if pc.any(pc.match_substring_regex(zone, r"^[+-]")).as_py():
        signed = pc.extract_regex(zone, r"^(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})?$")
        hours = pc.cast(pc.struct_field(signed, "h"), pa.int64())
        minutes = pc.cast(pc.if_else(pc.equal(pc.struct_field(signed, "m"), ""), "0", pc.struct_field(signed, "m")),
                          pa.int64())
        east = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
        offset = pc.if_else(pc.equal(pc.struct_field(signed, "sign"), "-"), pc.negate(east), east)
        ok = pc.and_kleene(ok, pc.or_kleene(pc.is_null(offset), pc.less(pc.abs(offset), 24 * 3600)))
        utc_marked = pc.is_in(zone, value_set=pa.array(["Z", "UTC"]))
        offset = pc.if_else(utc_marked, 0, offset)
    else:
        marked = pc.is_in(zone, value_set=pa.array(["Z", "UTC"]))
        if pc.any(marked).as_py():
            offset = pc.if_else(marked, pa.scalar(0, pa.int64()), pa.scalar(None, pa.int64()))
    return parsed, ok, offset


def _canonical_utc(present: pa.Array) -> pa.Array | None:
    """The column if every value is already 'YYYY-MM-DD HH:MM:SS' or ISO with a Z (a real time); else None."""
    try:
        marked = _canonical_utc_marked(present)
        if marked is not None:
            return marked
        pc.cast(present, pa.timestamp("s"))  # strict: a real time, no offset
        shaped = pc.and_kleene(pc.equal(pc.utf8_length(present), 19), pc.equal(pc.utf8_slice_codeunits(present, 10, 11), " "))
        shaped = pc.and_kleene(shaped, pc.invert(_year_zero(present)))
        return present if pc.all(pc.fill_null(shaped, True)).as_py() else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _canonical_utc_marked(present: pa.Array) -> pa.Array | None:
    """A column of UTC times written ISO 8601 with a ``Z`` (``2025-12-31T11:00:17Z``, as feeds send them) in
    canonical form, by Arrow's own cast, which refuses impossible dates; None if any value is shaped otherwise.
    Raises ArrowInvalid for an impossible date."""
    shaped = pc.and_kleene(pc.equal(pc.utf8_length(present), 20), pc.ends_with(present, "Z"))
    if not pc.all(pc.fill_null(shaped, True)).as_py() or pc.any(_year_zero(present)).as_py():
        return None
    pc.cast(present, pa.timestamp("s", "UTC"))  # only to refuse what is not a real time
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(present, 0, 10),
                                       pc.utf8_slice_codeunits(present, 11, 19), " ")


def _epoch(f: FieldSpec, present: pa.Array, ctx: Context):
    """Seconds or milliseconds since 1970 UTC; a fraction (1404121212.123) is dropped, as ISO fractions are."""
    ok = pc.match_substring_regex(present, r"^\d{1,15}(\.\d*)?$")
    whole = pc.if_else(ok, pc.replace_substring_regex(present, r"\.\d*$", ""), None)
    number = pc.cast(whole, pa.int64())
    if f.unit == "milliseconds":
        number = pc.divide(number, 1000)
    ok = pc.and_kleene(ok, pc.less(number, 253402300800))  # before the year 10000
    stamps = pc.cast(pc.if_else(ok, number, None), pa.timestamp("s"))
    return _utc_text(stamps), ok


def _utc_text(stamps: pa.Array) -> pa.Array:
    """Naive second timestamps as 'YYYY-MM-DD HH:MM:SS': Arrow's cast writes exactly that for years 1000 to
    9999, twenty times faster than strftime, which does the rest."""
    if pc.any(pc.less(stamps, pa.scalar(-30610224000, pa.timestamp("s")))).as_py():  # before the year 1000
        return pc.strftime(stamps, format=_UTC_FMT)
    return pc.cast(stamps, pa.string())


def _duration(f: FieldSpec, present: pa.Array, ctx: Context):
    if f.unit == "seconds":
        return _int(f, present, ctx)
    if f.unit == "minutes":
        # Decimal minutes to whole seconds, rounded to the nearest second (half up); not so many that the
        # seconds (in millionths, on the way) overflow int64.
        units, ok, *_ = _decimal(f, present, ctx)
        fits = pc.and_kleene(pc.greater_equal(units, 0), pc.less_equal(units, (2 ** 63 - 1 - 10 ** MONEY_SCALE) // 60))
        ok = pc.and_kleene(pc.fill_null(ok, True), fits) if ok is not None else fits
        seconds = pc.divide(pc.add(pc.multiply(pc.if_else(ok, units, None), 60), 10 ** MONEY_SCALE // 2),
                            10 ** MONEY_SCALE)
        return seconds, ok
    # hh:mm:ss, h:mm:ss, mm:ss (also m:ss)
    parts = pc.extract_regex(present, r"^(?:(?P<h>\d{1,9}):)?(?P<m>\d{1,2}):(?P<s>[0-5]\d)$")
    ok = pc.is_valid(parts)
    hours_text = pc.struct_field(parts, "h")
    hours = pc.cast(pc.if_else(pc.equal(hours_text, ""), "0", hours_text), pa.int64())
    minutes = pc.cast(pc.struct_field(parts, "m"), pa.int64())
    ok = pc.and_kleene(ok, pc.or_kleene(pc.equal(hours_text, ""), pc.less(minutes, 60)))
    total = pc.add(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)),
                   pc.cast(pc.struct_field(parts, "s"), pa.int64()))
    present_ok = pc.or_kleene(pc.is_null(present), ok)
    return pc.if_else(present_ok, total, None), pc.if_else(pc.is_null(present), None, ok)


def _text(f: FieldSpec, present: pa.Array, ctx: Context):
    return present, None


# Cisco IOS times (h323-setup-time and the like): "HH:MM:SS[.mmm] ZONE Dow Mon DD YYYY", after an optional
# mark: * the clock was never synchronised (NTP), . its synchronisation was lost.
_CISCO_TIME = (r"^(?P<flag>[*.]?)(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.\d+)?\s+"
               r"(?P<zone>[A-Za-z]+)(?P<offset>[+-]\d{1,2}(?::?\d{2})?)?\s+[A-Za-z]{3}\s+(?P<mon>[A-Za-z]{3})\s+"
               r"(?P<d>\d{1,2})\s+(?P<y>\d{4})$")
# Zone names a gateway may print, and their offset east of UTC in minutes. GMT and UTC may carry an offset of
# their own (GMT+4, GMT-3, GMT+05:30: ahead of or behind UTC by it). The names are ambiguous beyond this table
# (CST is also China's, BST Bangladesh's, IST India's, Ireland's or Israel's): these are the North American,
# Central European and British meanings; a gateway elsewhere is better configured with GMT+/-offset.
CISCO_ZONES = {"UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "WET": 0, "WEST": 60, "BST": 60, "IST": 60, "CET": 60,
               "CEST": 120, "MET": 60, "MEST": 120, "EET": 120, "EEST": 180, "MSK": 180,
               "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360, "PST": -480,
               "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600, "AST": -240, "ADT": -180, "NST": -210,
               "NDT": -150}
# IST (Irish Standard Time, UTC+1): as Cisco gateways in Ireland print it. Not India's.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def unknown_zone_reason() -> str:
    return f"not a Cisco time: unknown time zone (known: {', '.join(CISCO_ZONES)}, GMT+HH[:MM], GMT-HH[:MM])"


def _cisco_utc(present: pa.Array):
    """(ok, unknown-zone mask, UTC timestamps) of Cisco times: by whitespace-split and integer arithmetic when
    every value has the usual shape (ten times faster than the regular expression), else by
    :func:`_cisco_parts`, which also finds the bad rows."""
    try:
        fast = _cisco_fast(present)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fast = None
    if fast is not None:
        return fast
    _parts, ok, unknown, utc = _cisco_parts(present)
    return ok, unknown, utc


def _cisco_fast(present: pa.Array):
    """(ok, unknown, utc) when every present value is ``[*.]HH:MM:SS[.fff] ZONE Dow Mon D YYYY`` with a real date
    and time (a zone not known is reported, not raised); None, or ArrowInvalid from a cast, otherwise."""
    words = pc.utf8_split_whitespace(present)
    if not pc.all(pc.fill_null(pc.equal(pc.list_value_length(words), 6), True)).as_py():
        return None
    clock = pc.list_element(words, 0)
    marked = pc.is_in(pc.utf8_slice_codeunits(clock, 0, 1), value_set=pa.array(["*", "."]))
    if pc.any(marked).as_py():
        clock = pc.if_else(marked, pc.utf8_slice_codeunits(clock, 1), clock)
    length = pc.utf8_length(clock)
    shaped = pc.and_(pc.equal(pc.utf8_slice_codeunits(clock, 2, 3), ":"), pc.equal(pc.utf8_slice_codeunits(clock, 5, 6), ":"))
    shaped = pc.and_(shaped, pc.or_(pc.equal(length, 8), pc.and_(pc.greater(length, 9),
                                                                 pc.equal(pc.utf8_slice_codeunits(clock, 8, 9), "."))))
    if not pc.all(pc.fill_null(shaped, True)).as_py():
        return None
    fraction = pc.utf8_slice_codeunits(clock, 9)
    if not _only(fraction, b"0123456789"):
        return None
    numbers = []
    for piece in (pc.utf8_slice_codeunits(clock, 0, 2), pc.utf8_slice_codeunits(clock, 3, 5),
                  pc.utf8_slice_codeunits(clock, 6, 8), pc.list_element(words, 4), pc.list_element(words, 5)):
        if not _only(piece, b"0123456789"):
            return None
        numbers.append(pc.cast(piece, pa.int64()))
    hour, minute, second, day, year = numbers
    month = pc.add(pc.index_in(pc.list_element(words, 3), value_set=pa.array(_MONTHS)), 1)
    if month.null_count != present.null_count:
        return None
    # A gateway prints one zone or two (summer time): each distinct zone is judged once, in Python.
    zones = pc.dictionary_encode(pc.list_element(words, 1))
    east = pc.take(pa.array([_zone_minutes(z) for z in zones.dictionary.to_pylist()], pa.int64()), zones.indices)
    unknown = pc.and_(pc.is_valid(present), pc.is_null(east))
    leap = pc.and_(pc.equal(pc.bit_wise_and(year, 3), 0),
                   pc.or_(pc.not_equal(pc.subtract(year, pc.multiply(pc.divide(year, 100), 100)), 0),
                          pc.equal(pc.subtract(year, pc.multiply(pc.divide(year, 400), 400)), 0)))
    month_days = pc.take(pa.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int64()), pc.subtract(month, 1))
    month_days = pc.add(month_days, pc.cast(pc.and_(leap, pc.equal(month, 2)), pa.int64()))
    ok = pc.and_(pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, month_days)),
                 pc.and_(pc.less(hour, 24), pc.and_(pc.less(minute, 60), pc.less(second, 60))))
    ok = pc.and_(ok, pc.and_(pc.greater_equal(year, 1), pc.invert(unknown)))
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), all positive here.
    y = pc.subtract(year, pc.cast(pc.less_equal(month, 2), pa.int64()))
    era = pc.divide(y, 400)
    yoe = pc.subtract(y, pc.multiply(era, 400))
    mp = pc.subtract(pc.add(month, 9), pc.multiply(pc.divide(pc.add(month, 9), 12), 12))
    doy = pc.add(pc.divide(pc.add(pc.multiply(mp, 153), 2), 5), pc.subtract(day, 1))
    doe = pc.add(pc.subtract(pc.add(pc.multiply(yoe, 365), pc.divide(yoe, 4)), pc.divide(yoe, 100)), doy)
    days = pc.subtract(pc.add(pc.multiply(era, 146097), doe), 719468)
    seconds = pc.add(pc.add(pc.multiply(days, 86400), pc.multiply(hour, 3600)), pc.add(pc.multiply(minute, 60), second))
    seconds = pc.subtract(seconds, pc.multiply(pc.fill_null(east, 0), 60))
    utc = pc.cast(pc.if_else(ok, seconds, None), pa.timestamp("s"))
    return ok, unknown, utc


_ZONE_OFFSET = re.compile(r"(?:GMT|UTC)([+-])(\d{1,2}):?(\d{2})?", re.IGNORECASE)


def _zone_minutes(zone: str | None) -> int | None:
    """Minutes east of UTC of a Cisco zone: a name of :data:`CISCO_ZONES`, or GMT/UTC with an offset (GMT+4,
    GMT-03:00, UTC+0530, at most 14 hours); None for anything else."""
    if zone is None:
        return None
    if zone.upper() in CISCO_ZONES:
        return CISCO_ZONES[zone.upper()]
    match = _ZONE_OFFSET.fullmatch(zone)
    if match is None:
        return None
    east = int(match.group(2)) * 60 + int(match.group(3) or 0)
    return (-east if match.group(1) == "-" else east) if east <= 14 * 60 else None


def _cisco_parts(present: pa.Array):
    """(parts, ok, unknown-zone mask, UTC timestamps) of Cisco times."""
    parts = pc.extract_regex(present, _CISCO_TIME)
    month = pc.index_in(pc.utf8_capitalize(pc.struct_field(parts, "mon")), value_set=pa.array(_MONTHS))
    zone = pc.utf8_upper(pc.struct_field(parts, "zone"))
    zones = list(CISCO_ZONES)
    base = pc.take(pa.array(list(CISCO_ZONES.values()), pa.int64()), pc.index_in(zone, value_set=pa.array(zones)))
    offset_text = pc.struct_field(parts, "offset")
    signed = pc.extract_regex(offset_text, r"^(?P<sign>[+-])(?P<h>\d{1,2}):?(?P<m>\d{2})?$")
    hours = pc.cast(pc.struct_field(signed, "h"), pa.int64())
    minutes_text = pc.struct_field(signed, "m")
    minutes = pc.cast(pc.if_else(pc.equal(minutes_text, ""), "0", minutes_text), pa.int64())
    extra = pc.add(pc.multiply(hours, 60), minutes)
    extra = pc.if_else(pc.equal(pc.struct_field(signed, "sign"), "-"), pc.negate(extra), extra)
    has_offset = pc.not_equal(offset_text, "")
    offset_ok = pc.or_kleene(pc.invert(has_offset), pc.and_kleene(pc.is_in(zone, value_set=pa.array(["GMT", "UTC"])),
                                                                  pc.less_equal(pc.abs(extra), 14 * 60)))
    east = pc.if_else(has_offset, pc.add(base, pc.fill_null(extra, 0)), base)
    matched = pc.is_valid(parts)
    unknown = pc.and_kleene(matched, pc.or_kleene(pc.is_null(base), pc.invert(pc.fill_null(offset_ok, False))))
    iso = pc.binary_join_element_wise(
        pc.struct_field(parts, "y"), "-",
        pc.utf8_lpad(pc.cast(pc.add(month, 1), pa.string()), 2, "0"), "-", pc.utf8_lpad(pc.struct_field(parts, "d"), 2, "0"),
        " ", pc.utf8_lpad(pc.struct_field(parts, "h"), 2, "0"), ":", pc.struct_field(parts, "m"), ":",
        pc.struct_field(parts, "s"), "")
    ok = pc.and_kleene(_round_trips(iso, _UTC_FMT), pc.invert(unknown))
    local = pc.strptime(pc.if_else(ok, iso, None), format=_UTC_FMT, unit="s", error_is_null=True)
    utc = pc.cast(pc.subtract(pc.cast(local, pa.int64()), pc.multiply(east, 60)), pa.timestamp("s"))
    return parts, ok, unknown, utc


def _cisco_time(f: FieldSpec, present: pa.Array, ctx: Context):
    """A Cisco time as the UTC instant it names (the zone by :data:`CISCO_ZONES` or GMT+/-offset)."""
    ok, unknown, utc = _cisco_utc(present)
    return _utc_text(utc), ok, [(unknown, unknown_zone_reason())]


def _cisco_clock_flag(f: FieldSpec, present: pa.Array, ctx: Context):
    """The mark before a Cisco time: ``*`` or ``.``, null when it has none (or is empty). The value must start
    as a Cisco time does (its hours, minutes and seconds); the rest is the cisco-time field's to check."""
    first = pc.utf8_slice_codeunits(present, 0, 1)
    flag = pc.if_else(pc.is_in(first, value_set=pa.array(["*", "."])), first, pa.scalar(None, pa.string()))
    ok = pc.match_substring_regex(present, r"^[*.]?\d{1,2}:\d{2}:\d{2}[. ]")
    return flag, ok


_CONVERTERS = {"int": _int, "decimal": _decimal, "date": _date, "datetime": _datetime, "epoch": _epoch,
               "duration": _duration, "text": _text, "cisco-time": _cisco_time,
               "cisco-clock-flag": _cisco_clock_flag}


def _strptime(present: pa.Array, fmt: str):
    """Parse with a strftime pattern. Arrow's strptime is lenient (it rolls 30 February into March): a value
    that does not come back the same through strftime is checked again by Python's strptime (exact, and
    reading unpadded numbers); only those rows are looped over."""
    unit = "us" if "%f" in fmt else "s"
    parsed = pc.strptime(present, format=fmt, unit=unit, error_is_null=True)
    if "%z" in fmt or "%Z" in fmt:
        back = None
    else:
        back = pc.strftime(parsed, format=fmt)
    same = pc.fill_null(pc.equal(back, present), False) if back is not None else pc.is_valid(parsed)
    if pc.all(pc.or_kleene(same, pc.is_null(present))).as_py():
        return _seconds(parsed), None
    values = present.to_pylist()
    fixed = parsed.to_pylist()
    ok = []
    for i, (text, good) in enumerate(zip(values, same.to_pylist())):
        if text is None or good:
            ok.append(None if text is None else True)
            continue
        try:
            value = datetime.strptime(text, fmt)
        except ValueError:
            fixed[i] = None
            ok.append(False)
            continue
        if value.tzinfo is not None:
            from datetime import timezone

            value = value.astimezone(timezone.utc).replace(tzinfo=None)
            fixed[i] = value if parsed.type.tz is None else value.replace(tzinfo=timezone.utc)
        else:
            fixed[i] = value
        ok.append(True)
    return _seconds(pa.array(fixed, parsed.type)), pa.array(ok, pa.bool_())


def _seconds(stamps: pa.Array) -> pa.Array:
    if stamps.type.unit == "s":
        return stamps
    return pc.cast(pc.floor_temporal(stamps, unit="second"), pa.timestamp("s", stamps.type.tz))


def _round_trips(values: pa.Array, fmt: str) -> pa.Array:
    """Whether each value is a real date/time written exactly as ``fmt`` (zero-padded) would write it.
    Arrow's strptime alone accepts '2026-02-30' (rolling it into March), '00:05:60' and unpadded fields,
    and the year 0000, which neither PostgreSQL nor Python's datetime can hold."""
    parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
    return pc.and_kleene(pc.equal(pc.strftime(parsed, format=fmt), values), pc.invert(_year_zero(values)))


def _year_zero(values: pa.Array) -> pa.Array:
    return pc.starts_with(values, "0000")


def _to_iso_date(values: pa.Array) -> pa.Array:
    values = pc.replace_substring_regex(values, r"^(\d{4})/(\d{2})/(\d{2})$", r"\1-\2-\3")
    values = pc.replace_substring_regex(values, r"^(\d{2})/(\d{2})/(\d{4})$", r"\3-\2-\1")
    return pc.replace_substring_regex(values, r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")


def convert_constant(f: FieldSpec, text: str, decimal_separator: str = ".", timezone: str = "UTC") -> str | None:
    """None if a constant (``value``/``default``) converts for this field, else the reason it does not."""
    values = pa.array([text.strip() if f.type != "text" else text], pa.string())
    explain: list[tuple[pa.Array, str]] = []
    try:
        _out, bad = convert(f, values, Context(decimal_separator, timezone), explain=explain)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return f"{reason(f)} ({exc})"
    if not bad[0].as_py():
        return None
    return explain[0][1] if explain else reason(f)


__all__ = ["CISCO_ZONES", "OUT_OF_RANGE", "Context", "convert", "convert_constant", "gap_reason", "reason"]
