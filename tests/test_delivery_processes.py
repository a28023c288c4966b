"""Reminder delivery with real processes and sockets: `pathway run --webhook` subprocesses POSTing
to a local HTTP sink (tests/sink.py).

- SQLite: a dispatcher killed with SIGKILL mid-run loses nothing: restarted, it returns the dead
  one's claims to the queue and delivers everything; only that one claim batch is sent twice, with
  the same key and body. SIGTERM stops it gracefully (exit 0).
- SQLite: a second dispatcher on the same file refuses to start (exit 4) and names the lock file.
- PostgreSQL: three dispatchers side by side deliver 20,000 reminders, each exactly once, and the
  work is shared among them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pathway import Engine, ManualClock
from pathway.delivery import NETWORK_BATCH
from persistence.outbox import StoredReminder
from persistence.tables import patient_table, reminder_table
from tests.builders import referral
from tests.processes import NOW, PATHWAY, SWEEP, Dispatcher, reaped, wait_until
from tests.sink import Received, Sink

#: Referrals are recorded on this day (each plans `mdt_due` 14 days later, notified 2026-01-17 08:00 UTC)...
REFERRED = "2026-01-05"
RECORDED_AT = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
# ... and the dispatchers run with the clock pinned at NOW (PATHWAY_NOW): every reminder is due, late.


def delivered_counts(stderr: str) -> int:
    """What a `pathway run` says it delivered: the sum of its report lines."""
    return sum(int(n) for n in re.findall(r"^delivered (\d+) reminders", stderr, re.MULTILINE))


# -- data ----------------------------------------------------------------------------------------


def expected_body(r: StoredReminder) -> dict[str, Any]:
    """The webhook body of a stored reminder delivered at NOW (pathway.delivery's payload)."""
    return {
        "key": r.key,
        "patient": r.patient,
        "kind": r.kind,
        "due_on": r.due_on.isoformat(),
        "notify_at": r.notify_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "detail": r.detail,
        "late_by_s": int((NOW - r.notify_at).total_seconds()),
    }


def record_referrals(url: str, prefix: str, n: int) -> dict[str, StoredReminder]:
    """Referrals for n distinct patients through the engine: n queued `mdt_due` reminders."""
    with Engine.open(url, clock=ManualClock(RECORDED_AT)) as engine:
        results = list(engine.record_many(referral(f"{prefix}{i:05d}", REFERRED) for i in range(n)))
        assert {r.status for r in results} == {"accepted"}
        rows = {r.key: r for r in engine.deliveries()}
    assert len(rows) == n
    assert {(r.kind, r.status, r.delivery) for r in rows.values()} == {("mdt_due", "pending", "queued")}
    assert all(r.notify_at < NOW for r in rows.values())
    return rows


def check_bodies(received: list[Received], pending: dict[str, StoredReminder]) -> None:
    """Every POST is one of the reminders, its header key its body's key, its body the payload."""
    for item in received:
        assert item.user_agent == "liver-pathway"
        assert item.key == item.body.get("key"), item
        assert item.key in pending, f"unexpected key {item.key}"
        assert item.body == expected_body(pending[item.key]), item


# -- SQLite: crash and restart ---------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_dispatcher_killed_mid_run_loses_nothing_and_resends_at_most_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}"
    pending = record_referrals(url, "D", 3000)
    processes: list[Dispatcher] = []
    with Sink(delay=0.001) as sink, reaped(processes):
        first = Dispatcher("first", url, sink.url, tmp_path)
        processes.append(first)
        wait_until(lambda: sink.count() > 300, 60, "the first 300 deliveries", [first])
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=10) == -signal.SIGKILL
        time.sleep(0.2)  # a request the killed process had fully sent may still be in the sink's hands
        at_kill = sink.keys()
        with Engine.open(url) as engine:
            stored = {r.key: r for r in engine.deliveries()}
        by_state = Counter(r.delivery for r in stored.values())
        sent_at_kill = {k for k, r in stored.items() if r.delivery == "sent"}
        claimed_at_kill = {k for k, r in stored.items() if r.delivery == "claimed"}
        assert 300 < len(at_kill) < len(pending), "the kill must come mid-way"
        assert by_state["sent"] < len(pending)
        # what is marked sent was received; what was received but not marked is in the dead claim
        assert sent_at_kill <= set(at_kill)
        assert set(at_kill) - sent_at_kill <= claimed_at_kill
        assert len(claimed_at_kill) <= NETWORK_BATCH

        second = Dispatcher("second", url, sink.url, tmp_path)
        processes.append(second)
        took = wait_until(lambda: set(pending) <= sink.keys().keys(), 120, "every reminder", [second])
        status = second.terminate()
        log = second.stderr()
        assert status == 0, log
        assert "stopped" in log
        time.sleep(0.1)
        received = sink.snapshot()

    keys = Counter(r.key for r in received)
    assert set(keys) == set(pending), "every pending reminder was delivered, and nothing else"
    duplicates = {k: n for k, n in keys.items() if n > 1}
    assert set(duplicates.values()) <= {2}
    assert len(duplicates) <= NETWORK_BATCH, f"{len(duplicates)} sent twice: more than one claim batch"
    # only deliveries of the dead dispatcher's claim are repeated, each with the same body
    assert set(duplicates) <= set(at_kill) - sent_at_kill
    check_bodies(received, pending)
    for key in duplicates:
        bodies = [r.body for r in received if r.key == key]
        assert bodies[0] == bodies[1]
    # the restart returned exactly the dead claim to the queue (and said so)
    if claimed_at_kill:
        assert (f"returned {len(claimed_at_kill)} reminders claimed by a dispatcher that stopped to the queue"
                in log), log
    assert delivered_counts(log) == len(pending) - len(sent_at_kill)

    with Engine.open(url) as engine:
        final = {r.key: r for r in engine.deliveries()}
    assert Counter(r.delivery for r in final.values()) == {"sent": len(pending)}
    for key, r in final.items():
        assert r.sent_at == NOW and r.late_by_s == expected_body(pending[key])["late_by_s"]
        assert r.attempts == (2 if key in claimed_at_kill else 1), (key, r.attempts)
        assert r.last_error is None
    print(f"killed after {len(at_kill)} keys ({len(claimed_at_kill)} claimed by the dead process); "
          f"restart delivered the rest in {took:.1f} s; {len(duplicates)} duplicates")


