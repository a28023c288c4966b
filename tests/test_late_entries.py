"""Late (back-dated) entries and voids of any event (contract v1.2, issue 10).

An event dated before the patient's latest effective event is placed in clinical order — by date,
and on one day after what was recorded earlier — and the events after it are decided again: it is
accepted only if every one keeps its recorded outcome (status, rules, state), else refused with
LATE_ENTRY_CONFLICT naming them, and nothing changes. A void may undo any effective event, with the
same check (VOID_CONFLICT). The history lists events in clinical order and marks late entries;
`show(as_recorded_at=T)` gives the patient as the engine knew them at T.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pathway import Engine, ManualClock, Status
from pathway.delivery import Dispatcher
from persistence.memory import MemoryRepository
from tests.builders import (
    START,
    accept,
    biomarker,
    cycle,
    days,
    decision,
    restaging,
    scheduled,
    void,
    walk_to,
)
from tests.conftest import PINNED

P = "L1"


def accepted(engine: Engine, event: dict[str, Any]) -> Any:
    result = engine.record(event)
    assert result.status == "accepted", result.as_dict()
    return result


def ids_of(engine: Engine, p: str = P, **match: Any) -> list[int]:
    return [h.id for h in engine.show(p).history if all(getattr(h, k) == v for k, v in match.items())]


def neoadjuvant_with_cycles(engine: Engine, *offsets: int) -> None:
    """The patient on perioperative chemotherapy (decision on day 7), with cycles on these days."""
    walk_to(engine, P, "neoadjuvant_chemo")
    for offset in offsets:
        accepted(engine, cycle(P, days(START, offset)))


def conversion_back_at_resection(engine: Engine) -> None:
    """Conversion chemotherapy, a restaging that made the disease resectable, and an MDT decision for
    resection: day 70 restaging, day 71 MDT booked for day 75, day 75 decision."""
    walk_to(engine, P, "conversion_chemo")
    accepted(engine, cycle(P, days(START, 14)))
    accepted(engine, cycle(P, days(START, 28)))
    accepted(engine, restaging(P, days(START, 70), "partial", resectable=True))
    accepted(engine, scheduled(P, days(START, 71), days(START, 75)))
    accepted(engine, decision(P, days(START, 75), "resection", key="mdt-2"))
    assert engine.show(P).state == "resection"


# -- late entries ---------------------------------------------------------------------------------------


def test_a_scan_reported_late_is_placed_in_date_order_and_the_later_cycles_keep_their_outcome(
        engine: Engine) -> None:
    neoadjuvant_with_cycles(engine, 14, 28, 42)
    third = ids_of(engine, type="cycle_given")[-1]
    before = engine.show(P)

    result = accepted(engine, restaging(P, days(START, 35), "stable", key="ct-35"))

    assert result.reevaluated == (third,)
    view = engine.show(P)
    assert view.state == "neoadjuvant_chemo" and view.version == before.version + 1
    order = [(h.type, h.on) for h in view.history]
    assert order[-2:] == [("restaging", days(START, 35)), ("cycle_given", days(START, 42))]
    late = next(h for h in view.history if h.key == "ct-35")
    assert late.late_entry and late.as_dict()["late_entry"] is True
    assert late.late_by_days == (PINNED.date() - days(START, 35)).days
    assert not next(h for h in view.history if h.on == days(START, 42)).late_entry
    assert engine.verify(P) == []


def test_a_late_entry_that_would_change_a_later_outcome_is_refused_naming_each_and_changes_nothing(
        engine: Engine) -> None:
    """The issue's example: a late restaging showing progression placed before an accepted MDT
    decision for resection would have that decision refused (PROGRESSION_ON_CHEMO)."""
    conversion_back_at_resection(engine)
    before = engine.show(P)

    result = engine.record(restaging(P, days(START, 60), "progression"))

    assert result.status == "refused"
    (reason,) = result.reasons
    assert reason.code == "LATE_ENTRY_CONFLICT" and reason.severity == "block"
    decision_id = ids_of(engine, key="mdt-2")[0]
    rescan_id = ids_of(engine, type="restaging", status="accepted")[0]
    assert f"#{rescan_id} restaging on {days(START, 70).isoformat()} would be refused (NOT_ALLOWED_IN_STATE)" \
        in reason.message
    assert f"#{decision_id} mdt_decision on {days(START, 75).isoformat()} (key mdt-2) would be refused " \
           "(PROGRESSION_ON_CHEMO)" in reason.message
    assert "Void those events first" in reason.message
    after = engine.show(P)
    assert (after.state, after.version, after.reminders) == (before.state, before.version, before.reminders)
    newest = max(after.history, key=lambda h: h.id)
    assert (newest.status, newest.type, newest.on) == ("refused", "restaging", days(START, 60))
    assert engine.verify(P) == []


def test_on_one_day_a_late_entry_goes_after_what_was_recorded_for_that_day(engine: Engine) -> None:
    """Same-day order is the order of recording: a RAS result entered late for day 20 comes after
    the day-20 result recorded earlier, and a day-25 result still has the last word."""
    neoadjuvant_with_cycles(engine, 14)
    accepted(engine, biomarker(P, days(START, 20), ras="mutant"))
    accepted(engine, biomarker(P, days(START, 25), ras="unknown"))
    accepted(engine, biomarker(P, days(START, 20), ras="wild_type"))  # late, same day as the first
    view = engine.show(P)
    day20 = [h.data["ras"] for h in view.history if h.on == days(START, 20)]
    assert day20 == ["mutant", "wild_type"]
    assert view.snapshot.ras == "unknown"
    accepted(engine, void(P, days(START, 26)))  # undoes the latest effective event: the day-25 result
    assert engine.show(P).snapshot.ras == "wild_type"
    assert engine.verify(P) == []


def test_a_late_entry_that_fulfils_a_reminder_closes_it_done_and_its_delivery_record_stays(
        engine: Engine, clock: ManualClock) -> None:
    """Six pre-operative cycles plan the restaging scan; it is delivered; then a biomarker for a
    later day is recorded, and the scan's report arrives late, dated before that biomarker."""
    neoadjuvant_with_cycles(engine, 14, 28, 42, 56, 70, 84)
    (scan,) = [r for r in engine.show(P).reminders if r.kind == "restaging_scan"]
    report = Dispatcher(engine.repository, engine.policy, [lambda d: None]).dispatch_due(scan.notify_at)
    assert report.sent >= 1
    accepted(engine, biomarker(P, days(START, 100), msi="mss"))

    result = accepted(engine, restaging(P, days(START, 97), "partial", flr_percent=40))

    assert result.state == "resection"
    (stored,) = [r for r in engine.deliveries(patient=P) if r.key == scan.key]
    assert (stored.status, stored.delivery) == ("done", "sent")
    assert [r.kind for r in engine.show(P).reminders] == ["surgery_due"]
    assert engine.verify(P) == []


