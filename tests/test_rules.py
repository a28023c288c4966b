"""The rules of spec section 4: for every code, a case where it fires and the same case without the
triggering condition, where it does not.

Severities (spec 4): `block` refuses the event (nothing stored but the refusal in the audit log);
`confirm` refuses it unless the event's `override` names the code with a reason, then it is accepted
and the override is kept in the history; `advice` is accepted and shown. On recorded facts
(cycle_given, surgery, ablation_performed, pve_performed) a `block` is at most `confirm`, except
NOT_ALLOWED_IN_STATE and CYCLE_OUT_OF_SEQUENCE. Clinical sources are in clinical/rules.md.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from pathway import RULES, Engine, Result
from tests.builders import (
    OMIT,
    START,
    ablation,
    accept,
    biomarker,
    booked,
    codes,
    confirm,
    cycle,
    cycles,
    days,
    decision,
    died,
    discharged,
    frozen,
    pve,
    recurrence,
    referral,
    restaging,
    scheduled,
    stopped,
    surgery,
    the_reason,
    walk_to,
    withdrawn,
)

P = "P1"


MDT = days(START, 7)  # the decision day after walk_to(..., "mdt_assessment")
SURGICAL = ["resection", "perioperative_chemotherapy", "portal_vein_embolization"]

#: The codes of the table in spec section 4, with their severities.
SPEC_CODES = {
    "NOT_ALLOWED_IN_STATE": "block",
    "MDT_QUORUM": "block",
    "NOT_RESECTABLE": "block",
    "INCOMPLETE_RESECTION": "block",
    "HIGH_OPERATIVE_RISK": "confirm",
    "UNCONTROLLED_EXTRAHEPATIC": "block",
    "PROGRESSION_ON_CHEMO": "block",
    "FLR_INSUFFICIENT": "block",
    "ANTI_EGFR_PERIOPERATIVE": "block",
    "ANTI_EGFR_RAS": "block",
    "BEVACIZUMAB_WASHOUT": "block",
    "BREAST_SYSTEMIC_FIRST": "block",
    "CYCLE_OUT_OF_SEQUENCE": "block",
    "FLR_NOT_RECORDED": "confirm",
    "ADJUVANT_TOO_EARLY": "confirm",
    "RIGHT_SIDED_ANTI_EGFR": "confirm",
    "PREOP_CYCLES_EXCEEDED": "confirm",
    "ABLATION_LESION_SIZE": "confirm",
    "LOW_VOLUME_CENTRE": "confirm",
    "CYCLE_TOO_EARLY": "confirm",
    "COLORECTAL_REGIMEN": "confirm",
    "DISAPPEARING_METASTASES": "advice",
    "CHEMO_BEFORE_SURGICAL_REVIEW": "advice",
    # v1.2: late entries and voids of any event (tests/test_late_entries.py)
    "LATE_ENTRY_CONFLICT": "block",
    "VOID_CONFLICT": "block",
}


# -- helpers -----------------------------------------------------------------------------------------


def check_reason(result: Result, code: str, severity: str) -> Any:
    """`code` is among the result's reasons with `severity`, a message and a source."""
    r = the_reason(result, code)
    assert r.severity == severity, f"{code} is {r.severity}, expected {severity}"
    assert r.message.strip(), f"{code} has no message"
    assert r.source.strip(), f"{code} has no source"
    return r


def refuses(engine: Engine, ev: dict[str, Any], code: str, severity: str) -> Any:
    """Recording `ev` is refused with `code` at `severity`, and nothing changes but the audit log."""
    p = ev["patient"]
    before = frozen(engine, p)
    seen = len(engine.show(p).history)
    result = engine.record(ev)
    assert result.status == "refused", result.as_dict()
    r = check_reason(result, code, severity)
    assert frozen(engine, p) == before, "a refused event changes nothing"
    history = engine.show(p).history
    assert len(history) == seen + 1 and history[-1].status == "refused"
    assert code in [x["code"] for x in history[-1].reasons], "the refusal is kept with its reasons"
    return r


def passes(engine: Engine, ev: dict[str, Any], *absent: str) -> Result:
    """Recording `ev` is accepted and none of `absent` is among its reasons."""
    result = engine.record(ev)
    assert result.status == "accepted", result.as_dict()
    for code in absent:
        assert code not in codes(result), f"{code} fired: {result.as_dict()}"
    return result


def overridden(engine: Engine, ev: dict[str, Any], code: str) -> Result:
    """The same event with `code` overridden is accepted and the override is kept in the history."""
    result = engine.record({**ev, "override": confirm(code, reason="benefit outweighs risk (MDT 12)")})
    assert result.status == "accepted", result.as_dict()
    entry = engine.show(ev["patient"]).history[-1]
    assert entry.status == "accepted"
    assert {"rule": code, "reason": "benefit outweighs risk (MDT 12)"} in [dict(o) for o in entry.override]
    assert engine.verify(ev["patient"]) == []
    return result


def at_mdt(engine: Engine, p: str = P, **kw: Any) -> None:
    walk_to(engine, p, "mdt_assessment", **kw)


def progressed_on_conversion(engine: Engine, p: str = P, response: str = "progression", **data: Any) -> date:
    """Conversion chemotherapy, 4 cycles, then a restaging (by default: progression -> MDT); its date."""
    walk_to(engine, p, "conversion_chemo")
    last = cycles(engine, p, days(START, 14), 4)
    on = days(last, 14)
    accept(engine, restaging(p, on, response, **data))
    return on


def neoadjuvant_done(engine: Engine, p: str = P, n: int = 6, every: int = 14, **decision_fields: Any) -> date:
    """Perioperative chemotherapy with `n` pre-op cycles given; the date of the last one."""
    walk_to(engine, p, "neoadjuvant_chemo", **decision_fields)
    return cycles(engine, p, days(START, 14), n, every)


# -- the catalogue -------------------------------------------------------------------------------------


def test_the_catalogue_holds_exactly_the_codes_of_contract_section_4() -> None:
    """Every code of the contract's section 4 exists with its severity, a message and a source, and no other."""
    assert {code: str(rule.severity) for code, rule in RULES.items()} == SPEC_CODES
    for rule in RULES.values():
        assert rule.message.strip() and rule.source.strip()


# -- NOT_ALLOWED_IN_STATE -------------------------------------------------------------------------------


def test_an_event_not_allowed_in_the_state_is_refused_naming_the_state_and_what_is_allowed(
    engine: Engine,
) -> None:
    """NOT_ALLOWED_IN_STATE (block): a cycle in `referral`; the message names the state and what is allowed."""
    walk_to(engine, P, "referral")
    r = refuses(engine, cycle(P, days(START, 3)), "NOT_ALLOWED_IN_STATE", "block")
    assert "referral" in r.message
    assert "mdt_scheduled" in r.message


