"""Deciding and applying events: the pure core of the engine.

- `decide(snapshot, event, policy, today)` checks an event against the patient's snapshot in the
  spec's order — validation (raises `EventValidationError`) -> NOT_ALLOWED_IN_STATE alone -> every
  other rule together — and returns an `Outcome`: accepted with the new snapshot, or refused.
- `evolve(snapshot, event, policy)` applies an accepted event without its guards (replay).
- `replay(history, policy)` folds a patient's accepted history, voids included, into the snapshot,
  in clinical order: by date, and on one day by the order of recording (`Recorded.id`).
- `decide_late(history, event, ...)` places a back-dated event in that order and decides the later
  events again: accepted only if every one keeps its recorded outcome (else LATE_ENTRY_CONFLICT).
- `decide_void(history, ...)` undoes one effective event (the one named, else the latest) the same
  way (else VOID_CONFLICT).

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
    #: A late entry or a void: the ids of the later events decided again (all kept their outcome).
    reevaluated: tuple[int, ...] = ()
    #: A void: the id of the event it undoes.
    target: int | None = None
    #: A late entry: the state it led to at its place in the history (`state` is the patient's now).
    placed_state: State | None = None


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
        # the engine places such an event with decide_late; `decide` alone cannot
        errors.append(("on", f"{e.on.isoformat()} is before the patient's latest event "
                             f"({s.latest_on.isoformat()}): a late entry is placed by decide_late"))
    d = e.data
    received = getattr(d, "received_on", None)
    if received is not None and received > e.on:
        errors.append(("data.received_on", f"{received.isoformat()} is after the referral's date {e.on.isoformat()}: "
                                           "the referral is received on or before the day it is recorded as made"))
    for field_name in ("meeting_on", "until", "for_", "ecad"):
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


# -- history: clinical order, replay, late entries and voids -----------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """An accepted event as the log holds it: its place in record order (`id`), the event, and for
    a void the id of the event it undoes; with the outcome it was recorded with (its rule codes
    and severities), which a late entry or a void must leave unchanged."""

    id: int
    event: Event
    voids: int | None = None
    reasons: tuple[tuple[str, str], ...] = ()


def clinical_order(item: Recorded) -> tuple[date, int]:
    """Effective order: the clinical date, and on one day the order of recording."""
    return item.event.on, item.id


def effective(history: Sequence[Recorded]) -> list[Recorded]:
    """The accepted events that still count — not voids, not voided — in clinical order."""
    voided = {r.voids for r in history if r.event.type is EventType.void}
    return sorted((r for r in history if r.event.type is not EventType.void and r.id not in voided),
                  key=clinical_order)


def as_recorded(events: Sequence[Event]) -> list[Recorded]:
    """Plain events (in record order) as a recorded history: ids 1, 2, ...; a void undoes the event
    its data names (`target_key`, `target_event`: an id here), else the latest effective one."""
    out: list[Recorded] = []
    for i, e in enumerate(events, start=1):
        voids = None
        if e.type is EventType.void:
            voids = void_target(out, e).id
        out.append(Recorded(i, e, voids))
    return out


def _recorded(history: Sequence[Event] | Sequence[Recorded]) -> list[Recorded]:
    if history and isinstance(history[0], Event):
        return as_recorded(history)  # type: ignore[arg-type]
    return list(history)  # type: ignore[arg-type]


def fold(items: Sequence[Recorded], policy: Policy, s: Snapshot | None = None) -> Snapshot | None:
    """Apply effective events, in the order given, without their guards."""
    for item in items:
        s = evolve(s, item.event, policy)
    return s


def replay(history: Sequence[Event] | Sequence[Recorded], policy: Policy) -> Snapshot | None:
    """Fold a patient's accepted history (voids included) into its snapshot, in clinical order."""
    return fold(effective(_recorded(history)), policy)


def plan_for(history: Sequence[Event] | Sequence[Recorded], policy: Policy) -> list[Planned]:
    """The care plan as a pure function of a patient's accepted history and the policy: the
    reminders that should be pending (key, kind, due_on, notify_at)."""
    s = replay(history, policy)
    return DEFINITION.project(s, policy) if s is not None else []


@dataclass(frozen=True, slots=True)
class Conflict:
    """A later event whose outcome a late entry or a void would change."""

    item: Recorded
    becomes: str

    def describe(self) -> str:
        e = self.item.event
        key = f" (key {e.key})" if e.key else ""
        return f"#{self.item.id} {e.type} on {e.on.isoformat()}{key} would {self.becomes}"


