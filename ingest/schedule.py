"""Source schedules: an interval or a cron expression, with jitter; and the backoff after a failure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import ConfigError

DEFAULT_INTERVAL = 900.0
RETRY_FIRST = 30.0
PERMANENT_BACKOFF_CAP = 6 * 3600.0


@dataclass(frozen=True)
class Schedule:
    interval: float | None = DEFAULT_INTERVAL
    cron: str | None = None
    jitter: float = 0.0

    @classmethod
    def of(cls, options: dict, key: str = "source") -> "Schedule":
        cron = options.get("schedule")
        interval = options.get("interval_seconds")
        if cron is not None and interval is not None:
            raise ConfigError(f"{key}.schedule", "give schedule (cron) or interval_seconds, not both")
        if cron is not None:
            from croniter import croniter

            if not croniter.is_valid(cron):
                raise ConfigError(f"{key}.schedule", f"not a cron expression: {cron!r}")
            base = None
        else:
            base = float(interval if interval is not None else DEFAULT_INTERVAL)
            if base <= 0:
                raise ConfigError(f"{key}.interval_seconds", "must be positive")
        jitter = options.get("jitter_seconds")
        if jitter is None:
            jitter = min(60.0, (base or 60.0) / 10)
        return cls(interval=base, cron=cron, jitter=float(jitter))

    def shortest_gap(self) -> float:
        """The shortest time between two runs (jitter aside): for a cron schedule, over a sample week."""
        if not self.cron:
            return float(self.interval or DEFAULT_INTERVAL)
        from croniter import croniter

        times = croniter(self.cron, _gap_probe())
        previous = times.get_next(datetime)
        shortest = float("inf")
        for _ in range(2000):
            current = times.get_next(datetime)
            shortest = min(shortest, (current - previous).total_seconds())
            previous = current
        return shortest

    def next_after(self, moment: datetime, rng: random.Random | None = None) -> datetime:
        rng = rng or random
        if self.cron:
            from croniter import croniter

            nxt = croniter(self.cron, moment).get_next(datetime)
        else:
            nxt = moment + timedelta(seconds=self.interval or DEFAULT_INTERVAL)
        return nxt + timedelta(seconds=rng.uniform(0, self.jitter) if self.jitter else 0)


def _gap_probe() -> datetime:
    return datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday: a sample week from here


def retry_at(schedule: Schedule, moment: datetime, failures: int, transient: bool, floor: float = 0.0) -> datetime:
    """When to try again a source whose pass ending at ``moment`` failed, ``failures`` times in a row: after a
    transient error ``RETRY_FIRST`` seconds, doubling, but never later than the regular schedule; after a
    permanent one not before the regular schedule, doubling up to ``PERMANENT_BACKOFF_CAP``. Either way never
    sooner than ``floor`` seconds after ``moment`` (the fewest the source's owner allows between queries)."""
    regular = schedule.next_after(moment)
    backoff = min(RETRY_FIRST * 2 ** min(max(failures - 1, 0), 30), PERMANENT_BACKOFF_CAP)
    if transient:
        retry = min(moment + timedelta(seconds=backoff), regular)
    else:
        retry = max(regular, moment + timedelta(seconds=backoff))
    return max(retry, moment + timedelta(seconds=floor))


