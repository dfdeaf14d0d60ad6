"""The shared vocabulary, below everything else: what a file is (type, cadence, file format, status), what the
rules or a source say about one (:class:`Classification`), and where one came from (:class:`Origin`).

Standard library only, importing nothing of the project: the configuration, the collectors, intake and the CLI
all take their words from here, so none of them needs another to know them (``ingest.config`` imports no
collector; the CLI offers the choices without loading the catalog).
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date

# A file's type: cdr (usage records: calls), sdr (service records: charges) or acct (accounting records of our
# own network: call legs).
FILE_TYPES = ("cdr", "sdr", "acct")
# How often a carrier sends a kind of file.
CADENCES = ("daily", "monthly", "hourly", "weekly", "adhoc", "other")
# The physical form a file's content is in: comma-, tab- or pipe-separated text, or a JSON array. A record
# format (``[formats.NAME]``, ``ingest.formats``) says how the columns map to records; the file format is only
# how the text is cut into rows.
FILE_FORMATS = ("csv", "txt", "pipe", "json")
FORMATS = FILE_FORMATS  # the name used before record formats existed
# A file name's extension and the file format it implies.
EXTENSION_FORMATS = {".csv": "csv", ".txt": "txt", ".tsv": "txt", ".tab": "txt", ".pipe": "pipe",
                     ".psv": "pipe", ".json": "json"}
# What became of a received file (the catalog's files.status).
STATUSES = ("queued", "loaded", "held", "failed", "discarded", "ignored", "superseded")


def month_bounds(period: str) -> tuple[date, date]:
    """The first and last day of billing period ``YYYY-MM``. ValueError if it is not one (``2026-13``, ``26-10``)."""
    year, month = (int(part) for part in period.split("-"))
    if len(period) != 7 or period[4] != "-":
        raise ValueError(f"not a billing period (YYYY-MM): {period!r}")
    return date(year, month, 1), date(year, month, monthrange(year, month)[1])


@dataclass(frozen=True)
class Classification:
    """What a file is, as far as the carrier rules (or the caller) can tell."""

    carrier: str | None = None
    file_type: str | None = None
    cadence: str | None = None
    billing_period: str | None = None
    file_format: str | None = None

    def merged_over(self, fallback: "Classification") -> "Classification":
        """Fields of self win; fields self leaves empty come from fallback."""
        return Classification(
            carrier=self.carrier or fallback.carrier,
            file_type=self.file_type or fallback.file_type,
            cadence=self.cadence or fallback.cadence,
            billing_period=self.billing_period or fallback.billing_period,
            file_format=self.file_format or fallback.file_format,
        )


@dataclass(frozen=True)
class Origin:
    """Where a file came from and what the caller already knows about it."""

    source: str  # the source's name: "upload", a [[sources]] name, ...
    name: str  # the file name as offered (data, not a path we trust)
    location: str | None = None  # remote path, email address, local path
    carrier: str | None = None
    file_type: str | None = None
    cadence: str | None = None
    billing_period: str | None = None
    file_format: str | None = None
    # Identifies one delivery (for a drop folder: path, inode, mtime, size). The same delivery offered
    # again after a crash, before the source could mark it taken, returns the files already recorded
    # instead of holding a false duplicate.
    delivery: str | None = None
    # The caller knows this is not a carrier file (an email's signature image, a calendar invite): it is
    # staged and recorded as ignored with this reason, never classified and never held as a duplicate.
    ignore: str | None = None

    @property
    def given(self) -> Classification:
        """What the source says the file is (stored with the file as ``given_*``)."""
        return Classification(self.carrier, self.file_type, self.cadence, self.billing_period, self.file_format)


__all__ = ["CADENCES", "EXTENSION_FORMATS", "FILE_FORMATS", "FILE_TYPES", "FORMATS", "STATUSES", "Classification",
           "Origin", "month_bounds"]
