"""Writers on one patient: they queue (row lock on PostgreSQL, the database lock on SQLite) and\nbuild on each other; a stale `expected_version` is a ConcurrentUpdate; nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pathway import ConcurrentUpdate, Engine, ManualClock, Status
from tests.conftest import PINNED

REFERRAL = {"patient": "C1", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}}


def biomarker(n: int) -> dict:
    return {"patient": "C1", "type": "biomarker", "on": "2026-01-06", "key": f"bio-{n}",
            "data": {"ras": "wild_type" if n % 2 else "mutant"}}


def record_with_retry(engine: Engine, event: dict) -> int:
    """Record, retrying on ConcurrentUpdate; return how many retries it took."""
    for attempt in range(50):
        try:
            assert engine.record(event).status is Status.accepted
            return attempt
        except ConcurrentUpdate:
            continue
    raise AssertionError("never got through")


def test_a_writer_holding_a_stale_version_gets_concurrent_update_and_nothing_is_stored(any_engine: Engine) -> None:
    any_engine.record(REFERRAL)
    seen = any_engine.show("C1").version
    any_engine.record(biomarker(1))  # somebody else records in between
    with pytest.raises(ConcurrentUpdate, match="read it again"):
        any_engine.record(biomarker(2), expected_version=seen)
    view = any_engine.show("C1")
    assert view.version == seen + 1
    assert [h.key for h in view.history if h.key] == ["bio-1"]
    assert any_engine.record(biomarker(2), expected_version=view.version).status is Status.accepted


def test_postgres_a_second_writer_on_a_patient_waits_for_the_first_and_builds_on_its_result(pg_url: str) -> None:
    """The first writer holds the patient's row (it is between reading and committing); the
    second waits on that row lock — observed in pg_stat_activity, not by timing — and, once the
    first commits, records on top of it: both are accepted, no ConcurrentUpdate, versions gapless."""
    clock = ManualClock(PINNED)
    with Engine.open(pg_url, clock=clock) as setup:
        setup.record(REFERRAL)
    loaded, release = threading.Event(), threading.Event()
    waiter = f"waiter-{uuid.uuid4().hex[:8]}"
    results: dict[int, Any] = {}

    def first() -> None:
        with Engine.open(pg_url, clock=clock) as engine:
            original = engine._load

            def load_then_hold(tx, patient):  # noqa: ANN001, ANN202
                found = original(tx, patient)
                loaded.set()
                assert release.wait(60)
                return found

            engine._load = load_then_hold  # type: ignore[method-assign]
            results[0] = engine.record(biomarker(0))

    def second() -> None:
        with Engine.open(f"{pg_url}&application_name={waiter}", clock=clock) as engine:
            results[1] = engine.record(biomarker(1))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert loaded.wait(30)
    threads[1].start()
    try:
        admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.connect() as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # poll for the observable fact, bounded
                waiting = conn.execute(sa.text(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE application_name = :name"
                ), {"name": waiter}).scalar()
                conn.rollback()
                if waiting == "Lock":
                    break
            else:
                raise AssertionError("the second writer never waited on the patient's row lock")
        admin.dispose()
    finally:
        release.set()
        for t in threads:
            t.join(60)
    assert results[0].status is Status.accepted and results[0].version == 2
    assert results[1].status is Status.accepted and results[1].version == 3
    with Engine.open(pg_url, clock=clock) as engine:
        view = engine.show("C1")
        assert view.version == 3
        assert sorted(h.key for h in view.history if h.key) == ["bio-0", "bio-1"]
        assert engine.verify("C1") == []


def test_sqlite_writers_queue_behind_each_other_and_nothing_is_lost(sqlite_url: str) -> None:
    """SQLite write transactions start with BEGIN IMMEDIATE: concurrent writers wait for each
    other (busy timeout) instead of failing half-way."""
    clock = ManualClock(PINNED)
    with Engine.open(sqlite_url, clock=clock) as setup:
        setup.record(REFERRAL)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            with Engine.open(sqlite_url, clock=clock) as engine:
                for n in range(offset, offset + 20):
                    record_with_retry(engine, biomarker(n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k * 100,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Engine.open(sqlite_url, clock=clock) as engine:
        view = engine.show("C1")
        assert view.version == 61
        assert engine.verify("C1") == []


WRITER = """
import sys
from pathway import ConcurrentUpdate, Engine, fixed_clock
from datetime import datetime, UTC
engine = Engine.open(sys.argv[1], clock=fixed_clock(datetime(2033, 1, 1, 9, tzinfo=UTC)))
start = int(sys.argv[2])
retries = 0
for n in range(start, start + 30):
    event = {"patient": "C1", "type": "biomarker", "on": "2026-01-06", "key": f"bio-{n}", "data": {"msi": "mss"}}
    while True:
        try:
            assert engine.record(event).status == "accepted"
            break
        except ConcurrentUpdate:
            retries += 1
print(retries)
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_writer_processes_on_one_patient_all_get_through(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    clock = ManualClock(PINNED)
    with Engine.open(url, clock=clock) as setup:
        setup.record(REFERRAL)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(k * 1000)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for k in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Engine.open(url, clock=clock) as engine:
        view = engine.show("C1")
        assert view.version == 91
        assert len({h.key for h in view.history if h.status == "accepted" and h.key}) == 90
        assert engine.verify("C1") == []