def test_the_same_event_in_a_state_that_allows_it_is_accepted(engine: Engine) -> None:
    """A cycle in `neoadjuvant_chemo` is allowed (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    passes(engine, cycle(P, days(START, 14)), "NOT_ALLOWED_IN_STATE")


def test_not_allowed_in_state_is_reported_alone(engine: Engine) -> None:
    """NOT_ALLOWED_IN_STATE is reported alone (spec 1, order of checks): a decision in `referral` that
    also lacks a quorum, is unresectable, infeasible and high-risk gets that one code only."""
    walk_to(engine, P, "referral")
    ev = decision(
        P,
        days(START, 3),
        "resection",
        attendees=["oncologist"],
        resectability="unresectable",
        complete_resection_feasible=False,
        operative_risk="high",
        flr_percent=5,
    )
    refuses(engine, ev, "NOT_ALLOWED_IN_STATE", "block")
    assert codes(engine.record(ev)) == ["NOT_ALLOWED_IN_STATE"]


def test_not_allowed_in_state_stays_block_on_a_fact(engine: Engine) -> None:
    """On a fact event NOT_ALLOWED_IN_STATE stays `block` (spec 4): surgery recorded in
    neoadjuvant_chemo is refused even with an override, and reported alone (no LOW_VOLUME_CENTRE)."""
    walk_to(engine, P, "neoadjuvant_chemo", referral_data={"high_volume_centre": False})
    ev = surgery(P, days(START, 20))
    refuses(engine, ev, "NOT_ALLOWED_IN_STATE", "block")
    result = engine.record({**ev, "override": confirm("NOT_ALLOWED_IN_STATE", "LOW_VOLUME_CENTRE")})
    assert result.status == "refused"
    assert codes(result) == ["NOT_ALLOWED_IN_STATE"]
    check_reason(result, "NOT_ALLOWED_IN_STATE", "block")


@pytest.mark.parametrize("fact", ["pve_performed", "ablation_performed"])
def test_a_procedure_fact_outside_its_stage_is_not_allowed(engine: Engine, fact: str) -> None:
    """pve_performed is allowed only in portal_vein_embolization, ablation_performed only in ablation
    (spec 3); elsewhere they are blocked, fact or not."""
    walk_to(engine, P, "resection")
    ev = pve(P, days(START, 10)) if fact == "pve_performed" else ablation(P, days(START, 10))
    refuses(engine, ev, "NOT_ALLOWED_IN_STATE", "block")


def test_died_is_not_allowed_for_a_deceased_patient(engine: Engine) -> None:
    """`died` is allowed in any state but `deceased` (spec 3)."""
    walk_to(engine, P, "deceased")
    refuses(engine, died(P, days(START, 3)), "NOT_ALLOWED_IN_STATE", "block")


@pytest.mark.parametrize(
    ("state", "build"),
    [
        ("discharged", discharged),
        ("discharged", withdrawn),
        ("withdrawn", discharged),
        ("deceased", withdrawn),
    ],
    ids=["discharged-discharged", "discharged-withdrawn", "withdrawn-discharged", "deceased-withdrawn"],
)
def test_leaving_the_pathway_again_from_a_terminal_state_is_not_allowed(
    engine: Engine, state: str, build: Any
) -> None:
    """`discharged` and `withdrawn` are allowed in any *non-terminal* state (spec 3)."""
    walk_to(engine, P, state)
    refuses(engine, build(P, days(START, 3)), "NOT_ALLOWED_IN_STATE", "block")


def test_mdt_scheduled_is_not_allowed_in_a_terminal_state(engine: Engine) -> None:
    """mdt_scheduled is allowed in any non-terminal state (spec 3); a discharged patient returns by recurrence."""
    walk_to(engine, P, "discharged")
    refuses(engine, scheduled(P, days(START, 3), days(START, 9)), "NOT_ALLOWED_IN_STATE", "block")
    assert passes(engine, recurrence(P, days(START, 3))).state == "mdt_assessment"


def test_booking_surgery_without_a_pending_surgery_reminder_is_not_allowed(engine: Engine) -> None:
    """`booked` is allowed only in a state with a pending reminder of that kind (spec 3): no
    surgery_due is pending in neoadjuvant_chemo, so booking surgery is NOT_ALLOWED_IN_STATE."""
    walk_to(engine, P, "neoadjuvant_chemo")
    refuses(engine, booked(P, days(START, 10), "surgery", days(START, 100)), "NOT_ALLOWED_IN_STATE", "block")


def test_booking_surgery_with_a_pending_surgery_reminder_is_accepted(engine: Engine) -> None:
    """In `resection` a surgery_due reminder is pending, so surgery can be booked."""
    walk_to(engine, P, "resection")
    passes(engine, booked(P, days(START, 10), "surgery", days(START, 30)), "NOT_ALLOWED_IN_STATE")


def test_booking_an_flr_scan_before_the_pve_is_not_allowed(engine: Engine) -> None:
    """Before pve_performed no flr_scan is pending (spec 5), so it cannot be booked; after it, it can."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    refuses(engine, booked(P, days(START, 8), "flr_scan", days(START, 40)), "NOT_ALLOWED_IN_STATE", "block")
    accept(engine, pve(P, days(START, 10)))
    passes(engine, booked(P, days(START, 10), "flr_scan", days(START, 40)), "NOT_ALLOWED_IN_STATE")


def test_booking_a_restaging_scan_before_the_preop_cycles_are_given_is_not_allowed(engine: Engine) -> None:
    """In neoadjuvant_chemo the restaging_scan is pending only once the planned cycles are given (spec 5)."""
    last = neoadjuvant_done(engine, n=5)
    ev = booked(P, last, "restaging_scan", days(last, 30))
    refuses(engine, ev, "NOT_ALLOWED_IN_STATE", "block")
    accept(engine, cycle(P, days(last, 14)))
    passes(engine, booked(P, days(last, 14), "restaging_scan", days(last, 30)), "NOT_ALLOWED_IN_STATE")


def test_booking_an_ablation_scan_without_an_ablation_is_not_allowed(engine: Engine) -> None:
    """In follow_up after a plain resection no ablation_scan is pending, so none can be booked."""
    walk_to(engine, P, "follow_up")
    refuses(
        engine, booked(P, days(START, 30), "ablation_scan", days(START, 60)), "NOT_ALLOWED_IN_STATE", "block"
    )


# -- MDT_QUORUM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["liver_surgeon", "radiologist"])
def test_a_decision_without_a_liver_surgeon_and_a_radiologist_is_blocked(
    engine: Engine, missing: str
) -> None:
    """MDT_QUORUM (block): an MDT decision needs both a liver surgeon and a radiologist (HPB-MDT)."""
    at_mdt(engine)
    attendees = [a for a in ["liver_surgeon", "radiologist", "oncologist"] if a != missing]
    refuses(engine, decision(P, MDT, attendees=attendees), "MDT_QUORUM", "block")


def test_a_decision_with_a_liver_surgeon_and_a_radiologist_is_quorate(engine: Engine) -> None:
    """The two roles alone make a quorum."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, attendees=["radiologist", "liver_surgeon"]), "MDT_QUORUM")


def test_the_quorum_applies_to_non_surgical_plans_too(engine: Engine) -> None:
    """MDT_QUORUM applies to every mdt_decision, including systemic therapy (spec 4)."""
    at_mdt(engine)
    refuses(
        engine,
        decision(P, MDT, "systemic_therapy", attendees=["oncologist", "radiologist"]),
        "MDT_QUORUM",
        "block",
    )


# -- NOT_RESECTABLE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "resectability"),
    [
        ("resection", "potentially_resectable"),
        ("resection", "unresectable"),
        ("perioperative_chemotherapy", "potentially_resectable"),
        ("perioperative_chemotherapy", "unresectable"),
        ("portal_vein_embolization", "unresectable"),
    ],
)
def test_a_plan_that_needs_resectable_disease_is_blocked_without_it(
    engine: Engine, plan: str, resectability: str
) -> None:
    """NOT_RESECTABLE (block): resection or perioperative with resectability ≠ resectable; PVE with
    unresectable (EORTC-elig, COLL-crit)."""
    at_mdt(engine)
    refuses(engine, decision(P, MDT, plan, resectability=resectability), "NOT_RESECTABLE", "block")


@pytest.mark.parametrize(
    ("plan", "resectability"),
    [
        ("resection", "resectable"),
        ("perioperative_chemotherapy", "resectable"),
        ("portal_vein_embolization", "resectable"),
        ("portal_vein_embolization", "potentially_resectable"),
        ("conversion_chemotherapy", "unresectable"),
    ],
)
def test_a_plan_with_the_resectability_it_needs_is_accepted(
    engine: Engine, plan: str, resectability: str
) -> None:
    """Resectable disease for resection or perioperative; PVE also for potentially resectable disease."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, plan, resectability=resectability), "NOT_RESECTABLE")


# -- INCOMPLETE_RESECTION ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", SURGICAL)
def test_a_surgical_plan_without_a_feasible_complete_resection_is_blocked(engine: Engine, plan: str) -> None:
    """INCOMPLETE_RESECTION (block): no partial palliative resection on a surgical plan (Garden)."""
    at_mdt(engine)
    refuses(
        engine, decision(P, MDT, plan, complete_resection_feasible=False), "INCOMPLETE_RESECTION", "block"
    )


@pytest.mark.parametrize("plan", SURGICAL)
def test_a_surgical_plan_with_a_feasible_complete_resection_is_accepted(engine: Engine, plan: str) -> None:
    """complete_resection_feasible true: the rule does not fire."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, plan, complete_resection_feasible=True), "INCOMPLETE_RESECTION")


def test_debulking_a_neuroendocrine_primary_is_accepted(engine: Engine) -> None:
    """INCOMPLETE_RESECTION is not applied to neuroendocrine primaries (V7; NET-rev: debulking is
    acceptable for symptom control)."""
    at_mdt(engine, primary="neuroendocrine")
    result = passes(
        engine, decision(P, MDT, "resection", complete_resection_feasible=False), "INCOMPLETE_RESECTION"
    )
    assert result.state == "resection"


# -- HIGH_OPERATIVE_RISK ----------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", SURGICAL)
def test_a_surgical_plan_at_high_operative_risk_needs_confirmation(engine: Engine, plan: str) -> None:
    """HIGH_OPERATIVE_RISK (confirm) on a surgical plan; its message suggests ablation (COLL-res)."""
    at_mdt(engine)
    ev = decision(P, MDT, plan, operative_risk="high")
    r = refuses(engine, ev, "HIGH_OPERATIVE_RISK", "confirm")
    assert "ablation" in r.message.lower()
    overridden(engine, ev, "HIGH_OPERATIVE_RISK")


def test_a_surgical_plan_at_low_operative_risk_needs_no_confirmation(engine: Engine) -> None:
    """operative_risk low: the rule does not fire."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "resection", operative_risk="low"), "HIGH_OPERATIVE_RISK")


