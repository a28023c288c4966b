"""The pathway's state machine, built once with `transitions` and checked when it is built.

One `Machine` serves every patient: it is built with `model=None` and patients are never
registered. An event is fired through `MACHINE.events[type].trigger(cursor, ctx)` on a throwaway
cursor holding only the current state (the "unregistered model" pattern of transitions' FAQ),
which costs microseconds and no memory per patient. Conditions are pure functions of the context
(snapshot, event, policy); where several transitions share a trigger and a source, the first whose
conditions hold wins, and an unconditional one last is the default.

On import the definition checks itself (style rule 4): one initial state, every state reachable
from it, every non-terminal state has a way out, every rule code unique and sourced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine

from states import ablation, chemo, followup, referral, surgery
from states.context import Ctx
from states.rules import check_catalogue
from states.vocabulary import NON_TERMINAL_STATES, TERMINAL_STATES, EventType, State

INITIAL = State.referral

#: Transitions every non-terminal state shares.
_COMMON: list[dict[str, Any]] = [
    *(
        {"trigger": EventType.mdt_scheduled, "source": state, "dest": State.mdt_assessment}
        for state in NON_TERMINAL_STATES
    ),
    *({"trigger": EventType.biomarker, "source": state, "dest": None} for state in NON_TERMINAL_STATES),
    *({"trigger": EventType.booked, "source": state, "dest": None} for state in NON_TERMINAL_STATES),
]

TRANSITIONS: list[dict[str, Any]] = [
    *_COMMON,
    *referral.TRANSITIONS,
    *chemo.TRANSITIONS,
    *surgery.TRANSITIONS,
    *ablation.TRANSITIONS,
    *followup.TRANSITIONS,
]


def _condition(predicate: Callable[[Ctx], bool]) -> Callable[[EventData], bool]:
    def condition(event_data: EventData) -> bool:
        return predicate(event_data.args[0])  # type: ignore[index]

    condition.__name__ = getattr(predicate, "__name__", "condition")
    condition.__doc__ = predicate.__doc__
    return condition


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "trigger": str(spec["trigger"]),
        "source": str(spec["source"]),
        "dest": None if spec["dest"] is None else str(spec["dest"]),
    }
    if spec.get("conditions"):
        out["conditions"] = [_condition(p) for p in spec["conditions"]]
    return out


def build() -> Machine:
    return Machine(
        model=None,
        states=[str(s) for s in State],
        transitions=[_plain(t) for t in TRANSITIONS],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )


MACHINE = build()


class _Cursor:
    """The throwaway model the machine moves: just a state."""

    __slots__ = ("state",)

    def __init__(self, state: str):
        self.state = state


def allowed_events(state: State) -> list[EventType]:
    """Event types with a transition out of `state` (void is always allowed; referral never)."""
    out = [t for t in EventType if str(t) in MACHINE.events and str(state) in MACHINE.events[str(t)].transitions]
    return [*out, EventType.void]


def is_allowed(event_type: EventType, state: State) -> bool:
    event = MACHINE.events.get(str(event_type))
    return event is not None and str(state) in event.transitions


def destination(ctx: Ctx) -> State:
    """Fire the event through the machine and return the state it leads to."""
    cursor = _Cursor(str(ctx.s.state))
    if not MACHINE.events[str(ctx.e.type)].trigger(cursor, ctx):
        raise AssertionError(f"no transition for {ctx.e.type} from {ctx.s.state}")  # a default exists
    return State(cursor.state)


def check_definition(machine: Machine = MACHINE) -> None:
    """Raise AssertionError if the pathway definition is broken."""
    check_catalogue()
    states = {str(s) for s in State}
    if set(machine.states) != states:
        raise AssertionError(f"machine states differ from the vocabulary: {set(machine.states) ^ states}")
    if INITIAL not in State or list(State).count(INITIAL) != 1:
        raise AssertionError("the pathway needs exactly one initial state")
    edges: dict[str, set[str]] = {s: set() for s in states}
    for event in machine.events.values():
        for source, transitions in event.transitions.items():
            for t in transitions:
                edges[source].add(t.dest or source)
    reached, todo = {str(INITIAL)}, [str(INITIAL)]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    if reached != states:
        raise AssertionError(f"states not reachable from {INITIAL}: {sorted(states - reached)}")
    for state in NON_TERMINAL_STATES:
        if not edges[str(state)] - {str(state)}:
            raise AssertionError(f"non-terminal state {state} has no way out")
    for state in TERMINAL_STATES:
        if edges[str(state)] - {str(state), str(State.deceased), str(State.mdt_assessment)}:
            raise AssertionError(f"terminal state {state} leads somewhere unexpected: {edges[str(state)]}")


check_definition()
