"""Two writers on one patient: one wins, the other gets ConcurrentUpdate and can retry; nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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


def test_postgres_writers_that_read_the_same_version_one_wins_the_other_retries(pg_url: str) -> None:
    """Both writers load version 1 before either writes (a barrier forces the race): the first
    update wins, the second finds the version changed, raises ConcurrentUpdate, stores nothing,
    and succeeds when retried."""
    clock = ManualClock(PINNED)
    with Engine.open(pg_url, clock=clock) as setup:
        setup.record(REFERRAL)
    barrier = threading.Barrier(2, timeout=20)
    outcomes: dict[int, list[str]] = {0: [], 1: []}

    def writer(n: int) -> None:
        with Engine.open(pg_url, clock=clock) as engine:
            original = engine._load

            def load_then_wait(tx, patient):  # noqa: ANN001, ANN202
                loaded = original(tx, patient)
                if not outcomes[n]:
                    barrier.wait()
                return loaded

            engine._load = load_then_wait  # type: ignore[method-assign]
            for _ in range(5):
                try:
                    engine.record(biomarker(n))
                    outcomes[n].append("accepted")
                    return
                except ConcurrentUpdate:
                    outcomes[n].append("conflict")

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(tuple, outcomes.values())) == [("accepted",), ("conflict", "accepted")]
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