def test_ablation_at_high_operative_risk_needs_no_confirmation(engine: Engine) -> None:
    """Ablation is not a surgical plan (spec 4) — it is what the rule suggests for unfit patients."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "ablation", operative_risk="high"), "HIGH_OPERATIVE_RISK")


# -- UNCONTROLLED_EXTRAHEPATIC ----------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [*SURGICAL, "ablation"])
def test_a_surgical_or_ablation_plan_with_uncontrollable_extrahepatic_disease_is_blocked(
    engine: Engine, plan: str
) -> None:
    """UNCONTROLLED_EXTRAHEPATIC (block): surgical plan or ablation with uncontrollable disease (V6b)."""
    at_mdt(engine)
    refuses(
        engine, decision(P, MDT, plan, extrahepatic="uncontrollable"), "UNCONTROLLED_EXTRAHEPATIC", "block"
    )


@pytest.mark.parametrize("plan", [*SURGICAL, "ablation"])
def test_a_surgical_or_ablation_plan_with_controllable_extrahepatic_disease_is_accepted(
    engine: Engine, plan: str
) -> None:
    """Controllable extrahepatic disease (one lung nodule) does not preclude surgery (V6a; Lung)."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, plan, extrahepatic="controllable"), "UNCONTROLLED_EXTRAHEPATIC")


def test_systemic_therapy_with_uncontrollable_extrahepatic_disease_is_accepted(engine: Engine) -> None:
    """The palliative route stays open (V6b): systemic therapy is accepted."""
    at_mdt(engine)
    passes(
        engine,
        decision(P, MDT, "systemic_therapy", extrahepatic="uncontrollable"),
        "UNCONTROLLED_EXTRAHEPATIC",
    )


# -- PROGRESSION_ON_CHEMO ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", SURGICAL)
def test_a_surgical_plan_after_progression_on_chemotherapy_is_blocked(engine: Engine, plan: str) -> None:
    """PROGRESSION_ON_CHEMO (block): the latest restaging was a progression (EORTC-08, BCLM-MDA)."""
    on = progressed_on_conversion(engine)
    refuses(engine, decision(P, days(on, 7), plan), "PROGRESSION_ON_CHEMO", "block")


def test_a_surgical_plan_after_a_responding_restaging_is_accepted(engine: Engine) -> None:
    """The same conversion course with a partial response that makes the disease resectable."""
    on = progressed_on_conversion(engine, response="partial", resectable=True)
    passes(engine, decision(P, days(on, 7), "resection"), "PROGRESSION_ON_CHEMO")


def test_chemotherapy_stopped_for_progression_blocks_a_surgical_plan(engine: Engine) -> None:
    """`chemo_stopped` for progression is a progression (spec 4)."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, days(START, 14), 3)
    accept(engine, stopped(P, days(last, 7), "progression"))
    refuses(engine, decision(P, days(last, 14), "resection"), "PROGRESSION_ON_CHEMO", "block")


def test_chemotherapy_stopped_for_toxicity_does_not_block_a_surgical_plan(engine: Engine) -> None:
    """Stopping for toxicity is not a progression."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, days(START, 14), 3)
    accept(engine, stopped(P, days(last, 7), "toxicity"))
    passes(engine, decision(P, days(last, 14), "resection"), "PROGRESSION_ON_CHEMO")


def test_a_recurrence_during_adjuvant_chemotherapy_blocks_a_surgical_plan(engine: Engine) -> None:
    """A recurrence during adjuvant_chemo is a progression (spec 4), even though it follows surgery."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    accept(engine, cycle(P, days(surgery_on, 42)))
    accept(engine, recurrence(P, days(surgery_on, 50)))
    refuses(engine, decision(P, days(surgery_on, 60), "resection"), "PROGRESSION_ON_CHEMO", "block")


def test_a_recurrence_during_follow_up_does_not_block_a_surgical_plan(engine: Engine) -> None:
    """A recurrence in follow_up is not a progression on chemotherapy: repeat hepatectomy (Rep-SR)."""
    surgery_on = walk_to(engine, P, "follow_up")
    accept(engine, recurrence(P, days(surgery_on, 200)))
    passes(engine, decision(P, days(surgery_on, 210), "resection"), "PROGRESSION_ON_CHEMO")


def test_a_progression_before_an_ablation_no_longer_blocks_surgery_after_it(engine: Engine) -> None:
    """The window of PROGRESSION_ON_CHEMO restarts at the last liver surgery or ablation (spec 4)."""
    on = progressed_on_conversion(engine)
    accept(engine, decision(P, days(on, 7), "ablation"))  # not a surgical plan
    accept(engine, ablation(P, days(on, 14)))
    accept(engine, recurrence(P, days(on, 200)))
    passes(engine, decision(P, days(on, 210), "resection"), "PROGRESSION_ON_CHEMO")


def test_a_later_non_progression_restaging_clears_the_progression(engine: Engine) -> None:
    """PROGRESSION_ON_CHEMO looks at the *latest* restaging or progression event (spec 4): after a new
    line of therapy restages stable, a surgical plan is allowed again."""
    on = progressed_on_conversion(engine)
    accept(engine, decision(P, days(on, 7), "conversion_chemotherapy", regimen="FOLFIRI"))
    last = cycles(engine, P, days(on, 14), 4)
    accept(engine, restaging(P, days(last, 14), "stable"))
    accept(engine, scheduled(P, days(last, 15), days(last, 21)))
    passes(engine, decision(P, days(last, 21), "resection"), "PROGRESSION_ON_CHEMO")


def test_a_progression_after_a_stable_restaging_blocks_again(engine: Engine) -> None:
    """Stable then progression: the latest is a progression, so surgery is blocked."""
    walk_to(engine, P, "systemic_therapy")
    last = cycles(engine, P, days(START, 14), 4, every=21)
    accept(engine, restaging(P, days(last, 14), "stable"))
    accept(engine, restaging(P, days(last, 60), "progression"))
    refuses(engine, decision(P, days(last, 67), "resection"), "PROGRESSION_ON_CHEMO", "block")


def test_a_progression_at_pve_restaging_blocks_a_surgical_plan(engine: Engine) -> None:
    """Progression while waiting for hypertrophy (PVE/HVE) goes to the MDT and blocks surgery (V3 variant)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, days(START, 10)))
    accept(engine, restaging(P, days(START, 38), "progression"))
    refuses(engine, decision(P, days(START, 45), "resection"), "PROGRESSION_ON_CHEMO", "block")


# -- FLR_INSUFFICIENT --------------------------------------------------------------------------------------

THRESHOLDS = [("normal", 20), ("chemo_injured", 30), ("cirrhotic", 40)]


@pytest.mark.parametrize("plan", ["resection", "perioperative_chemotherapy"])
@pytest.mark.parametrize(("liver", "threshold"), THRESHOLDS)
def test_a_remnant_below_the_threshold_for_the_liver_is_blocked(
    engine: Engine, plan: str, liver: str, threshold: int
) -> None:
    """FLR_INSUFFICIENT (block) below normal 20, chemo_injured 30, cirrhotic 40 (FLR-tab); the message
    suggests PVE or a two-stage hepatectomy."""
    at_mdt(engine)
    r = refuses(
        engine, decision(P, MDT, plan, liver=liver, flr_percent=threshold - 0.5), "FLR_INSUFFICIENT", "block"
    )
    assert "portal_vein_embolization" in r.message or "PVE" in r.message or "two-stage" in r.message
    assert str(threshold) in r.message


