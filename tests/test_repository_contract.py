"""The repository contract (persistence.ports): one suite, run against every implementation — the
in-memory twin, SQLite and PostgreSQL (style: every port has an in-memory twin and one contract
suite run against each implementation).

It holds what the engine and the dispatcher rely on: transactions all or nothing, the optimistic
version check, accepted keys unique per patient, the event log's order, reminders following the
projection (a moved reminder is queued for delivery again), the worklist's order, and the outbox's
claims, leases and delivery records. The last tests run the engine itself on each backend and
compare it with the twin. What only SQL has (migrations, triggers, pragmas) is in test_persistence.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from pathway import Engine, ManualClock
from persistence import ports
from persistence.memory import MemoryRepository
from persistence.ports import NewEvent, StaleVersion
from persistence.repository import Repository
from states.plan import Planned
from states.vocabulary import ReminderKind
from tests.conftest import PINNED, example_names, load_example

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TOKEN = "claim-1"


@pytest.fixture
def repo(store_url: str) -> Iterator[ports.Repository]:
    repository: ports.Repository = MemoryRepository() if store_url == "memory://" else Repository.open(store_url)
    yield repository
    repository.close()


def at(day: int, hour: int = 8) -> datetime:
    """An instant in March 2026."""
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def planned(key: str, due: date, patient: str = "P1", kind: ReminderKind = ReminderKind.chemo_cycle,
            notify: datetime | None = None, detail: str | None = None) -> Planned:
    notify = notify or datetime.combine(due, datetime.min.time(), UTC)
    return Planned(f"{patient}:{key}", patient, kind, due, notify, key if detail is None else detail)


def save(tx: ports.WriteTx, version: int, patient: str = "P1", state: str = "referral",
         snapshot: Any = None) -> None:
    tx.save_patient(patient=patient, primary="colorectal", state=state,
                    snapshot={"state": state} if snapshot is None else snapshot,
                    referred_on=date(2026, 1, 5), latest_on=date(2026, 1, 5), version=version, now=NOW)


def plan(tx: ports.WriteTx, new: list[Planned], old: list[Planned] | None = None, *, state: str = "neoadjuvant_chemo",
         state_changed: bool = False, closed: dict[str, str] | None = None, closed_by: int | None = None) -> None:
    tx.reconcile(old or [], new, state=state, state_changed=state_changed, closed_status=closed or {},
                 closed_by=closed_by, now=NOW)


def stored(repo: ports.Repository, *reminders: Planned, patient: str = "P1") -> None:
    """The patient at version 1 with these reminders pending."""
    with repo.write() as tx:
        save(tx, 1, patient)
        plan(tx, list(reminders))


def event(status: str = "accepted", patient: str | None = "P1", key: str | None = None, **fields: Any) -> NewEvent:
    return NewEvent(status=status, payload=fields.pop("payload", {}), recorded_at=fields.pop("recorded_at", NOW),
                    patient=patient, type=fields.pop("type", "biomarker"), key=key, **fields)


def deliveries(repo: ports.Repository, **filters: Any) -> dict[str, tuple[Any, ...]]:
    """key -> (delivery, attempts, last_error) of every reminder."""
    return {r.key: (r.delivery, r.attempts, r.last_error) for r in repo.outbox().listing(**filters)}


# -- patients and transactions ----------------------------------------------------------------------------


def test_a_patient_is_inserted_at_version_one_and_updated_only_from_the_version_read(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1)
        save(tx, 2, state="mdt_assessment")
    with repo.read() as tx:
        row = tx.patient("P1")
    assert row is not None
    assert (row.version, row.state, row.snapshot) == (2, "mdt_assessment", {"state": "mdt_assessment"})


def test_a_stale_version_is_refused_and_changes_nothing(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1)
    with pytest.raises(StaleVersion), repo.write() as tx:
        save(tx, 3, state="withdrawn")  # written as if version 2 had been read
    with repo.read() as tx:
        assert tx.patient("P1").version == 1  # type: ignore[union-attr]


def test_creating_a_patient_twice_is_a_stale_version(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1)
    with pytest.raises(StaleVersion), repo.write() as tx:
        save(tx, 1)


def test_updating_a_patient_never_created_is_a_stale_version(repo: ports.Repository) -> None:
    with pytest.raises(StaleVersion), repo.write() as tx:
        save(tx, 2)
    with repo.read() as tx:
        assert tx.patient("P1") is None


def test_version_is_the_stored_version_or_none(repo: ports.Repository) -> None:
    with repo.write() as tx:
        assert tx.version("P1") is None
        save(tx, 1)
    with repo.write() as tx:
        tx.lock_patients(["P1", "P2"])
        assert (tx.version("P1"), tx.version("P2")) == (1, None)


def test_a_write_transaction_that_raises_leaves_nothing_behind(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1)
    with pytest.raises(RuntimeError, match="boom"), repo.write() as tx:
        save(tx, 2, state="withdrawn")
        save(tx, 1, patient="P2")
        tx.append(event(key="k1"))
        plan(tx, [planned("a", date(2026, 3, 10))])
        tx.flush()
        raise RuntimeError("boom")
    with repo.read() as tx:
        assert tx.patient("P1").version == 1  # type: ignore[union-attr]
        assert tx.patient("P2") is None
        assert tx.events("P1") == [] and tx.accepted_with_key("P1", "k1") is None
        assert tx.reminders("P1", statuses=None) == [] and tx.due_by(date(2027, 1, 1)) == []
    assert repo.outbox().listing() == []


def test_what_a_write_transaction_wrote_is_seen_by_others_only_once_it_ends(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1)
        tx.append(event())
        plan(tx, [planned("a", date(2026, 3, 10))])
        tx.flush()
        with repo.read() as other:
            assert (other.patient("P1"), other.events("P1"), other.due_by(date(2027, 1, 1))) == (None, [], [])
    with repo.read() as other:
        assert other.patient("P1") is not None and len(other.events("P1")) == 1
        assert len(other.due_by(date(2027, 1, 1))) == 1


def test_a_write_transaction_reads_the_events_it_appended(repo: ports.Repository) -> None:
    """(Not the patients it saved: on SQLite they are written at the end, the engine keeps them in `memo`.)"""
    with repo.write() as tx:
        save(tx, 1)
        first = tx.append(event(key="k1"))
        assert [e.id for e in tx.events("P1")] == [first]
        assert tx.accepted_with_key("P1", "k1").id == first  # type: ignore[union-attr]


def test_patients_are_listed_by_id_and_counted_by_state(repo: ports.Repository) -> None:
    with repo.write() as tx:
        for patient, state in (("P3", "referral"), ("P1", "follow_up"), ("P2", "referral")):
            save(tx, 1, patient, state)
    with repo.read() as tx:
        assert tx.patients() == [("P1", "follow_up"), ("P2", "referral"), ("P3", "referral")]
        assert tx.patients("referral") == [("P2", "referral"), ("P3", "referral")]
        assert list(tx.patient_ids()) == ["P1", "P2", "P3"]
        assert tx.counts_by_state() == {"follow_up": 1, "referral": 2}


def test_a_snapshot_comes_back_as_the_json_it_was_stored_as(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1, snapshot={"state": "referral", "on": date(2026, 1, 5), "cycles": (1, 2), "b": None})
    with repo.read() as tx:
        first = tx.patient("P1")
        first.snapshot["cycles"].append(3)  # type: ignore[union-attr]  # a value read is the reader's own
        again = tx.patient("P1")
    assert again.snapshot == {"state": "referral", "on": "2026-01-05", "cycles": [1, 2], "b": None}  # type: ignore[union-attr]


# -- the event log ----------------------------------------------------------------------------------------


def test_an_accepted_idempotency_key_is_unique_per_patient_but_refusals_bind_nothing(repo: ports.Repository) -> None:
    with repo.write() as tx:
        tx.append(event("refused", key="k1"))
        tx.append(event("refused", key="k1"))
        tx.append(event("accepted", key="k1"))
        tx.append(event("accepted", patient="P2", key="k1"))
    with pytest.raises(repo.integrity_errors), repo.write() as tx:
        tx.append(event("accepted", key="k1"))
    with repo.read() as tx:
        assert tx.accepted_with_key("P1", "k1").status == "accepted"  # type: ignore[union-attr]
        assert tx.accepted_with_key("P1", "other") is None
        assert len(tx.events("P1")) == 3


def test_a_key_bound_earlier_in_the_transaction_is_found_before_it_commits(repo: ports.Repository) -> None:
    with repo.write() as tx:
        bound = tx.append(event(key="k1", version=1))
        found = tx.accepted_with_key("P1", "k1")
        assert found is not None and (found.id, found.version) == (bound, 1)
        assert tx.accepted_with_key("P2", "k1") is None


def test_events_come_back_in_the_order_appended_with_increasing_ids(repo: ports.Repository) -> None:
    with repo.write() as tx:
        ids = [tx.append(event("accepted", type="referral")), tx.append(event("refused", patient="P2")),
               tx.append(event("refused")), tx.append(event("invalid", patient=None, error="bad"))]
    with repo.write() as tx:
        ids.append(tx.append(event("accepted", type="void")))
    assert ids == sorted(ids) and len(set(ids)) == 5
    with repo.read() as tx:
        assert [e.id for e in tx.events("P1")] == [ids[0], ids[2], ids[4]]
        assert [(e.id, e.type) for e in tx.events("P1", accepted_only=True)] == [(ids[0], "referral"), (ids[4], "void")]
        assert [e.id for e in tx.events("P2")] == [ids[1]]


def test_an_event_comes_back_as_it_was_appended(repo: ports.Repository) -> None:
    paris = timezone(timedelta(hours=1))
    row = NewEvent(status="accepted", payload={"type": "biomarker", "data": {"msi": "mss"}, "on": date(2026, 3, 1)},
                   recorded_at=datetime(2026, 3, 1, 10, 30, 0, 123456, tzinfo=paris), patient="P1", type="biomarker",
                   on=date(2026, 3, 1), by="dr.who", key="k9", content_hash="c0ffee",
                   reasons=[{"code": "X", "severity": "advice", "message": "m", "source": "s"}], state_after="referral",
                   version=2, refers_to=7)
    with repo.write() as tx:
        event_id = tx.append(row)
    with repo.read() as tx:
        (back,) = tx.events("P1")
    assert back.id == event_id
    assert (back.patient, back.type, back.on, back.status, back.by, back.key, back.content_hash) == (
        "P1", "biomarker", date(2026, 3, 1), "accepted", "dr.who", "k9", "c0ffee")
    assert back.payload == {"data": {"msi": "mss"}, "on": "2026-03-01", "type": "biomarker"}
    assert back.reasons == [{"code": "X", "severity": "advice", "message": "m", "source": "s"}]
    assert (back.error, back.state_after, back.version, back.refers_to) == (None, "referral", 2, 7)
    assert back.recorded_at == row.recorded_at and back.recorded_at.utcoffset() == timedelta(0)


# -- reminders --------------------------------------------------------------------------------------------


def test_reconcile_inserts_new_keys_closes_vanished_ones_and_moves_changed_ones(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 10))
    b = planned("b", date(2026, 3, 12))
    b_moved = planned("b", date(2026, 3, 19))
    c = planned("c", date(2026, 3, 20))
    with repo.write() as tx:
        save(tx, 1)
        plan(tx, [a, b])
        plan(tx, [b_moved, c], [a, b], closed={a.key: "done"}, closed_by=7)
    with repo.read() as tx:
        pending = {r.key: r.due_on for r in tx.reminders("P1")}
        closed = {r.key: r.status for r in tx.reminders("P1", statuses=("done", "cancelled"))}
    assert pending == {b.key: date(2026, 3, 19), c.key: date(2026, 3, 20)}
    assert closed == {a.key: "done"}


def test_a_vanished_reminder_without_a_status_given_is_cancelled(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 10))
    stored(repo, a)
    with repo.write() as tx:
        plan(tx, [], [a], closed_by=3)
    with repo.read() as tx:
        assert [(r.key, r.status) for r in tx.reminders("P1", statuses=None)] == [(a.key, "cancelled")]


def test_closing_a_reminder_closed_already_keeps_how_it_was_closed(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 10))
    stored(repo, a)
    with repo.write() as tx:
        plan(tx, [], [a], closed={a.key: "done"}, closed_by=3)
    with repo.write() as tx:
        plan(tx, [], [a], closed_by=4)
    with repo.read() as tx:
        assert [(r.key, r.status) for r in tx.reminders("P1", statuses=None)] == [(a.key, "done")]


def test_a_closed_reminder_whose_key_is_planned_again_is_reopened(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 10))
    with repo.write() as tx:
        save(tx, 1)
        plan(tx, [a])
        plan(tx, [], [a], closed_by=3)
        plan(tx, [a])
    with repo.read() as tx:
        assert [(r.key, r.status) for r in tx.reminders("P1", statuses=None)] == [(a.key, "pending")]


def test_a_reminder_planned_and_closed_in_one_transaction_is_stored_closed(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 10))
    with repo.write() as tx:
        save(tx, 1)
        plan(tx, [a])
        plan(tx, [], [a], closed={a.key: "done"}, closed_by=3)
    with repo.read() as tx:
        assert [(r.key, r.status) for r in tx.reminders("P1", statuses=None)] == [(a.key, "done")]
        assert tx.due_by(date(2027, 1, 1)) == []
    assert repo.outbox().next_due() is None


def test_a_patient_s_reminders_are_listed_by_due_date_kind_and_key_filtered_by_status(repo: ports.Repository) -> None:
    late = planned("z", date(2026, 3, 20), kind=ReminderKind.chemo_cycle)
    scan = planned("y", date(2026, 3, 10), kind=ReminderKind.restaging_scan)
    cycle = planned("x", date(2026, 3, 10), kind=ReminderKind.chemo_cycle)
    gone = planned("w", date(2026, 3, 1))
    stored(repo, late, scan, cycle, gone)
    with repo.write() as tx:
        plan(tx, [late, scan, cycle], [late, scan, cycle, gone], closed={gone.key: "done"}, closed_by=2)
    with repo.read() as tx:
        assert [r.key for r in tx.reminders("P1")] == [cycle.key, scan.key, late.key]
        assert [r.key for r in tx.reminders("P1", statuses=None)] == [gone.key, cycle.key, scan.key, late.key]
        assert [r.key for r in tx.reminders("P1", statuses=("done",))] == [gone.key]


def test_instants_come_back_timezone_aware_in_utc(repo: ports.Repository) -> None:
    local = datetime(2026, 7, 1, 8, 0, tzinfo=UTC) + timedelta(microseconds=123)
    due = planned("a", date(2026, 7, 3), notify=local)
    stored(repo, due)
    with repo.read() as tx:
        (back,) = tx.reminders("P1")
    assert back.notify_at == local and back.notify_at.utcoffset() == timedelta(0)


def test_due_by_lists_pending_reminders_due_by_a_date_oldest_first_with_the_patient_state(repo: ports.Repository) -> None:
    with repo.write() as tx:
        save(tx, 1, patient="P1", state="neoadjuvant_chemo")
        save(tx, 1, patient="P2", state="follow_up")
        plan(tx, [planned("x", date(2026, 3, 9), "P1"), planned("late", date(2026, 2, 1), "P1")])
        plan(tx, [planned("y", date(2026, 3, 5), "P2"), planned("far", date(2026, 9, 1), "P2")], state="follow_up")
    with repo.read() as tx:
        rows = tx.due_by(date(2026, 3, 9))
    assert [(r.key, r.state, r.status, r.delivery) for r in rows] == [
        ("P1:late", "neoadjuvant_chemo", "pending", "queued"), ("P2:y", "follow_up", "pending", "queued"),
        ("P1:x", "neoadjuvant_chemo", "pending", "queued"),
    ]


def test_due_by_orders_a_day_by_patient_then_kind_and_stops_at_its_limit(repo: ports.Repository) -> None:
    day = date(2026, 3, 9)
    with repo.write() as tx:
        for patient in ("P2", "P1"):
            save(tx, 1, patient=patient)
            plan(tx, [planned("s", day, patient, ReminderKind.restaging_scan), planned("c", day, patient)])
    with repo.read() as tx:
        assert [r.key for r in tx.due_by(day)] == ["P1:c", "P1:s", "P2:c", "P2:s"]
        assert [r.key for r in tx.due_by(day, limit=3)] == ["P1:c", "P1:s", "P2:c"]
        assert tx.due_by(day - timedelta(days=1)) == []


def test_pending_reminders_follow_the_patient_state_when_it_changes(repo: ports.Repository) -> None:
    kept = planned("kept", date(2026, 4, 1))
    with repo.write() as tx:
        save(tx, 1)
        plan(tx, [kept], state="adjuvant_chemo", state_changed=True)
        plan(tx, [kept], [kept], state="follow_up", state_changed=True)
    with repo.read() as tx:
        assert [r.state for r in tx.due_by(date(2026, 12, 31))] == ["follow_up"]
        assert [r.state for r in tx.reminders("P1")] == ["follow_up"]


def test_a_patient_s_reminders_are_its_key_range_only(repo: ports.Repository) -> None:
    """Keys start with "<patient>:", so P1's range never takes P10's or P1x's reminders."""
    with repo.write() as tx:
        for patient in ("P1", "P10", "P1x"):
            save(tx, 1, patient=patient)
            plan(tx, [planned("a", date(2026, 4, 1), patient)], state="referral", state_changed=True)
    with repo.read() as tx:
        assert [r.key for r in tx.reminders("P1")] == ["P1:a"]
    assert [r.key for r in repo.outbox().listing(patient="P1")] == ["P1:a"]


