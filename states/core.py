"""What belongs to no clinical stage: the refusal of an event its state does not allow, `void`,
and the bookings a patient leaves behind when they change state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from states.context import Ctx
from states.data import VoidData
from states.rules import Rule
from states.stage import Availability, EventSpec, Lane, Stage
from states.vocabulary import EventType, Severity, State

NOT_ALLOWED_IN_STATE = Rule(
    "NOT_ALLOWED_IN_STATE",
    Severity.block,
    "the event type is not allowed in the patient's current state",
    "{event} is not allowed while the patient is in {state}; allowed here: {allowed}.",
    "docs/contract.md section 3 (the pathway's transitions)",
    always_block=True,
)


LATE_ENTRY_CONFLICT = Rule(
    "LATE_ENTRY_CONFLICT",
    Severity.block,
    "a back-dated event that, placed in date order, would change the outcome of a later recorded event",
    "Placed on {on}, this {type} would change {count} event(s) recorded after that date: {events}. "
    "Nothing was changed. Void those events first (latest first), record this one, then record them again.",
    "docs/contract.md section 1 (late entries: nothing already recorded changes silently)",
    always_block=True,
)

VOID_CONFLICT = Rule(
    "VOID_CONFLICT",
    Severity.block,
    "a void of an event that later recorded events depend on (their outcome would change)",
    "Voiding {target} would change {count} later event(s): {events}. Nothing was changed. "
    "Void those later events first (latest first).",
    "docs/contract.md section 3 (void: nothing already recorded changes silently)",
    always_block=True,
)


def dropping_bookings(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """Bookings belong to the reminders of the state left behind."""
    return {"bookings": ()} if ctx.snapshot.bookings else {}


STAGE = Stage(
    name="core",
    events=(
        EventSpec(EventType.void, VoidData, "Void", Lane.mdt,
                  "Undo one of the patient's events: the latest, or the one named (the history keeps both).",
                  availability=Availability.always),
    ),
    rules=(NOT_ALLOWED_IN_STATE, LATE_ENTRY_CONFLICT, VOID_CONFLICT),
    on_state_change=dropping_bookings,
)