@pytest.mark.parametrize("plan", ["resection", "perioperative_chemotherapy"])
@pytest.mark.parametrize(("liver", "threshold"), THRESHOLDS)
def test_a_remnant_at_the_threshold_for_the_liver_is_accepted(
    engine: Engine, plan: str, liver: str, threshold: int
) -> None:
    """The threshold itself is enough ("below the threshold" blocks)."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, plan, liver=liver, flr_percent=threshold), "FLR_INSUFFICIENT")


def test_a_small_remnant_is_the_reason_for_pve_not_a_block(engine: Engine) -> None:
    """FLR_INSUFFICIENT is for resection and perioperative plans; plan PVE with flr 12 is accepted."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "portal_vein_embolization", flr_percent=12), "FLR_INSUFFICIENT")


def _conversion_cycles(engine: Engine, n: int, every: int, regimen: str, liver: str = "normal") -> date:
    """Conversion chemotherapy of `n` cycles, restaged resectable -> MDT; the restaging date."""
    walk_to(engine, P, "conversion_chemo", regimen=regimen, liver=liver)
    last = cycles(engine, P, days(START, 14), n, every)
    on = days(last, every)
    accept(engine, restaging(P, on, "partial", resectable=True))
    assert engine.show(P).state == "mdt_assessment"
    return on


@pytest.mark.parametrize(("regimen", "n", "every"), [("FOLFOX", 6, 14), ("FOLFIRI", 6, 14), ("CAPOX", 4, 21)])
def test_a_normal_liver_counts_as_chemo_injured_after_12_weeks_of_chemotherapy(
    engine: Engine, regimen: str, n: int, every: int
) -> None:
    """After 12 weeks of chemotherapy since referral (6 cycles q14d, 4 q21d) a liver recorded `normal`
    needs 30% (spec 5; FLR-tab, Karoui): flr 25 is blocked."""
    on = _conversion_cycles(engine, n, every, regimen)
    r = refuses(
        engine,
        decision(P, days(on, 7), "resection", liver="normal", flr_percent=25),
        "FLR_INSUFFICIENT",
        "block",
    )
    assert "30" in r.message


@pytest.mark.parametrize(("regimen", "n", "every"), [("FOLFOX", 5, 14), ("CAPOX", 3, 21)])
def test_a_normal_liver_is_normal_before_12_weeks_of_chemotherapy(
    engine: Engine, regimen: str, n: int, every: int
) -> None:
    """One cycle short of 12 weeks the normal threshold (20%) applies: flr 25 is accepted."""
    on = _conversion_cycles(engine, n, every, regimen)
    passes(engine, decision(P, days(on, 7), "resection", liver="normal", flr_percent=25), "FLR_INSUFFICIENT")


def test_chemotherapy_weeks_add_up_across_courses(engine: Engine) -> None:
    """12 weeks "since referral" counts every course: 3 + 3 FOLFOX cycles in two conversion courses."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, days(START, 14), 3)
    accept(engine, stopped(P, days(last, 14), "toxicity"))
    accept(engine, decision(P, days(last, 21), "conversion_chemotherapy", regimen="FOLFIRI"))
    last = cycles(engine, P, days(last, 28), 3)
    accept(engine, restaging(P, days(last, 14), "partial", resectable=True))
    refuses(engine, decision(P, days(last, 21), "resection", flr_percent=25), "FLR_INSUFFICIENT", "block")


def test_chemotherapy_before_referral_does_not_injure_the_liver_for_the_threshold(engine: Engine) -> None:
    """The 12 weeks count "since referral" (spec 5): prior_chemo alone leaves a normal liver normal."""
    at_mdt(engine, referral_data={"prior_chemo": True})
    passes(engine, decision(P, MDT, "resection", flr_percent=25), "FLR_INSUFFICIENT")


def test_a_cirrhotic_liver_keeps_its_threshold_after_chemotherapy(engine: Engine) -> None:
    """Only a `normal` liver is re-counted as chemo_injured; a cirrhotic one still needs 40%."""
    on = _conversion_cycles(engine, 6, 14, "FOLFOX", liver="cirrhotic")
    refuses(
        engine,
        decision(P, days(on, 7), "resection", liver="cirrhotic", flr_percent=35),
        "FLR_INSUFFICIENT",
        "block",
    )
    passes(
        engine, decision(P, days(on, 7), "resection", liver="cirrhotic", flr_percent=40), "FLR_INSUFFICIENT"
    )


def test_the_neoadjuvant_restaging_uses_the_liver_as_it_now_is(engine: Engine) -> None:
    """After 6 pre-op FOLFOX cycles the remnant is compared with 30% (spec 3.2): flr 25 at restaging
    goes back to the MDT instead of to resection."""
    last = neoadjuvant_done(engine, flr_percent=40)
    assert accept(engine, restaging(P, days(last, 14), "partial", flr_percent=25)).state == "mdt_assessment"


def test_the_neoadjuvant_restaging_with_an_adequate_remnant_goes_to_resection(engine: Engine) -> None:
    """The same restaging with flr 30 (the chemo-injured threshold) goes to resection."""
    last = neoadjuvant_done(engine, flr_percent=40)
    assert accept(engine, restaging(P, days(last, 14), "partial", flr_percent=30)).state == "resection"


# -- ANTI_EGFR_PERIOPERATIVE ------------------------------------------------------------------------------


@pytest.mark.parametrize("biologic", ["cetuximab", "panitumumab"])
def test_perioperative_chemotherapy_with_an_anti_egfr_antibody_is_blocked(
    engine: Engine, biologic: str
) -> None:
    """ANTI_EGFR_PERIOPERATIVE (block): no anti-EGFR around surgery for resectable disease (V4d, NewEPOC),
    even with RAS wild-type and a left-sided primary."""
    at_mdt(engine)
    ev = decision(P, MDT, "perioperative_chemotherapy", biologic=biologic, ras="wild_type", sidedness="left")
    refuses(engine, ev, "ANTI_EGFR_PERIOPERATIVE", "block")


def test_perioperative_chemotherapy_with_bevacizumab_is_accepted(engine: Engine) -> None:
    """The alternative the message offers: chemotherapy with bevacizumab."""
    at_mdt(engine)
    passes(
        engine,
        decision(P, MDT, "perioperative_chemotherapy", biologic="bevacizumab"),
        "ANTI_EGFR_PERIOPERATIVE",
    )


def test_conversion_chemotherapy_with_an_anti_egfr_antibody_is_not_perioperative(engine: Engine) -> None:
    """Anti-EGFR is allowed for conversion of RAS wild-type, left-sided disease (PARADIGM)."""
    at_mdt(engine)
    ev = decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab", ras="wild_type", sidedness="left")
    assert passes(engine, ev, "ANTI_EGFR_PERIOPERATIVE", "ANTI_EGFR_RAS").reasons == ()


@pytest.mark.parametrize("biologic", ["cetuximab", "panitumumab"])
def test_a_neoadjuvant_cycle_with_an_anti_egfr_antibody_needs_confirmation(
    engine: Engine, biologic: str
) -> None:
    """On a fact the block becomes `confirm` (spec 4): a pre-op cycle naming an anti-EGFR antibody."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, biomarker(P, days(START, 8), ras="wild_type", sidedness="left"))
    ev = cycle(P, days(START, 14), biologic=biologic)
    refuses(engine, ev, "ANTI_EGFR_PERIOPERATIVE", "confirm")
    overridden(engine, ev, "ANTI_EGFR_PERIOPERATIVE")


def test_an_adjuvant_cycle_with_an_anti_egfr_antibody_needs_confirmation(engine: Engine) -> None:
    """A post-op cycle naming panitumumab: ANTI_EGFR_PERIOPERATIVE as `confirm` (NewEPOC)."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    accept(engine, biomarker(P, surgery_on, ras="wild_type"))
    ev = cycle(P, days(surgery_on, 42), biologic="panitumumab")
    refuses(engine, ev, "ANTI_EGFR_PERIOPERATIVE", "confirm")
    overridden(engine, ev, "ANTI_EGFR_PERIOPERATIVE")


def test_a_neoadjuvant_cycle_without_an_anti_egfr_antibody_needs_no_confirmation(engine: Engine) -> None:
    """The same pre-op cycle naming bevacizumab."""
    walk_to(engine, P, "neoadjuvant_chemo")
    passes(engine, cycle(P, days(START, 14), biologic="bevacizumab"), "ANTI_EGFR_PERIOPERATIVE")


# -- ANTI_EGFR_RAS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("biologic", "ras"), [("cetuximab", "mutant"), ("panitumumab", "unknown"), ("cetuximab", OMIT)]
)
def test_an_anti_egfr_antibody_without_ras_wild_type_is_blocked(
    engine: Engine, biologic: str, ras: Any
) -> None:
    """ANTI_EGFR_RAS (block): RAS mutant, unknown, or never recorded (V4a, V4b; ESMO-stmts, NICE-TA439)."""
    at_mdt(engine)
    ev = decision(P, MDT, "conversion_chemotherapy", biologic=biologic, ras=ras)
    refuses(engine, ev, "ANTI_EGFR_RAS", "block")


def test_an_anti_egfr_antibody_with_ras_wild_type_is_accepted(engine: Engine) -> None:
    """RAS wild-type in the decision: the rule does not fire."""
    at_mdt(engine)
    passes(
        engine,
        decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab", ras="wild_type"),
        "ANTI_EGFR_RAS",
    )


def test_anti_egfr_ras_applies_to_systemic_therapy(engine: Engine) -> None:
    """The rule is about the antibody, whatever the plan: systemic panitumumab with RAS unknown is blocked."""
    at_mdt(engine)
    refuses(engine, decision(P, MDT, "systemic_therapy", biologic="panitumumab"), "ANTI_EGFR_RAS", "block")


def test_a_ras_wild_type_biomarker_lets_a_later_anti_egfr_decision_pass(engine: Engine) -> None:
    """The decision's ras defaults to the latest recorded (V11): a biomarker event with wild_type."""
    at_mdt(engine)
    accept(engine, biomarker(P, days(START, 5), ras="wild_type"))
    passes(engine, decision(P, MDT, "conversion_chemotherapy", biologic="panitumumab"), "ANTI_EGFR_RAS")