def test_a_moved_reminder_is_queued_for_delivery_again(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 3), notify=at(2))
    stored(repo, a)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    assert outbox.finish(TOKEN, at(2, 9), sent=[(a.key, 3600)]) == 1
    moved = planned("a", date(2026, 3, 10), notify=at(9))
    with repo.write() as tx:
        plan(tx, [moved], [a])
    (row,) = outbox.listing()
    assert (row.delivery, row.attempts, row.sent_at, row.late_by_s, row.notify_at) == ("queued", 0, None, None, at(9))
    assert outbox.next_due() == at(9)
    assert [d.key for d in outbox.claim(at(9), lease_until=at(9, 10), token="claim-2", limit=10)] == [a.key]


def test_a_reminder_changed_but_not_moved_keeps_its_delivery_record(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 3), notify=at(2))
    stored(repo, a)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    outbox.finish(TOKEN, at(2, 9), sent=[(a.key, 3600)])
    reworded = planned("a", date(2026, 3, 3), notify=at(2), detail="cycle 2 of 6")
    with repo.write() as tx:
        plan(tx, [reworded], [a], state="adjuvant_chemo", state_changed=True)
    (row,) = outbox.listing()
    assert (row.detail, row.delivery, row.attempts, row.sent_at, row.late_by_s) == (
        "cycle 2 of 6", "sent", 1, at(2, 9), 3600)
    assert outbox.next_due() is None


