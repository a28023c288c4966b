"""Idempotency keys and `void` (spec section 1, `key`; section 3, `void`).

"`key`: idempotency key, unique per patient, bound by an *accepted* event (a voided event keeps its
key bound). Same key + same content (type, on, data, note, override — not `by`) again = a no-op that
returns the first result (`duplicate`); same key + different content = `invalid`. A refused event
binds nothing, so it can be resent with an override."

"`void` … undoes the patient's latest effective event, replaying the rest (the history keeps both);
voids stack; a referral cannot be voided (`invalid`: record `withdrawn`)."

After each scenario, replaying the patient's accepted history gives the stored snapshot and
reminders exactly (`engine.verify(p) == []`).

Keys and voids live in the event log; these tests run on the in-memory twin (the `engine`
fixture). That the event log binds keys and orders events alike on SQLite and PostgreSQL is the
repository contract's (tests/test_repository_contract.py), which runs on all three.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from pathway import Engine
from tests.builders import (
    START,
    accept,
    biomarker,
    booked,
    codes,
    confirm,
    cycle,
    days,
    decision,
    delayed,
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
    visit,
    void,
    walk_to,
)

P = "P1"


def d(text: str) -> date:
    return date.fromisoformat(text)


def plan(engine: Engine, p: str = P) -> tuple[Any, ...]:
    """The patient as a coordinator sees it: state and pending reminders (key, kind, due, notify)."""
    state, _version, reminders = frozen(engine, p)
    return state, reminders


# -- idempotency keys ---------------------------------------------------------------------------------


def test_the_same_key_and_content_again_is_a_duplicate_that_changes_nothing(engine: Engine) -> None:
    """Same key + same content = a no-op returning the first result (`duplicate`): same state, same
    reasons, same event; version and reminders unchanged."""
    first = engine.record(referral(P, START, prior_chemo=True, key="emr-1"))
    assert first.status == "accepted"
    before = frozen(engine, P)
    again = engine.record(referral(P, START, prior_chemo=True, key="emr-1"))
    assert again.status == "duplicate"
    assert again.state == first.state
    assert codes(again) == codes(first) == ["CHEMO_BEFORE_SURGICAL_REVIEW"]
    assert again.event_id == first.event_id
    assert frozen(engine, P) == before
    assert engine.verify(P) == []


def test_a_resent_referral_with_its_key_is_a_duplicate_not_a_second_referral(engine: Engine) -> None:
    """The key check answers a retried referral before the second-referral rule would."""
    accept(engine, referral(P, START, key="ref-1"))
    assert engine.record(referral(P, START, key="ref-1")).status == "duplicate"


def test_by_is_not_part_of_the_content(engine: Engine) -> None:
    """`by` is not compared (spec 1): the same event recorded by someone else is a duplicate."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19", key="c1", by="coord.smith"))
    before = frozen(engine, P)
    assert engine.record(cycle(P, "2026-01-19", key="c1", by="coord.jones")).status == "duplicate"
    assert frozen(engine, P) == before


def test_the_order_of_data_fields_does_not_change_the_content(engine: Engine) -> None:
    """JSON objects are unordered: the same data with its fields in another order is the same content."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19", key="c1", cycle=1, regimen="FOLFOX"))
    reordered = cycle(P, "2026-01-19", key="c1")
    reordered["data"] = {"regimen": "FOLFOX", "cycle": 1}
    assert engine.record(reordered).status == "duplicate"


def test_a_late_retry_is_still_a_duplicate_returning_the_first_result(engine: Engine) -> None:
    """A retry that arrives after later events is still a no-op returning the *first* result — not
    `invalid` for its now-earlier date. The spec says "returns the first result": we read that as the
    first result's state too (what a retrying scheduler needs to reconcile), not the current one."""
    walk_to(engine, P, "neoadjuvant_chemo")
    first = accept(engine, cycle(P, "2026-01-19", key="c1"))
    accept(engine, cycle(P, "2026-02-02", key="c2"))
    before = frozen(engine, P)
    again = engine.record(cycle(P, "2026-01-19", key="c1"))
    assert again.status == "duplicate"
    assert again.event_id == first.event_id
    assert frozen(engine, P) == before
    assert again.state == first.state


