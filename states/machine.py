"""The pathway's state machine, built once with `transitions` from the definition's transitions.

One `Machine` serves every patient: it is built with `model=None` and patients are never
registered. An event is fired through `machine.events[type].trigger(cursor, ctx)` on a throwaway
cursor holding only the current state (the "unregistered model" pattern of transitions' FAQ),
which costs microseconds and no memory per patient. Conditions are pure functions of the context
(snapshot, event, policy); where several transitions share a trigger and a source, the first whose
conditions hold wins, and an unconditional one last is the default. The definition
(states.definition) builds it and checks the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from transitions import EventData, Machine

from states.stage import Transition
from states.vocabulary import State


class Cursor:
    """The throwaway model the machine moves: just a state."""

    __slots__ = ("state",)

    def __init__(self, state: str):
        self.state = state


def _condition(predicate: Callable[[Any], bool]) -> Callable[[EventData], bool]:
    def condition(event_data: EventData) -> bool:
        return predicate(cast(tuple[Any, ...], event_data.args)[0])

    condition.__name__ = getattr(predicate, "__name__", "condition")
    condition.__doc__ = predicate.__doc__
    return condition


def build_machine(transitions: Sequence[Transition]) -> Machine:
    return Machine(
        model=None,
        states=[str(s) for s in State],
        transitions=[
            {"trigger": str(t.event), "source": str(t.source), "dest": None if t.dest is None else str(t.dest),
             **({"conditions": [_condition(t.when)]} if t.when is not None else {})}
            for t in transitions
        ],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )
