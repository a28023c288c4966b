"""Validation: the `invalid` cases of spec section 1 (events.md, "The envelope").

"Validation (`invalid`, nothing stored): unknown type or field, a missing required field, wrong
type, out-of-range value, `on` in the future (engine clock; see 6), `on` earlier than the patient's
latest effective event ..., an event for an unknown patient (other than `referral`), a second
`referral` for one patient, an `override` naming an unknown code or without a reason."

Every case checks the same contract: the status is `invalid`, the error names the offending field,
nothing changed (state, version, pending reminders) and the audit history records the attempt.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from pathway import Engine, ManualClock, UnknownPatient
from tests.builders import (
    OMIT,
    START,
    ablation,
    accept,
    biomarker,
    booked,
    checked,
    cycle,
    days,
    decision,
    delayed,
    died,
    event,
    frozen,
    pve,
    recurrence,
    referral,
    restaging,
    scheduled,
    stopped,
    surgery,
    visit,
    void,
    walk_to,
)

P = "P1"


DAY = days(START, 10)  # after the last event of any walk_to (day 7, or day 21 for surgery)
LATE = days(START, 30)


def _names(result: Any, field: str) -> bool:
    """The error names `field`: as a component of an error path, or as a word of the message."""
    for path, _message in result.errors:
        if field in re.split(r"[.\[\]]", path):
            return True
    return re.search(rf"(?<![\w]){re.escape(field)}(?![\w])", result.error or "") is not None


def assert_invalid(engine: Engine, p: str, ev: dict[str, Any], *fields: str) -> Any:
    """Record `ev`: invalid, naming every field, changing nothing, and kept in the audit history."""
    before = frozen(engine, p)
    seen = len(engine.show(p).history)
    result = engine.record(ev)
    assert result.status == "invalid", result.as_dict()
    assert result.error, "an invalid event says why"
    for field in fields:
        assert _names(result, field), f"error does not name {field!r}: {result.error}"
    assert frozen(engine, p) == before, "an invalid event changes nothing"
    history = engine.show(p).history
    assert len(history) == seen + 1, "the attempt is recorded in the audit history"
    newest = max(history, key=lambda h: h.id)  # the history is in date order; ids are in record order
    assert newest.status == "invalid"
    assert newest.error
    assert engine.verify(p) == []
    return result


def assert_invalid_new(engine: Engine, p: str, ev: dict[str, Any], *fields: str) -> Any:
    """For an event about a patient not (yet) known: invalid, naming the field, no patient created."""
    result = engine.record(ev)
    assert result.status == "invalid", result.as_dict()
    for field in fields:
        assert _names(result, field), f"error does not name {field!r}: {result.error}"
    with pytest.raises(UnknownPatient):
        engine.show(p)
    assert result.event_id is not None, "the attempt is recorded in the audit log"
    return result


# -- unknown type and fields ---------------------------------------------------------------------


def test_an_unknown_event_type_is_invalid(engine: Engine) -> None:
    """An event type outside spec section 3 is invalid (spec 1: unknown type)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, event(P, "chemo_given", DAY), "type")


def test_an_unknown_envelope_field_is_invalid(engine: Engine) -> None:
    """An envelope field outside the table of spec 1 is invalid: inputs may not carry extra fields."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, {**cycle(P, DAY), "urgent": True}, "urgent")


def test_an_unknown_data_field_is_invalid(engine: Engine) -> None:
    """A `data` field the event type does not define is invalid (spec 1: unknown fields are invalid)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, cycle(P, DAY, dose_mg=85), "dose_mg")


def test_the_python_name_of_booked_for_is_an_unknown_field(engine: Engine) -> None:
    """The public name is `for` (spec 3); `for_` is not part of the contract and is invalid."""
    walk_to(engine, P, "resection")
    assert_invalid(engine, P, event(P, "booked", DAY, what="surgery", for_=LATE), "for_")


