"""The values and helpers of the care plan that the stages' planners use (states.plan projects).

Dates are clinic-local; `notify_at` is 08:00 (policy) in the clinic's zone on `due_on - lead_days`,
as a UTC instant, so daylight saving never shifts a reminder's day.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from states.facts import Snapshot
from states.policy import Policy
from states.vocabulary import ReminderKind


@dataclass(frozen=True, slots=True)
class Planned:
    """A reminder the care plan says should be pending."""

    key: str
    patient: str
    kind: ReminderKind
    due_on: date
    notify_at: datetime  # UTC
    detail: str


class Reminder(NamedTuple):
    """A stored reminder: a planned one with its status (and, on worklists, the patient's state).
    A named tuple: worklists build tens of thousands of them, and tuples are built fastest."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    detail: str
    state: str | None = None
    #: Its notification (queued | claimed | sent | failed), on worklists.
    delivery: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "key": self.key,
            "patient": self.patient,
            "kind": self.kind,
            "due_on": self.due_on.isoformat(),
            "notify_at": self.notify_at.isoformat().replace("+00:00", "Z"),
            "status": self.status,
            "detail": self.detail,
        }
        if self.state is not None:
            out["state"] = self.state
        if self.delivery is not None:
            out["delivery"] = self.delivery
        return out


def add_months(start: date, months: int) -> date:
    """`start` + `months` calendar months, clamped to the month's end (31 Aug + 6 = 28/29 Feb).

    Always computed from the start date, never cumulatively, so clamping never drifts.
    """
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


_NOTIFY_CACHE: dict[tuple[date, str, str], datetime] = {}


def notify_at(due_on: date, lead_days: int, policy: Policy) -> datetime:
    """08:00 (policy) in the clinic's zone on due_on - lead_days, as a UTC instant."""
    local_day = due_on - timedelta(days=lead_days)
    cache_key = (local_day, policy.clinic_timezone, policy.notify_time)
    instant = _NOTIFY_CACHE.get(cache_key)
    if instant is None:
        if len(_NOTIFY_CACHE) > 100_000:
            _NOTIFY_CACHE.clear()
        local = datetime.combine(local_day, policy.notify_clock, tzinfo=policy.zone)
        instant = _NOTIFY_CACHE[cache_key] = local.astimezone(UTC)
    return instant


def planned_preop(regimen: str, policy: Policy) -> int:
    return policy.preop_cycles[regimen]


def planned_postop(regimen: str, policy: Policy) -> int:
    return policy.postop_cycles[regimen]


def surveillance_visits(s: Snapshot, policy: Policy) -> list[tuple[str, date, int]]:
    """The visits of the current surveillance course not yet done: ("anchor:month", due_on, month)
    (the mark is the reminder key's last part: `<patient>:surveillance:<anchor>:<month>`)."""
    if s.surv_anchor is None:
        return []
    done = set(s.surv_done)
    return [(mark, due, month) for mark, due, month in _course(s.surv_anchor, policy.surveillance_months)
            if mark not in done]


@functools.lru_cache(maxsize=8192)
def _course(anchor: date, months: tuple[int, ...]) -> tuple[tuple[str, date, int], ...]:
    """A surveillance course's visits: ("anchor:month", due_on, month), computed once per anchor."""
    return tuple((f"{anchor.isoformat()}:{month}", add_months(anchor, month), month) for month in months)