def test_a_late_retry_after_a_state_change_returns_the_first_state(engine: Engine) -> None:
    """The first result said `resection`; the retry of that restaging, after the surgery, says so too
    (spec 1: "returns the first result")."""
    walk_to(engine, P, "neoadjuvant_chemo")
    for i in range(6):
        accept(engine, cycle(P, days(d("2026-01-19"), 14 * i)))
    first = accept(engine, restaging(P, "2026-04-13", "partial", key="rs-1"))
    accept(engine, surgery(P, "2026-04-27"))
    again = engine.record(restaging(P, "2026-04-13", "partial", key="rs-1"))
    assert again.status == "duplicate"
    assert again.state == first.state == "resection"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda ev: {**ev, "on": "2026-01-20"}, "on"),
        (lambda ev: {**ev, "data": {"cycle": 1}}, "data"),
        (lambda ev: {**ev, "note": "dose reduced"}, "note"),
        (lambda ev: {**ev, "override": confirm("CYCLE_TOO_EARLY")}, "override"),
        (lambda ev: {**ev, "type": "cycle_delayed", "data": {"days": 7, "reason": "x"}}, "type"),
    ],
    ids=["on", "data", "note", "override", "type"],
)
def test_the_same_key_with_different_content_is_invalid(engine: Engine, change: Callable, field: str) -> None:
    """Same key + different content (type, on, data, note or override) = `invalid`; nothing changes."""
    walk_to(engine, P, "neoadjuvant_chemo")
    ev = cycle(P, "2026-01-19", key="c1")
    accept(engine, ev)
    before = frozen(engine, P)
    result = engine.record(change(ev))
    assert result.status == "invalid", result.as_dict()
    assert "key" in (result.error or "")
    assert frozen(engine, P) == before
    assert engine.show(P).history[-1].status == "invalid"
    assert engine.verify(P) == []


def test_a_refused_event_binds_nothing_so_it_can_be_resent_with_an_override(engine: Engine) -> None:
    """Spec 1: "A refused event binds nothing, so it can be resent with an override"."""
    walk_to(engine, P, "mdt_assessment")
    ev = decision(P, "2026-01-12", "resection", operative_risk="high", key="mdt-7")
    assert engine.record(ev).status == "refused"
    assert engine.record(ev).status == "refused", "the same refused event again is refused, not a duplicate"
    result = engine.record({**ev, "override": confirm("HIGH_OPERATIVE_RISK")})
    assert result.status == "accepted"
    assert engine.record({**ev, "override": confirm("HIGH_OPERATIVE_RISK")}).status == "duplicate"
    assert engine.verify(P) == []


def test_an_invalid_event_binds_nothing(engine: Engine) -> None:
    """An invalid event stores nothing, so its key is free for the corrected event."""
    walk_to(engine, P, "neoadjuvant_chemo")
    assert engine.record(delayed(P, "2026-01-19", days=0, key="d1")).status == "invalid"
    assert engine.record(delayed(P, "2026-01-19", days=7, key="d1")).status == "accepted"


def test_keys_are_per_patient(engine: Engine) -> None:
    """A key is unique per patient (spec 1): two patients may use the same key."""
    accept(engine, referral("P1", START, key="emr-77812"))
    result = engine.record(referral("P2", START, primary="breast", key="emr-77812"))
    assert result.status == "accepted"
    assert engine.show("P2").primary == "breast"


def test_a_voided_event_keeps_its_key_bound(engine: Engine) -> None:
    """Spec 1: "a voided event keeps its key bound": the same content again is a duplicate (it does
    not come back), different content under that key is invalid."""
    walk_to(engine, P, "neoadjuvant_chemo")
    ev = cycle(P, "2026-01-19", key="c1")
    accept(engine, ev)
    accept(engine, void(P, "2026-01-20"))
    after_void = frozen(engine, P)
    assert engine.record(ev).status == "duplicate"
    assert frozen(engine, P) == after_void, "the voided cycle is not re-applied"
    assert engine.record(cycle(P, "2026-01-21", key="c1")).status == "invalid"
    assert engine.record(cycle(P, "2026-01-21", key="c1b")).status == "accepted"
    assert engine.verify(P) == []


