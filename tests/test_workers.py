"""Several app workers and dispatchers on one PostgreSQL database (issue 8): `pathway serve
--workers 2 --no-scheduler` beside two `pathway run` dispatchers, under 20 concurrent clients
writing overlapping patients, with one worker killed (SIGKILL) in the middle of the load.

Clients resend what got no answer (the killed worker's requests) with the same keys, as a
hospital system would. In the end: no 500; every event answered accepted or duplicate is in its
patient's history exactly once; replaying every history gives the stored snapshots and reminders;
every due reminder is delivered, once; and the killed worker was replaced.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from bench.load import LoadReport, run_load
from pathway import Engine
from tests.conftest import csrf_of
from tests.processes import Dispatcher, Server, reaped, wait_until
from tests.sink import Sink
from tests.test_load import coordinator_token
from tests.test_outage import Client

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def check_a_session_works_across_workers(base: str) -> None:
    """Sessions and CSRF tokens live in the database: a login made through one worker holds on
    whichever worker answers next (every urllib request is a new connection, so both serve it)."""
    browser = Client(base)
    page = browser.call("GET", "/login")[2]
    status, _, page = browser.call("POST", "/login", form={
        "name": "loader", "password": "correct horse battery", "csrf": csrf_of(page), "next": "/"})
    assert status == 200 and "Log out" in page, page[:300]
    assert {browser.call("GET", "/")[0] for _ in range(12)} == {200}
    token = csrf_of(page)
    for n in range(6):  # a cookie-authenticated API write proves the session's CSRF token on each worker
        status, _, body = browser.call("POST", "/api/v1/events", {
            "patient": "XW1", "type": "referral" if n == 0 else "biomarker", "on": "2026-01-05", "key": f"xw-{n}",
            "data": {"primary": "colorectal"} if n == 0 else {"msi": "mss"}}, headers={"X-CSRF-Token": token})
        assert status == 200 and json.loads(body)[0]["status"] == "accepted", body


def test_two_workers_and_two_dispatchers_survive_a_killed_worker_with_every_answer_true(
        pg_url: str, tmp_path: Path) -> None:
    token = coordinator_token(pg_url)
    reports: list[LoadReport] = []
    with Sink() as sink, reaped([]) as processes:
        server = Server("serve", pg_url, tmp_path, "--workers", "2", "--no-scheduler")
        processes += [server, Dispatcher("run-1", pg_url, sink.url, tmp_path, now=None),
                      Dispatcher("run-2", pg_url, sink.url, tmp_path, now=None)]
        server.wait_ready()
        wait_until(lambda: len(server.workers()) == 2, 60, "two worker processes", processes)
        workers = server.workers()

        load = threading.Thread(target=lambda: reports.append(run_load(
            server.url, token, clients=20, requests=3000, seconds=300, run="k", shared=10, retry=True)))
        load.start()
        wait_until(lambda: sink.count() > 100, 120, "the load to be under way", processes)
        victim = max(workers, key=server.connections)  # the worker serving the most clients
        assert server.connections(victim) > 0
        os.kill(victim, signal.SIGKILL)
        load.join(360)
        assert not load.is_alive()
        report = reports[0]
        summary = report.summary()
        assert summary["http"] == {"200": 3000}, summary  # no 500; the killed worker's requests resent
        assert set(summary["events"]) <= {"accepted", "duplicate"}, summary
        assert summary["connection_errors"] >= 1, "the kill must have cut some requests"
        # the supervisor replaced the killed worker
        wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers(), 60,
                   "a replacement worker", processes)
        check_a_session_works_across_workers(server.url)

        with Engine.open(pg_url) as engine:
            def all_delivered() -> bool:
                pending = engine.deliveries(status="pending")
                return bool(pending) and all(r.delivery == "sent" for r in pending)

            wait_until(all_delivered, 120, "every pending reminder to be delivered", processes, every=0.2)
            sent = {r.key for r in engine.deliveries() if r.delivery == "sent"}
            patients = sorted({a.patient for a in report.answers})
            stored = Counter(h.key for p in patients for h in engine.history(p) if h.status == "accepted")
            assert all(stored[a.key] == 1 for a in report.answers)
            assert [p for p in patients if engine.verify(p)] == []
    received = Counter(sink.keys())
    assert sent <= set(received)
    assert max(received.values()) == 1, {k: n for k, n in received.items() if n > 1}
    by_dispatcher = [p.stderr() for p in processes[1:]]
    assert all("Traceback" not in log for log in by_dispatcher)