def test_a_reminder_moved_and_moved_back_in_one_transaction_keeps_its_delivery_record(
    repo: ports.Repository,
) -> None:
    """Reconciled reminders are written when the transaction flushes: what counts is the row's
    notify_at before and after the transaction, not on the way."""
    a = planned("a", date(2026, 3, 3), notify=at(2))
    stored(repo, a)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    outbox.finish(TOKEN, at(2, 9), sent=[(a.key, 3600)])
    moved = planned("a", date(2026, 3, 10), notify=at(9))
    with repo.write() as tx:
        plan(tx, [moved], [a])
        plan(tx, [a], [moved])
    assert deliveries(repo) == {a.key: ("sent", 1, None)}


# -- the outbox -------------------------------------------------------------------------------------------


def test_a_claim_takes_only_pending_reminders_whose_time_has_come_the_earliest_first_up_to_its_limit(
    repo: ports.Repository,
) -> None:
    first, second, third = (planned(k, date(2026, 3, d + 1), notify=at(d)) for k, d in (("a", 2), ("b", 3), ("c", 4)))
    future = planned("f", date(2026, 3, 21), notify=at(20))
    closed = planned("x", date(2026, 3, 2), notify=at(1))
    stored(repo, third, first, second, future, closed)
    with repo.write() as tx:
        plan(tx, [third, first, second, future], [third, first, second, future, closed], closed={closed.key: "done"})
    claimed = repo.outbox().claim(at(5), lease_until=at(5, 10), token=TOKEN, limit=2)
    assert [(d.key, d.attempt) for d in claimed] == [(first.key, 1), (second.key, 1)]
    assert deliveries(repo, delivery="claimed") == {first.key: ("claimed", 1, None), second.key: ("claimed", 1, None)}
    assert [d.key for d in repo.outbox().claim(at(5), lease_until=at(5, 10), token="claim-2", limit=10)] == [third.key]