def test_a_back_dated_referral_second_time_is_still_invalid(engine: Engine) -> None:
    neoadjuvant_with_cycles(engine, 14)
    result = engine.record({"patient": P, "type": "referral", "on": days(START, -3).isoformat(),
                            "data": {"primary": "colorectal"}})
    assert result.status == "invalid"


# -- voids of any event ----------------------------------------------------------------------------------


def test_a_void_naming_an_earlier_event_by_key_undoes_it_and_re_decides_what_followed(engine: Engine) -> None:
    neoadjuvant_with_cycles(engine, 14)
    accepted(engine, biomarker(P, days(START, 20), ras="mutant", key="lab-20"))
    accepted(engine, cycle(P, days(START, 28)))
    target = ids_of(engine, key="lab-20")[0]

    result = accepted(engine, {**void(P, days(START, 30)), "data": {"reason": "wrong patient's result",
                                                                    "target_key": "lab-20"}})

    assert result.reevaluated == (ids_of(engine, type="cycle_given")[-1],)
    view = engine.show(P)
    assert view.snapshot.ras is None
    entry = next(h for h in view.history if h.id == target)
    assert entry.voided and next(h for h in view.history if h.void_of == target)
    assert engine.verify(P) == []


def test_a_void_naming_an_event_by_its_history_number_undoes_it(engine: Engine) -> None:
    neoadjuvant_with_cycles(engine, 14)
    accepted(engine, biomarker(P, days(START, 20), sidedness="right"))
    accepted(engine, biomarker(P, days(START, 22), msi="mss"))
    first = ids_of(engine, type="biomarker")[0]
    accepted(engine, {**void(P, days(START, 30)), "data": {"reason": "entered twice", "target_event": first}})
    snapshot = engine.show(P).snapshot
    assert snapshot.sidedness is None and snapshot.msi == "mss"


def test_a_void_of_an_event_later_ones_depend_on_is_refused_naming_them(engine: Engine) -> None:
    """Voiding the MDT decision would leave the cycles after it in mdt_assessment, where no cycle
    is allowed: VOID_CONFLICT lists them and nothing changes."""
    walk_to(engine, P, "mdt_assessment")
    accepted(engine, decision(P, days(START, 7), "perioperative_chemotherapy", key="mdt-1"))
    accepted(engine, cycle(P, days(START, 14)))
    before = engine.show(P)

    result = engine.record({**void(P, days(START, 15)), "data": {"reason": "wrong plan", "target_key": "mdt-1"}})

    assert result.status == "refused"
    (reason,) = result.reasons
    assert reason.code == "VOID_CONFLICT"
    assert "would be refused (NOT_ALLOWED_IN_STATE)" in reason.message
    assert f"cycle_given on {days(START, 14).isoformat()}" in reason.message
    after = engine.show(P)
    assert (after.state, after.version) == (before.state, before.version)


