"""Cancer waiting-time clocks (NHS England Cancer Waiting Times, guidance v12.1; docs/contract.md
section 8, docs/clinical-rules.md section 3, facts C1-C12).

Clocks are part of the snapshot: `advance` is applied after every accepted event, so replay
(late entries, voids, `verify`) gives them back exactly. Their status on a given day, the days
left and the forecast against the care plan are read-time values (`view`).

- 62-day (C1): opened by a referral whose `route` is urgent_suspected_cancer, screening or
  consultant_upgrade, from `received_on` (default: the referral's date).
- 31-day (C2): opened by an MDT decision for a treatment plan (any plan but surveillance) when no
  31-day clock is running; for a subsequent treatment (one has already started) from its `ecad` if
  given (C4). Entering resection or ablation by another event (a restaging after pre-operative
  chemotherapy, the remnant scan after PVE) with no 31-day clock running opens one for that
  subsequent treatment from that date: the day surgery became clinically appropriate (C5).
- Treatment starts (C6) stop every running clock: a chemotherapy cycle, a liver surgery other than
  an exploration only, an ablation, and an MDT decision for surveillance (active monitoring).
  Portal vein embolization prepares surgery and is not a treatment of the cancer: it stops nothing.
- Death, withdrawal and discharge remove running clocks (C7): not reported against a standard.
- No adjustments (pauses) are made (C10): the clocks show the unadjusted wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from states.facts import Clock, Snapshot
from states.planning import Planned
from states.policy import Policy
from states.vocabulary import (
    SIXTY_TWO_DAY_ROUTES,
    ClockStandard,
    ClockStatus,
    EventType,
    Forecast,
    Plan,
    Procedure,
    ReferralRoute,
    ReminderKind,
    State,
)

#: Reminders whose date is a treatment start: the forecast compares the earliest with the target.
START_KINDS = frozenset({ReminderKind.chemo_cycle, ReminderKind.surgery_due, ReminderKind.ablation_due})
#: Events that end a patient's waits without treatment.
REMOVING = frozenset({EventType.died, EventType.withdrawn, EventType.discharged})


def _open(s: Snapshot, standard: ClockStandard, start: date, opened_by: str, policy: Policy) -> Clock:
    return Clock(
        seq=len(s.clocks) + 1,
        standard=str(standard),
        started_on=start,
        target_on=start + timedelta(days=policy.cwt_target_days[str(standard)]),
        treatment="first" if s.first_treatment_on is None else "subsequent",
        opened_by=opened_by,
    )


def referral_clocks(s: Snapshot, data: Any, on: date, policy: Policy) -> Snapshot:
    """A new patient: a 62-day clock if the referral's route opens one."""
    route = ReferralRoute(getattr(data, "route", ReferralRoute.known_cancer))
    if route not in SIXTY_TWO_DAY_ROUTES:
        return s
    start = getattr(data, "received_on", None) or on
    return s.replace(clocks=(_open(s, ClockStandard.d62, start, f"referral ({route})", policy),))


def treatment_start(event_type: EventType, data: Any) -> str | None:
    """What starts a treatment (C6), as the clock's `stopped_by`, else None."""
    if event_type is EventType.cycle_given:
        return "chemotherapy cycle"
    if event_type is EventType.surgery:
        procedure = getattr(data, "procedure", None)
        return None if procedure == Procedure.exploration_only else "liver surgery"
    if event_type is EventType.ablation_performed:
        return "ablation"
    if event_type is EventType.mdt_decision and getattr(data, "plan", None) == Plan.surveillance:
        return "active monitoring (MDT decision for surveillance)"
    return None


def advance(before: Snapshot, after: Snapshot, event_type: EventType, on: date, data: Any,
            policy: Policy) -> Snapshot:
    """The clocks after an accepted event (`before`: the snapshot it was decided on, `after`: the
    snapshot its effect gave, whose clocks are still `before`'s)."""
    clocks = list(after.clocks)
    changes: dict[str, Any] = {}
    started = treatment_start(event_type, data)
    if started is not None or event_type in REMOVING:
        for i, c in enumerate(clocks):
            if c.stopped_on is None:
                clocks[i] = dataclasses.replace(
                    c, stopped_on=on, stopped_by=started or f"{event_type} (no treatment)",
                    removed=started is None)
        if started is not None and after.first_treatment_on is None:
            changes["first_treatment_on"] = on
    running_31 = any(c.stopped_on is None and c.standard == ClockStandard.d31 for c in clocks)
    if not running_31 and started is None:
        opening = after.replace(clocks=tuple(clocks), **changes)
        if event_type is EventType.mdt_decision:
            plan = getattr(data, "plan", None)
            ecad = getattr(data, "ecad", None)
            start = ecad if ecad is not None and opening.first_treatment_on is not None else on
            clocks.append(_open(opening, ClockStandard.d31, start, f"mdt_decision ({plan})", policy))
        elif (after.state in (State.resection, State.ablation) and after.state is not before.state
              and opening.first_treatment_on is not None):
            clocks.append(_open(opening, ClockStandard.d31, on, f"{event_type} (entered {after.state})", policy))
    if clocks != list(after.clocks):
        changes["clocks"] = tuple(clocks)
    return after.replace(**changes) if changes else after