def test_a_claim_gives_each_reminder_as_delivered_with_how_late_it_is(repo: ports.Repository) -> None:
    a = planned("a", date(2026, 3, 3), kind=ReminderKind.restaging_scan, notify=at(2), detail="CT thorax")
    stored(repo, a)
    (delivery,) = repo.outbox().claim(at(2, 9), lease_until=at(2, 10), token=TOKEN, limit=10)
    assert delivery == ports.Delivery(a.key, "P1", "restaging_scan", date(2026, 3, 3), at(2), "CT thorax", 1, 3600)
    assert delivery.notify_at.utcoffset() == timedelta(0)


def test_a_claimed_reminder_is_held_until_its_lease_ends_then_claimed_again_with_its_attempt_counted(
    repo: ports.Repository,
) -> None:
    a = planned("a", date(2026, 3, 3), notify=at(2))
    stored(repo, a)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    assert outbox.next_due() == at(2, 10)
    assert outbox.claim(at(2, 9), lease_until=at(2, 11), token="claim-2", limit=10) == []
    (again,) = outbox.claim(at(2, 10), lease_until=at(2, 12), token="claim-2", limit=10)
    assert again.attempt == 2
    assert outbox.finish(TOKEN, at(2, 10), sent=[(a.key, 0)]) == 0  # the first claim is over


