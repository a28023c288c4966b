"""The care plan of spec section 5: every reminder kind, its due date, its notify instant, and when it
goes away.

"Reminders are derived from the accepted history and the policy; each has a stable `key`, a `kind`,
a `due_on` date and a `notify_at` instant (08:00 in the clinic time zone, `lead_days` before
`due_on`). A new event re-derives them: what is no longer planned is cancelled, what is new is
added, nothing is duplicated."  Default policy throughout; dates are 2026 unless given.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import pytest

from pathway import Engine
from tests.builders import (
    LEAD_DAYS,
    ablation,
    accept,
    booked,
    checked,
    cycle,
    cycles,
    days,
    decision,
    delayed,
    died,
    discharged,
    due,
    kinds,
    london_8am,
    pending,
    pve,
    recurrence,
    referral,
    restaging,
    scheduled,
    stopped,
    surgery,
    visit,
    walk_to,
    withdrawn,
)

P = "P1"


def d(text: str) -> date:
    return date.fromisoformat(text)


def only(engine: Engine, p: str = P) -> dict[str, list[date]]:
    """Every pending reminder, by kind: an expectation on it also says what must *not* be pending."""
    out: dict[str, list[date]] = {}
    for r in pending(engine, p):
        out.setdefault(r.kind, []).append(r.due_on)
    return {k: sorted(v) for k, v in out.items()}


def sound(engine: Engine, p: str = P) -> None:
    """Invariants of the care plan: no two pending reminders share a key, notify_at is 08:00 London
    lead days before due_on, and replaying the history gives the same reminders."""
    reminders = pending(engine, p)
    keys = Counter(r.key for r in reminders)
    assert [k for k, n in keys.items() if n > 1] == [], "a key is pending twice"
    for r in reminders:
        if r.kind in LEAD_DAYS:
            assert r.notify_at == london_8am(days(r.due_on, -LEAD_DAYS[r.kind])), (
                r.kind,
                r.due_on,
                r.notify_at,
            )
    assert engine.verify(p) == []


def surveillance_dates(anchor: date) -> list[date]:
    """Months 3, 6, …, 24, 30, …, 60 after `anchor`, same day of month clamped to the month's end."""
    import calendar

    out = []
    for m in (3, 6, 9, 12, 15, 18, 21, 24, 30, 36, 42, 48, 54, 60):
        index = anchor.month - 1 + m
        year, month = anchor.year + index // 12, index % 12 + 1
        out.append(date(year, month, min(anchor.day, calendar.monthrange(year, month)[1])))
    return out


# -- mdt_due and mdt_meeting -------------------------------------------------------------------------


def test_a_referral_is_due_at_the_mdt_14_days_later(engine: Engine) -> None:
    """mdt_due = referral + 14 while in `referral` (spec 5; T4)."""
    accept(engine, referral(P, "2026-01-05"))
    assert only(engine) == {"mdt_due": [d("2026-01-19")]}
    sound(engine)


def test_scheduling_the_mdt_replaces_mdt_due_with_the_meeting(engine: Engine) -> None:
    """mdt_scheduled: mdt_due is done and mdt_meeting is due on `meeting_on`."""
    accept(engine, referral(P, "2026-01-05"))
    accept(engine, scheduled(P, "2026-01-06", "2026-01-12"))
    assert only(engine) == {"mdt_meeting": [d("2026-01-12")]}
    sound(engine)


def test_rescheduling_the_meeting_moves_it(engine: Engine) -> None:
    """mdt_scheduled again in mdt_assessment: one meeting, on the new date (nothing duplicated)."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, scheduled(P, "2026-01-08", "2026-01-19"))
    assert only(engine) == {"mdt_meeting": [d("2026-01-19")]}
    sound(engine)


def test_the_decision_ends_the_mdt_reminders(engine: Engine) -> None:
    """mdt_decision: the meeting is held; only the new state's reminders are pending."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, decision(P, "2026-01-12", "systemic_therapy"))
    assert "mdt_meeting" not in kinds(engine, P) and "mdt_due" not in kinds(engine, P)
    sound(engine)


def _to_mdt_by(engine: Engine, how: str) -> date:
    """Return to mdt_assessment without a meeting date, by `how`; the date of that event."""
    if how == "progression":
        walk_to(engine, P, "conversion_chemo")
        accept(engine, cycle(P, "2026-01-19"))
        on = d("2026-03-16")
        accept(engine, restaging(P, on, "progression"))
    elif how == "chemo_stopped":
        walk_to(engine, P, "neoadjuvant_chemo")
        on = d("2026-01-20")
        accept(engine, stopped(P, on, "patient_choice"))
    elif how in ("exploration_only", "R2"):
        walk_to(engine, P, "resection")
        on = d("2026-01-26")
        data = {"procedure": "exploration_only"} if how == "exploration_only" else {"margin": "R2"}
        accept(engine, surgery(P, on, **data))
    elif how == "recurrence":
        walk_to(engine, P, "follow_up")
        on = d("2026-06-01")
        accept(engine, recurrence(P, on))
    elif how == "incomplete_ablation":
        walk_to(engine, P, "ablation")
        accept(engine, ablation(P, "2026-01-20"))
        on = d("2026-02-24")
        accept(engine, checked(P, on, complete=False))
    elif how == "adjuvant_recurrence":
        surgery_on = walk_to(engine, P, "adjuvant_chemo")
        accept(engine, cycle(P, days(surgery_on, 42)))
        on = days(surgery_on, 50)
        accept(engine, recurrence(P, on))
    elif how == "adjuvant_progression":
        walk_to(engine, P, "adjuvant_chemo")
        on = d("2026-03-01")
        accept(engine, stopped(P, on, "progression"))
    else:  # pragma: no cover
        raise AssertionError(how)
    assert engine.show(P).state == "mdt_assessment"
    return on


@pytest.mark.parametrize(
    "how",
    [
        "progression",
        "chemo_stopped",
        "exploration_only",
        "R2",
        "recurrence",
        "incomplete_ablation",
        "adjuvant_progression",
        "adjuvant_recurrence",
    ],
)
def test_returning_to_the_mdt_without_a_meeting_date_is_due_14_days_later(engine: Engine, how: str) -> None:
    """Spec 5: "after an event that returns to `mdt_assessment` without a meeting date: that event + 14",
    and the reminders of the state left are cancelled."""
    on = _to_mdt_by(engine, how)
    assert only(engine) == {"mdt_due": [days(on, 14)]}
    sound(engine)


@pytest.mark.parametrize(
    "state",
    [
        "neoadjuvant_chemo",
        "resection",
        "portal_vein_embolization",
        "ablation",
        "follow_up",
        "adjuvant_chemo",
        "conversion_chemo",
        "systemic_therapy",
    ],
)
def test_scheduling_an_mdt_cancels_the_reminders_of_the_state_left(engine: Engine, state: str) -> None:
    """mdt_scheduled from any non-terminal state -> mdt_assessment; "the reminders of the state it
    leaves are cancelled" (spec 3): only the meeting is pending."""
    last = walk_to(engine, P, state)
    accept(engine, scheduled(P, days(last, 1), days(last, 8)))
    assert only(engine) == {"mdt_meeting": [days(last, 8)]}
    sound(engine)


# -- chemo_cycle -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["neoadjuvant_chemo", "conversion_chemo", "systemic_therapy"])
def test_the_first_cycle_is_due_7_days_after_the_decision(engine: Engine, state: str) -> None:
    """chemo_cycle: first cycle = MDT decision + 7 (spec 5); only the next cycle is pending."""
    walk_to(engine, P, state)  # decision on 2026-01-12
    assert only(engine) == {"chemo_cycle": [d("2026-01-19")]}
    sound(engine)


@pytest.mark.parametrize(("regimen", "length"), [("FOLFOX", 14), ("FOLFIRI", 14), ("CAPOX", 21)])
def test_the_next_cycle_is_due_one_cycle_length_after_the_last(
    engine: Engine, regimen: str, length: int
) -> None:
    """next = last cycle + cycle length (FOLFOX, FOLFIRI 14; CAPOX 21) (spec 5; T5-T8)."""
    walk_to(engine, P, "neoadjuvant_chemo", regimen=regimen)
    accept(engine, cycle(P, "2026-01-20"))
    assert due(engine, P, "chemo_cycle") == [days(d("2026-01-20"), length)]
    sound(engine)


def test_a_systemic_other_regimen_is_on_21_day_cycles(engine: Engine) -> None:
    """`other` regimens run on 21-day cycles (spec 5: 4 and 4 for CAPOX and `other`)."""
    walk_to(engine, P, "systemic_therapy", primary="breast")
    accept(engine, cycle(P, "2026-01-19"))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-09")]


def test_only_the_next_cycle_is_pending(engine: Engine) -> None:
    """Only the *next* cycle is a pending reminder (spec 5), however many were given."""
    walk_to(engine, P, "neoadjuvant_chemo")
    last = cycles(engine, P, d("2026-01-19"), 3)
    assert only(engine) == {"chemo_cycle": [days(last, 14)]}
    sound(engine)


def test_a_delay_by_days_moves_the_next_cycle(engine: Engine) -> None:
    """V9: cycle_delayed days 7 moves the next cycle from 07-27 to 08-03 (spec 5; T12)."""
    walk_to(engine, P, "adjuvant_chemo", on=d("2026-03-30"))  # surgery 2026-04-20
    accept(engine, cycle(P, "2026-06-15"))
    accept(engine, cycle(P, "2026-06-29"))
    accept(engine, cycle(P, "2026-07-13"))
    assert due(engine, P, "chemo_cycle") == [d("2026-07-27")]
    accept(engine, delayed(P, "2026-07-27", days=7, reason="thrombocytopenia"))
    assert only(engine) == {"chemo_cycle": [d("2026-08-03")]}
    sound(engine)


def test_a_delay_until_a_date_moves_the_next_cycle_to_it(engine: Engine) -> None:
    """cycle_delayed `until` moves the next cycle to that date (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, delayed(P, "2026-02-02", until="2026-02-11"))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-11")]
    sound(engine)


def test_delays_add_up(engine: Engine) -> None:
    """Delays add up (spec 3): 7 days then 3 days move the cycle by 10; `until` then 5 days by 5 more."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))  # next 02-02
    accept(engine, delayed(P, "2026-02-02", days=7))
    accept(engine, delayed(P, "2026-02-09", days=3))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-12")]
    accept(engine, delayed(P, "2026-02-12", until="2026-02-16"))
    accept(engine, delayed(P, "2026-02-16", days=5))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-21")]
    sound(engine)


def test_a_delay_shifts_every_later_cycle(engine: Engine) -> None:
    """The delayed cycle given on its new date: the one after is due a cycle length later (spec 3)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, delayed(P, "2026-02-02", days=7))
    accept(engine, cycle(P, "2026-02-09"))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-23")]
    sound(engine)


def test_a_delay_keeps_the_reminder_key(engine: Engine) -> None:
    """A reminder's key is stable: the same planned cycle keeps its key when its date moves (spec 5)."""
    walk_to(engine, P, "neoadjuvant_chemo")
    before = [r.key for r in pending(engine, P, "chemo_cycle")]
    accept(engine, delayed(P, "2026-01-19", days=7))
    assert [r.key for r in pending(engine, P, "chemo_cycle")] == before


def test_the_first_adjuvant_cycle_is_due_42_days_after_surgery(engine: Engine) -> None:
    """first adjuvant cycle = surgery + 42 (spec 5; T20)."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    assert only(engine) == {"chemo_cycle": [days(surgery_on, 42)]}
    sound(engine)


def test_the_first_adjuvant_cycle_is_due_42_days_after_ablation(engine: Engine) -> None:
    """first adjuvant cycle = ablation + 42; the post-ablation scan (+35) is pending too."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, "2026-01-20", adjuvant=True))
    assert only(engine) == {"chemo_cycle": [d("2026-03-03")], "ablation_scan": [d("2026-02-24")]}
    sound(engine)


