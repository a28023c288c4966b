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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from states import core, referral, surgery
from states.context import Ctx
from states.definition import DEFINITION, Definition
from states.events import Event, EventValidationError
from states.facts import Snapshot
from states.planning import Planned
from states.policy import Policy
from states.rules import Reason
from states.vocabulary import BOOKED_KIND, EventType, Severity, State, Status


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


def not_allowed(ctx: Ctx[Any]) -> Reason | None:
    """NOT_ALLOWED_IN_STATE: the state does not allow the event, or (booked) there is nothing to book."""
    blocked = ctx.definition.not_allowed(ctx)
    if blocked is not None or ctx.event.type is not EventType.booked or surgery.booked_target(ctx) is not None:
        return blocked
    s = ctx.snapshot
    pending = {p.kind for p in ctx.definition.project(s, ctx.policy)}
    bookable = [str(what) for what, kind in BOOKED_KIND.items() if kind in pending]
    allowed = f"booked {', '.join(bookable)}" if bookable else "no booking (no bookable reminder is pending)"
    return core.NOT_ALLOWED_IN_STATE.reason(
        event=f"booked {ctx.data.what} (no pending {BOOKED_KIND[ctx.data.what]} reminder)", state=s.state,
        allowed=allowed)


def decide(s: Snapshot | None, e: Event, policy: Policy, today: date,
           definition: Definition = DEFINITION) -> Outcome:
    """Check `e` against `s` and apply it if accepted. Raises EventValidationError if invalid."""
    if e.type is EventType.void:
        raise ValueError("void needs the history: use decide_void")
    check_context(s, e, today, policy)
    if s is None:  # a referral: a new patient
        ctx: Ctx[Any] = Ctx(_blank(e), e, policy, definition)
        reasons = referral.referral_guards(ctx)
        new = referral.referral_snapshot(ctx)
        return Outcome(Status.accepted, tuple(reasons), new.state, new)

    ctx = Ctx(s, e, policy, definition)
    blocked = not_allowed(ctx)
    if blocked is not None:
        return Outcome(Status.refused, (blocked,), s.state, s)
    guard = definition.guard(e.type)
    reasons = guard(ctx) if guard else []
    if definition.is_fact(e.type):  # what happened must be recordable: its blocks become confirms
        reasons = [r if r.severity is not Severity.block or definition.rules[r.code].always_block
                   else dataclasses.replace(r, severity=Severity.confirm) for r in reasons]
    refusing = [
        r for r in reasons
        if r.severity is Severity.block or (r.severity is Severity.confirm and e.overridden(r.code) is None)
    ]
    if refusing:
        return Outcome(Status.refused, tuple(refusing), s.state, s)
    new = definition.apply(ctx)
    return Outcome(Status.accepted, tuple(reasons), new.state, new)


def _blank(e: Event) -> Snapshot:
    return Snapshot(patient=e.patient, state=State.referral, primary="", referred_on=e.on, latest_on=e.on,
                    entered_on=e.on)


def evolve(s: Snapshot | None, e: Event, policy: Policy, definition: Definition = DEFINITION) -> Snapshot:
    """Apply an accepted event without its guards (for replay)."""
    if e.type is EventType.referral:
        return referral.referral_snapshot(Ctx(_blank(e), e, policy, definition))
    if s is None:
        raise ValueError(f"history of {e.patient} does not start with a referral")
    return definition.apply(Ctx(s, e, policy, definition))


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
    return DEFINITION.project(s, policy) if s is not None else []


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
    if new is None:  # cannot happen: the referral stays
        raise EventValidationError([("patient", f"nothing of {e.patient}'s history would remain")])
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