def test_sigterm_mid_run_finishes_the_delivery_in_flight_and_returns_the_rest_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'graceful.db'}"
    pending = record_referrals(url, "G", 1000)
    processes: list[Dispatcher] = []
    with Sink(delay=0.001) as sink, reaped(processes):
        first = Dispatcher("first", url, sink.url, tmp_path)
        processes.append(first)
        wait_until(lambda: sink.count() > 100, 60, "the first 100 deliveries", [first])
        assert first.terminate() == 0, first.stderr()
        assert "stopped" in first.stderr()
        time.sleep(0.1)
        at_stop = sink.keys()
        assert 100 < len(at_stop) < len(pending)
        with Engine.open(url) as engine:
            stored = {r.key: r for r in engine.deliveries()}
        # every POST that went out is recorded as sent; nothing stays claimed; the rest is as it was
        assert {k for k, r in stored.items() if r.delivery == "sent"} == set(at_stop)
        assert {(r.delivery, r.attempts) for k, r in stored.items() if k not in at_stop} == {("queued", 0)}
        assert delivered_counts(first.stderr()) == len(at_stop)

        second = Dispatcher("second", url, sink.url, tmp_path)
        processes.append(second)
        wait_until(lambda: set(pending) <= sink.keys().keys(), 60, "every reminder", [second])
        assert second.terminate() == 0, second.stderr()
        assert "returned" not in second.stderr(), "a graceful stop leaves no claim behind"
        time.sleep(0.1)
        received = sink.snapshot()
    assert sorted(r.key for r in received) == sorted(pending), "each reminder exactly once"
    check_bodies(received, pending)
    with Engine.open(url) as engine:
        assert Counter((r.delivery, r.attempts) for r in engine.deliveries()) == {("sent", 1): len(pending)}