def test_the_adjuvant_phase_uses_the_regimen_of_the_last_decision(engine: Engine) -> None:
    """After perioperative CAPOX the adjuvant cycles are CAPOX: 21 days apart, 4 planned (spec 5; T10)."""
    walk_to(engine, P, "resection", regimen="CAPOX")
    accept(engine, surgery(P, "2026-01-26", adjuvant=True))
    accept(engine, cycle(P, "2026-03-09"))
    assert due(engine, P, "chemo_cycle") == [d("2026-03-30")]
    cycles(engine, P, d("2026-03-30"), 3, every=21)  # 03-30, 04-20, 05-11: the 4th and last
    assert engine.show(P).state == "follow_up"
    assert "chemo_cycle" not in kinds(engine, P)


def test_the_last_planned_adjuvant_cycle_ends_the_cycles(engine: Engine) -> None:
    """In adjuvant_chemo the last planned cycle (6 of FOLFOX) moves to follow_up: no chemo_cycle."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    cycles(engine, P, days(surgery_on, 42), 6)
    assert engine.show(P).state == "follow_up"
    assert kinds(engine, P) == {"surveillance"}
    sound(engine)


def test_stopping_chemotherapy_cancels_the_next_cycle(engine: Engine) -> None:
    """chemo_stopped: the chemo_cycle is no longer planned."""
    walk_to(engine, P, "conversion_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, stopped(P, "2026-01-25", "toxicity"))
    assert "chemo_cycle" not in kinds(engine, P) and "restaging_scan" not in kinds(engine, P)
    sound(engine)


def test_a_cycle_given_with_another_regimen_sets_the_next_by_that_regimen(engine: Engine) -> None:
    """`regimen` on cycle_given defaults to the phase's; given, the next cycle follows its length
    (spec 3, 5): a CAPOX cycle in a FOLFOX phase makes the next one due 21 days later."""
    walk_to(engine, P, "conversion_chemo")
    accept(engine, cycle(P, "2026-01-19", regimen="CAPOX"))
    assert due(engine, P, "chemo_cycle") == [d("2026-02-09")]


def test_adjuvant_cycles_carry_no_biologic(engine: Engine) -> None:
    """Spec 5: "the adjuvant phase uses the regimen of the last MDT decision without a biologic": after
    perioperative FOLFOX + bevacizumab, the adjuvant cycles are no bevacizumab doses, so a later
    resection is due by entry + 14, not by a washout from the last adjuvant cycle."""
    walk_to(engine, P, "neoadjuvant_chemo", biologic="bevacizumab")
    last = cycles(engine, P, d("2026-01-19"), 6)
    accept(engine, restaging(P, days(last, 14), "partial"))
    accept(engine, surgery(P, days(last, 42), adjuvant=True))
    last = cycles(engine, P, days(last, 84), 6)
    assert engine.show(P).state == "follow_up"
    accept(engine, recurrence(P, days(last, 15)))
    accept(engine, decision(P, days(last, 15), "resection"))
    assert only(engine) == {"surgery_due": [days(last, 29)]}


def test_a_delay_does_not_move_the_restaging_scan(engine: Engine) -> None:
    """Conversion restaging is first cycle + 56 (spec 5), whatever the delays of later cycles."""
    walk_to(engine, P, "conversion_chemo")
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, delayed(P, "2026-02-02", days=14))
    assert only(engine) == {"chemo_cycle": [d("2026-02-16")], "restaging_scan": [d("2026-03-16")]}


def test_a_neoadjuvant_restaging_before_the_planned_cycles_stays_and_keeps_the_next_cycle(
    engine: Engine,
) -> None:
    """Before the planned cycles are given a non-progression restaging stays (spec 3.2): the next
    cycle is still planned."""
    walk_to(engine, P, "neoadjuvant_chemo")
    last = cycles(engine, P, d("2026-01-19"), 3)
    accept(engine, restaging(P, days(last, 7), "partial"))
    assert engine.show(P).state == "neoadjuvant_chemo"
    assert only(engine) == {"chemo_cycle": [days(last, 14)]}


def test_a_neoadjuvant_restaging_found_not_resectable_goes_back_to_the_mdt(engine: Engine) -> None:
    """`resectable: false` -> mdt_assessment at any point (spec 3.2); the next cycle is cancelled."""
    walk_to(engine, P, "neoadjuvant_chemo")
    last = cycles(engine, P, d("2026-01-19"), 3)
    accept(engine, restaging(P, days(last, 7), "stable", resectable=False))
    assert only(engine) == {"mdt_due": [days(last, 21)]}


# -- restaging_scan --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("regimen", "n", "every"), [("FOLFOX", 6, 14), ("CAPOX", 4, 21)])
def test_the_preop_restaging_is_due_14_days_after_the_last_planned_cycle(
    engine: Engine, regimen: str, n: int, every: int
) -> None:
    """neoadjuvant restaging_scan = last planned pre-op cycle + 14, and no further cycle (spec 5; T14)."""
    walk_to(engine, P, "neoadjuvant_chemo", regimen=regimen)
    last = cycles(engine, P, d("2026-01-19"), n, every)
    assert only(engine) == {"restaging_scan": [days(last, 14)]}
    sound(engine)


def test_no_preop_restaging_is_pending_before_the_planned_cycles_are_given(engine: Engine) -> None:
    """Five of six FOLFOX cycles: the next cycle, no restaging yet."""
    walk_to(engine, P, "neoadjuvant_chemo")
    last = cycles(engine, P, d("2026-01-19"), 5)
    assert only(engine) == {"chemo_cycle": [days(last, 14)]}


@pytest.mark.parametrize("state", ["conversion_chemo", "systemic_therapy"])
def test_conversion_and_systemic_restaging_is_due_56_days_after_the_first_cycle(
    engine: Engine, state: str
) -> None:
    """restaging_scan = first cycle + 56 (spec 5; T13, T36); later cycles do not move it."""
    walk_to(engine, P, state)
    accept(engine, cycle(P, "2026-01-19"))
    assert due(engine, P, "restaging_scan") == [d("2026-03-16")]
    cycles(engine, P, d("2026-02-09"), 2, every=21)
    assert only(engine) == {"restaging_scan": [d("2026-03-16")], "chemo_cycle": [d("2026-03-16")]}
    sound(engine)


@pytest.mark.parametrize("state", ["conversion_chemo", "systemic_therapy"])
def test_the_next_restaging_is_due_56_days_after_the_previous(engine: Engine, state: str) -> None:
    """then restaging_scan = previous restaging + 56, whenever the restaging happened (spec 5)."""
    walk_to(engine, P, state)
    accept(engine, cycle(P, "2026-01-19"))
    accept(engine, restaging(P, "2026-03-10", "stable"))
    assert engine.show(P).state == state
    assert due(engine, P, "restaging_scan") == [d("2026-05-05")]
    accept(engine, restaging(P, "2026-05-05", "partial"))
    assert due(engine, P, "restaging_scan") == [d("2026-06-30")]
    sound(engine)


def test_no_restaging_is_planned_before_the_first_conversion_cycle(engine: Engine) -> None:
    """The first restaging counts from the first cycle, so none is pending before it."""
    walk_to(engine, P, "conversion_chemo")
    assert "restaging_scan" not in kinds(engine, P)


def test_the_preop_restaging_is_done_by_the_restaging(engine: Engine) -> None:
    """A restaging with the planned cycles given -> resection; the scan is no longer pending."""
    walk_to(engine, P, "neoadjuvant_chemo")
    last = cycles(engine, P, d("2026-01-19"), 6)
    accept(engine, restaging(P, days(last, 14), "partial"))
    assert "restaging_scan" not in kinds(engine, P)
    sound(engine)


# -- surgery_due -------------------------------------------------------------------------------------------


def test_surgery_is_due_14_days_after_entering_resection(engine: Engine) -> None:
    """surgery_due = entry + 14 when no chemotherapy was given (spec 5)."""
    walk_to(engine, P, "resection")
    assert only(engine) == {"surgery_due": [d("2026-01-26")]}
    sound(engine)


def _preop_then_restaging(engine: Engine, after_last: int, **decision_fields: Any) -> date:
    walk_to(engine, P, "neoadjuvant_chemo", **decision_fields)
    last = cycles(engine, P, d("2026-01-19"), 6)  # last 2026-03-30
    accept(engine, restaging(P, days(last, after_last), "partial"))
    assert engine.show(P).state == "resection"
    return last


def test_surgery_is_due_28_days_after_the_last_cycle_when_that_is_later(engine: Engine) -> None:
    """surgery_due = max(entry + 14, last cycle + 28, …): restaged 7 days after the last cycle,
    surgery is due last cycle + 28 (T17)."""
    last = _preop_then_restaging(engine, 7)
    assert only(engine) == {"surgery_due": [days(last, 28)]}
    sound(engine)


def test_surgery_is_due_14_days_after_entry_when_that_is_later(engine: Engine) -> None:
    """Restaged 20 days after the last cycle: entry + 14 = last + 34 wins."""
    last = _preop_then_restaging(engine, 20)
    assert only(engine) == {"surgery_due": [days(last, 34)]}


def test_surgery_is_due_42_days_after_the_last_bevacizumab_dose(engine: Engine) -> None:
    """… last bevacizumab + 42 (T18, NCCN)."""
    last = _preop_then_restaging(engine, 14, biologic="bevacizumab")
    assert only(engine) == {"surgery_due": [days(last, 42)]}
    sound(engine)


def test_booking_surgery_moves_surgery_due(engine: Engine) -> None:
    """`booked` surgery: surgery_due is now due on `for` (spec 3), keeping its key; a second booking moves it again."""
    walk_to(engine, P, "resection")
    key = pending(engine, P, "surgery_due")[0].key
    accept(engine, booked(P, "2026-01-13", "surgery", "2026-02-02"))
    assert only(engine) == {"surgery_due": [d("2026-02-02")]}
    accept(engine, booked(P, "2026-01-14", "surgery", "2026-01-28"))
    assert only(engine) == {"surgery_due": [d("2026-01-28")]}
    assert pending(engine, P, "surgery_due")[0].key == key
    sound(engine)


def test_surgery_ends_surgery_due(engine: Engine) -> None:
    """The surgery is done: no surgery_due; surveillance from the surgery date."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, "2026-01-26"))
    assert "surgery_due" not in kinds(engine, P)
    assert due(engine, P, "surveillance") == surveillance_dates(d("2026-01-26"))
    sound(engine)