def test_a_retried_void_does_not_undo_a_second_event(engine: Engine) -> None:
    """A void with a key, sent twice, undoes one event: the second is a duplicate."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, cycle(P, "2026-02-02"))
    accept(engine, void(P, "2026-02-03", key="v1"))
    after = frozen(engine, P)
    assert engine.record(void(P, "2026-02-03", key="v1")).status == "duplicate"
    assert frozen(engine, P) == after
    assert engine.verify(P) == []


# -- void ------------------------------------------------------------------------------------------------

#: (name, the state to walk to, the event to void) — the event is recorded, then voided.
VOIDABLE: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("mdt_scheduled", "referral", lambda: scheduled(P, "2026-01-06", "2026-01-12")),
    ("mdt_decision", "mdt_assessment", lambda: decision(P, "2026-01-12", "perioperative_chemotherapy")),
    ("cycle_given", "neoadjuvant_chemo", lambda: cycle(P, "2026-01-19")),
    ("cycle_delayed", "neoadjuvant_chemo", lambda: delayed(P, "2026-01-19", days=7)),
    ("chemo_stopped", "conversion_chemo", lambda: stopped(P, "2026-01-19", "toxicity")),
    ("biomarker", "mdt_assessment", lambda: biomarker(P, "2026-01-10", ras="wild_type")),
    ("booked", "resection", lambda: booked(P, "2026-01-13", "surgery", "2026-02-02")),
    ("restaging", "conversion_chemo", lambda: restaging(P, "2026-01-19", "progression")),
    ("pve_performed", "portal_vein_embolization", lambda: pve(P, "2026-01-20")),
    ("surgery", "resection", lambda: surgery(P, "2026-01-26", adjuvant=True)),
    ("surveillance_visit", "follow_up", lambda: visit(P, "2026-04-26", "suspicious")),
    ("recurrence", "follow_up", lambda: recurrence(P, "2026-06-01")),
    ("discharged", "follow_up", lambda: discharged(P, "2026-06-01")),
    ("died", "resection", lambda: died(P, "2026-01-20")),
]


@pytest.mark.parametrize(("name", "state", "build"), VOIDABLE, ids=[v[0] for v in VOIDABLE])
def test_a_void_undoes_the_latest_effective_event(
    engine: Engine, name: str, state: str, build: Callable
) -> None:
    """`void` undoes the latest effective event: state and pending reminders are as before it (spec 3),
    and replay equals the snapshot."""
    walk_to(engine, P, state, flr_percent=15) if state == "portal_vein_embolization" else walk_to(
        engine, P, state
    )
    before = plan(engine)
    ev = build()
    accept(engine, ev)
    assert plan(engine) != before or name == "biomarker", "the event changed something to undo"
    result = accept(engine, void(P, ev["on"], reason=f"{name} recorded for the wrong patient"))
    assert result.state == before[0]
    assert plan(engine) == before
    assert engine.verify(P) == []


def test_a_void_restores_the_meeting_a_decision_closed(engine: Engine) -> None:
    """Voiding an MDT decision reopens the meeting reminder it had closed (same key, same date)."""
    walk_to(engine, P, "mdt_assessment")
    [meeting] = [r for r in engine.show(P).reminders if r.kind == "mdt_meeting"]
    accept(engine, decision(P, "2026-01-12", "resection"))
    accept(engine, void(P, "2026-01-12"))
    [back] = [r for r in engine.show(P).reminders if r.kind == "mdt_meeting"]
    assert (back.key, back.due_on, back.notify_at) == (meeting.key, meeting.due_on, meeting.notify_at)


def test_voids_stack(engine: Engine) -> None:
    """Voids stack (spec 3): a second void undoes the next latest effective event, not the first void."""
    walk_to(engine, P, "neoadjuvant_chemo")
    start = plan(engine)
    accept(engine, cycle(P, "2026-01-19"))
    one = plan(engine)
    accept(engine, cycle(P, "2026-02-02"))
    accept(engine, void(P, "2026-02-03"))
    assert plan(engine) == one
    accept(engine, void(P, "2026-02-03"))
    assert plan(engine) == start
    assert engine.verify(P) == []


def test_voids_stack_back_to_the_state_before_a_decision(engine: Engine) -> None:
    """Three voids undo a cycle, the decision and the meeting: back in `referral` with mdt_due."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    for _ in range(3):
        accept(engine, void(P, "2026-01-20"))
    view = engine.show(P)
    assert view.state == "referral"
    assert [(r.kind, r.due_on) for r in view.reminders] == [("mdt_due", d("2026-01-19"))]
    assert engine.verify(P) == []