def test_data_for_a_type_that_takes_none_is_invalid(engine: Engine) -> None:
    """`pve_performed` takes empty data (`—` in spec 3), so any data field is unknown and invalid."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    assert_invalid(engine, P, event(P, "pve_performed", DAY, side="right"), "side")


def test_an_unknown_field_in_an_mdt_decision_is_invalid(engine: Engine) -> None:
    """A decision field outside spec 3.1 is invalid rather than ignored."""
    walk_to(engine, P, "mdt_assessment")
    assert_invalid(engine, P, decision(P, DAY, "resection", ecog=1), "ecog")


# -- missing required fields -------------------------------------------------------------------------

MISSING = [
    ("mdt_assessment", lambda: {"patient": P, "type": "mdt_decision", "data": {}}, "on"),
    ("mdt_assessment", lambda: {"patient": P, "on": DAY.isoformat(), "data": {}}, "type"),
    ("referral", lambda: event(P, "mdt_scheduled", DAY), "meeting_on"),
    ("mdt_assessment", lambda: decision(P, DAY, attendees=OMIT), "attendees"),
    (
        "mdt_assessment",
        lambda: event(
            P, "mdt_decision", DAY, attendees=["liver_surgeon", "radiologist"], resectability="resectable"
        ),
        "plan",
    ),
    ("mdt_assessment", lambda: decision(P, DAY, resectability=OMIT), "resectability"),
    (
        "mdt_assessment",
        lambda: decision(P, DAY, "resection", complete_resection_feasible=OMIT),
        "complete_resection_feasible",
    ),
    ("mdt_assessment", lambda: decision(P, DAY, "ablation", operative_risk=OMIT), "operative_risk"),
    ("neoadjuvant_chemo", lambda: event(P, "chemo_stopped", DAY), "reason"),
    ("neoadjuvant_chemo", lambda: event(P, "cycle_delayed", DAY, days=7), "reason"),
    ("neoadjuvant_chemo", lambda: event(P, "restaging", DAY), "response"),
    ("resection", lambda: event(P, "booked", DAY, what="surgery"), "for"),
    ("resection", lambda: event(P, "booked", DAY, **{"for": LATE}), "what"),
    ("resection", lambda: event(P, "surgery", LATE, margin="R0", adjuvant=False), "procedure"),
    ("ablation", lambda: event(P, "ablation_performed", DAY), "technique"),
    ("follow_up", lambda: event(P, "surveillance_visit", LATE), "finding"),
    ("follow_up", lambda: event(P, "recurrence", LATE), "sites"),
    ("follow_up", lambda: event(P, "ablation_checked", LATE), "complete"),
    ("neoadjuvant_chemo", lambda: event(P, "void", DAY), "reason"),
]


@pytest.mark.parametrize(("state", "build", "field"), MISSING, ids=[f"{m[0]}-{m[2]}" for m in MISSING])
def test_a_missing_required_field_is_invalid(engine: Engine, state: str, build: Any, field: str) -> None:
    """Every field not marked opt or given a default is required (spec 1); its absence is invalid."""
    walk_to(engine, P, state)
    assert_invalid(engine, P, build(), field)


def test_an_empty_list_of_recurrence_sites_is_invalid(engine: Engine) -> None:
    """`recurrence.sites` must be non-empty (spec 3)."""
    walk_to(engine, P, "follow_up")
    assert_invalid(engine, P, recurrence(P, LATE, sites=[]) | {"data": {"sites": []}}, "sites")


def test_a_non_surgical_plan_needs_neither_feasibility_nor_operative_risk(engine: Engine) -> None:
    """complete_resection_feasible and operative_risk are required unless the plan is systemic_therapy
    or surveillance (spec 3.1): a systemic plan without them is accepted."""
    walk_to(engine, P, "mdt_assessment")
    ev = decision(P, DAY, "systemic_therapy")
    assert "complete_resection_feasible" not in ev["data"] and "operative_risk" not in ev["data"]
    assert accept(engine, ev).state == "systemic_therapy"


def test_a_surveillance_plan_needs_neither_feasibility_nor_operative_risk(engine: Engine) -> None:
    """A watch decision (plan surveillance) without feasibility or operative risk is accepted (spec 3.1)."""
    walk_to(engine, P, "mdt_assessment")
    assert accept(engine, decision(P, DAY, "surveillance")).state == "follow_up"


def test_an_event_type_with_only_optional_data_may_omit_data(engine: Engine) -> None:
    """`data` "depends" on the type (spec 1): a cycle_given, whose fields are all optional, needs none."""
    walk_to(engine, P, "neoadjuvant_chemo")
    result = engine.record({"patient": P, "type": "cycle_given", "on": days(START, 21).isoformat()})
    assert result.status == "accepted"


# -- wrong types --------------------------------------------------------------------------------------

WRONG_TYPES = [
    # a number, or a malformed or impossible date, for a date
    ("neoadjuvant_chemo", lambda: cycle(P, 20260115), "on"),
    ("neoadjuvant_chemo", lambda: cycle(P, "2026-1-15"), "on"),
    ("neoadjuvant_chemo", lambda: cycle(P, "2026-02-30"), "on"),
    ("neoadjuvant_chemo", lambda: cycle(P, "2026-01-15T09:00:00"), "on"),
    ("referral", lambda: scheduled(P, DAY, 20260120), "meeting_on"),
    ("resection", lambda: booked(P, DAY, "surgery", 20260130), "for"),
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, until=20260130), "until"),
    # a string for a boolean
    ("resection", lambda: surgery(P, LATE, adjuvant="true"), "adjuvant"),
    ("ablation", lambda: ablation(P, DAY, adjuvant="false"), "adjuvant"),
    ("follow_up", lambda: checked(P, LATE, complete="true"), "complete"),
    (
        "mdt_assessment",
        lambda: decision(P, DAY, complete_resection_feasible="true"),
        "complete_resection_feasible",
    ),
    ("mdt_assessment", lambda: decision(P, DAY, bilobar="yes"), "bilobar"),
    ("neoadjuvant_chemo", lambda: restaging(P, DAY, resectable="true"), "resectable"),
    # a float (or a string) for an int
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, cycle=1.0), "cycle"),
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, cycle="1"), "cycle"),
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, days=7.0), "days"),
    ("neoadjuvant_chemo", lambda: restaging(P, DAY, disappeared_lesions=1.0), "disappeared_lesions"),
    ("mdt_assessment", lambda: decision(P, DAY, lesion_count=2.5), "lesion_count"),
    # a boolean for a number
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, cycle=True), "cycle"),
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, days=True), "days"),
    ("mdt_assessment", lambda: decision(P, DAY, flr_percent=True), "flr_percent"),
    ("follow_up", lambda: visit(P, LATE, cea=False), "cea"),
    # a string for a number
    ("mdt_assessment", lambda: decision(P, DAY, flr_percent="40"), "flr_percent"),
    ("follow_up", lambda: visit(P, LATE, cea="4.2"), "cea"),
    # a scalar for a list, a value outside the vocabulary
    ("mdt_assessment", lambda: decision(P, DAY, attendees="liver_surgeon, radiologist"), "attendees"),
    ("follow_up", lambda: recurrence(P, LATE) | {"data": {"sites": "liver"}}, "sites"),
    ("follow_up", lambda: recurrence(P, LATE, sites=["brain"]), "sites"),
    ("mdt_assessment", lambda: decision(P, DAY, "hepatectomy"), "plan"),
    ("mdt_assessment", lambda: decision(P, DAY, biologic="aflibercept"), "biologic"),
    ("mdt_assessment", lambda: decision(P, DAY, liver="fatty"), "liver"),
    ("neoadjuvant_chemo", lambda: restaging(P, DAY, "good"), "response"),
    ("neoadjuvant_chemo", lambda: stopped(P, DAY, "holiday"), "reason"),
    ("neoadjuvant_chemo", lambda: biomarker(P, DAY, ras="KRAS G12D"), "ras"),
    # envelope fields of the wrong type
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, key=77812), "key"),
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, note=["a", "b"]), "note"),
    ("neoadjuvant_chemo", lambda: cycle(P, DAY, by=42), "by"),
    (
        "neoadjuvant_chemo",
        lambda: cycle(P, DAY, override={"rule": "CYCLE_TOO_EARLY", "reason": "x"}),
        "override",
    ),
    ("neoadjuvant_chemo", lambda: {**cycle(P, DAY), "data": [1]}, "data"),
]


@pytest.mark.parametrize(
    ("state", "build", "field"), WRONG_TYPES, ids=[f"{i}-{w[2]}" for i, w in enumerate(WRONG_TYPES)]
)
def test_a_value_of_the_wrong_type_is_invalid(engine: Engine, state: str, build: Any, field: str) -> None:
    """Inputs are never coerced (spec 1: wrong type is invalid): a number for a date, "true" for a bool,
    a float for an int, a value outside the field's vocabulary."""
    walk_to(engine, P, state)
    assert_invalid(engine, P, build(), field)