def test_finish_records_each_outcome_on_the_rows_still_carrying_the_claim(repo: ports.Repository) -> None:
    sent, retried, failed, unclaimed = (planned(k, date(2026, 3, 3), notify=at(2)) for k in "abcd")
    stored(repo, sent, retried, failed, unclaimed)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    count = outbox.finish(TOKEN, at(2, 9), sent=[(sent.key, 3600)], retry=[(retried.key, at(3), "HTTP 503")],
                          failed=[(failed.key, "x" * 3000)], unclaim=[unclaimed.key])
    assert count == 4
    rows = {r.key: r for r in outbox.listing()}
    assert (rows[sent.key].delivery, rows[sent.key].sent_at, rows[sent.key].late_by_s) == ("sent", at(2, 9), 3600)
    assert rows[sent.key].late and rows[sent.key].last_error is None
    assert (rows[retried.key].delivery, rows[retried.key].attempts, rows[retried.key].last_error) == (
        "queued", 1, "HTTP 503")
    assert (rows[failed.key].delivery, rows[failed.key].last_error) == ("failed", "x" * ports.MAX_ERROR)
    assert (rows[unclaimed.key].delivery, rows[unclaimed.key].attempts) == ("queued", 0)
    assert outbox.next_due() == at(2, 9)  # the unclaimed one, due at once; the retry at its backoff
    assert [d.key for d in outbox.claim(at(2, 9), lease_until=at(9), token="claim-2", limit=10)] == [unclaimed.key]
    assert [d.key for d in outbox.claim(at(3), lease_until=at(9), token="claim-3", limit=10)] == [retried.key]