def test_a_second_dispatcher_on_the_same_sqlite_file_exits_4_naming_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    pending = record_referrals(url, "L", 5)
    processes: list[Dispatcher] = []
    with Sink() as sink, reaped(processes):
        first = Dispatcher("first", url, sink.url, tmp_path)
        processes.append(first)
        wait_until(lambda: len(sink.keys()) == len(pending) and "delivering reminders" in first.stderr(), 60,
                   "the first dispatcher to start and deliver", [first])
        env = dict(os.environ, PATHWAY_NOW=NOW.isoformat(), PATHWAY_DB=url)
        lock = f"{path}.dispatcher.lock"
        for extra in ([], ["--once"]):
            second = subprocess.run([PATHWAY, "run", "--webhook", sink.url, "--sweep", SWEEP, *extra],
                                    env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert second.returncode == 4, (extra, second.stderr)
            assert lock in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
            assert "another dispatcher" in second.stderr
        assert first.poll() is None, "the first dispatcher keeps running"
        assert first.terminate() == 0, first.stderr()
        received = sink.snapshot()
    assert sorted(r.key for r in received) == sorted(pending), "each reminder once, by the first dispatcher"


# -- PostgreSQL: three dispatchers side by side -------------------------------------------------------

PG_REMINDERS = 20_000


def clone_patients(engine: Engine, template: str, prefix: str, n: int) -> None:
    """Copy the template patient's row and its reminder rows for patients prefix00001.. (n - 1 of
    them), with SQL: the columns are the real tables' (persistence.tables), the values those the
    engine wrote for the template (delivery 'queued', send_after = notify_at, migration 0003)."""
    new_id = f"'{prefix}' || lpad(g::text, 5, '0')"
    patient_cols = [c.name for c in patient_table.columns]
    reminder_cols = [c.name for c in reminder_table.columns]
    patient_select = [new_id if c == "id" else c for c in patient_cols]
    reminder_select = [
        f"{new_id} || substr(key, length(patient) + 1)" if c == "key" else new_id if c == "patient" else c
        for c in reminder_cols
    ]
    with engine.repository.engine.begin() as conn:
        conn.execute(sa.text(
            f"INSERT INTO patient ({', '.join(patient_cols)}) SELECT {', '.join(patient_select)} "
            f"FROM patient CROSS JOIN generate_series(1, :n) AS g WHERE id = :template"
        ), {"n": n - 1, "template": template})
        conn.execute(sa.text(
            f"INSERT INTO reminder ({', '.join(reminder_cols)}) SELECT {', '.join(reminder_select)} "
            f"FROM reminder CROSS JOIN generate_series(1, :n) AS g WHERE patient = :template"
        ), {"n": n - 1, "template": template})


def pg_states(engine: Engine) -> dict[tuple[str, int], int]:
    with engine.repository.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT delivery, attempts, count(*) FROM reminder GROUP BY 1, 2")).all()
    return {(delivery, attempts): n for delivery, attempts, n in rows}


@pytest.mark.slow
@pytest.mark.postgres
def test_three_postgresql_dispatchers_deliver_20000_reminders_each_exactly_once(pg_url: str, tmp_path: Path) -> None:
    with Engine.open(pg_url, clock=ManualClock(RECORDED_AT)) as engine:
        assert engine.record(referral("E00000", REFERRED)).status == "accepted"
        (template,) = engine.deliveries()
        assert (template.status, template.delivery, template.attempts) == ("pending", "queued", 0)
        with engine.repository.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT send_after = notify_at FROM reminder")).scalar_one() is True
        clone_patients(engine, "E00000", "E", PG_REMINDERS)
        pending = {r.key: r for r in engine.deliveries()}
        assert len(pending) == PG_REMINDERS
        assert pg_states(engine) == {("queued", 0): PG_REMINDERS}

    processes: list[Dispatcher] = []
    with Sink() as sink, reaped(processes):
        for n in range(3):
            processes.append(Dispatcher(f"pg-{n}", pg_url, sink.url, tmp_path))
        took = wait_until(lambda: len(sink.keys()) >= PG_REMINDERS, 180, f"{PG_REMINDERS} distinct keys",
                          processes, every=0.1)
        for process in processes:
            process.proc.send_signal(signal.SIGTERM)
        statuses = {p.name: p.proc.wait(timeout=30) for p in processes}
        logs = {p.name: p.stderr() for p in processes}
        assert statuses == dict.fromkeys(statuses, 0), logs
        time.sleep(0.1)
        received = sink.snapshot()

    keys = Counter(r.key for r in received)
    assert set(keys) == set(pending)
    assert len(received) == PG_REMINDERS, f"{len(received) - PG_REMINDERS} deliveries were duplicates"
    check_bodies(received, pending)
    with Engine.open(pg_url) as engine:
        assert pg_states(engine) == {("sent", 1): PG_REMINDERS}, "all sent, each claimed once"
    # each process reports what it delivered: together, everything; more than one took part
    per_process = {name: delivered_counts(log) for name, log in logs.items()}
    assert sum(per_process.values()) == PG_REMINDERS, per_process
    assert sum(1 for n in per_process.values() if n) >= 2, f"one dispatcher did all the work: {per_process}"
    print(f"{PG_REMINDERS} delivered in {took:.1f} s; per process: {per_process}")