# -- pve_due and flr_scan ------------------------------------------------------------------------------------


def test_pve_is_due_14_days_after_the_decision(engine: Engine) -> None:
    """pve_due = entering portal_vein_embolization from an MDT decision + 14 (V2)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=18, liver="chemo_injured")
    assert only(engine) == {"pve_due": [d("2026-01-26")]}
    sound(engine)


def test_the_pve_ends_pve_due_and_plans_volumetry_28_days_later(engine: Engine) -> None:
    """pve_performed: pve_due done, flr_scan = pve_performed + 28 (V2; T23)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=18)
    accept(engine, pve(P, "2026-01-20"))
    assert only(engine) == {"flr_scan": [d("2026-02-17")]}
    sound(engine)


def test_after_a_first_stage_volumetry_is_due_28_days_later_and_no_pve_is_due(engine: Engine) -> None:
    """two_stage_first -> portal_vein_embolization with flr_scan = surgery + 28 and no pve_due (V3)."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, "2026-02-09", "two_stage_first"))
    assert engine.show(P).state == "portal_vein_embolization"
    assert only(engine) == {"flr_scan": [d("2026-03-09")]}
    accept(engine, pve(P, "2026-02-23"))
    assert only(engine) == {"flr_scan": [d("2026-03-23")]}
    sound(engine)


def test_an_adequate_remnant_ends_the_flr_scan_and_plans_surgery(engine: Engine) -> None:
    """Restaging with flr ≥ threshold (30 for the chemo-injured liver of V2) -> resection, surgery_due +14."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=18, liver="chemo_injured")
    accept(engine, pve(P, "2026-01-22"))
    accept(engine, restaging(P, "2026-02-19", "stable", flr_percent=33))
    assert engine.show(P).state == "resection"
    assert only(engine) == {"surgery_due": [d("2026-03-05")]}
    sound(engine)