def test_finish_leaves_alone_the_rows_whose_claim_was_cleared_or_is_another(repo: ports.Repository) -> None:
    a, b = planned("a", date(2026, 3, 3), notify=at(2)), planned("b", date(2026, 3, 3), notify=at(2))
    stored(repo, a, b)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    moved = planned("a", date(2026, 3, 10), notify=at(9))  # re-planned while being delivered
    with repo.write() as tx:
        plan(tx, [moved, b], [a, b])
    assert outbox.finish("someone-else", at(2, 9), sent=[(b.key, 0)]) == 0
    assert outbox.finish(TOKEN, at(2, 9), sent=[(a.key, 0), (b.key, 0)]) == 1
    assert deliveries(repo) == {b.key: ("sent", 1, None), a.key: ("queued", 0, None)}


def test_forget_claim_returns_its_rows_to_the_queue_due_at_once_their_attempt_uncounted(
    repo: ports.Repository,
) -> None:
    a, b = planned("a", date(2026, 3, 3), notify=at(2)), planned("b", date(2026, 3, 4), notify=at(3))
    stored(repo, a, b)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(9), token=TOKEN, limit=10)
    outbox.claim(at(3), lease_until=at(9), token="claim-2", limit=10)
    assert outbox.forget_claim(TOKEN, at(2, 9)) == 1
    assert deliveries(repo) == {a.key: ("queued", 0, None), b.key: ("claimed", 1, None)}
    assert outbox.next_due() == at(2, 9)
    assert outbox.forget_claim(TOKEN, at(2, 9)) == 0