def test_a_string_for_a_referral_boolean_is_invalid_and_creates_no_patient(engine: Engine) -> None:
    """`high_volume_centre: "false"` is a string, not a bool: the referral is invalid and no patient exists."""
    assert_invalid_new(engine, P, referral(P, START, high_volume_centre="false"), "high_volume_centre")


def test_an_unknown_primary_is_invalid(engine: Engine) -> None:
    """`primary` is one of colorectal, neuroendocrine, breast, other (spec 3)."""
    assert_invalid_new(engine, P, referral(P, START, primary="lung"), "primary")


# -- out-of-range values -----------------------------------------------------------------------------

OUT_OF_RANGE = [
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, days=0), "days"),
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, days=57), "days"),
    ("neoadjuvant_chemo", lambda: delayed(P, DAY, days=-7), "days"),
    ("mdt_assessment", lambda: decision(P, DAY, flr_percent=101), "flr_percent"),
    ("mdt_assessment", lambda: decision(P, DAY, flr_percent=-1), "flr_percent"),
    ("neoadjuvant_chemo", lambda: restaging(P, DAY, flr_percent=100.5), "flr_percent"),
    ("neoadjuvant_chemo", lambda: restaging(P, DAY, disappeared_lesions=-1), "disappeared_lesions"),
    ("follow_up", lambda: visit(P, LATE, cea=-0.1), "cea"),
]