def test_a_remnant_still_too_small_is_scanned_again_14_days_later(engine: Engine) -> None:
    """flr below threshold within 56 days of the PVE: stay and re-scan, flr_scan = restaging + 14 (KGR)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, "2026-01-20"))
    accept(engine, restaging(P, "2026-02-17", "stable", flr_percent=18))
    assert engine.show(P).state == "portal_vein_embolization"
    assert only(engine) == {"flr_scan": [d("2026-03-03")]}
    accept(engine, restaging(P, "2026-03-16", "stable", flr_percent=19))  # 55 days after the PVE
    assert engine.show(P).state == "portal_vein_embolization"
    assert only(engine) == {"flr_scan": [d("2026-03-30")]}
    sound(engine)


def test_a_remnant_still_too_small_56_days_after_the_pve_goes_back_to_the_mdt(engine: Engine) -> None:
    """Spec 3.2: "while fewer than 56 days have passed since `pve_performed` …, else → `mdt_assessment`" (T24)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, "2026-01-20"))
    accept(engine, restaging(P, "2026-03-17", "stable", flr_percent=19))  # 56 days
    assert engine.show(P).state == "mdt_assessment"
    assert only(engine) == {"mdt_due": [d("2026-03-31")]}
    sound(engine)


def test_a_remnant_still_too_small_56_days_after_a_first_stage_goes_back_to_the_mdt(engine: Engine) -> None:
    """The 56 days also count from two_stage_first when no PVE followed."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, "2026-01-26", "two_stage_first"))
    accept(engine, restaging(P, "2026-03-20", "stable", flr_percent=15))  # 53 days: re-scan
    assert only(engine) == {"flr_scan": [d("2026-04-03")]}
    accept(engine, restaging(P, "2026-03-23", "stable", flr_percent=15))  # 56 days
    assert engine.show(P).state == "mdt_assessment"
    sound(engine)


def test_a_restaging_without_a_remnant_volume_leaves_the_flr_scan_pending(engine: Engine) -> None:
    """No flr_percent -> stay (spec 3.2); the flr_scan is done only by a restaging with flr_percent (spec 5)."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, "2026-01-20"))
    accept(engine, restaging(P, "2026-02-10", "stable"))
    assert only(engine) == {"flr_scan": [d("2026-02-17")]}
    sound(engine)


def test_the_pve_threshold_is_the_liver_at_the_last_decision(engine: Engine) -> None:
    """Spec 5: "in portal_vein_embolization the FLR threshold is the one for the liver at the last MDT
    decision": a normal liver after 12 weeks of chemotherapy counted chemo_injured then, so 25% is
    not enough and the remnant is scanned again."""
    walk_to(engine, P, "conversion_chemo")
    last = cycles(engine, P, d("2026-01-19"), 6)  # 12 weeks
    accept(engine, restaging(P, days(last, 14), "partial", resectable=True))
    accept(engine, decision(P, days(last, 21), "portal_vein_embolization", flr_percent=15, liver="normal"))
    accept(engine, pve(P, days(last, 28)))
    accept(engine, restaging(P, days(last, 56), "stable", flr_percent=25))
    assert engine.show(P).state == "portal_vein_embolization"
    assert only(engine) == {"flr_scan": [days(last, 70)]}


def test_a_normal_liver_without_chemotherapy_needs_20_percent_after_pve(engine: Engine) -> None:
    """Without chemotherapy a normal liver's threshold stays 20: flr 22 after PVE -> resection."""
    walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    accept(engine, pve(P, "2026-01-20"))
    accept(engine, restaging(P, "2026-02-17", "stable", flr_percent=22))
    assert engine.show(P).state == "resection"


def test_progression_during_the_pve_wait_cancels_the_flr_scan(engine: Engine) -> None:
    """V3 variant: progression -> mdt_assessment, mdt_due + 14; stage two never booked."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, "2026-02-09", "two_stage_first"))
    accept(engine, pve(P, "2026-02-23"))
    accept(engine, restaging(P, "2026-03-23", "progression"))
    assert only(engine) == {"mdt_due": [d("2026-04-06")]}
    sound(engine)


# -- ablation_due and ablation_scan ----------------------------------------------------------------------------


def test_ablation_is_due_14_days_after_entering_the_stage(engine: Engine) -> None:
    """ablation_due = entering `ablation` + 14 (spec 5)."""
    walk_to(engine, P, "ablation")
    assert only(engine) == {"ablation_due": [d("2026-01-26")]}
    sound(engine)


def test_the_ablation_ends_ablation_due_and_plans_a_scan_35_days_later(engine: Engine) -> None:
    """ablation_performed: ablation_due done; ablation_scan = ablation + 35 (T28); surveillance from the ablation."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, "2026-01-20"))
    assert engine.show(P).state == "follow_up"
    assert only(engine) == {
        "ablation_scan": [d("2026-02-24")],
        "surveillance": surveillance_dates(d("2026-01-20")),
    }
    sound(engine)


def test_a_resection_with_ablation_plans_the_ablation_scan(engine: Engine) -> None:
    """`surgery` resection_with_ablation + 35 -> ablation_scan (spec 5)."""
    walk_to(engine, P, "resection")
    accept(engine, surgery(P, "2026-01-26", "resection_with_ablation", adjuvant=True))
    assert only(engine) == {"ablation_scan": [d("2026-03-02")], "chemo_cycle": [d("2026-03-09")]}
    sound(engine)


def test_a_complete_ablation_check_ends_the_scan(engine: Engine) -> None:
    """ablation_checked complete: same state, ablation_scan done (spec 3)."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, "2026-01-20"))
    accept(engine, checked(P, "2026-02-24", complete=True))
    assert engine.show(P).state == "follow_up"
    assert only(engine) == {"surveillance": surveillance_dates(d("2026-01-20"))}
    sound(engine)


def test_a_complete_ablation_check_during_adjuvant_chemotherapy_ends_the_scan(engine: Engine) -> None:
    """ablation_checked is allowed in adjuvant_chemo too; the next cycle stays planned."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, "2026-01-20", adjuvant=True))
    accept(engine, checked(P, "2026-02-24", complete=True))
    assert only(engine) == {"chemo_cycle": [d("2026-03-03")]}
    sound(engine)


