"""The pathway definition: the stages assembled into one object that checks itself when it is built.

    DEFINITION.events[EventType.surgery]          # its data model, label, lane, help, guard, effect
    DEFINITION.reminders[ReminderKind.flr_scan]   # its label, lead group, lane, fulfilling events
    DEFINITION.rules["MDT_QUORUM"]                # code, severity, message, source (also RuleCode)
    DEFINITION.edges()                            # the graph: the machine, the diagram and the API use it
    DEFINITION.project(snapshot, policy)          # the care plan (states.plan.project)

Every stage module (referral, chemo, surgery, ablation, followup, core) exports a `Stage`
(states.stage). On import the definition checks (style rule 4) that every event type has one
spec with a data model, a label, a lane and a help text, and a transition unless it is an explicit
exception (referral creates a patient, void is allowed everywhere); that every reminder kind has
one spec with a label, a lead group the policy knows, a fulfilling event and a planner; that every
rule code is unique, well formed and sourced; that exactly one initial state exists, every state
is reachable from it, every non-terminal state has a way out and terminal ones lead nowhere but
back to the MDT (recurrence) or to death. A forgotten registration raises `InvalidDefinition`
naming the member: a broken pathway fails the test suite, not a patient.

How to add (README "Architecture"):
- a rule: a `Rule` constant and its check in the stage module's guard, listed in `Stage.rules`;
  a test. (2 files)
- an event type: the `EventType` member (vocabulary.py), its data model (data.py), its
  `EventSpec` and transitions in a stage module; a test. (4 files)
- a reminder kind: the `ReminderKind` member (vocabulary.py), its `ReminderSpec` and planner in a
  stage module (a new lead group: policy.py); a test. (3-4 files)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from transitions import Machine

from states import ablation, chemo, clocks, core, followup, referral, surgery
from states.context import Ctx
from states.data import EventData
from states.facts import Snapshot
from states.machine import Cursor, build_machine
from states.planning import Planned, notify_at
from states.policy import DEFAULT_POLICY, Policy
from states.rules import Reason, Rule
from states.stage import (
    Availability,
    Effect,
    EventSpec,
    InvalidDefinition,
    Lane,
    ReminderSpec,
    Stage,
    StateChange,
    Transition,
)
from states.vocabulary import NON_TERMINAL_STATES, TERMINAL_STATES, EventType, ReminderKind, State

__all__ = ["DEFINITION", "RULES", "Definition", "Edge", "InvalidDefinition", "RuleCode", "STAGES"]

#: The stages of the pathway, in the order they are shown.
STAGES: tuple[Stage, ...] = (referral.STAGE, chemo.STAGE, surgery.STAGE, ablation.STAGE, followup.STAGE,
                             core.STAGE)

INITIAL = State.referral


@dataclass(frozen=True, slots=True)
class Edge:
    """One transition as the graph shows it: `event` in `source` leads to `dest` (itself when the
    event keeps the state); `conditional` when the data decide (another transition may win)."""

    event: EventType
    source: State
    dest: State
    conditional: bool


class Definition:
    """The checked pathway: built from stages, raising InvalidDefinition if anything is missing."""

    def __init__(self, stages: Sequence[Stage], initial: State = INITIAL, *,
                 event_types: Iterable[EventType] = EventType, reminder_kinds: Iterable[ReminderKind] = ReminderKind):
        """`event_types` and `reminder_kinds`: the vocabulary every registration is checked against
        (the enums; a test may pass a larger one to show what a forgotten registration does)."""
        self.stages = tuple(stages)
        self.initial = initial
        self.event_types = tuple(event_types)
        self.reminder_kinds = tuple(reminder_kinds)
        problems: list[str] = []
        self.events: dict[EventType, EventSpec[Any]] = {}
        self.reminders: dict[ReminderKind, ReminderSpec] = {}
        self.rules: dict[str, Rule] = {}
        self._state_effects: dict[tuple[EventType, State], Effect] = {}
        self._state_changes: tuple[StateChange, ...] = tuple(
            stage.on_state_change for stage in self.stages if stage.on_state_change is not None)
        for stage in self.stages:
            for spec in stage.events:
                if spec.type in self.events:
                    problems.append(f"event type {spec.type} is registered twice (stage {stage.name})")
                self.events[spec.type] = spec
            for reminder in stage.reminders:
                if reminder.kind in self.reminders:
                    problems.append(f"reminder kind {reminder.kind} is registered twice (stage {stage.name})")
                self.reminders[reminder.kind] = reminder
            for rule in stage.rules:
                if rule.code in self.rules:
                    problems.append(f"rule {rule.code} is declared twice (stage {stage.name})")
                self.rules[rule.code] = rule
                problems += rule.problems()
            for key, effect in stage.state_effects.items():
                if key in self._state_effects:
                    problems.append(f"the effect of {key[0]} in {key[1]} is declared twice (stage {stage.name})")
                self._state_effects[key] = effect
        self.transitions: tuple[Transition, ...] = tuple(t for stage in self.stages for t in stage.transitions)
        problems += self._check_events()
        problems += self._check_reminders()
        problems += self._check_graph()
        if problems:
            raise InvalidDefinition(problems)
        self.machine: Machine = build_machine(self.transitions)
        self._planners: dict[State, tuple[ReminderSpec, ...]] = {
            state: tuple(spec for spec in self.reminders.values() if state in spec.states) for state in State
        }
        self._allowed: dict[State, tuple[EventType, ...]] = {
            state: (*(t for t in self.event_types if str(state) in self._sources(t)), EventType.void)
            for state in State
        }
        self._reminders_by_name = {str(kind): spec for kind, spec in self.reminders.items()}

    # -- checks ------------------------------------------------------------------------------------

    def _check_events(self) -> list[str]:
        problems = []
        with_transitions = {t.event for t in self.transitions}
        for event_type in self.event_types:
            spec = self.events.get(event_type)
            if spec is None:
                problems.append(f"event type {event_type} has no EventSpec (data model, label, lane, help): "
                                "register it in a stage")
                continue
            if not (isinstance(spec.data, type) and issubclass(spec.data, EventData)):
                problems.append(f"event type {event_type}: its data model must be an EventData model")
            for name in ("label", "help"):
                if not str(getattr(spec, name)).strip():
                    problems.append(f"event type {event_type} needs a {name}")
            if not isinstance(spec.lane, Lane):
                problems.append(f"event type {event_type} needs a timeline lane (a Lane)")
            if spec.availability is Availability.transitions and event_type not in with_transitions:
                problems.append(f"event type {event_type} has no transition: add one, or declare its "
                                "availability (new_patient, always)")
            if spec.availability is not Availability.transitions and event_type in with_transitions:
                problems.append(f"event type {event_type} is available {spec.availability.value} but has transitions")
        for t in self.transitions:
            if t.event not in self.events:
                problems.append(f"a transition of {t.event} from {t.source}, but {t.event} has no EventSpec")
        for (event_type, state) in self._state_effects:
            if not any(t.event is event_type and t.source is state for t in self.transitions):
                problems.append(f"an effect of {event_type} in {state}, where {event_type} is not allowed")
        return problems

    def _check_reminders(self) -> list[str]:
        problems = []
        for kind in self.reminder_kinds:
            spec = self.reminders.get(kind)
            if spec is None:
                problems.append(f"reminder kind {kind} has no ReminderSpec (label, lead group, fulfilling "
                                "events, planner): register it in a stage")
                continue
            if not spec.label.strip():
                problems.append(f"reminder kind {kind} needs a label")
            if spec.lead_group not in DEFAULT_POLICY.lead_days:
                problems.append(f"reminder kind {kind}: lead group {spec.lead_group!r} is not among the policy's "
                                f"lead_days ({', '.join(DEFAULT_POLICY.lead_days)})")
            if not spec.fulfilled_by:
                problems.append(f"reminder kind {kind} needs the event types that fulfil it")
            if not spec.states:
                problems.append(f"reminder kind {kind} needs the states in which it is planned")
            if not callable(spec.planner):
                problems.append(f"reminder kind {kind} needs a planner")
            if not isinstance(spec.lane, Lane):
                problems.append(f"reminder kind {kind} needs a timeline lane (a Lane)")
        return problems

    def _check_graph(self) -> list[str]:
        problems = []
        if list(State).count(self.initial) != 1:
            problems.append("the pathway needs exactly one initial state")
        targets: dict[State, set[State]] = {s: set() for s in State}
        for edge in self._edges():
            targets[edge.source].add(edge.dest)
        reached, todo = {self.initial}, [self.initial]
        while todo:
            for nxt in targets[todo.pop()]:
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        unreached = [str(s) for s in State if s not in reached]
        if unreached:
            problems.append(f"states not reachable from {self.initial}: {', '.join(unreached)}")
        for state in NON_TERMINAL_STATES:
            if not targets[state] - {state}:
                problems.append(f"non-terminal state {state} has no way out")
        for state in TERMINAL_STATES:
            unexpected = targets[state] - {state, State.deceased, State.mdt_assessment}
            if unexpected:
                problems.append(f"terminal state {state} leads somewhere unexpected: "
                                f"{', '.join(sorted(str(s) for s in unexpected))}")
        return problems

    # -- the graph ---------------------------------------------------------------------------------

    def _edges(self) -> Iterable[Edge]:
        for t in self.transitions:
            yield Edge(t.event, t.source, t.dest or t.source, t.when is not None)

    def edges(self) -> list[Edge]:
        """Every (event, source, dest) once, conditional if any of its transitions is."""
        seen: dict[tuple[EventType, State, State], bool] = {}
        for edge in self._edges():
            key = (edge.event, edge.source, edge.dest)
            seen[key] = seen.get(key, False) or edge.conditional
        return [Edge(e, s, d, c) for (e, s, d), c in seen.items()]

    def _sources(self, event_type: EventType) -> dict[str, Any]:
        event = self.machine.events.get(str(event_type))
        return event.transitions if event is not None else {}

    def allowed_events(self, state: State) -> list[EventType]:
        """Event types with a transition out of `state` (void is always allowed; referral never)."""
        return list(self._allowed[state])

    def is_allowed(self, event_type: EventType, state: State) -> bool:
        return event_type in self._allowed[state]

    def destination(self, ctx: Ctx[Any]) -> State:
        """Fire the event through the machine: the state it leads to."""
        cursor = Cursor(str(ctx.snapshot.state))
        if not self.machine.events[str(ctx.event.type)].trigger(cursor, ctx):
            raise AssertionError(f"no transition for {ctx.event.type} from {ctx.snapshot.state}")  # a default exists
        return State(cursor.state)

    # -- applying events ---------------------------------------------------------------------------

    def guard(self, event_type: EventType) -> Any:
        return self.events[event_type].guard

    def effect(self, event_type: EventType, source: State) -> Effect | None:
        """The effect of `event_type` recorded in `source`: a stage's for that state, else the type's."""
        return self._state_effects.get((event_type, source)) or self.events[event_type].effect

    def is_fact(self, event_type: EventType) -> bool:
        return self.events[event_type].fact

    def enter(self, ctx: Ctx[Any], dest: State) -> Snapshot:
        """What every event does (its date is the latest), and what changing state does: each stage
        resets its own fields."""
        s, e = ctx.snapshot, ctx.event
        changes: dict[str, Any] = {"latest_on": e.on}
        if dest is not s.state:
            changes.update(state=dest, entered_on=e.on)
            for change in self._state_changes:
                changes.update(change(ctx, dest))
        return s.replace(**changes)

    def apply(self, ctx: Ctx[Any]) -> Snapshot:
        """The snapshot after an accepted event: transition, state-change bookkeeping, effect, and
        the waiting-time clocks it starts or stops (states.clocks)."""
        dest = self.destination(ctx)
        s = self.enter(ctx, dest)
        effect = self.effect(ctx.event.type, ctx.snapshot.state)
        if effect:
            s = effect(ctx, s, dest)
        e = ctx.event
        return clocks.advance(ctx.snapshot, s, e.type, e.on, e.data, ctx.policy)

    def not_allowed(self, ctx: Ctx[Any]) -> Reason | None:
        """NOT_ALLOWED_IN_STATE, if the event may not be recorded in the patient's state."""
        s, e = ctx.snapshot, ctx.event
        if not self.is_allowed(e.type, s.state):
            allowed = ", ".join(str(t) for t in self.allowed_events(s.state))
            return core.NOT_ALLOWED_IN_STATE.reason(event=e.type, state=s.state, allowed=allowed)
        return None

    # -- the care plan -----------------------------------------------------------------------------

    def project(self, s: Snapshot, policy: Policy) -> list[Planned]:
        """The reminders that should be pending for this snapshot, in due order: each planner of
        the patient's state says what of its kind is pending; a booking moves its reminder's date."""
        out = []
        patient = s.patient
        for spec in self._planners[s.state]:
            lead = policy.lead_days[spec.lead_group]
            for discriminator, due, detail in spec.planner(s, policy):
                key = f"{patient}:{spec.kind}:{discriminator}"
                if s.bookings:
                    due = s.booking(key) or due
                out.append(Planned(key, patient, spec.kind, due, notify_at(due, lead, policy), detail))
        out.sort(key=lambda p: (p.due_on, p.kind, p.key))
        return out

    def notify_at(self, due_on: date, kind: ReminderKind, policy: Policy) -> datetime:
        return notify_at(due_on, policy.lead_days[self.reminders[kind].lead_group], policy)

    def fulfils(self, event_type: EventType, kind: ReminderKind | str) -> bool:
        """Whether recording `event_type` fulfils (closes as done) a reminder of `kind`."""
        return event_type in self._reminders_by_name[str(kind)].fulfilled_by


DEFINITION = Definition(STAGES)
RULES: dict[str, Rule] = DEFINITION.rules
#: Every rule code of the pathway (built from the stages' rules: a member per rule).
RuleCode = StrEnum("RuleCode", {code: code for code in RULES})  # type: ignore[misc]