@pytest.mark.parametrize(
    ("state", "build", "field"), OUT_OF_RANGE, ids=[f"{i}-{o[2]}" for i, o in enumerate(OUT_OF_RANGE)]
)
def test_an_out_of_range_value_is_invalid(engine: Engine, state: str, build: Any, field: str) -> None:
    """Out-of-range values are invalid (spec 1): delay days outside 1..56, flr_percent outside 0-100,
    a negative count of disappeared lesions, a negative CEA."""
    walk_to(engine, P, state)
    assert_invalid(engine, P, build(), field)


def test_a_negative_lesion_size_is_invalid(engine: Engine) -> None:
    """The spec gives `largest_lesion_cm` no range; a clinician expects a size below zero to be
    rejected as a typing error rather than stored."""
    walk_to(engine, P, "mdt_assessment")
    assert_invalid(engine, P, decision(P, DAY, "ablation", largest_lesion_cm=-2), "largest_lesion_cm")


@pytest.mark.parametrize("delay", [1, 56])
def test_delay_days_at_the_ends_of_the_range_are_valid(engine: Engine, delay: int) -> None:
    """`days` is 1..56 inclusive (spec 3: cycle_delayed)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert accept(engine, delayed(P, DAY, days=delay)).state == "neoadjuvant_chemo"


@pytest.mark.parametrize("flr", [0, 100, 37.5])
def test_flr_percent_within_0_to_100_is_valid(engine: Engine, flr: float) -> None:
    """`flr_percent` is a number 0–100 inclusive, decimals allowed (spec 3.1); PVE is planned for any of them."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, decision(P, DAY, "portal_vein_embolization", flr_percent=flr))


# -- dates against the clock and the history ---------------------------------------------------------


def test_an_event_dated_after_today_is_invalid(engine: Engine) -> None:
    """`on` in the future by the engine clock is invalid (spec 1, 6): the clock reads 2033-01-01."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, cycle(P, "2033-01-02"), "on")


def test_an_event_dated_today_is_valid(engine: Engine) -> None:
    """Today (the clinic-local date of the engine clock, 2033-01-01) is not the future."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2033-01-01"))


def test_today_is_the_clinic_local_date_of_the_clock(engine: Engine, clock: ManualClock) -> None:
    """At 23:30 UTC on 30 June it is already 1 July in London (BST): an event on 1 July is not in the
    future, one on 2 July is (spec 6: dates are clinic-local)."""
    clock.now = datetime(2033, 6, 30, 23, 30, tzinfo=UTC)
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2033-07-01"))
    assert_invalid(engine, P, cycle(P, "2033-07-02"), "on")


def test_a_referral_in_the_future_is_invalid_and_creates_no_patient(engine: Engine) -> None:
    """A future-dated referral is invalid like any other event; the patient stays unknown."""
    assert_invalid_new(engine, P, referral(P, "2033-01-02"), "on")