def test_a_void_naming_no_effective_event_or_two_targets_is_invalid(engine: Engine) -> None:
    neoadjuvant_with_cycles(engine, 14)
    unknown = engine.record({**void(P, days(START, 15)), "data": {"reason": "x", "target_key": "nope"}})
    assert unknown.status == "invalid" and "data.target_key" in unknown.error
    missing = engine.record({**void(P, days(START, 15)), "data": {"reason": "x", "target_event": 999}})
    assert missing.status == "invalid" and "data.target_event" in missing.error
    both = engine.record({**void(P, days(START, 15)),
                          "data": {"reason": "x", "target_key": "a", "target_event": 2}})
    assert both.status == "invalid" and "not both" in both.error
    referral_id = ids_of(engine, type="referral")[0]
    referral = engine.record({**void(P, days(START, 15)), "data": {"reason": "x", "target_event": referral_id}})
    assert referral.status == "invalid" and "withdrawn" in referral.error


# -- what the engine knew when --------------------------------------------------------------------------


def test_show_as_recorded_at_gives_the_patient_as_the_engine_knew_them_then(clock: ManualClock) -> None:
    with Engine(MemoryRepository(), clock=clock) as engine:
        neoadjuvant_with_cycles(engine, 14, 28)
        known_then = clock()
        then = engine.show(P)
        clock.advance(days=3)
        accepted(engine, biomarker(P, days(START, 21), ras="mutant"))  # a late entry
        accepted(engine, restaging(P, days(START, 35), "progression"))  # moves the patient to the MDT
        assert engine.show(P).state == "mdt_assessment"

        past = engine.show(P, as_recorded_at=known_then)

        assert (past.state, past.version) == (then.state, then.version)
        assert [h.id for h in past.history] == [h.id for h in then.history]
        assert [(r.key, r.due_on) for r in past.reminders] == [(r.key, r.due_on) for r in then.reminders]
        assert past.snapshot == then.snapshot


# -- properties ----------------------------------------------------------------------------------------------

#: One patient's events in date order after the referral: a path through perioperative chemotherapy.
COURSE = [
    scheduled(P, days(START, 1), days(START, 7)),
    decision(P, days(START, 7), "perioperative_chemotherapy"),
    cycle(P, days(START, 14)),
    biomarker(P, days(START, 20), ras="wild_type"),
    cycle(P, days(START, 28)),
    biomarker(P, days(START, 30), msi="mss"),
    cycle(P, days(START, 42)),
]


def _in_order() -> Any:
    with Engine(MemoryRepository(), clock=ManualClock(PINNED)) as engine:
        accept(engine, {"patient": P, "type": "referral", "on": START.isoformat(), "data": {"primary": "colorectal"}})
        for event in COURSE:
            accept(engine, event)
        return engine.show(P).snapshot


IN_ORDER = _in_order()


@settings(max_examples=40)
@given(st.permutations(range(len(COURSE))))
def test_recording_a_course_in_any_order_gives_the_in_order_snapshot_or_refuses(order: list[int]) -> None:
    """Whatever order the facts arrive in, what is accepted replays exactly (verify), and when
    every fact is accepted the patient is exactly as if they had arrived in date order."""
    with Engine(MemoryRepository(), clock=ManualClock(PINNED)) as engine:
        accept(engine, {"patient": P, "type": "referral", "on": START.isoformat(), "data": {"primary": "colorectal"}})
        statuses = [engine.record(COURSE[i]).status for i in order]
        assert engine.verify(P) == []
        if all(s == Status.accepted for s in statuses):
            assert engine.show(P).snapshot == IN_ORDER