def test_a_surveillance_visit_does_the_ablation_scan(engine: Engine) -> None:
    """A surveillance_visit does a pending `ablation_scan` too (spec 3)."""
    walk_to(engine, P, "ablation")
    accept(engine, ablation(P, "2026-01-20"))
    accept(engine, visit(P, "2026-02-24"))
    assert "ablation_scan" not in kinds(engine, P)
    sound(engine)


# -- imaging_followup and surveillance -----------------------------------------------------------------------


def test_a_suspicious_visit_asks_for_imaging_14_days_later(engine: Engine) -> None:
    """V11: surveillance_visit suspicious -> imaging_followup = visit + 14."""
    walk_to(engine, P, "follow_up")  # surgery 2026-01-26
    accept(engine, visit(P, "2026-04-26", "suspicious", cea=12.5))
    assert due(engine, P, "imaging_followup") == [d("2026-05-10")]
    sound(engine)


def test_the_next_visit_does_the_imaging_and_not_a_surveillance_visit(engine: Engine) -> None:
    """Spec 3: "a pending `imaging_followup` is done if there is one, else the pending visit due nearest `on`"."""
    walk_to(engine, P, "follow_up")
    accept(engine, visit(P, "2026-04-26", "suspicious"))
    visits = due(engine, P, "surveillance")
    accept(engine, visit(P, "2026-05-10", "clear"))
    assert "imaging_followup" not in kinds(engine, P)
    assert due(engine, P, "surveillance") == visits
    sound(engine)


def test_a_recurrence_does_the_imaging(engine: Engine) -> None:
    """imaging_followup is done by a recurrence (spec 5), which goes to the MDT."""
    walk_to(engine, P, "follow_up")
    accept(engine, visit(P, "2026-04-26", "suspicious"))
    accept(engine, recurrence(P, "2026-05-08", ["liver", "lung"]))
    assert only(engine) == {"mdt_due": [d("2026-05-22")]}
    sound(engine)


def test_surveillance_after_surgery_without_adjuvant_starts_from_the_surgery(engine: Engine) -> None:
    """V2: surveillance from the surgery date, months 3, 6, …, 24, 30, …, 60 — 14 visits (T34)."""
    walk_to(engine, P, "resection", on=d("2026-05-20"))  # decision 05-27
    accept(engine, surgery(P, "2026-06-03"))
    got = due(engine, P, "surveillance")
    assert len(got) == 14
    assert got[0] == d("2026-09-03") and got[-1] == d("2031-06-03")
    assert got == surveillance_dates(d("2026-06-03"))
    sound(engine)


def test_surveillance_after_adjuvant_chemotherapy_starts_a_cycle_after_the_last(engine: Engine) -> None:
    """End of treatment = last adjuvant cycle + cycle length (spec 5; T32, ASCO-surv)."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    last = cycles(engine, P, days(surgery_on, 42), 6)
    assert due(engine, P, "surveillance") == surveillance_dates(days(last, 14))


def test_surveillance_after_adjuvant_chemotherapy_stopped_for_toxicity(engine: Engine) -> None:
    """V9: chemo_stopped toxicity after the cycle of 08-03 -> follow_up, surveillance from 08-17."""
    walk_to(engine, P, "adjuvant_chemo", on=d("2026-03-30"))  # surgery 2026-04-20
    for on in ("2026-06-15", "2026-06-29", "2026-07-13"):
        accept(engine, cycle(P, on))
    accept(engine, delayed(P, "2026-07-27", days=7))
    accept(engine, cycle(P, "2026-08-03"))
    accept(engine, stopped(P, "2026-08-10", "toxicity"))
    assert engine.show(P).state == "follow_up"
    assert only(engine) == {"surveillance": surveillance_dates(d("2026-08-17"))}
    assert due(engine, P, "surveillance")[0] == d("2026-11-17")
    sound(engine)


def test_surveillance_after_adjuvant_stopped_before_any_cycle_starts_from_the_surgery(engine: Engine) -> None:
    """No adjuvant cycle given: the end of treatment is the surgery date (spec 5)."""
    surgery_on = walk_to(engine, P, "adjuvant_chemo")
    accept(engine, stopped(P, days(surgery_on, 30), "patient_choice"))
    assert due(engine, P, "surveillance") == surveillance_dates(surgery_on)


def test_surveillance_months_clamp_to_the_month_end_from_the_anchor(engine: Engine) -> None:
    """Same day of month, clamped to the month's end, computed from the start and never cumulatively
    (spec 5): anchored on 31 Aug 2026, month 6 is 28 Feb 2027, month 9 is 31 May 2027 (not the 28th),
    month 18 is 29 Feb 2028 (a leap year)."""
    walk_to(engine, P, "resection", on=d("2026-08-10"))
    accept(engine, surgery(P, "2026-08-31"))
    assert due(engine, P, "surveillance") == [
        d("2026-11-30"),
        d("2027-02-28"),
        d("2027-05-31"),
        d("2027-08-31"),
        d("2027-11-30"),
        d("2028-02-29"),
        d("2028-05-31"),
        d("2028-08-31"),
        d("2029-02-28"),
        d("2029-08-31"),
        d("2030-02-28"),
        d("2030-08-31"),
        d("2031-02-28"),
        d("2031-08-31"),
    ]
    sound(engine)


def test_surveillance_anchored_on_the_30th_of_november_reaches_29_february(engine: Engine) -> None:
    """30 Nov 2027 + 3 months = 29 Feb 2028, and + 6 months = 30 May 2028 (not the 29th)."""
    walk_to(engine, P, "resection", on=d("2027-11-10"))
    accept(engine, surgery(P, "2027-11-30"))
    got = due(engine, P, "surveillance")
    assert got[:3] == [d("2028-02-29"), d("2028-05-30"), d("2028-08-30")]


def test_a_visit_does_the_pending_visit_due_nearest_its_date(engine: Engine) -> None:
    """Spec 3: "else the pending visit due nearest `on`": a visit on 20 July does month 6 (26 July),
    month 3 (26 April) stays pending."""
    walk_to(engine, P, "follow_up")  # anchor 2026-01-26
    all_visits = surveillance_dates(d("2026-01-26"))
    accept(engine, visit(P, "2026-07-20"))
    assert due(engine, P, "surveillance") == [v for v in all_visits if v != d("2026-07-26")]
    sound(engine)


def test_a_recurrence_cancels_the_remaining_surveillance(engine: Engine) -> None:
    """`recurrence` cancels the remaining surveillance (spec 5) and goes to the MDT."""
    walk_to(engine, P, "follow_up")
    accept(engine, visit(P, "2026-04-26"))
    accept(engine, recurrence(P, "2026-06-01"))
    assert only(engine) == {"mdt_due": [d("2026-06-15")]}
    sound(engine)


def test_treatment_after_a_recurrence_starts_a_new_surveillance_course(engine: Engine) -> None:
    """After a repeat resection the surveillance runs from the new surgery; the old course is gone."""
    walk_to(engine, P, "follow_up")
    accept(engine, recurrence(P, "2026-06-01"))
    accept(engine, decision(P, "2026-06-08", "resection"))
    accept(engine, surgery(P, "2026-07-01"))
    assert only(engine) == {"surveillance": surveillance_dates(d("2026-07-01"))}
    sound(engine)


def test_watch_continues_surveillance_from_the_end_of_the_last_treatment(engine: Engine) -> None:
    """plan surveillance (watch): "surveillance continues from the end of the last treatment …; visits
    already done stay done" (spec 3.1)."""
    walk_to(engine, P, "follow_up")  # surgery 2026-01-26
    accept(engine, visit(P, "2026-04-27"))  # month 3 done
    accept(engine, scheduled(P, "2026-05-01", "2026-05-05"))
    assert "surveillance" not in kinds(engine, P)
    accept(engine, decision(P, "2026-05-05", "surveillance"))
    assert engine.show(P).state == "follow_up"
    assert only(engine) == {"surveillance": surveillance_dates(d("2026-01-26"))[1:]}
    sound(engine)