# -- reading: status, days left, forecast, band ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClockView:
    """A clock as shown on a given day (`show --json` `clocks`, the API, the PTL)."""

    standard: str
    started_on: date
    target_on: date
    stopped_on: date | None
    status: str  # ClockStatus
    days_waited: int
    days_left: int | None  # target_on - today while running (negative once passed), else None
    forecast: str | None  # Forecast while running, else None
    reason: str
    treatment: str
    opened_by: str
    stopped_by: str | None
    band: str | None  # 62-day: the PTL band of days waited
    next_start: date | None  # the earliest planned or booked treatment start (running clocks)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("started_on", "target_on", "stopped_on", "next_start"):
            if out[name] is not None:
                out[name] = out[name].isoformat()
        for name in ("status", "forecast"):
            if out[name] is not None:
                out[name] = str(out[name])
        return out


def band(days_waited: int, bounds: Sequence[int]) -> str:
    """The PTL band of a wait: with bounds (28, 62, 104): 0-28, 29-62, 63-104, over 104 (C9)."""
    low = 0
    for bound in bounds:
        if days_waited <= bound:
            return f"{low}-{bound}"
        low = bound + 1
    return f"over {bounds[-1]}"


def view(c: Clock, s: Snapshot, planned: Sequence[Planned], policy: Policy, today: date,
         label: Callable[[str], str] = str) -> ClockView:
    """`c` on `today`, its forecast against the planned (`planned`: the patient's projected
    reminders, bookings applied) and booked treatment starts (C8). `label` names a reminder kind."""
    end = c.stopped_on or today
    waited = (end - c.started_on).days
    shown_band = band(waited, policy.ptl_bands) if c.standard == ClockStandard.d62 else None
    common = dict(standard=c.standard, started_on=c.started_on, target_on=c.target_on, stopped_on=c.stopped_on,
                  days_waited=waited, treatment=c.treatment, opened_by=c.opened_by, stopped_by=c.stopped_by,
                  band=shown_band)
    if c.stopped_on is not None:
        if c.removed:
            return ClockView(status=ClockStatus.removed, days_left=None, forecast=None, next_start=None,
                             reason=f"ended without treatment on {c.stopped_on.isoformat()}: {c.stopped_by}",
                             **common)  # type: ignore[arg-type]
        met = c.stopped_on <= c.target_on
        late = (c.stopped_on - c.target_on).days
        reason = (f"{c.stopped_by} on {c.stopped_on.isoformat()}, day {waited}"
                  + ("" if met else f", {late} day(s) after the target"))
        return ClockView(status=ClockStatus.met if met else ClockStatus.breached, days_left=None, forecast=None,
                         next_start=None, reason=reason, **common)  # type: ignore[arg-type]
    days_left = (c.target_on - today).days
    starts = [p for p in planned if p.kind in START_KINDS]
    first = min(starts, key=lambda p: p.due_on) if starts else None
    booked = first is not None and s.booking(first.key) is not None
    if first is not None:
        what = f"{'booked' if booked else 'planned'} {label(str(first.kind)).lower()} on {first.due_on.isoformat()}"
    if days_left < 0:
        status, forecast = ClockStatus.breached, Forecast.will_breach
        reason = f"target {c.target_on.isoformat()} passed {-days_left} day(s) ago without treatment"
    elif first is not None and first.due_on > c.target_on:
        status, forecast = ClockStatus.open, Forecast.will_breach
        reason = f"{what} is after the target {c.target_on.isoformat()}"
    elif not booked and days_left < policy.clock_at_risk_days:
        status, forecast = ClockStatus.open, Forecast.at_risk
        reason = f"no treatment booked and {days_left} day(s) left"
    else:
        status, forecast = ClockStatus.open, Forecast.on_track
        reason = what if first is not None else f"no treatment planned yet; {days_left} day(s) left"
    return ClockView(status=status, days_left=days_left, forecast=forecast, reason=reason,
                     next_start=first.due_on if first is not None else None, **common)  # type: ignore[arg-type]


def views(s: Snapshot, planned: Sequence[Planned], policy: Policy, today: date,
          label: Callable[[str], str] = str) -> list[ClockView]:
    """Every clock of the patient on `today`, running ones first, then by start."""
    out = [view(c, s, planned, policy, today, label) for c in s.clocks]
    out.sort(key=lambda v: (v.stopped_on is not None, v.started_on, v.standard))
    return out