def test_a_void_undoes_the_latest_accepted_event_not_a_refused_one(engine: Engine) -> None:
    """The latest *effective* event is an accepted one: a refusal in between is not what a void undoes."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    assert engine.record(cycle(P, "2026-01-25")).status == "refused"  # CYCLE_TOO_EARLY
    accept(engine, void(P, "2026-01-26"))
    assert [r.due_on for r in engine.show(P).reminders if r.kind == "chemo_cycle"] == [d("2026-01-19")]


def test_a_void_of_the_referral_is_invalid(engine: Engine) -> None:
    """A referral cannot be voided (`invalid`: record withdrawn), even after voiding everything after it."""
    walk_to(engine, P, "referral")
    before = frozen(engine, P)
    result = engine.record(void(P, "2026-01-06"))
    assert result.status == "invalid"
    assert "referral" in (result.error or "")
    assert frozen(engine, P) == before
    accept(engine, scheduled(P, "2026-01-06", "2026-01-12"))
    accept(engine, void(P, "2026-01-06"))
    assert engine.record(void(P, "2026-01-06")).status == "invalid"
    assert engine.show(P).state == "referral"
    assert engine.verify(P) == []


def test_the_history_keeps_both_and_marks_the_voided_event(engine: Engine) -> None:
    """The history keeps both (spec 3): the voided event is still there, marked voided by the void, and the
    void says which event it undid."""
    walk_to(engine, P, "neoadjuvant_chemo")
    voided = accept(engine, cycle(P, "2026-01-19", note="given on day unit"))
    undo = accept(engine, void(P, "2026-01-20", reason="recorded twice"))
    history = {h.id: h for h in engine.show(P).history}
    assert history[voided.event_id].status == "accepted"
    assert history[voided.event_id].voided
    assert history[voided.event_id].voided_by == undo.event_id
    assert history[undo.event_id].type == "void"
    assert history[undo.event_id].void_of == voided.event_id
    assert history[undo.event_id].data == {"reason": "recorded twice"}
    assert not any(h.voided for h in history.values() if h.id not in (voided.event_id,))


def test_a_void_frees_the_date_order_for_a_corrected_event(engine: Engine) -> None:
    """The latest effective event is "accepted, not voided, not itself a void" (spec 1): after voiding a
    cycle recorded on 02-02 by a void on 02-05, a cycle dated 01-30 is in order."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, cycle(P, "2026-02-02"))
    accept(engine, void(P, "2026-02-05"))
    accept(engine, cycle(P, "2026-01-30", override=confirm("CYCLE_TOO_EARLY")))
    assert engine.verify(P) == []


def test_a_void_may_be_dated_any_day_up_to_today_but_not_in_the_future(engine: Engine) -> None:
    """A void is not a clinical fact: its date is when the error was undone, before the latest
    event's date or after it; a void dated in the future is invalid like any event (v1.2)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    future = (engine.today() + timedelta(days=1)).isoformat()
    assert engine.record(void(P, future)).status == "invalid"
    assert engine.show(P).version == 4
    result = engine.record(void(P, "2026-01-18"))
    assert result.status == "accepted" and engine.show(P).version == 5


def test_a_void_reopens_a_terminal_patient(engine: Engine) -> None:
    """`void` is allowed in any state: voiding `died` entered in error brings back the state and its
    reminders (spec 3)."""
    walk_to(engine, P, "follow_up")
    before = plan(engine)
    accept(engine, died(P, "2026-03-01"))
    assert engine.show(P).reminders == ()
    accept(engine, void(P, "2026-03-01", reason="wrong patient"))
    assert plan(engine) == before
    assert engine.verify(P) == []


def test_a_voided_restaging_no_longer_gives_its_advice(engine: Engine) -> None:
    """The spec is silent on advice of a voided event; a clinician expects advice from a restaging
    entered in error to disappear with it."""
    walk_to(engine, P, "neoadjuvant_chemo")
    for i in range(6):
        accept(engine, cycle(P, days(d("2026-01-19"), 14 * i)))
    accept(engine, restaging(P, "2026-04-13", "complete", disappeared_lesions=2))
    assert [a["code"] for a in engine.show(P).advice] == ["DISAPPEARING_METASTASES"]
    accept(engine, void(P, "2026-04-13"))
    assert engine.show(P).advice == ()


def test_a_void_of_a_decision_lets_a_different_decision_be_recorded(engine: Engine) -> None:
    """Correction flow: void the wrong plan, record the right one; the history keeps all three."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, decision(P, "2026-01-12", "resection"))
    accept(engine, void(P, "2026-01-12"))
    accept(engine, decision(P, "2026-01-12", "perioperative_chemotherapy"))
    view = engine.show(P)
    assert view.state == "neoadjuvant_chemo"
    assert [h.type for h in view.history][-3:] == ["mdt_decision", "void", "mdt_decision"]
    assert engine.verify(P) == []


def test_a_void_after_a_duplicate_undoes_the_original_once(engine: Engine) -> None:
    """A duplicate is not an effective event: one void after a cycle and its duplicate undoes the cycle,
    and the decision before it stays."""
    walk_to(engine, P, "neoadjuvant_chemo")
    before = plan(engine)
    accept(engine, cycle(P, "2026-01-19", key="c1"))
    assert engine.record(cycle(P, "2026-01-19", key="c1")).status == "duplicate"
    accept(engine, void(P, "2026-01-19"))
    assert plan(engine) == before
    assert engine.show(P).state == "neoadjuvant_chemo"
