"""The collector contract.

A collector is built from one ``[[sources]]`` entry and knows one way of finding files. ``collect()`` runs
one pass: it finds what is ready, pushes each file through the intake door (``ingest.intake.receive``), and
marks it taken at its source only once the door has committed it. A pass never raises for one bad file; it
reports it in the result, so one file (or one source) failing never stops the others.

The result keeps the two kinds of trouble apart: ``errors`` means the source itself failed (unreachable,
login refused, a listing that broke), so the pass failed and is retried with backoff; ``entry_errors`` are
entries the pass could not take (a refused remote name, a file the server will not let us open) while it
took every other one: the pass succeeded, and the entries are reported (``cdr status``) for a person to fix.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..doctor import CheckResult
from ..errors import ConfigError
from ..intake import Received


@dataclass
class PassResult:
    source: str
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    entry_errors: list[str] = field(default_factory=list)
    # The source itself was refused (login, host key, certificate): retrying soon would only hammer it.
    failed_permanently: bool = False
    # Entries this listing saw for the first time (or changed): each is taken once a later listing shows it
    # unchanged (a remote source's ``stable_listings``), so a first pass may see files and take none.
    entries_waiting: int = 0


# How often a scheduled source runs (``ingest.schedule.Schedule.of`` reads them).
SCHEDULE_OPTIONS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "schedule": (str, False),
    "interval_seconds": ((int, float), False),
    "jitter_seconds": ((int, float), False),
}


class Collector(ABC):
    kind: ClassVar[str]
    # Watched (a local folder, run by ``ingest.watch`` on file events) rather than polled on a schedule.
    watched: ClassVar[bool] = False
    # option -> (type, required)
    OPTIONS: ClassVar[dict[str, tuple[type | tuple[type, ...], bool]]] = {}
    # The fewest seconds the source's owner allows between two queries: no run, nor a retry, comes sooner.
    min_gap_seconds: ClassVar[float] = 0.0

    def __init__(self, app, spec):
        self.app = app
        self.spec = spec
        self.name = spec.name
        # Set when the daemon is stopping: a collector may check it between entries and end its pass early.
        self.stopping = threading.Event()

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        for option, value in spec.options.items():
            if option not in cls.OPTIONS:
                raise ConfigError(f"{key}.{option}", f"unknown key for kind {cls.kind!r} "
                                                     f"(known: {', '.join(sorted(cls.OPTIONS))})")
            expected, _ = cls.OPTIONS[option]
            if not isinstance(value, expected) or isinstance(value, bool) and bool not in _as_tuple(expected):
                raise ConfigError(f"{key}.{option}", f"must be of type {_type_names(expected)}")
        for option, (_, required) in cls.OPTIONS.items():
            if required and option not in spec.options:
                raise ConfigError(f"{key}.{option}", f"is required for kind {cls.kind!r}")

    def option(self, name: str, default: Any = None) -> Any:
        return self.spec.options.get(name, default)

    @abstractmethod
    def collect(self) -> PassResult:
        """One pass: take every file that is ready through the intake door."""

    def check(self) -> list[CheckResult]:
        """What ``cdr doctor`` reports for this source: can it be used now? Changes nothing anywhere:
        takes, fetches, moves and records nothing (the catalog is not touched). Each result is one line
        naming the source, never a secret. This default says only that the configuration was accepted;
        kinds that reach something (a folder, a server) override it to check that."""
        return [CheckResult(f"source {self.name}", True,
                            f"{self.kind}: configuration valid; nothing more is checked for this kind")]

    def close(self) -> None:
        """Release connections and watchers."""


def _as_tuple(expected) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _type_names(expected) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(expected))