def test_an_event_dated_before_the_referral_is_invalid(engine: Engine) -> None:
    """A back-dated event is placed in date order (tests/test_late_entries.py), but nothing of the
    pathway precedes the referral: `on` before it is invalid, naming the field (contract 1, v1.2)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, biomarker(P, days(START, -1), ras="wild_type"), "on")


def test_an_event_dated_the_same_day_as_the_latest_is_valid(engine: Engine) -> None:
    """Only an earlier date is invalid: two events on one day are in order."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, days(START, 14)))
    accept(engine, biomarker(P, days(START, 14), ras="wild_type"))


def test_a_refused_event_does_not_move_the_latest_date(engine: Engine) -> None:
    """The latest effective event is an accepted one: a refused event dated later does not make an
    earlier-dated event invalid (spec 1)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert engine.record(booked(P, days(START, 20), "surgery", days(START, 40))).status == "refused"
    accept(engine, cycle(P, days(START, 14)))


def test_an_invalid_event_does_not_move_the_latest_date(engine: Engine) -> None:
    """An invalid event stores nothing, so it is not the latest effective event either."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert engine.record(delayed(P, days(START, 20), days=0)).status == "invalid"
    accept(engine, cycle(P, days(START, 14)))


# -- patients ---------------------------------------------------------------------------------------------


def test_an_event_for_an_unknown_patient_is_invalid(engine: Engine) -> None:
    """Only a referral may name a patient the engine does not know (spec 1)."""
    result = assert_invalid_new(engine, "P404", cycle("P404", DAY), "patient")
    assert "P404" in (result.error or "")
    history = engine.history("P404")
    assert [h.status for h in history] == ["invalid"], "the attempt is in the audit history"


def test_a_second_referral_is_invalid(engine: Engine) -> None:
    """One referral per patient (spec 1): a second one is invalid and names the patient; record
    mdt_scheduled or recurrence instead."""
    walk_to(engine, P, "mdt_assessment")
    assert_invalid(engine, P, referral(P, DAY, primary="breast"), "patient")
    assert engine.show(P).primary == "colorectal"


def test_a_second_referral_is_invalid_even_after_discharge(engine: Engine) -> None:
    """A discharged patient is still known: a new referral is invalid (recurrence reopens the pathway)."""
    walk_to(engine, P, "discharged")
    assert_invalid(engine, P, referral(P, DAY), "patient")


BAD_IDS = ["-P1", ".P1", "P 1", "P/1", "P1\n", "", "Pé", "x" * 65]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:12] for b in BAD_IDS])
def test_a_malformed_patient_id_is_invalid(engine: Engine, bad: str) -> None:
    """`patient` must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ (spec 1)."""
    result = engine.record(referral(bad, START))
    assert result.status == "invalid", result.as_dict()
    assert _names(result, "patient"), result.error
    assert result.event_id is not None, "the attempt is recorded in the audit log"
    assert engine.patients() == []


def test_a_64_character_patient_id_is_valid(engine: Engine) -> None:
    """The pattern allows one leading character and up to 63 more."""
    accept(engine, referral("A" + "b.c_d-9" * 9, START))


def test_a_non_string_patient_id_is_invalid(engine: Engine) -> None:
    """A number is not a patient id, even one that would match the pattern as text."""
    result = engine.record(referral(1001, START))
    assert result.status == "invalid"
    assert _names(result, "patient"), result.error
    assert engine.patients() == []


# -- overrides ------------------------------------------------------------------------------------------


def test_an_override_naming_an_unknown_code_is_invalid(engine: Engine) -> None:
    """An `override` naming a code not in spec section 4 is invalid, and the error names it."""
    walk_to(engine, P, "mdt_assessment")
    ev = decision(P, DAY, operative_risk="high", override=[{"rule": "HIGH_RISK", "reason": "fit enough"}])
    result = assert_invalid(engine, P, ev, "override")
    assert "HIGH_RISK" in (result.error or "")