def test_the_latest_biomarker_wins(engine: Engine) -> None:
    """wild_type then mutant: the latest (mutant) is used, so the antibody is blocked."""
    at_mdt(engine)
    accept(engine, biomarker(P, days(START, 3), ras="wild_type"))
    accept(engine, biomarker(P, days(START, 5), ras="mutant"))
    refuses(
        engine, decision(P, MDT, "conversion_chemotherapy", biologic="panitumumab"), "ANTI_EGFR_RAS", "block"
    )


def test_an_earlier_decisions_ras_is_remembered(engine: Engine) -> None:
    """ras defaults to the latest recorded "(biomarker or an earlier decision)" (spec 3.1)."""
    at_mdt(engine)
    accept(engine, decision(P, MDT, "systemic_therapy", ras="wild_type"))
    accept(engine, scheduled(P, days(MDT, 7), days(MDT, 14)))
    passes(
        engine, decision(P, days(MDT, 14), "conversion_chemotherapy", biologic="cetuximab"), "ANTI_EGFR_RAS"
    )


def test_a_cycle_naming_an_anti_egfr_antibody_uses_the_latest_ras(engine: Engine) -> None:
    """On a cycle_given that names cetuximab, ANTI_EGFR_RAS uses the latest ras (spec 4): RAS found
    mutant after the decision makes the cycle need confirmation (block -> confirm on a fact)."""
    at_mdt(engine)
    accept(engine, decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab", ras="wild_type"))
    accept(engine, biomarker(P, days(MDT, 5), ras="mutant"))
    ev = cycle(P, days(MDT, 7), biologic="cetuximab")
    refuses(engine, ev, "ANTI_EGFR_RAS", "confirm")
    overridden(engine, ev, "ANTI_EGFR_RAS")


def test_a_cycle_naming_an_anti_egfr_antibody_with_ras_wild_type_passes(engine: Engine) -> None:
    """The same cycle while RAS is still wild-type."""
    at_mdt(engine)
    accept(engine, decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab", ras="wild_type"))
    assert passes(engine, cycle(P, days(MDT, 7), biologic="cetuximab"), "ANTI_EGFR_RAS").reasons == ()


def test_a_cycle_of_a_cetuximab_phase_after_ras_turns_mutant_needs_confirmation(engine: Engine) -> None:
    """Spec 4 applies the anti-EGFR rules to "a `cycle_given` that names cetuximab or panitumumab"; a
    cycle's `biologic` defaults to the phase's (spec 3), so a cycle of a cetuximab phase that does not
    repeat the name still gives cetuximab. The spec is ambiguous here; a clinician expects the RAS rule
    to catch cetuximab given after RAS was found mutant, whether or not the cycle spells it out."""
    at_mdt(engine)
    accept(engine, decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab", ras="wild_type"))
    accept(engine, biomarker(P, days(MDT, 5), ras="mutant"))
    refuses(engine, cycle(P, days(MDT, 7)), "ANTI_EGFR_RAS", "confirm")


# -- RIGHT_SIDED_ANTI_EGFR --------------------------------------------------------------------------------


def test_an_anti_egfr_antibody_for_a_right_sided_primary_needs_confirmation(engine: Engine) -> None:
    """RIGHT_SIDED_ANTI_EGFR (confirm): V4c; overridden with a reason it is accepted, the override kept."""
    at_mdt(engine)
    ev = decision(
        P, MDT, "conversion_chemotherapy", biologic="panitumumab", ras="wild_type", sidedness="right"
    )
    refuses(engine, ev, "RIGHT_SIDED_ANTI_EGFR", "confirm")
    assert overridden(engine, ev, "RIGHT_SIDED_ANTI_EGFR").state == "conversion_chemo"


def test_an_anti_egfr_antibody_for_a_left_sided_primary_needs_no_confirmation(engine: Engine) -> None:
    """Left-sided RAS wild-type disease is where anti-EGFR benefits (PARADIGM)."""
    at_mdt(engine)
    ev = decision(
        P, MDT, "conversion_chemotherapy", biologic="panitumumab", ras="wild_type", sidedness="left"
    )
    passes(engine, ev, "RIGHT_SIDED_ANTI_EGFR")


def test_sidedness_from_a_biomarker_event_counts(engine: Engine) -> None:
    """Sidedness defaults to the latest recorded (spec 3.1): a biomarker event saying right."""
    at_mdt(engine)
    accept(engine, biomarker(P, days(START, 5), ras="wild_type", sidedness="right"))
    refuses(
        engine,
        decision(P, MDT, "conversion_chemotherapy", biologic="cetuximab"),
        "RIGHT_SIDED_ANTI_EGFR",
        "confirm",
    )


def test_a_cycle_naming_an_anti_egfr_antibody_for_a_right_sided_primary_needs_confirmation(
    engine: Engine,
) -> None:
    """The anti-EGFR rules apply to a cycle_given naming the antibody (spec 4), sidedness the latest recorded."""
    at_mdt(engine)
    accept(engine, decision(P, MDT, "conversion_chemotherapy", biologic="bevacizumab", ras="wild_type"))
    accept(engine, biomarker(P, days(MDT, 3), sidedness="right"))
    ev = cycle(P, days(MDT, 7), biologic="cetuximab")
    refuses(engine, ev, "RIGHT_SIDED_ANTI_EGFR", "confirm")
    overridden(engine, ev, "RIGHT_SIDED_ANTI_EGFR")


# -- BEVACIZUMAB_WASHOUT -----------------------------------------------------------------------------------


def bevacizumab_then_resection(engine: Engine, p: str = P) -> date:
    """Perioperative FOLFOX + bevacizumab, 6 cycles, restaged at last + 14 -> resection; the last dose."""
    last = neoadjuvant_done(engine, p, biologic="bevacizumab")
    accept(engine, restaging(p, days(last, 14), "partial"))
    assert engine.show(p).state == "resection"
    return last


@pytest.mark.parametrize("gap", [20, 27])
def test_booking_surgery_under_28_days_after_bevacizumab_is_blocked(engine: Engine, gap: int) -> None:
    """BEVACIZUMAB_WASHOUT (block) under the label minimum of 28 days (V11; Bev); the message gives
    the earliest date without override, last dose + 42."""
    last = bevacizumab_then_resection(engine)
    ev = booked(P, days(last, 14), "surgery", days(last, gap))
    r = refuses(engine, ev, "BEVACIZUMAB_WASHOUT", "block")
    assert days(last, 42).isoformat() in r.message


def test_overriding_the_block_of_the_washout_changes_nothing(engine: Engine) -> None:
    """Overriding a `block` code changes nothing (spec 1): a booking 20 days after bevacizumab stays refused."""
    last = bevacizumab_then_resection(engine)
    ev = booked(P, days(last, 14), "surgery", days(last, 20), override=confirm("BEVACIZUMAB_WASHOUT"))
    refuses(engine, ev, "BEVACIZUMAB_WASHOUT", "block")


@pytest.mark.parametrize("gap", [28, 35, 41])
def test_booking_surgery_28_to_41_days_after_bevacizumab_needs_confirmation(engine: Engine, gap: int) -> None:
    """BEVACIZUMAB_WASHOUT is `confirm` for 28–41 days (NCCN: 6 weeks); once confirmed the booking
    moves surgery_due to the booked date. The message names the earliest date, last dose + 42."""
    last = bevacizumab_then_resection(engine)
    ev = booked(P, days(last, 14), "surgery", days(last, gap))
    r = refuses(engine, ev, "BEVACIZUMAB_WASHOUT", "confirm")
    assert days(last, 42).isoformat() in r.message
    overridden(engine, ev, "BEVACIZUMAB_WASHOUT")
    assert [x.due_on for x in engine.show(P).reminders if x.kind == "surgery_due"] == [days(last, gap)]


@pytest.mark.parametrize("gap", [42, 60])
def test_booking_surgery_42_days_after_bevacizumab_is_accepted(engine: Engine, gap: int) -> None:
    """From 42 days the washout is complete (V11): no code."""
    last = bevacizumab_then_resection(engine)
    passes(engine, booked(P, days(last, 14), "surgery", days(last, gap)), "BEVACIZUMAB_WASHOUT")


@pytest.mark.parametrize("gap", [20, 28, 41])
def test_surgery_under_42_days_after_bevacizumab_needs_confirmation(engine: Engine, gap: int) -> None:
    """On the `surgery` fact the washout is `confirm` under 42 days, even under 28 (spec 4: what
    happened must be recordable)."""
    last = bevacizumab_then_resection(engine)
    ev = surgery(P, days(last, gap))
    r = refuses(engine, ev, "BEVACIZUMAB_WASHOUT", "confirm")
    assert days(last, 42).isoformat() in r.message
    overridden(engine, ev, "BEVACIZUMAB_WASHOUT")


def test_surgery_42_days_after_bevacizumab_needs_no_confirmation(engine: Engine) -> None:
    """At 42 days the surgery fact passes."""
    last = bevacizumab_then_resection(engine)
    passes(engine, surgery(P, days(last, 42)), "BEVACIZUMAB_WASHOUT")


def test_booking_surgery_soon_after_chemotherapy_without_bevacizumab_is_accepted(engine: Engine) -> None:
    """Without any bevacizumab dose there is no washout."""
    last = neoadjuvant_done(engine)
    accept(engine, restaging(P, days(last, 14), "partial"))
    passes(engine, booked(P, days(last, 14), "surgery", days(last, 20)), "BEVACIZUMAB_WASHOUT")


def test_a_single_cycle_naming_bevacizumab_counts_as_the_last_dose(engine: Engine) -> None:
    """The last bevacizumab dose is any cycle that gave it, even in a phase planned without it."""
    last = neoadjuvant_done(engine, n=5)
    last = days(last, 14)
    accept(engine, cycle(P, last, biologic="bevacizumab"))
    accept(engine, restaging(P, days(last, 14), "partial"))
    refuses(engine, booked(P, days(last, 14), "surgery", days(last, 21)), "BEVACIZUMAB_WASHOUT", "block")


# -- BREAST_SYSTEMIC_FIRST ----------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [*SURGICAL, "ablation"])
def test_a_breast_primary_without_systemic_therapy_first_is_blocked(engine: Engine, plan: str) -> None:
    """BREAST_SYSTEMIC_FIRST (block): surgery or ablation before a systemic_therapy phase with a restaging (V8)."""
    at_mdt(engine, primary="breast")
    refuses(engine, decision(P, MDT, plan), "BREAST_SYSTEMIC_FIRST", "block")


def _breast_systemic(engine: Engine, *responses: str, resectable: bool | None = True) -> date:
    """Breast primary on systemic therapy (other), 4 cycles, then restagings; the last restaging date."""
    walk_to(engine, P, "systemic_therapy", primary="breast")
    last = cycles(engine, P, days(START, 14), 4, every=21)
    on = last
    for i, response in enumerate(responses):
        on = days(last, 14 + 7 * i)
        final = i == len(responses) - 1
        data = {"resectable": resectable} if final and resectable is not None else {}
        accept(engine, restaging(P, on, response, **data))
    return on


def test_a_breast_primary_after_a_stable_systemic_restaging_may_have_surgery(engine: Engine) -> None:
    """V8: systemic therapy, restaging stable and resectable -> MDT; plan resection is accepted."""
    on = _breast_systemic(engine, "stable")
    assert engine.show(P).state == "mdt_assessment"
    passes(engine, decision(P, days(on, 7), "resection"), "BREAST_SYSTEMIC_FIRST")


def test_a_breast_primary_whose_latest_systemic_restaging_progressed_is_blocked(engine: Engine) -> None:
    """The latest restaging of the systemic phase must not be a progression (spec 4)."""
    on = _breast_systemic(engine, "stable", "progression", resectable=None)
    assert engine.show(P).state == "mdt_assessment"
    result = engine.record(decision(P, days(on, 7), "resection"))
    assert result.status == "refused"
    check_reason(result, "BREAST_SYSTEMIC_FIRST", "block")
    check_reason(result, "PROGRESSION_ON_CHEMO", "block")


def test_a_breast_primary_with_a_systemic_phase_but_no_restaging_is_blocked(engine: Engine) -> None:
    """A systemic phase that was never restaged does not count."""
    walk_to(engine, P, "systemic_therapy", primary="breast")
    last = cycles(engine, P, days(START, 14), 4, every=21)
    accept(engine, stopped(P, days(last, 7), "completed"))
    refuses(engine, decision(P, days(last, 14), "resection"), "BREAST_SYSTEMIC_FIRST", "block")


def test_a_breast_primary_restaged_on_conversion_chemotherapy_is_still_blocked(engine: Engine) -> None:
    """The earlier phase must be `systemic_therapy` (spec 4): a conversion course does not count."""
    at_mdt(engine, primary="breast")
    accept(engine, decision(P, MDT, "conversion_chemotherapy", override=confirm("COLORECTAL_REGIMEN")))
    last = cycles(engine, P, days(MDT, 7), 4, every=21)
    accept(engine, restaging(P, days(last, 14), "partial", resectable=True))
    refuses(engine, decision(P, days(last, 21), "resection"), "BREAST_SYSTEMIC_FIRST", "block")


def test_a_colorectal_primary_needs_no_systemic_therapy_first(engine: Engine) -> None:
    """BREAST_SYSTEMIC_FIRST applies to breast primaries only."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "resection"), "BREAST_SYSTEMIC_FIRST")


# -- CYCLE_OUT_OF_SEQUENCE -----------------------------------------------------------------------------------


def test_a_cycle_number_that_is_not_the_next_is_blocked_even_as_a_fact(engine: Engine) -> None:
    """CYCLE_OUT_OF_SEQUENCE stays `block` on the fact (spec 4; V10): record the missing cycle first.
    An override changes nothing."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, days(START, 14), cycle=1))
    refuses(engine, cycle(P, days(START, 28), cycle=3), "CYCLE_OUT_OF_SEQUENCE", "block")
    ev = cycle(P, days(START, 28), cycle=3, override=confirm("CYCLE_OUT_OF_SEQUENCE"))
    refuses(engine, ev, "CYCLE_OUT_OF_SEQUENCE", "block")


def test_the_next_cycle_number_is_accepted(engine: Engine) -> None:
    """cycle 2 after cycle 1."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, days(START, 14), cycle=1))
    passes(engine, cycle(P, days(START, 28), cycle=2), "CYCLE_OUT_OF_SEQUENCE")


def test_the_first_cycle_must_be_number_one(engine: Engine) -> None:
    """With no cycle given yet, cycle 2 is out of sequence."""
    walk_to(engine, P, "neoadjuvant_chemo")
    refuses(engine, cycle(P, days(START, 14), cycle=2), "CYCLE_OUT_OF_SEQUENCE", "block")


def test_cycle_numbers_restart_in_each_phase(engine: Engine) -> None:
    """Spec 3: "the next number in this phase": the first adjuvant cycle is 1 after 6 pre-op cycles."""
    last = neoadjuvant_done(engine)
    accept(engine, restaging(P, days(last, 14), "partial"))
    accept(engine, surgery(P, days(last, 42), adjuvant=True))
    passes(engine, cycle(P, days(last, 84), cycle=1), "CYCLE_OUT_OF_SEQUENCE")


# -- FLR_NOT_RECORDED ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", ["resection", "perioperative_chemotherapy"])
def test_a_major_resection_planned_without_a_remnant_volume_needs_confirmation(
    engine: Engine, plan: str
) -> None:
    """FLR_NOT_RECORDED (confirm): extent major (the default) without flr_percent (FLR-tab, Madoff)."""
    at_mdt(engine)
    ev = decision(P, MDT, plan, flr_percent=OMIT)
    refuses(engine, ev, "FLR_NOT_RECORDED", "confirm")
    overridden(engine, ev, "FLR_NOT_RECORDED")


def test_a_minor_resection_planned_without_a_remnant_volume_needs_no_confirmation(engine: Engine) -> None:
    """extent minor: volumetry is not required."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "resection", extent="minor", flr_percent=OMIT), "FLR_NOT_RECORDED")


def test_a_major_resection_with_a_remnant_volume_needs_no_confirmation(engine: Engine) -> None:
    """flr_percent recorded: the rule does not fire."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "resection", extent="major", flr_percent=45), "FLR_NOT_RECORDED")


# -- ADJUVANT_TOO_EARLY -------------------------------------------------------------------------------------


def test_a_cycle_under_28_days_after_liver_surgery_needs_confirmation(engine: Engine) -> None:
    """ADJUVANT_TOO_EARLY (confirm): wound healing, bevacizumab label (T19, T20)."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    ev = cycle(P, days(surgery_on, 27))
    refuses(engine, ev, "ADJUVANT_TOO_EARLY", "confirm")
    overridden(engine, ev, "ADJUVANT_TOO_EARLY")


def test_a_cycle_28_days_after_liver_surgery_needs_no_confirmation(engine: Engine) -> None:
    """28 days is enough."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    passes(engine, cycle(P, days(surgery_on, 28)), "ADJUVANT_TOO_EARLY")


def test_a_cycle_under_28_days_after_ablation_needs_confirmation(engine: Engine) -> None:
    """The rule counts from a liver surgery *or ablation*."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, days(START, 14), adjuvant=True))
    refuses(engine, cycle(P, days(START, 30)), "ADJUVANT_TOO_EARLY", "confirm")
    passes(engine, cycle(P, days(START, 42)), "ADJUVANT_TOO_EARLY")


def test_any_chemotherapy_cycle_soon_after_surgery_needs_confirmation(engine: Engine) -> None:
    """Spec 4 says "a chemotherapy cycle", not only an adjuvant one: R2 resection -> MDT -> conversion,
    first cycle 20 days after the surgery."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, days(START, 21), margin="R2"))
    accept(engine, decision(P, days(START, 28), "conversion_chemotherapy"))
    refuses(engine, cycle(P, days(START, 41)), "ADJUVANT_TOO_EARLY", "confirm")


# -- PREOP_CYCLES_EXCEEDED ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("regimen", "planned", "every"), [("FOLFOX", 6, 14), ("CAPOX", 4, 21)])
def test_a_preop_cycle_beyond_the_planned_number_needs_confirmation(
    engine: Engine, regimen: str, planned: int, every: int
) -> None:
    """PREOP_CYCLES_EXCEEDED (confirm): 6 (q14d) or 4 (q21d) pre-op cycles are planned (V10; EORTC-08)."""
    last = neoadjuvant_done(engine, n=planned, every=every, regimen=regimen)
    ev = cycle(P, days(last, every))
    refuses(engine, ev, "PREOP_CYCLES_EXCEEDED", "confirm")
    overridden(engine, ev, "PREOP_CYCLES_EXCEEDED")


@pytest.mark.parametrize(("regimen", "planned", "every"), [("FOLFOX", 6, 14), ("CAPOX", 4, 21)])
def test_the_last_planned_preop_cycle_needs_no_confirmation(
    engine: Engine, regimen: str, planned: int, every: int
) -> None:
    """The planned number itself is fine."""
    last = neoadjuvant_done(engine, n=planned - 1, every=every, regimen=regimen)
    passes(engine, cycle(P, days(last, every)), "PREOP_CYCLES_EXCEEDED")


def test_conversion_chemotherapy_has_no_planned_number_of_cycles(engine: Engine) -> None:
    """Conversion is open-ended until restaging (spec 5): a 7th cycle passes."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, days(START, 14), 6)
    passes(engine, cycle(P, days(last, 14)), "PREOP_CYCLES_EXCEEDED")


# -- ABLATION_LESION_SIZE -----------------------------------------------------------------------------------


def test_ablation_of_a_lesion_over_3_cm_needs_confirmation(engine: Engine) -> None:
    """ABLATION_LESION_SIZE (confirm): thermal ablation is first-line up to 3 cm (COLL-prot, COLL-res)."""
    at_mdt(engine)
    ev = decision(P, MDT, "ablation", largest_lesion_cm=3.5)
    r = refuses(engine, ev, "ABLATION_LESION_SIZE", "confirm")
    assert "3.5" in r.message
    overridden(engine, ev, "ABLATION_LESION_SIZE")


@pytest.mark.parametrize("size", [3, 1.2, OMIT])
def test_ablation_of_a_lesion_up_to_3_cm_needs_no_confirmation(engine: Engine, size: Any) -> None:
    """3 cm or less (or no size recorded): the rule does not fire."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "ablation", largest_lesion_cm=size), "ABLATION_LESION_SIZE")


# -- LOW_VOLUME_CENTRE --------------------------------------------------------------------------------------


def test_surgery_at_a_low_volume_centre_needs_confirmation(engine: Engine) -> None:
    """LOW_VOLUME_CENTRE (confirm) on `surgery` when the referral said high_volume_centre false (V10)."""
    walk_to(engine, P, "resection", referral_data={"high_volume_centre": False, "centre": "District General"})
    ev = surgery(P, days(START, 21))
    refuses(engine, ev, "LOW_VOLUME_CENTRE", "confirm")
    overridden(engine, ev, "LOW_VOLUME_CENTRE")


def test_surgery_at_a_high_volume_centre_needs_no_confirmation(engine: Engine) -> None:
    """high_volume_centre defaults to true."""
    walk_to(engine, P, "resection")
    passes(engine, surgery(P, days(START, 21)), "LOW_VOLUME_CENTRE")


# -- CYCLE_TOO_EARLY ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("regimen", "too_early"), [("FOLFOX", 10), ("CAPOX", 17)])
def test_a_cycle_less_than_cycle_length_minus_3_days_after_the_previous_needs_confirmation(
    engine: Engine, regimen: str, too_early: int
) -> None:
    """CYCLE_TOO_EARLY (confirm) under (cycle length − 3) days (V10; T5-T8)."""
    walk_to(engine, P, "neoadjuvant_chemo", regimen=regimen)
    accept(engine, cycle(P, days(START, 14)))
    ev = cycle(P, days(START, 14 + too_early))
    refuses(engine, ev, "CYCLE_TOO_EARLY", "confirm")
    overridden(engine, ev, "CYCLE_TOO_EARLY")


@pytest.mark.parametrize(("regimen", "soon_enough"), [("FOLFOX", 11), ("CAPOX", 18)])
def test_a_cycle_cycle_length_minus_3_days_after_the_previous_needs_no_confirmation(
    engine: Engine, regimen: str, soon_enough: int
) -> None:
    """Exactly (cycle length − 3) days is allowed."""
    walk_to(engine, P, "neoadjuvant_chemo", regimen=regimen)
    accept(engine, cycle(P, days(START, 14)))
    passes(engine, cycle(P, days(START, 14 + soon_enough)), "CYCLE_TOO_EARLY")


def test_the_first_cycle_of_a_new_phase_is_not_too_early(engine: Engine) -> None:
    """Spec 4: "the previous cycle of the same phase": a first systemic cycle 7 days after the last
    conversion cycle is not too early."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, days(START, 14), 3)
    accept(engine, stopped(P, days(last, 2), "toxicity"))
    accept(engine, decision(P, days(last, 3), "systemic_therapy", regimen="FOLFIRI"))
    passes(engine, cycle(P, days(last, 7)), "CYCLE_TOO_EARLY")


# -- COLORECTAL_REGIMEN -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "plan", "regimen"),
    [
        ("neuroendocrine", "perioperative_chemotherapy", OMIT),
        ("neuroendocrine", "conversion_chemotherapy", OMIT),
        ("neuroendocrine", "systemic_therapy", "FOLFOX"),
        ("breast", "systemic_therapy", "CAPOX"),
        ("other", "systemic_therapy", "FOLFIRI"),
        ("other", "conversion_chemotherapy", "other"),
    ],
)
def test_a_colorectal_schedule_for_a_non_colorectal_primary_needs_confirmation(
    engine: Engine, primary: str, plan: str, regimen: Any
) -> None:
    """COLORECTAL_REGIMEN (confirm): a perioperative or conversion plan, or FOLFOX/FOLFIRI/CAPOX, for a
    non-colorectal primary (V7; NET-rev, BCLM-rev)."""
    at_mdt(engine, primary=primary)
    ev = decision(P, MDT, plan, regimen=regimen)
    refuses(engine, ev, "COLORECTAL_REGIMEN", "confirm")
    overridden(engine, ev, "COLORECTAL_REGIMEN")


@pytest.mark.parametrize("primary", ["neuroendocrine", "breast", "other"])
def test_systemic_therapy_with_a_non_colorectal_regimen_needs_no_confirmation(
    engine: Engine, primary: str
) -> None:
    """Not for systemic + other (the default regimen of a non-colorectal primary)."""
    at_mdt(engine, primary=primary)
    passes(engine, decision(P, MDT, "systemic_therapy"), "COLORECTAL_REGIMEN")
    assert engine.show(P).state == "systemic_therapy"


def test_a_colorectal_primary_on_a_colorectal_schedule_needs_no_confirmation(engine: Engine) -> None:
    """Colorectal primary, perioperative CAPOX: the rule does not apply."""
    at_mdt(engine)
    passes(engine, decision(P, MDT, "perioperative_chemotherapy", regimen="CAPOX"), "COLORECTAL_REGIMEN")


# -- advice ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("response", "disappeared"), [("complete", 1), ("partial", 2), ("complete", 0)])
def test_disappearing_metastases_are_advised_and_surgery_stays_planned(
    engine: Engine, response: str, disappeared: int
) -> None:
    """DISAPPEARING_METASTASES (advice): accepted, shown in the advice, surgery still planned (V5;
    DLM-JCO: complete response is not cure)."""
    last = neoadjuvant_done(engine)
    result = engine.record(restaging(P, days(last, 14), response, disappeared_lesions=disappeared))
    assert result.status == "accepted"
    check_reason(result, "DISAPPEARING_METASTASES", "advice")
    view = engine.show(P)
    assert view.state == "resection"
    assert [a["code"] for a in view.advice] == ["DISAPPEARING_METASTASES"]
    assert all(a["message"] and a["source"] for a in view.advice)


def test_a_restaging_without_disappeared_lesions_gives_no_advice(engine: Engine) -> None:
    """Partial response, no disappeared lesions: no advice."""
    last = neoadjuvant_done(engine)
    result = passes(engine, restaging(P, days(last, 14), "partial"), "DISAPPEARING_METASTASES")
    assert result.reasons == ()
    assert engine.show(P).advice == ()


def test_disappearing_metastases_on_conversion_go_back_to_the_mdt_with_advice(engine: Engine) -> None:
    """On conversion chemotherapy a complete response goes to the MDT (spec 3.2) and carries the advice."""
    on = progressed_on_conversion(engine, response="complete")
    assert engine.show(P).state == "mdt_assessment"
    assert [a["code"] for a in engine.show(P).advice] == ["DISAPPEARING_METASTASES"]
    assert engine.show(P).advice[0]["on"] == on.isoformat()


def test_chemotherapy_before_surgical_review_is_advised(engine: Engine) -> None:
    """CHEMO_BEFORE_SURGICAL_REVIEW (advice) on a referral with prior_chemo true (DLM-prev): accepted
    and shown in the advice."""
    result = engine.record(referral(P, START, prior_chemo=True))
    assert result.status == "accepted"
    check_reason(result, "CHEMO_BEFORE_SURGICAL_REVIEW", "advice")
    assert [a["code"] for a in engine.show(P).advice] == ["CHEMO_BEFORE_SURGICAL_REVIEW"]


def test_a_referral_without_prior_chemotherapy_gives_no_advice(engine: Engine) -> None:
    """prior_chemo defaults to false."""
    result = passes(engine, referral(P, START), "CHEMO_BEFORE_SURGICAL_REVIEW")
    assert result.reasons == ()
    assert engine.show(P).advice == ()


def test_advice_stays_shown_after_later_events(engine: Engine) -> None:
    """Advice is kept and shown (spec 4), not only on the event that raised it."""
    accept(engine, referral(P, START, prior_chemo=True))
    accept(engine, scheduled(P, days(START, 1), days(START, 7)))
    accept(engine, decision(P, MDT, "resection"))
    assert [a["code"] for a in engine.show(P).advice] == ["CHEMO_BEFORE_SURGICAL_REVIEW"]


# -- severities together -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"attendees": ["oncologist"]}, "MDT_QUORUM"),
        ({"resectability": "unresectable"}, "NOT_RESECTABLE"),
        ({"complete_resection_feasible": False}, "INCOMPLETE_RESECTION"),
        ({"extrahepatic": "uncontrollable"}, "UNCONTROLLED_EXTRAHEPATIC"),
        ({"flr_percent": 10}, "FLR_INSUFFICIENT"),
    ],
)
def test_overriding_a_block_code_changes_nothing(engine: Engine, fields: dict[str, Any], code: str) -> None:
    """Overriding a `block` code changes nothing (spec 1): the decision stays refused with that block."""
    at_mdt(engine)
    refuses(engine, decision(P, MDT, "resection", **fields, override=confirm(code)), code, "block")