def test_release_returns_to_the_queue_the_claims_whose_lease_has_not_ended(repo: ports.Repository) -> None:
    a, b = planned("a", date(2026, 3, 3), notify=at(2)), planned("b", date(2026, 3, 4), notify=at(3))
    stored(repo, a, b)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(9), token=TOKEN, limit=10)
    outbox.claim(at(3), lease_until=at(3, 10), token="claim-2", limit=10)
    assert outbox.release(at(3, 11)) == 1  # the second lease has ended: claimable anyway
    assert deliveries(repo) == {a.key: ("queued", 1, None), b.key: ("claimed", 1, None)}
    assert outbox.next_due() == at(3, 10)


def test_retry_failed_queues_failed_pending_deliveries_again_all_or_those_named(repo: ports.Repository) -> None:
    reminders = [planned(k, date(2026, 3, 3), notify=at(2)) for k in "abc"]
    stored(repo, *reminders)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    outbox.finish(TOKEN, at(2, 9), failed=[(r.key, "refused") for r in reminders])
    assert outbox.retry_failed(at(4), ["P1:a", "P1:a", "P1:nothing"]) == 1
    assert deliveries(repo, delivery="queued") == {"P1:a": ("queued", 0, None)}
    assert outbox.retry_failed(at(5)) == 2
    assert deliveries(repo, delivery="failed") == {}
    assert outbox.next_due() == at(4)