def test_concurrent_late_entries_on_one_patient_are_serialised_and_both_kept(any_engine: Engine) -> None:
    """Two writers back-date results into one patient's history at once (SQLite and PostgreSQL):
    they queue on the patient, each replays on the other's result, the versions stay gapless."""
    neoadjuvant_with_cycles(any_engine, 14, 28, 42)
    version = any_engine.show(P).version
    start = threading.Barrier(2, timeout=30)
    results: list[Any] = []

    def writer(day: int, field: str) -> None:
        start.wait()
        results.append(any_engine.record(biomarker(P, days(START, day), **{field: "wild_type" if field == "ras"
                                                                            else "mss"})))

    threads = [threading.Thread(target=writer, args=(20, "ras")), threading.Thread(target=writer, args=(35, "msi"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.status for r in results) == ["accepted", "accepted"]
    view = any_engine.show(P)
    assert view.version == version + 2
    assert (view.snapshot.ras, view.snapshot.msi) == ("wild_type", "mss")
    assert any_engine.verify(P) == []


def test_after_a_late_entry_the_history_shows_each_event_s_state_in_date_order(engine: Engine) -> None:
    """A biomarker recorded while the patient waited for chemotherapy; the cycle given before it
    arrives late: in date order the biomarker came during chemotherapy, and the history says so."""
    walk_to(engine, P, "mdt_assessment")
    accepted(engine, decision(P, days(START, 7), "resection"))
    accepted(engine, biomarker(P, days(START, 30), ras="wild_type"))
    assert engine.show(P).history[-1].state_after == "resection"
    accepted(engine, {"patient": P, "type": "surgery", "on": days(START, 21).isoformat(),
                      "data": {"procedure": "resection", "margin": "R0", "adjuvant": False}})
    by_type = {h.type: h.state_after for h in engine.show(P).history}
    assert by_type["surgery"] == "follow_up" and by_type["biomarker"] == "follow_up"


def test_the_cli_shows_late_entries_and_the_patient_as_recorded_at_an_instant(sqlite_url: str,
                                                                           monkeypatch: Any) -> None:
    """`pathway show P` marks a late entry "entered N days late"; `--as-recorded-at` shows the
    patient before it; `--json` history entries carry `recorded_at`, `late_by_days`, `late_entry`."""
    import json

    from click.testing import CliRunner

    from pathway.cli import main

    def run(*args: str, now: str) -> Any:
        monkeypatch.setenv("PATHWAY_NOW", now)
        return CliRunner().invoke(main, [*args, "--db", sqlite_url], catch_exceptions=False)

    events = [{"patient": P, "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}},
              {"patient": P, "type": "mdt_scheduled", "on": "2026-01-20", "data": {"meeting_on": "2026-01-26"}}]
    monkeypatch.setenv("PATHWAY_NOW", "2026-01-20T10:00:00+00:00")
    first = CliRunner().invoke(main, ["record", "-", "--db", sqlite_url], input="\n".join(map(json.dumps, events)))
    assert first.exit_code == 0, first.output
    late = {"patient": P, "type": "biomarker", "on": "2026-01-10", "data": {"ras": "wild_type"}}
    monkeypatch.setenv("PATHWAY_NOW", "2026-01-27T10:00:00+00:00")
    recorded = CliRunner().invoke(main, ["record", "-", "--json", "--db", sqlite_url], input=json.dumps(late))
    assert json.loads(recorded.output)["status"] == "accepted"

    human = run("show", P, now="2026-01-27T11:00:00+00:00")
    assert "entered 17 days late" in human.output
    as_json = json.loads(run("show", P, "--json", now="2026-01-27T11:00:00+00:00").output)
    entry = next(h for h in as_json["history"] if h["type"] == "biomarker")
    assert (entry["late_by_days"], entry["late_entry"]) == (17, True) and entry["recorded_at"].startswith("2026-01-27")
    assert [h["type"] for h in as_json["history"]] == ["referral", "biomarker", "mdt_scheduled"]
    before = json.loads(run("show", P, "--json", "--as-recorded-at", "2026-01-26T00:00:00+00:00",
                            now="2026-01-27T11:00:00+00:00").output)
    assert [h["type"] for h in before["history"]] == ["referral", "mdt_scheduled"]
    bad = run("show", P, "--as-recorded-at", "2026-01-26", now="2026-01-27T11:00:00+00:00")
    assert bad.exit_code == 2 and "--as-recorded-at" in bad.output


def test_the_api_answers_a_late_entry_with_what_was_re_decided_and_serves_as_recorded_at(
        sqlite_engine: Engine, clock: ManualClock) -> None:
    from tests.test_web_api import make_web

    engine = sqlite_engine

    web = make_web(engine)
    with web.client:
        neoadjuvant_with_cycles(engine, 14, 28)
        then = clock().isoformat()
        clock.advance(hours=1)
        answer = web.post(biomarker(P, days(START, 20), msi="mss"))
        assert answer.status_code == 200
        (result,) = answer.json()
        assert result["status"] == "accepted" and result["reevaluated"] == [ids_of(engine, type="cycle_given")[-1]]
        now = web.get(f"/patients/{P}").json()
        past = web.get(f"/patients/{P}", as_recorded_at=then).json()
        assert len(past["history"]) == len(now["history"]) - 1 and past["version"] == now["version"] - 1
        naive = web.get(f"/patients/{P}", as_recorded_at="2026-01-01T00:00:00")
        assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["query", "as_recorded_at"]