def test_watch_without_earlier_treatment_starts_surveillance_from_the_decision(engine: Engine) -> None:
    """Spec 3.1: "… or from this decision if there was none"."""
    walk_to(engine, P, "mdt_assessment")
    accept(engine, decision(P, "2026-01-12", "surveillance"))
    assert only(engine) == {"surveillance": surveillance_dates(d("2026-01-12"))}
    sound(engine)


# -- booked moves the reminder of its kind --------------------------------------------------------------------


def _bookable(engine: Engine, what: str) -> date:
    """Bring P1 to a state with a pending reminder that `booked what` moves; the latest event date."""
    if what == "surgery":
        return walk_to(engine, P, "resection")
    if what == "pve":
        return walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
    if what == "ablation":
        return walk_to(engine, P, "ablation")
    if what == "restaging_scan":
        walk_to(engine, P, "conversion_chemo")
        accept(engine, cycle(P, "2026-01-19"))
        return d("2026-01-19")
    if what == "flr_scan":
        walk_to(engine, P, "portal_vein_embolization", flr_percent=15)
        accept(engine, pve(P, "2026-01-20"))
        return d("2026-01-20")
    walk_to(engine, P, "ablation")  # ablation_scan
    accept(engine, ablation(P, "2026-01-20"))
    return d("2026-01-20")


BOOKED_KIND = {
    "surgery": "surgery_due",
    "pve": "pve_due",
    "ablation": "ablation_due",
    "restaging_scan": "restaging_scan",
    "flr_scan": "flr_scan",
    "ablation_scan": "ablation_scan",
}


@pytest.mark.parametrize("what", list(BOOKED_KIND))
def test_a_booking_moves_the_pending_reminder_of_its_kind(engine: Engine, what: str) -> None:
    """`booked`: "that pending reminder (`surgery_due`, `pve_due`, `ablation_due`, or the scan) is now
    due on `for`" (spec 3), with the same key and a notify_at recomputed from the new date."""
    on = _bookable(engine, what)
    kind = BOOKED_KIND[what]
    [before] = pending(engine, P, kind)
    target = days(before.due_on, 5)
    others = {k: v for k, v in only(engine).items() if k != kind}
    accept(engine, booked(P, on, what, target))
    [after] = pending(engine, P, kind)
    assert after.due_on == target and after.key == before.key
    assert {k: v for k, v in only(engine).items() if k != kind} == others
    sound(engine)


# -- terminal states --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [discharged, died, withdrawn], ids=["discharged", "died", "withdrawn"])
@pytest.mark.parametrize(
    "state",
    ["referral", "neoadjuvant_chemo", "resection", "portal_vein_embolization", "follow_up", "adjuvant_chemo"],
)
def test_a_terminal_state_cancels_every_pending_reminder(engine: Engine, terminal: Any, state: str) -> None:
    """Terminal states (discharged, deceased, withdrawn) cancel every pending reminder (spec 5)."""
    last = walk_to(engine, P, state)
    assert pending(engine, P), "there was something to cancel"
    accept(engine, terminal(P, days(last, 1)))
    assert pending(engine, P) == []
    sound(engine)


def test_a_recurrence_after_discharge_reopens_the_pathway_with_an_mdt_due(engine: Engine) -> None:
    """Recurrence returns to mdt_assessment "also after discharge" (spec 2): mdt_due = recurrence + 14."""
    walk_to(engine, P, "follow_up")
    accept(engine, discharged(P, "2026-03-01", reason="referred_back"))
    accept(engine, recurrence(P, "2026-09-01"))
    assert only(engine) == {"mdt_due": [d("2026-09-15")]}
    sound(engine)