def test_blocks_and_unconfirmed_confirms_are_reported_together(engine: Engine) -> None:
    """All applicable rules after the state check are reported together (spec 1): two blocks and a confirm."""
    at_mdt(engine)
    ev = decision(
        P,
        MDT,
        "resection",
        attendees=["oncologist"],
        complete_resection_feasible=False,
        operative_risk="high",
    )
    result = engine.record(ev)
    assert result.status == "refused"
    assert set(codes(result)) == {"MDT_QUORUM", "INCOMPLETE_RESECTION", "HIGH_OPERATIVE_RISK"}
    check_reason(result, "HIGH_OPERATIVE_RISK", "confirm")


def test_a_confirmed_code_is_not_reported_while_a_block_refuses_the_event(engine: Engine) -> None:
    """Reported together are "blocks, and confirms not overridden" (spec 1): the overridden confirm is left out."""
    at_mdt(engine)
    ev = decision(
        P,
        MDT,
        "resection",
        attendees=["oncologist"],
        operative_risk="high",
        override=confirm("HIGH_OPERATIVE_RISK"),
    )
    result = engine.record(ev)
    assert result.status == "refused"
    assert codes(result) == ["MDT_QUORUM"]


def test_every_confirm_must_be_overridden(engine: Engine) -> None:
    """Two confirms, one overridden: refused with the other one only."""
    at_mdt(engine)
    ev = decision(P, MDT, "resection", operative_risk="high", flr_percent=OMIT)
    result = engine.record({**ev, "override": confirm("HIGH_OPERATIVE_RISK")})
    assert result.status == "refused"
    assert codes(result) == ["FLR_NOT_RECORDED"]
    result = engine.record({**ev, "override": confirm("HIGH_OPERATIVE_RISK", "FLR_NOT_RECORDED")})
    assert result.status == "accepted"
    kept = engine.show(P).history[-1].override
    assert {o["rule"] for o in kept} == {"HIGH_OPERATIVE_RISK", "FLR_NOT_RECORDED"}


