"""Many coordinators at once (issue 8): concurrent writers get true answers, and a busy server
holds bounded resources.

- A server on SQLite answers thousands of concurrent single-event posts (50 clients, some on the
  same patients) 200 with their results — never 500 after storing the event — and its threads and
  open files come back to what they were before the load (the bulk-import checkpointer of every
  request once leaked a thread and a database handle, and crashed its neighbours' requests).
- Bulk imports that overlap share one checkpointer: it runs until the last one ends.
- On PostgreSQL, list posts over the same patients in opposite orders never deadlock (the patients
  are locked in id order), and the dispatcher recording deliveries never deadlocks with events
  rewriting the same reminders (both write reminder rows in key order).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

import pytest

from bench.load import run_load
from pathway import Engine, ManualClock, Status
from pathway.delivery import Dispatcher
from pathway.web.app import WEB_THREADS
from persistence import db
from persistence.accounts import Accounts
from persistence.repository import Repository
from tests.builders import biomarker, referral, scheduled
from tests.conftest import PINNED
from tests.processes import Server, reaped


def coordinator_token(db_url: str) -> str:
    """A coordinator account and an API token for it, straight in the database."""
    with Engine.open(db_url) as engine:
        accounts = Accounts(engine.repository.engine, engine.clock)
        accounts.add_user("loader", "coordinator", "correct horse battery")
        return accounts.create_token("loader", "load test")[1]


@pytest.mark.slow
def test_thousands_of_concurrent_posts_on_sqlite_are_all_answered_200_and_resources_stay_bounded(
        tmp_path: Path) -> None:
    """Idle, the server holds a few threads and files; under load at most WEB_THREADS worker
    threads more, and the connection pool's files (at most three per SQLite connection: the
    database, its WAL and shared-memory index) — never a thread or a handle per request."""
    url = f"sqlite:///{tmp_path / 'load.db'}"
    token = coordinator_token(url)
    with reaped([]) as processes:
        server = Server("serve", url, tmp_path, "--no-scheduler")
        processes.append(server)
        server.wait_ready()
        threads, files = server.threads(), server.open_files()
        thread_bound = threads + WEB_THREADS + 2
        file_bound = files + 3 * (db.POOL_SIZE + db.POOL_OVERFLOW)

        for round_ in ("a", "b"):
            report = run_load(server.url, token, clients=50, requests=2000, seconds=300, run=round_, shared=10)
            summary = report.summary()
            assert summary["http"] == {"200": 2000}, summary  # no 500, no 503, every request answered
            assert summary["connection_errors"] == 0, summary
            assert summary["events"] == {"accepted": 2000}, summary
            assert server.threads() <= thread_bound, (threads, server.threads())
            assert server.open_files() <= file_bound, (files, server.open_files())
        assert server.poll() is None
    with Engine.open(url) as engine:
        for answer in report.answers[::97]:
            history = engine.history(answer.patient)
            assert [h.status for h in history if h.key == answer.key] == ["accepted"]
        assert engine.verify(report.answers[0].patient) == []


def test_overlapping_bulk_imports_share_one_checkpointer_until_the_last_ends(sqlite_url: str) -> None:
    repository = Repository.open(sqlite_url)
    try:
        before = threading.active_count()
        with repository.bulk():
            first = repository._checkpointer
            assert first is not None
            with repository.bulk():
                assert repository._checkpointer is first  # one checkpointer, not two
            assert repository._checkpointer is first  # the inner import's end does not stop it
            assert first._thread.is_alive()
        assert repository._checkpointer is None
        assert not first._thread.is_alive()
        assert threading.active_count() == before
    finally:
        repository.close()


def test_bulk_imports_in_threads_of_one_engine_all_succeed_and_leave_no_thread(sqlite_url: str) -> None:
    """The embedding case of the API's old crash: threads importing at once through one engine."""
    clock = ManualClock(PINNED)
    with Engine.open(sqlite_url, clock=clock) as engine:
        before = threading.active_count()
        errors: list[BaseException] = []
        start = threading.Barrier(8, timeout=30)

        def importer(n: int) -> None:
            try:
                start.wait()
                for round_ in range(10):
                    events = [referral(f"B{n}x{round_}x{i}", "2026-01-05") for i in range(3)]
                    assert {r.status for r in engine.record_many(events, batch_size=2)} == {Status.accepted}
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=importer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert threading.active_count() == before
        assert engine.repository._checkpointer is None
        assert len(engine.patients()) == 8 * 10 * 3


