"""The one place that reads the system time.

The domain is given `now`; the engine asks its clock once per use case. `PATHWAY_NOW`
(an ISO instant with an offset, e.g. 2027-03-01T09:00:00+00:00) pins the clock for demos, tests and
replays.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pathway.errors import ConfigurationError

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def monotonic() -> float:
    """Seconds on a clock that never jumps (for durations and caches, never for clinical time)."""
    return time.monotonic()


def fixed_clock(instant: datetime) -> Clock:
    if instant.tzinfo is None:
        raise ConfigurationError(f"a pinned clock needs a timezone-aware instant, got {instant.isoformat()}")
    pinned = instant.astimezone(UTC)
    return lambda: pinned


class ManualClock:
    """A clock tests can move: `clock.advance(days=1)`."""

    def __init__(self, instant: datetime):
        if instant.tzinfo is None:
            raise ConfigurationError("ManualClock needs a timezone-aware instant")
        self.now = instant.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def parse_instant(text: str, *, name: str = "PATHWAY_NOW") -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be an ISO instant with an offset, e.g. 2027-03-01T09:00:00+00:00; got {text!r}"
        ) from None
    if instant.tzinfo is None:
        raise ConfigurationError(f"{name} needs a UTC offset (e.g. +00:00); got {text!r}")
    return instant.astimezone(UTC)


def from_environment() -> Clock:
    pinned = os.environ.get("PATHWAY_NOW")
    if pinned:
        return fixed_clock(parse_instant(pinned))
    return system_clock


def local_today(now: datetime, zone: ZoneInfo) -> date:
    """The clinic-local date of an instant."""
    return now.astimezone(zone).date()