@pytest.mark.parametrize(
    "entry",
    [
        {"rule": "HIGH_OPERATIVE_RISK"},
        {"rule": "HIGH_OPERATIVE_RISK", "reason": ""},
        {"rule": "HIGH_OPERATIVE_RISK", "reason": "   "},
    ],
    ids=["missing", "empty", "blank"],
)
def test_an_override_without_a_reason_is_invalid(engine: Engine, entry: dict[str, str]) -> None:
    """An override must give a reason (spec 1); an empty or blank reason is no reason."""
    walk_to(engine, P, "mdt_assessment")
    assert_invalid(engine, P, decision(P, DAY, operative_risk="high", override=[entry]), "override", "reason")


def test_an_override_with_an_unknown_field_is_invalid(engine: Engine) -> None:
    """An override is `{"rule", "reason"}`; any other field is unknown and invalid."""
    walk_to(engine, P, "mdt_assessment")
    entry = {"rule": "HIGH_OPERATIVE_RISK", "reason": "fit", "approved_by": "dr x"}
    assert_invalid(engine, P, decision(P, DAY, operative_risk="high", override=[entry]), "approved_by")


# -- type-specific rules -----------------------------------------------------------------------------


def test_a_delay_with_both_days_and_until_is_invalid(engine: Engine) -> None:
    """cycle_delayed takes exactly one of `days` or `until` (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, delayed(P, DAY, days=7, until=days(DAY, 7)), "days", "until")


def test_a_delay_with_neither_days_nor_until_is_invalid(engine: Engine) -> None:
    """cycle_delayed takes exactly one of `days` or `until` (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, delayed(P, DAY), "days", "until")


def test_a_biomarker_with_nothing_is_invalid(engine: Engine) -> None:
    """A biomarker event records at least one of ras, braf, msi, sidedness (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    result = assert_invalid(engine, P, biomarker(P, DAY), "ras")
    for name in ("braf", "msi", "sidedness"):
        assert _names(result, name), result.error


def test_a_resection_without_a_margin_is_invalid(engine: Engine) -> None:
    """`margin` is required for every procedure but exploration_only (spec 3: surgery)."""
    walk_to(engine, P, "resection")
    assert_invalid(engine, P, surgery(P, LATE, margin=OMIT), "margin")


def test_an_exploration_with_a_margin_is_invalid(engine: Engine) -> None:
    """`margin` is "not for exploration_only" (spec 3): nothing was resected."""
    walk_to(engine, P, "resection")
    assert_invalid(engine, P, surgery(P, LATE, "exploration_only", margin="R0"), "margin")


@pytest.mark.parametrize("procedure", ["resection", "resection_with_ablation", "two_stage_second"])
def test_surgery_without_adjuvant_is_invalid(engine: Engine, procedure: str) -> None:
    """`adjuvant` is required except for two_stage_first and exploration_only (spec 3)."""
    walk_to(engine, P, "resection")
    assert_invalid(engine, P, surgery(P, LATE, procedure, adjuvant=OMIT), "adjuvant")


def test_a_first_stage_without_adjuvant_is_valid(engine: Engine) -> None:
    """two_stage_first needs a margin but no `adjuvant` (spec 3)."""
    walk_to(engine, P, "resection")
    ev = surgery(P, LATE, "two_stage_first")
    assert "adjuvant" not in ev["data"]
    assert accept(engine, ev).state == "portal_vein_embolization"


def test_an_exploration_without_margin_or_adjuvant_is_valid(engine: Engine) -> None:
    """exploration_only takes neither margin nor adjuvant (spec 3) and goes back to the MDT."""
    walk_to(engine, P, "resection")
    assert accept(engine, surgery(P, LATE, "exploration_only")).state == "mdt_assessment"


def test_a_meeting_before_the_event_date_is_invalid(engine: Engine) -> None:
    """`meeting_on` is a date ≥ `on` (spec 3: mdt_scheduled)."""
    walk_to(engine, P, "referral")
    assert_invalid(engine, P, scheduled(P, DAY, days(DAY, -1)), "meeting_on")


def test_a_booking_for_a_date_before_the_event_date_is_invalid(engine: Engine) -> None:
    """`for` is a date ≥ `on` (spec 3: booked)."""
    walk_to(engine, P, "resection")
    assert_invalid(engine, P, booked(P, DAY, "surgery", days(DAY, -1)), "for")


def test_a_delay_until_a_date_before_the_event_date_is_invalid(engine: Engine) -> None:
    """`until` is a date ≥ `on` (spec 3: cycle_delayed)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert_invalid(engine, P, delayed(P, DAY, until=days(DAY, -1)), "until")