def test_a_closed_reminder_is_never_claimed_nor_retried(repo: ports.Repository) -> None:
    a, b = planned("a", date(2026, 3, 3), notify=at(2)), planned("b", date(2026, 3, 3), notify=at(2))
    stored(repo, a, b)
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    outbox.finish(TOKEN, at(2, 9), failed=[(b.key, "refused")])
    with repo.write() as tx:
        plan(tx, [], [a, b], closed_by=4)
    assert outbox.claim(at(3), lease_until=at(3, 10), token="claim-2", limit=10) == []
    assert outbox.retry_failed(at(3)) == 0
    assert outbox.next_due() is None


def test_next_due_is_the_earliest_time_a_reminder_still_to_deliver_may_be_sent(repo: ports.Repository) -> None:
    assert repo.outbox().next_due() is None
    stored(repo, planned("a", date(2026, 3, 9), notify=at(8)), planned("b", date(2026, 3, 6), notify=at(5)))
    assert repo.outbox().next_due() == at(5)


def test_listing_filters_by_patient_plan_status_and_delivery_with_a_limit(repo: ports.Repository) -> None:
    with repo.write() as tx:
        for patient in ("P2", "P1"):
            save(tx, 1, patient=patient)
            plan(tx, [planned("a", date(2026, 3, 3), patient, notify=at(2)),
                      planned("b", date(2026, 3, 9), patient, notify=at(8))])
    outbox = repo.outbox()
    outbox.claim(at(2), lease_until=at(2, 10), token=TOKEN, limit=10)
    outbox.finish(TOKEN, at(2, 9), sent=[("P1:a", 0)], failed=[("P2:a", "refused")])
    with repo.write() as tx:
        plan(tx, [], [planned("b", date(2026, 3, 9), "P2")], closed_by=9)
    assert [r.key for r in outbox.listing()] == ["P1:a", "P2:a", "P1:b", "P2:b"]
    assert [r.key for r in outbox.listing(limit=2)] == ["P1:a", "P2:a"]
    assert [r.key for r in outbox.listing(patient="P2")] == ["P2:a", "P2:b"]
    assert [r.key for r in outbox.listing(status="pending")] == ["P1:a", "P2:a", "P1:b"]
    assert [r.key for r in outbox.listing(status="cancelled")] == ["P2:b"]
    assert [r.key for r in outbox.listing(delivery="queued")] == ["P1:b", "P2:b"]
    assert [r.key for r in outbox.listing(status="pending", delivery="failed", patient="P2")] == ["P2:a"]


# -- the engine on each backend, against the twin ---------------------------------------------------------


def record_examples(engine: Engine) -> list[str]:
    """Every worked example, line by line; returns the patients."""
    patients = []
    for name in example_names():
        events, expected = load_example(name)
        for raw, want in zip(events, expected, strict=True):
            assert engine.record(raw).status == want["status"], f"{name} line {want['line']}"
        patients.append(expected[0]["patient"])
    return patients


def test_the_engine_records_shows_lists_delivers_and_verifies_alike_on_every_backend_and_the_twin(
    store_url: str,
) -> None:
    sent: dict[str, list[str]] = {"twin": [], "backend": []}
    with (Engine.open(store_url, clock=ManualClock(PINNED)) as engine,
          Engine.open("memory://", clock=ManualClock(PINNED)) as twin):
        patients = record_examples(engine)
        assert record_examples(twin) == patients
        for patient in patients:
            assert engine.verify(patient) == [], patient
            assert engine.show(patient).as_dict() == twin.show(patient).as_dict(), patient
        day = date(2026, 6, 1)
        assert engine.worklist(day, 60) == twin.worklist(day, 60) and engine.worklist(day, 60)
        assert engine.patients() == twin.patients() and engine.counts_by_state() == twin.counts_by_state()
        moment = datetime(2026, 6, 1, 12, tzinfo=UTC)
        engine.dispatch_due(moment, notifiers=[lambda d: sent["backend"].append(d.key)])
        twin.dispatch_due(moment, notifiers=[lambda d: sent["twin"].append(d.key)])
        assert sent["backend"] == sent["twin"] and sent["twin"]
        assert engine.deliveries() == twin.deliveries()
