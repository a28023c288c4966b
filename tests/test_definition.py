"""The pathway definition checks itself when it is built (style rule 4), and matches the contract.

A registration forgotten in a stage fails at import with InvalidDefinition naming the member; the
README's "how to add" list is shown below by adding a throw-away event type and reminder kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta
from enum import StrEnum

import pytest
from transitions import Machine

from states import definition as definition_module
from states.data import EmptyData
from states.definition import DEFINITION, RULES, STAGES, Definition, RuleCode
from states.facts import Snapshot
from states.policy import DEFAULT_POLICY, Policy
from states.rules import Rule
from states.stage import EventSpec, InvalidDefinition, Lane, ReminderSpec, Stage, Transition
from states.vocabulary import NON_TERMINAL_STATES, EventType, ReminderKind, Severity, State

SPEC_STATES = {
    "referral", "mdt_assessment", "neoadjuvant_chemo", "conversion_chemo", "portal_vein_embolization",
    "resection", "ablation", "systemic_therapy", "adjuvant_chemo", "follow_up", "discharged", "deceased",
    "withdrawn",
}
SPEC_EVENTS = {
    "referral", "mdt_scheduled", "mdt_decision", "cycle_given", "cycle_delayed", "chemo_stopped", "biomarker",
    "booked", "restaging", "pve_performed", "surgery", "ablation_performed", "ablation_checked",
    "surveillance_visit", "recurrence", "discharged", "died", "withdrawn", "void",
}
SPEC_RULES = {
    "NOT_ALLOWED_IN_STATE": "block", "MDT_QUORUM": "block", "NOT_RESECTABLE": "block",
    "INCOMPLETE_RESECTION": "block", "HIGH_OPERATIVE_RISK": "confirm", "UNCONTROLLED_EXTRAHEPATIC": "block",
    "PROGRESSION_ON_CHEMO": "block", "FLR_INSUFFICIENT": "block", "ANTI_EGFR_PERIOPERATIVE": "block",
    "ANTI_EGFR_RAS": "block", "BEVACIZUMAB_WASHOUT": "block", "BREAST_SYSTEMIC_FIRST": "block",
    "CYCLE_OUT_OF_SEQUENCE": "block", "FLR_NOT_RECORDED": "confirm", "ADJUVANT_TOO_EARLY": "confirm",
    "RIGHT_SIDED_ANTI_EGFR": "confirm", "PREOP_CYCLES_EXCEEDED": "confirm", "ABLATION_LESION_SIZE": "confirm",
    "LOW_VOLUME_CENTRE": "confirm", "CYCLE_TOO_EARLY": "confirm", "COLORECTAL_REGIMEN": "confirm",
    "DISAPPEARING_METASTASES": "advice", "CHEMO_BEFORE_SURGICAL_REVIEW": "advice",
    # v1.2 (docs/contract.md changelog)
    "LATE_ENTRY_CONFLICT": "block", "VOID_CONFLICT": "block",
}
SPEC_KINDS = {
    "mdt_due", "mdt_meeting", "chemo_cycle", "restaging_scan", "surgery_due", "pve_due", "flr_scan",
    "ablation_due", "ablation_scan", "imaging_followup", "surveillance",
}


def test_the_vocabulary_is_exactly_the_contract_s() -> None:
    assert {str(s) for s in State} == SPEC_STATES
    assert {str(e) for e in EventType} == SPEC_EVENTS
    assert {str(k) for k in ReminderKind} == SPEC_KINDS
    assert {code: str(rule.severity) for code, rule in RULES.items()} == SPEC_RULES


def test_every_rule_code_is_a_member_of_rule_code_with_a_message_a_source_and_a_description() -> None:
    assert {str(code) for code in RuleCode} == set(RULES)
    for rule in RULES.values():
        assert rule.message.strip() and rule.source.strip() and rule.when.strip(), rule.code
        assert isinstance(rule.severity, Severity)


def test_every_event_type_and_reminder_kind_has_its_display_metadata() -> None:
    for event_type in EventType:
        spec = DEFINITION.events[event_type]
        assert spec.label and spec.help and isinstance(spec.lane, Lane), event_type
    for kind in ReminderKind:
        spec = DEFINITION.reminders[kind]
        assert spec.label and isinstance(spec.lane, Lane) and spec.lead_group in DEFAULT_POLICY.lead_days, kind


def test_the_machine_is_built_once_for_the_pathway_and_holds_no_patient() -> None:
    assert isinstance(DEFINITION.machine, Machine)
    assert DEFINITION.machine.models == []  # patients are never registered: one machine serves all
    assert definition_module.DEFINITION is DEFINITION


def test_the_graph_is_derived_once_and_the_machine_follows_it() -> None:
    """Every edge of the definition is a transition of the machine, and nothing else is."""
    machine_edges = {
        (name, source, t.dest or source)
        for name, event in DEFINITION.machine.events.items()
        for source, transitions in event.transitions.items()
        for t in transitions
    }
    assert machine_edges == {(str(e.event), str(e.source), str(e.dest)) for e in DEFINITION.edges()}


def test_every_non_terminal_state_can_return_to_the_mdt_and_can_end() -> None:
    for state in NON_TERMINAL_STATES:
        allowed = set(DEFINITION.allowed_events(state))
        assert {EventType.mdt_scheduled, EventType.discharged, EventType.died, EventType.withdrawn} <= allowed


def test_recurrence_reopens_the_pathway_after_discharge_but_death_is_final() -> None:
    assert EventType.recurrence in DEFINITION.allowed_events(State.discharged)
    assert set(DEFINITION.allowed_events(State.deceased)) == {EventType.void}


def test_referral_is_never_allowed_in_a_state_and_void_always_is() -> None:
    for state in State:
        assert not DEFINITION.is_allowed(EventType.referral, state)
        assert DEFINITION.is_allowed(EventType.void, state)


# -- a broken definition fails its check, naming what is wrong -----------------------------------------


def _without(predicate: object) -> list[Stage]:
    """The stages with the transitions `predicate` selects removed."""
    return [dataclasses.replace(stage, transitions=tuple(t for t in stage.transitions
                                                         if not predicate(t)))  # type: ignore[operator]
            for stage in STAGES]


def test_a_definition_with_an_unreachable_state_fails_its_check() -> None:
    stages = _without(lambda t: t.dest is State.ablation)  # nothing leads to ablation
    with pytest.raises(InvalidDefinition, match="not reachable from referral: ablation"):
        Definition(stages)


def test_a_definition_with_a_dead_end_fails_its_check() -> None:
    stages = _without(lambda t: t.source is State.ablation and t.dest not in (None, State.ablation))
    with pytest.raises(InvalidDefinition, match="ablation has no way out"):
        Definition(stages)


def test_a_rule_declared_twice_or_unsourced_fails_the_check() -> None:
    rule = next(iter(RULES.values()))
    twice = [*STAGES, Stage(name="again", rules=(rule,))]
    with pytest.raises(InvalidDefinition, match=f"rule {rule.code} is declared twice"):
        Definition(twice)
    unsourced = [*STAGES, Stage(name="new", rules=(Rule("NEW_RULE", Severity.block, "when", "message", " "),))]
    with pytest.raises(InvalidDefinition, match="rule NEW_RULE: needs a source"):
        Definition(unsourced)


def test_an_event_type_without_its_spec_fails_the_check_naming_it() -> None:
    stages = [dataclasses.replace(stage, events=tuple(e for e in stage.events if e.type is not EventType.biomarker))
              for stage in STAGES]
    with pytest.raises(InvalidDefinition, match="event type biomarker has no EventSpec"):
        Definition(stages)


def test_a_reminder_kind_with_an_unknown_lead_group_fails_the_check_naming_it() -> None:
    stages = [dataclasses.replace(stage, reminders=tuple(
        dataclasses.replace(r, lead_group="colonoscopy") if r.kind is ReminderKind.flr_scan else r
        for r in stage.reminders)) for stage in STAGES]
    with pytest.raises(InvalidDefinition, match="reminder kind flr_scan: lead group 'colonoscopy'"):
        Definition(stages)


# -- how to add an event type and a reminder kind (README, "Architecture") -------------------------------

#: The vocabulary with one more event type and one more reminder kind (what a new member of
#: EventType and of ReminderKind in vocabulary.py would be).
NewEventType = StrEnum("NewEventType", {**{e.name: e.value for e in EventType}, "colonoscopy_done": "colonoscopy_done"})
NewKind = StrEnum("NewKind", {**{k.name: k.value for k in ReminderKind}, "colonoscopy_due": "colonoscopy_due"})
COLONOSCOPY = NewEventType("colonoscopy_done")
COLONOSCOPY_DUE = NewKind("colonoscopy_due")


def plan_colonoscopy(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    if s.surv_anchor is not None:
        yield "1", s.surv_anchor + timedelta(days=365), "colonoscopy one year after resection"


def _colonoscopy_stage(*, transitions: bool = True, reminder: bool = True) -> Stage:
    return Stage(
        name="colonoscopy",
        events=(EventSpec(COLONOSCOPY, EmptyData, "Colonoscopy", Lane.scan,  # type: ignore[arg-type]
                          "A surveillance colonoscopy was done."),),
        transitions=(Transition(COLONOSCOPY, State.follow_up, None),) if transitions else (),  # type: ignore[arg-type]
        reminders=(ReminderSpec(COLONOSCOPY_DUE, "Colonoscopy due", "surveillance", Lane.scan,  # type: ignore[arg-type]
                                frozenset({COLONOSCOPY}), frozenset({State.follow_up}),  # type: ignore[arg-type]
                                plan_colonoscopy),) if reminder else (),
    )


def test_a_new_event_type_without_a_transition_fails_at_build_naming_it() -> None:
    with pytest.raises(InvalidDefinition, match="event type colonoscopy_done has no transition"):
        Definition([*STAGES, _colonoscopy_stage(transitions=False)], event_types=NewEventType,
                   reminder_kinds=NewKind)


def test_a_new_reminder_kind_without_its_spec_fails_at_build_naming_it() -> None:
    with pytest.raises(InvalidDefinition, match="reminder kind colonoscopy_due has no ReminderSpec"):
        Definition([*STAGES, _colonoscopy_stage(reminder=False)], event_types=NewEventType, reminder_kinds=NewKind)


def test_a_new_event_type_and_reminder_kind_fully_registered_are_allowed_and_planned() -> None:
    definition = Definition([*STAGES, _colonoscopy_stage()], event_types=NewEventType, reminder_kinds=NewKind)
    assert COLONOSCOPY in definition.allowed_events(State.follow_up)
    assert COLONOSCOPY not in definition.allowed_events(State.resection)
    s = Snapshot(patient="P1", state=State.follow_up, primary="colorectal", referred_on=date(2026, 1, 5),
                 latest_on=date(2026, 6, 1), entered_on=date(2026, 6, 1), surv_anchor=date(2026, 6, 1))
    planned = {p.kind: p for p in definition.project(s, DEFAULT_POLICY)}
    assert planned[COLONOSCOPY_DUE].key == "P1:colonoscopy_due:1"  # type: ignore[index]
    assert planned[COLONOSCOPY_DUE].due_on == date(2027, 6, 1)  # type: ignore[index]
    assert definition.fulfils(COLONOSCOPY, COLONOSCOPY_DUE)  # type: ignore[arg-type]


def test_snapshot_replace_refuses_an_unknown_field() -> None:
    s = Snapshot(patient="P1", state=State.follow_up, primary="colorectal", referred_on=date(2026, 1, 5),
                 latest_on=date(2026, 1, 5), entered_on=date(2026, 1, 5))
    with pytest.raises(TypeError, match="Snapshot has no field imaging_duee"):
        s.replace(imaging_duee=date(2026, 2, 1))
    assert s.replace(imaging_due=date(2026, 2, 1)).imaging_due == date(2026, 2, 1)