def test_a_meeting_after_today_is_valid(engine: Engine) -> None:
    """Only `on` may not be in the future (spec 1): a meeting booked for next week, by the engine
    clock, is what mdt_scheduled is for."""
    walk_to(engine, P, "referral")
    accept(engine, scheduled(P, "2033-01-01", "2033-01-08"))
    accept(engine, decision(P, "2033-01-01", "resection"))
    accept(engine, booked(P, "2033-01-01", "surgery", "2033-02-01"))


def test_meeting_booking_and_delay_dates_equal_to_the_event_date_are_valid(engine: Engine) -> None:
    """≥ `on` includes the event date itself: a meeting, a booking or a delay to the same day is valid."""
    walk_to(engine, P, "referral")
    accept(engine, scheduled(P, DAY, DAY))
    accept(engine, decision(P, DAY, "perioperative_chemotherapy"))
    accept(engine, delayed(P, DAY, until=DAY))


def test_a_void_of_the_referral_is_invalid(engine: Engine) -> None:
    """A referral cannot be voided (spec 3: `invalid`: record withdrawn)."""
    walk_to(engine, P, "referral")
    result = assert_invalid(engine, P, void(P, DAY), "type")
    assert "referral" in (result.error or "")


def test_a_void_that_would_reach_the_referral_is_invalid(engine: Engine) -> None:
    """Once every later event is voided, the next void would undo the referral: invalid."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, void(P, DAY))
    result = assert_invalid(engine, P, void(P, DAY), "type")
    assert "referral" in (result.error or "")


# -- order of checks ---------------------------------------------------------------------------------


def test_validation_comes_before_the_state_check(engine: Engine) -> None:
    """Order of checks (spec 1): an invalid event not allowed in the state is `invalid`, not refused."""
    walk_to(engine, P, "referral")
    assert_invalid(engine, P, surgery(P, DAY, margin=OMIT), "margin")


def test_an_invalid_fact_for_a_terminal_patient_is_invalid(engine: Engine) -> None:
    """Validation applies in every state, terminal ones included."""
    walk_to(engine, P, "deceased")
    assert_invalid(engine, P, died(P, DAY) | {"data": {"cause": "x"}}, "cause")


def test_a_pve_with_an_empty_data_object_is_valid(engine: Engine) -> None:
    """Types shown with `—` take empty `data` (spec 1): `{}` is accepted."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, DAY))


DEEP: dict = {}
_level = DEEP
for _ in range(40):
    _level["a"] = {}
    _level = _level["a"]


@pytest.mark.parametrize(
    ("event", "field", "message"),
    [
        ({"note": "x\ud800y"}, "note", "lone surrogate"),
        ({"note": "a\x00b"}, "note", "NUL"),
        ({"data": {"primary": "colorectal", "\ud801": 1}}, "data", "lone surrogate"),
        ({"type": "cycle_given", "data": {"cycle": 2**70}}, "data.cycle", "64-bit"),
        ({"data": {"primary": "colorectal", "flr": float("inf")}}, "data.flr", "finite"),
        ({"note": "deep", "data": {"primary": "colorectal", "x": DEEP}}, "data.x" + ".a" * 30, "nested too deeply"),
    ],
)
def test_text_and_numbers_no_database_can_store_are_invalid_and_stored_escaped(
    any_engine: Engine, event: dict, field: str, message: str
) -> None:
    """Python's JSON reader accepts lone surrogates, NUL and unbounded integers; no column takes them.
    Such an event is invalid with the field named (it used to crash the engine), and the audit log
    keeps it escaped."""
    raw = {"patient": "U1", "type": "referral", "on": "2026-06-01", "data": {"primary": "colorectal"}, **event}
    result = any_engine.record(raw)
    assert result.status == "invalid"
    assert any(f == field and message in m for f, m in result.errors), result.errors
    with any_engine.repository.read() as tx:
        stored = tx._rows("SELECT status, payload FROM event_log ORDER BY id DESC LIMIT 1", ())
    assert stored[0][0] == "invalid"
    assert any_engine.record({**raw, **{"note": "fine"}, "data": {"primary": "colorectal"},
                              "type": "referral"}).status == "accepted"
