"""What a stage of the pathway declares: its event types, transitions, rules and reminder kinds.

Each stage module (referral, chemo, surgery, ablation, followup, core) exports one `Stage`.
`states.definition` assembles them into the pathway definition and checks it when it is built:
a registration forgotten here fails at import with `InvalidDefinition` naming the member.

    Stage(
        name="chemo",
        events=(EventSpec(EventType.cycle_given, CycleGivenData, "Cycle given", Lane.chemo, "...",
                          guard=cycle_guards, effect=cycle_effect, fact=True), ...),
        transitions=(Transition(EventType.cycle_given, State.adjuvant_chemo, State.follow_up,
                                when=last_planned_adjuvant_cycle), ...),
        rules=(CYCLE_TOO_EARLY, ...),
        reminders=(ReminderSpec(ReminderKind.chemo_cycle, "Chemotherapy cycle", "chemo", Lane.chemo,
                                fulfilled_by={EventType.cycle_given}, states=CHEMO_STATES,
                                planner=plan_cycle), ...),
        on_state_change=reset_phase,
    )
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from states.errors import PathwayError
from states.facts import Snapshot
from states.rules import Reason, Rule
from states.vocabulary import EventType, ReminderKind, State

if TYPE_CHECKING:
    from states.context import Ctx
    from states.data import EventData
    from states.policy import Policy

D = TypeVar("D", bound="EventData")


class InvalidDefinition(PathwayError):  # noqa: N818 - the name the issue gives it
    """The pathway definition is broken: the message names each missing or inconsistent member."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("the pathway definition is invalid:\n- " + "\n- ".join(self.problems))


class Lane(Enum):
    """The rows of a patient's timeline (the web page's picture), with their labels."""

    mdt = "Referral & MDT"
    chemo = "Chemotherapy"
    procedure = "Surgery / ablation / PVE"
    scan = "Scans"
    surveillance = "Surveillance"

    @property
    def label(self) -> str:
        return str(self.value)


class Availability(Enum):
    """Where an event type may be recorded."""

    transitions = "in the states its transitions leave"  # the usual case: at least one transition
    new_patient = "only for a patient not yet known (never in a state)"  # referral
    always = "in every state (it undoes, it does not move)"  # void


Guard = Callable[["Ctx[Any]"], list[Reason]]
#: An effect: the context, the snapshot after the state-change bookkeeping, the destination.
Effect = Callable[["Ctx[Any]", Snapshot, State], Snapshot]
Condition = Callable[["Ctx[Any]"], bool]
#: What a stage does to its own snapshot fields when the patient changes state: the changes, given
#: the context (the snapshot before the event, the event) and the state entered.
StateChange = Callable[["Ctx[Any]", State], Mapping[str, Any]]
#: A planner: the (discriminator, due date, detail) of its kind's reminders pending for a snapshot.
Planner = Callable[[Snapshot, "Policy"], Iterable[tuple[str, date, str]]]


@dataclass(frozen=True, slots=True)
class EventSpec(Generic[D]):
    """An event type: its data model, where it is shown, what it checks and what it changes."""

    type: EventType
    data: builtins.type[D]
    #: How coordinators read it ("MDT decision"), its timeline lane, a line of help above its form.
    label: str
    lane: Lane
    help: str
    guard: Callable[[Ctx[D]], list[Reason]] | None = None
    effect: Callable[[Ctx[D], Snapshot, State], Snapshot] | None = None
    #: A recorded fact (what happened must be recordable): its blocks become confirms.
    fact: bool = False
    availability: Availability = Availability.transitions


@dataclass(frozen=True, slots=True)
class Transition:
    """`event` in `source` leads to `dest` (None: stays) when `when` holds; the first transition
    of an (event, source) pair whose condition holds wins, an unconditional one last is the default."""

    event: EventType
    source: State
    dest: State | None
    when: Condition | None = None


@dataclass(frozen=True, slots=True)
class ReminderSpec:
    """A reminder kind: how it is shown, when it is sent, what fulfils it, who plans it."""

    kind: ReminderKind
    label: str
    #: The policy's `lead_days` group (days before due_on at which it is sent).
    lead_group: str
    lane: Lane
    #: Event types whose recording closes it as `done` (any other reason: `cancelled`).
    fulfilled_by: frozenset[EventType]
    #: The states in which its planner may plan it (the planner is asked in these only).
    states: frozenset[State]
    planner: Planner


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    events: tuple[EventSpec[Any], ...] = ()
    transitions: tuple[Transition, ...] = ()
    rules: tuple[Rule, ...] = ()
    reminders: tuple[ReminderSpec, ...] = ()
    #: Effects for an event type in one source state, in place of the type's own (another stage's
    #: event in this stage's state: restaging while waiting for PVE).
    state_effects: Mapping[tuple[EventType, State], Effect] = field(default_factory=dict)
    on_state_change: StateChange | None = None
