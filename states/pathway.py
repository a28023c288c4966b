"""Deciding and applying events: the pure core of the engine.

- `decide(snapshot, event, policy, today)` checks an event against the patient's snapshot in the
  spec's order — validation (raises `EventValidationError`) -> NOT_ALLOWED_IN_STATE alone -> every
  other rule together — and returns an `Outcome`: accepted with the new snapshot, or refused.
- `evolve(snapshot, event, policy)` applies an accepted event without its guards (replay).
- `replay(history, policy)` folds a patient's accepted history, voids included, into the snapshot.
- `decide_void(history, ...)` undoes the latest effective event by replaying the rest.

Nothing here reads a clock, a file or a database: `today` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from states import ablation, chemo, followup, referral, surgery
from states.context import Ctx
from states.events import Event, EventValidationError
from states.facts import Snapshot
from states.machine import allowed_events, destination, is_allowed
from states.plan import Planned, project
from states.policy import Policy
from states.rules import Reason, reason
from states.vocabulary import (
    BOOKED_KIND,
    CHEMO_STATES,
    EventType,
    Severity,
    State,
    Status,
)

Guard = Callable[[Ctx], list[Reason]]
Effect = Callable[[Ctx, Snapshot, State], Snapshot]

GUARDS: dict[EventType, Guard] = {
    EventType.referral: referral.referral_guards,
    EventType.mdt_decision: referral.decision_guards,
    EventType.cycle_given: chemo.cycle_guards,
    EventType.restaging: chemo.restaging_guards,
    EventType.booked: surgery.booked_guards,
    EventType.surgery: surgery.surgery_guards,
}


def _restaging_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    if ctx.s.state is State.portal_vein_embolization:
        return surgery.pve_restaging_effect(ctx, s, dest)
    return chemo.restaging_effect(ctx, s, dest)


EFFECTS: dict[EventType, Effect] = {
    EventType.mdt_scheduled: referral.mdt_scheduled_effect,
    EventType.mdt_decision: referral.decision_effect,
    EventType.biomarker: referral.biomarker_effect,
    EventType.cycle_given: chemo.cycle_effect,
    EventType.cycle_delayed: chemo.delay_effect,
    EventType.chemo_stopped: chemo.stopped_effect,
    EventType.restaging: _restaging_effect,
    EventType.booked: surgery.booked_effect,
    EventType.pve_performed: surgery.pve_performed_effect,
    EventType.surgery: surgery.surgery_effect,
    EventType.ablation_performed: ablation.ablation_effect,
    EventType.ablation_checked: ablation.checked_effect,
    EventType.surveillance_visit: followup.visit_effect,
    EventType.recurrence: followup.recurrence_effect,
}

#: Fact events: what happened must be recordable; their blocks become confirms (spec section 4).
FACT_EVENTS = frozenset({EventType.cycle_given, EventType.surgery, EventType.ablation_performed,
                         EventType.pve_performed})


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status  # accepted or refused
    reasons: tuple[Reason, ...]
    state: State  # the patient's state after the event
    snapshot: Snapshot  # the new snapshot when accepted, else the unchanged one


# -- validation that needs the history -----------------------------------------------------------


def check_context(s: Snapshot | None, e: Event, today: date, policy: Policy) -> None:
    """The `invalid` cases of spec section 1 that depend on the patient or the clock."""
    errors: list[tuple[str, str]] = []
    if e.type is EventType.referral and s is not None:
        errors.append(("patient", f"patient {e.patient} was already referred on {s.referred_on.isoformat()}; "
                                  "a second referral is not allowed (record mdt_scheduled or recurrence)"))
    elif e.type is not EventType.referral and s is None:
        errors.append(("patient", f"unknown patient {e.patient}: record a referral first"))
    if e.on > today:
        errors.append(("on", f"{e.on.isoformat()} is in the future (today is {today.isoformat()} in "
                             f"{policy.clinic_timezone}); record facts once they have happened"))
    if s is not None and e.type is not EventType.referral and e.on < s.latest_on:
        errors.append(("on", f"{e.on.isoformat()} is before the patient's latest event "
                             f"({s.latest_on.isoformat()}); record events in date order, or void the later "
                             "event first"))
    d = e.data
    for field_name in ("meeting_on", "until", "for_"):
        value = getattr(d, field_name, None)
        if value is not None and value < e.on:
            shown = "for" if field_name == "for_" else field_name
            errors.append((f"data.{shown}", f"{value.isoformat()} must be on or after the event date "
                                            f"{e.on.isoformat()}"))
    if errors:
        raise EventValidationError(errors)


# -- deciding ------------------------------------------------------------------------------------


def not_allowed(ctx: Ctx) -> Reason | None:
    s, e = ctx.s, ctx.e
    if not is_allowed(e.type, s.state):
        allowed = ", ".join(str(t) for t in allowed_events(s.state))
        return reason("NOT_ALLOWED_IN_STATE", event=e.type, state=s.state, allowed=allowed)
    if e.type is EventType.booked and surgery.booked_target(ctx) is None:
        pending = {p.kind for p in project(s, ctx.policy)}
        bookable = [str(what) for what, kind in BOOKED_KIND.items() if kind in pending]
        allowed = f"booked {', '.join(bookable)}" if bookable else "no booking (no bookable reminder is pending)"
        return reason("NOT_ALLOWED_IN_STATE", event=f"booked {ctx.d.what} (no pending "
                      f"{BOOKED_KIND[ctx.d.what]} reminder)", state=s.state, allowed=allowed)
    return None


def decide(s: Snapshot | None, e: Event, policy: Policy, today: date) -> Outcome:
    """Check `e` against `s` and apply it if accepted. Raises EventValidationError if invalid."""
    if e.type is EventType.void:
        raise ValueError("void needs the history: use decide_void")
    check_context(s, e, today, policy)
    if s is None:  # a referral: a new patient
        ctx = Ctx(_blank(e), e, policy)
        reasons = referral.referral_guards(ctx)
        new = referral.referral_snapshot(ctx)
        return Outcome(Status.accepted, tuple(reasons), new.state, new)

    ctx = Ctx(s, e, policy)
    blocked = not_allowed(ctx)
    if blocked is not None:
        return Outcome(Status.refused, (blocked,), s.state, s)
    guard = GUARDS.get(e.type)
    reasons = guard(ctx) if guard else []
    refusing = [
        r for r in reasons
        if r.severity is Severity.block or (r.severity is Severity.confirm and e.overridden(r.code) is None)
    ]
    if refusing:
        return Outcome(Status.refused, tuple(refusing), s.state, s)
    new = _apply(ctx)
    return Outcome(Status.accepted, tuple(reasons), new.state, new)


def _blank(e: Event) -> Snapshot:
    return Snapshot(patient=e.patient, state=State.referral, primary="", referred_on=e.on, latest_on=e.on,
                    entered_on=e.on)


def _apply(ctx: Ctx) -> Snapshot:
    dest = destination(ctx)
    s = _enter(ctx, dest)
    effect = EFFECTS.get(ctx.e.type)
    return effect(ctx, s, dest) if effect else s


def _enter(ctx: Ctx, dest: State) -> Snapshot:
    """What every event does, and what entering a new state resets."""
    s, e = ctx.s, ctx.e
    changes: dict[str, Any] = {"latest_on": e.on}
    if dest is not s.state:
        changes.update(state=dest, entered_on=e.on)
        if dest not in CHEMO_STATES:
            changes["phase"] = None
        if dest is State.mdt_assessment:
            changes.update(mdt_seq=s.mdt_seq + 1, mdt_anchor=e.on, meeting_on=None)
        elif dest is State.resection:
            changes["resection_seq"] = s.resection_seq + 1
        elif dest is State.portal_vein_embolization:
            changes.update(pve_seq=s.pve_seq + 1, pve_due_planned=e.type is EventType.mdt_decision,
                           pve_anchor=None, flr_scan_seq=1, flr_scan_due=None)
        elif dest is State.ablation:
            changes["ablation_seq"] = s.ablation_seq + 1
        if dest not in (State.adjuvant_chemo, State.follow_up):
            changes["ablation_scan_due"] = None
        if dest is not State.follow_up:
            changes["imaging_due"] = None
        if s.bookings:
            changes["bookings"] = ()  # bookings belong to reminders of the state left behind
    return s.replace(**changes)


def evolve(s: Snapshot | None, e: Event, policy: Policy) -> Snapshot:
    """Apply an accepted event without its guards (for replay)."""
    if e.type is EventType.referral:
        return referral.referral_snapshot(Ctx(_blank(e), e, policy))
    if s is None:
        raise ValueError(f"history of {e.patient} does not start with a referral")
    return _apply(Ctx(s, e, policy))


# -- history, replay and void ----------------------------------------------------------------------


def effective(history: Sequence[Event]) -> list[Event]:
    """The accepted events that still count: each void removes the latest one before it."""
    stack: list[Event] = []
    for e in history:
        if e.type is EventType.void:
            if not stack or stack[-1].type is EventType.referral:
                raise ValueError(f"history of {e.patient}: a void with nothing to undo")
            stack.pop()
        else:
            stack.append(e)
    return stack


def replay(history: Sequence[Event], policy: Policy) -> Snapshot | None:
    """Fold a patient's accepted history (voids included) into its snapshot."""
    s: Snapshot | None = None
    for e in effective(history):
        s = evolve(s, e, policy)
    return s


def plan_for(history: Sequence[Event], policy: Policy) -> list[Planned]:
    """The care plan as a pure function of a patient's accepted history and the policy: the
    reminders that should be pending (key, kind, due_on, notify_at)."""
    s = replay(history, policy)
    return project(s, policy) if s is not None else []


def decide_void(history: Sequence[Event], s: Snapshot | None, e: Event, policy: Policy, today: date) -> Outcome:
    """Undo the latest effective event by replaying the history without it (spec: `void`)."""
    if s is None:
        raise EventValidationError([("patient", f"unknown patient {e.patient}: nothing to void")])
    check_context(s, e, today, policy)
    remaining = effective(history)
    target = remaining[-1]
    if target.type is EventType.referral:
        raise EventValidationError([("type", "a referral cannot be voided: record withdrawn instead")])
    new = replay([*history, e], policy)
    assert new is not None
    return Outcome(Status.accepted, (), new.state, new)


def voided_target(history: Sequence[Event]) -> int:
    """Index in `history` of the event a void appended now would undo."""
    stack: list[int] = []
    for i, e in enumerate(history):
        if e.type is EventType.void:
            stack.pop()
        else:
            stack.append(i)
    return stack[-1]
