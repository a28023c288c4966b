"""The pathway definition checks itself when it is built (style rule 4), and matches the contract."""

from __future__ import annotations

import pytest
from transitions import Machine

from states import machine as pathway_machine
from states.machine import MACHINE, TRANSITIONS, allowed_events, build, check_definition
from states.rules import RULES, check_catalogue
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
}
SPEC_KINDS = {
    "mdt_due", "mdt_meeting", "chemo_cycle", "restaging_scan", "surgery_due", "pve_due", "flr_scan",
    "ablation_due", "ablation_scan", "imaging_followup", "surveillance",
}


def test_the_vocabulary_is_exactly_the_spec_s() -> None:
    assert {str(s) for s in State} == SPEC_STATES
    assert {str(e) for e in EventType} == SPEC_EVENTS
    assert {str(k) for k in ReminderKind} == SPEC_KINDS
    assert {code: str(rule.severity) for code, rule in RULES.items()} == SPEC_RULES


def test_every_rule_has_a_message_a_source_and_a_description() -> None:
    check_catalogue()
    for rule in RULES.values():
        assert rule.message.strip() and rule.source.strip() and rule.when.strip(), rule.code
        assert isinstance(rule.severity, Severity)


def test_the_machine_is_built_once_for_the_pathway_and_holds_no_patient() -> None:
    assert isinstance(MACHINE, Machine)
    assert MACHINE.models == []  # patients are never registered: one machine serves all
    assert pathway_machine.MACHINE is MACHINE


def test_every_non_terminal_state_can_return_to_the_mdt_and_can_end() -> None:
    for state in NON_TERMINAL_STATES:
        allowed = set(allowed_events(state))
        assert {EventType.mdt_scheduled, EventType.discharged, EventType.died, EventType.withdrawn} <= allowed


def test_recurrence_reopens_the_pathway_after_discharge_but_death_is_final() -> None:
    assert EventType.recurrence in allowed_events(State.discharged)
    assert set(allowed_events(State.deceased)) == {EventType.void}


def test_a_definition_with_an_unreachable_state_fails_its_check(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = [t for t in TRANSITIONS if str(t["dest"]) != "ablation"]  # nothing leads to ablation
    monkeypatch.setattr(pathway_machine, "TRANSITIONS", broken)
    with pytest.raises(AssertionError, match="not reachable.*ablation"):
        check_definition(build())


def test_a_definition_with_a_dead_end_fails_its_check(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = [t for t in TRANSITIONS if str(t["source"]) != "ablation" or t["dest"] in (None, "ablation")]
    monkeypatch.setattr(pathway_machine, "TRANSITIONS", broken)
    with pytest.raises(AssertionError, match="ablation has no way out"):
        check_definition(build())


def test_a_catalogue_with_a_duplicate_or_unsourced_rule_fails_its_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from states import rules

    rule = rules._RULES[0]
    monkeypatch.setattr(rules, "_RULES", (*rules._RULES, rule))
    with pytest.raises(AssertionError, match="duplicate rule codes"):
        rules.check_catalogue()
    unsourced = rules.Rule("NEW_RULE", Severity.block, "when", "message", " ")
    monkeypatch.setattr(rules, "_RULES", (unsourced,))
    with pytest.raises(AssertionError, match="NEW_RULE"):
        rules.check_catalogue()