def rebase(s: Snapshot, later: Sequence[Recorded], policy: Policy, today: date) -> tuple[Snapshot, list[Conflict]]:
    """Decide the later effective events again, in order, on top of `s`: the snapshot they lead
    to, and each whose outcome (status, rule codes and severities) would differ from the one
    recorded. A conflicting event is left out of the fold (what follows it is still checked)."""
    conflicts: list[Conflict] = []
    for item in later:
        try:
            outcome = decide(s, item.event, policy, today)
        except EventValidationError as exc:
            conflicts.append(Conflict(item, f"be invalid ({exc})"))
            continue
        codes = tuple(sorted((r.code, str(r.severity)) for r in outcome.reasons))
        if outcome.status is not Status.accepted:
            conflicts.append(Conflict(item, "be refused (" + ", ".join(r.code for r in outcome.reasons) + ")"))
            continue
        if codes != tuple(sorted(item.reasons)):
            shown = ", ".join(code for code, _ in codes) or "none"
            conflicts.append(Conflict(item, f"be accepted with other rules ({shown})"))
            continue
        s = outcome.snapshot
    return s, conflicts


def decide_late(history: Sequence[Recorded], current: Snapshot, e: Event, policy: Policy, today: date) -> Outcome:
    """A back-dated event: placed in clinical order among the effective events (after those of
    its day already recorded), decided on the snapshot as it stood then; accepted only if every
    later effective event keeps its outcome, else refused with LATE_ENTRY_CONFLICT naming them.
    `current` is the patient's snapshot now (the fold of `history`). Costs one replay."""
    items = effective(history)
    if not items:
        raise EventValidationError([("patient", f"unknown patient {e.patient}: record a referral first")])
    referred = items[0].event.on
    if e.on < referred:
        raise EventValidationError([("on", f"{e.on.isoformat()} is before the patient's referral "
                                           f"({referred.isoformat()}): a pathway event cannot precede it")])
    position = next((i for i, item in enumerate(items) if item.event.on > e.on), len(items))
    before = fold(items[:position], policy)
    assert before is not None  # the referral comes first
    outcome = decide(before, e, policy, today)
    if outcome.status is not Status.accepted:
        return Outcome(outcome.status, outcome.reasons, current.state, current)
    later = items[position:]
    final, conflicts = rebase(outcome.snapshot, later, policy, today)
    if conflicts:
        reason = core.LATE_ENTRY_CONFLICT.reason(
            type=e.type, on=e.on.isoformat(), count=len(conflicts),
            events="; ".join(c.describe() for c in conflicts))
        return Outcome(Status.refused, (reason,), current.state, current)
    return Outcome(Status.accepted, outcome.reasons, final.state, final,
                   reevaluated=tuple(item.id for item in later), placed_state=outcome.state)


def void_target(history: Sequence[Recorded], e: Event) -> Recorded:
    """The effective event a void undoes: the one its data names (`target_key`, or `target_event`:
    the id shown in the history), else the latest effective one. Raises EventValidationError."""
    items = effective(history)
    data = e.data
    key = getattr(data, "target_key", None)
    number = getattr(data, "target_event", None)
    if key is not None:
        found = [item for item in items if item.event.key == key]
        if not found:
            raise EventValidationError([("data.target_key", f"no effective event of {e.patient} has the key "
                                                            f"{key!r} (voided already, or never accepted?)")])
        target = found[0]
    elif number is not None:
        found = [item for item in items if item.id == number]
        if not found:
            raise EventValidationError([("data.target_event", f"event #{number} is not an effective event of "
                                                              f"{e.patient} (see its history)")])
        target = found[0]
    elif items:
        target = items[-1]
    else:
        raise EventValidationError([("patient", f"{e.patient} has no event to void")])
    if target.event.type is EventType.referral:
        raise EventValidationError([("type", "a referral cannot be voided: record withdrawn instead")])
    return target


def decide_void(history: Sequence[Recorded], s: Snapshot | None, e: Event, policy: Policy, today: date) -> Outcome:
    """Undo one effective event (spec: `void`) by replaying the others; accepted only if every
    later effective event keeps its outcome, else refused with VOID_CONFLICT naming them. The
    outcome's `target` is the id of the event undone."""
    if s is None:
        raise EventValidationError([("patient", f"unknown patient {e.patient}: nothing to void")])
    if e.on > today:
        raise EventValidationError([("on", f"{e.on.isoformat()} is in the future (today is {today.isoformat()} "
                                           f"in {policy.clinic_timezone})")])
    target = void_target(history, e)
    items = effective(history)
    position = items.index(target)
    before = fold(items[:position], policy)
    assert before is not None  # the referral comes first and is never voided
    final, conflicts = rebase(before, items[position + 1:], policy, today)
    if conflicts:
        t = target.event
        reason = core.VOID_CONFLICT.reason(
            target=f"#{target.id} {t.type} on {t.on.isoformat()}", count=len(conflicts),
            events="; ".join(c.describe() for c in conflicts))
        return Outcome(Status.refused, (reason,), s.state, s)
    return Outcome(Status.accepted, (), final.state, final, reevaluated=tuple(i.id for i in items[position + 1:]),
                   target=target.id)