def test_an_override_of_a_code_that_does_not_fire_is_harmless(engine: Engine) -> None:
    """An override naming a known code that does not apply is accepted and kept (a coordinator may confirm ahead)."""
    at_mdt(engine)
    result = engine.record(decision(P, MDT, "resection", override=confirm("HIGH_OPERATIVE_RISK")))
    assert result.status == "accepted"


@pytest.mark.parametrize("code", ["ANTI_EGFR_PERIOPERATIVE", "ANTI_EGFR_RAS", "BEVACIZUMAB_WASHOUT"])
def test_a_block_code_is_confirm_on_a_fact(engine: Engine, code: str) -> None:
    """Where a code is `block`, it is `confirm` on a fact event (spec 4): what happened must be recordable."""
    if code == "BEVACIZUMAB_WASHOUT":
        last = bevacizumab_then_resection(engine)
        ev = surgery(P, days(last, 21))
    else:
        walk_to(engine, P, "neoadjuvant_chemo")
        ras = "wild_type" if code == "ANTI_EGFR_PERIOPERATIVE" else "mutant"
        accept(engine, biomarker(P, days(START, 8), ras=ras))
        ev = cycle(P, days(START, 14), biologic="cetuximab")
    refuses(engine, ev, code, "confirm")
    result = engine.record({**ev, "override": confirm(*(r.code for r in engine.record(ev).reasons))})
    assert result.status == "accepted", result.as_dict()
    assert code in [o["rule"] for o in engine.show(P).history[-1].override]