# -- notify_at ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referred", "due_on", "notify_at"),
    [
        # winter: 08:00 London = 08:00Z
        ("2026-01-05", "2026-01-19", datetime(2026, 1, 17, 8, 0, tzinfo=UTC)),
        # summer: 08:00 London = 07:00Z
        ("2026-07-01", "2026-07-15", datetime(2026, 7, 13, 7, 0, tzinfo=UTC)),
        # the day before the clocks go forward (29 March 2026)
        ("2026-03-16", "2026-03-30", datetime(2026, 3, 28, 8, 0, tzinfo=UTC)),
        # the day the clocks go forward: 08:00 BST = 07:00Z
        ("2026-03-17", "2026-03-31", datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        # due on the change day, notified two days before it (still GMT)
        ("2026-03-15", "2026-03-29", datetime(2026, 3, 27, 8, 0, tzinfo=UTC)),
        # the day before the clocks go back (25 October 2026): still BST
        ("2026-10-12", "2026-10-26", datetime(2026, 10, 24, 7, 0, tzinfo=UTC)),
        # the day the clocks go back: 08:00 GMT = 08:00Z
        ("2026-10-13", "2026-10-27", datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    ],
)
def test_notify_at_is_8am_london_lead_days_before_due(
    engine: Engine, referred: str, due_on: str, notify_at: datetime
) -> None:
    """notify_at = 08:00 Europe/London on due_on − lead days (mdt: 2), as an instant (spec 5)."""
    accept(engine, referral(P, referred))
    [r] = pending(engine, P)
    assert (r.kind, r.due_on, r.notify_at) == ("mdt_due", d(due_on), notify_at)


def _with_kind(engine: Engine, kind: str) -> None:
    """Bring P1 to a point where a reminder of `kind` is pending."""
    if kind == "mdt_due":
        walk_to(engine, P, "referral")
    elif kind == "mdt_meeting":
        walk_to(engine, P, "mdt_assessment")
    elif kind == "chemo_cycle":
        walk_to(engine, P, "neoadjuvant_chemo")
    elif kind == "surveillance":
        walk_to(engine, P, "follow_up", on=d("2026-04-01"))
    elif kind in ("restaging_scan", "surgery_due", "pve_due", "flr_scan", "ablation_due", "ablation_scan"):
        what = {v: k for k, v in BOOKED_KIND.items()}[kind]
        _bookable(engine, what)
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", list(LEAD_DAYS))
def test_each_kind_is_notified_its_lead_days_before_due(engine: Engine, kind: str) -> None:
    """Lead days (spec 5): mdt_* 2 (mdt), chemo 2, restaging 7, surgery 14, pve_due and flr_scan 7
    (flr), ablation_* 7 (ablation), surveillance 14."""
    _with_kind(engine, kind)
    reminders = pending(engine, P, kind)
    assert reminders
    for r in reminders:
        assert r.notify_at == london_8am(days(r.due_on, -LEAD_DAYS[kind])), (r.due_on, r.notify_at)
        assert r.notify_at.utcoffset() is not None


def test_surgery_due_in_summer_is_notified_at_7_utc(engine: Engine) -> None:
    """surgery lead 14: due 2026-04-27, notified 2026-04-13 08:00 BST = 07:00Z."""
    last = _preop_then_restaging(engine, 7)
    assert last == d("2026-03-30")
    [r] = pending(engine, P, "surgery_due")
    assert (r.due_on, r.notify_at) == (d("2026-04-27"), datetime(2026, 4, 13, 7, 0, tzinfo=UTC))


# -- a whole journey ---------------------------------------------------------------------------------------------


def test_no_two_pending_reminders_ever_share_a_key(engine: Engine) -> None:
    """Along a long journey (perioperative CAPOX + bevacizumab, delay, booking, two-stage, PVE, adjuvant,
    surveillance, recurrence, ablation, watch) the care plan never holds a key twice, notify_at follows
    the lead days and replay equals the stored plan after every event (spec 5: nothing is duplicated)."""
    events = [
        referral(P, "2026-01-05"),
        scheduled(P, "2026-01-06", "2026-01-12"),
        scheduled(P, "2026-01-07", "2026-01-13"),
        decision(P, "2026-01-13", "perioperative_chemotherapy", regimen="CAPOX", biologic="bevacizumab"),
        cycle(P, "2026-01-20"),
        delayed(P, "2026-02-10", days=7),
        cycle(P, "2026-02-17"),
        cycle(P, "2026-03-10"),
        cycle(P, "2026-03-31", biologic="none"),
        booked(P, "2026-04-01", "restaging_scan", "2026-04-15"),
        restaging(P, "2026-04-15", "partial"),
        booked(P, "2026-04-16", "surgery", "2026-05-12"),
        surgery(P, "2026-05-12", "two_stage_first"),
        pve(P, "2026-05-20"),
        restaging(P, "2026-06-17", "stable", flr_percent=18),
        restaging(P, "2026-07-01", "stable", flr_percent=34),
        surgery(P, "2026-07-15", "two_stage_second", adjuvant=True),
        cycle(P, "2026-08-26"),
        cycle(P, "2026-09-16"),
        cycle(P, "2026-10-07"),
        cycle(P, "2026-10-28"),
        visit(P, "2027-02-18", "suspicious", cea=9.0),
        visit(P, "2027-03-04", "clear"),
        visit(P, "2027-05-18", "clear"),
        recurrence(P, "2027-07-01", ["liver"]),
        decision(P, "2027-07-08", "ablation", largest_lesion_cm=2.0),
        ablation(P, "2027-07-20"),
        visit(P, "2027-08-24", "clear"),
        scheduled(P, "2027-09-01", "2027-09-07"),
        decision(P, "2027-09-07", "surveillance"),
    ]
    for ev in events:
        accept(engine, ev)
        sound(engine)
    assert engine.show(P).state == "follow_up"
    assert kinds(engine, P) == {"surveillance"}


def test_the_care_plan_is_a_pure_function_of_the_accepted_history(engine: Engine) -> None:
    """states.pathway.plan_for(history, policy) gives exactly the engine's pending reminders."""
    from states.events import parse_event
    from states.pathway import plan_for
    from states.policy import DEFAULT_POLICY
    from tests.conftest import load_example

    events, _ = load_example("V9")
    for event in events:
        engine.record(event)
    accepted = [e for e in engine.history("V9") if e.status == "accepted"]
    history = [parse_event({"patient": "V9", "type": h.type, "on": h.on.isoformat(), "data": h.data}) for h in accepted]
    planned = [(p.key, p.kind, p.due_on, p.notify_at) for p in plan_for(history, DEFAULT_POLICY)]
    stored = [(r.key, r.kind, r.due_on, r.notify_at) for r in engine.show("V9").reminders]
    assert sorted(planned) == sorted(stored) and len(planned) == 14