# -- PostgreSQL: no deadlocks ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_list_posts_over_the_same_patients_in_opposite_orders_never_deadlock(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two writers keep posting [P1, P2] and [P2, P1]: each transaction locks both patients in id
    order before reading them, so they queue — no deadlock, not even one retried conflict."""
    clock = ManualClock(PINNED)
    with Engine.open(pg_url, clock=clock) as setup:
        for p in ("DL1", "DL2"):
            setup.record(referral(p, "2026-01-05"))
    caplog.set_level(logging.INFO, logger="pathway")
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=30)

    def writer(order: tuple[str, str], n: int) -> None:
        try:
            with Engine.open(pg_url, clock=clock) as engine:
                start.wait()
                for i in range(60):
                    results = engine.record_batch(
                        [biomarker(p, "2026-01-06", ras="wild_type", key=f"{n}-{i}-{p}") for p in order])
                    assert [r.status for r in results] == [Status.accepted, Status.accepted]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(("DL1", "DL2"), 0)),
               threading.Thread(target=writer, args=(("DL2", "DL1"), 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    retried = [r.getMessage() for r in caplog.records if "write conflict" in r.getMessage()]
    assert retried == []
    with Engine.open(pg_url, clock=clock) as engine:
        for p in ("DL1", "DL2"):
            assert engine.show(p).version == 1 + 120
            assert engine.verify(p) == []


@pytest.mark.postgres
def test_postgres_the_dispatcher_recording_deliveries_never_deadlocks_with_events_on_the_same_reminders(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """While a dispatcher delivers and records 300 due `mdt_due` reminders, events close them and
    plan others, patient by patient in reverse order: both sides write reminder rows in key order."""
    clock = ManualClock(PINNED)
    patients = [f"DD{i:03d}" for i in range(300)]
    with Engine.open(pg_url, clock=clock) as setup:
        list(setup.record_many(referral(p, "2026-01-05") for p in patients))
    caplog.set_level(logging.INFO, logger="pathway")
    delivered: list[str] = []
    errors: list[BaseException] = []
    go = threading.Event()

    def dispatch() -> None:
        try:
            with Engine.open(pg_url, clock=clock) as engine:
                dispatcher = Dispatcher(engine.repository, engine.policy, [lambda d: delivered.append(d.key)],
                                        batch=25)
                go.set()
                while dispatcher.dispatch_due(clock()).claimed:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=dispatch)
    thread.start()
    assert go.wait(30)
    with Engine.open(pg_url, clock=clock) as engine:
        for chunk in range(0, 300, 10):
            batch = [scheduled(p, "2026-01-06", "2026-01-12") for p in reversed(patients[chunk:chunk + 10])]
            assert {r.status for r in engine.record_batch(batch)} == {Status.accepted}
    thread.join(120)
    assert errors == []
    assert [r.getMessage() for r in caplog.records if "write conflict" in r.getMessage()] == []
    assert max(Counter(delivered).values()) == 1
    with Engine.open(pg_url, clock=clock) as engine:
        assert all(engine.verify(p) == [] for p in patients[::30])


def test_classify_tells_conflicts_and_outages_from_bugs() -> None:
    import sqlite3

    import psycopg.errors

    assert db.classify(psycopg.errors.DeadlockDetected("deadlock detected")) is db.WriteConflict
    assert db.classify(psycopg.errors.SerializationFailure("could not serialize")) is db.WriteConflict
    assert db.classify(psycopg.errors.AdminShutdown("terminating connection")) is db.DatabaseUnavailable
    assert db.classify(psycopg.OperationalError("connection refused")) is db.DatabaseUnavailable
    assert db.classify(psycopg.InterfaceError("the connection is closed")) is db.DatabaseUnavailable
    assert db.classify(sqlite3.OperationalError("database or disk is full")) is db.DatabaseUnavailable
    assert db.classify(sqlite3.OperationalError("database is locked")) is db.DatabaseUnavailable
    assert db.classify(sqlite3.OperationalError("no such table: patient")) is None  # a bug: a 500 and a log
    assert db.classify(psycopg.errors.UndefinedTable("relation does not exist")) is None
    assert db.classify(ValueError("not a database error")) is None
