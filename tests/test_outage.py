"""Database outages are answered honestly (issue 8, D3), against a PostgreSQL server the test
starts, stops and restarts itself (tests/pgcluster.py) — never the shared one.

- While the database is down, every route answers 503 with Retry-After: writes, reads, the token
  lookup, the login; never 500, never no answer. When it is back, the same server process answers
  200 again: no restart.
- Restarted in the middle of a load, every request gets an answer; clients that send again what
  got 503 (same keys) end with each event stored exactly once; a dispatcher process delivers every
  due reminder once, without being restarted.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.load import LoadReport, run_load
from pathway import Engine
from tests.pgcluster import PgCluster
from tests.processes import Dispatcher, Server, reaped, wait_until
from tests.sink import Sink
from tests.test_load import coordinator_token

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def own_pg() -> Any:
    if PgCluster.binaries() is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: the outage tests "
                    "need a server of their own to stop and restart")
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


class Client:
    """urllib with a cookie jar: enough for the API and the login form."""

    def __init__(self, base: str, token: str | None = None):
        self.base, self.token = base, token
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None,
             token: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        headers = dict(headers or {})
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


def biomarker(patient: str, key: str) -> dict[str, Any]:
    return {"patient": patient, "type": "biomarker", "on": "2026-01-06", "key": key, "data": {"ras": "wild_type"}}


def test_while_the_database_is_down_every_route_answers_503_with_retry_after_and_recovers_by_itself(
        own_pg: PgCluster, tmp_path: Path) -> None:
    token = coordinator_token(own_pg.url)
    with Engine.open(own_pg.url) as engine:
        from persistence.accounts import Accounts

        unused_token = Accounts(engine.repository.engine, engine.clock).create_token("loader", "never used yet")[1]
    with reaped([]) as processes:
        server = Server("serve", own_pg.url, tmp_path, "--no-scheduler")
        processes.append(server)
        server.wait_ready()
        api = Client(server.url, token)
        status, _, body = api.call("POST", "/api/v1/events", {
            "patient": "OUT1", "type": "referral", "on": "2026-01-05", "key": "ref", "data": {"primary": "colorectal"}})
        assert (status, json.loads(body)[0]["status"]) == (200, "accepted")
        browser = Client(server.url)
        login_page = browser.call("GET", "/login")[2]
        csrf = re.search(r'name="csrf" value="([^"]+)"', login_page).group(1)  # type: ignore[union-attr]

        own_pg.stop()
        answers = {
            "record": api.call("POST", "/api/v1/events", biomarker("OUT1", "during")),
            "show": api.call("GET", "/api/v1/patients/OUT1"),
            "patients": api.call("GET", "/api/v1/patients"),
            "worklist": api.call("GET", "/api/v1/worklist?days=30"),
            "token lookup": api.call("GET", "/api/v1/patients", token=unused_token),
            "login": browser.call("POST", "/login", form={"name": "loader", "password": "correct horse battery",
                                                          "csrf": csrf, "next": "/"}),
        }
        for route, (status, headers, body) in answers.items():
            assert status == 503, (route, status, body[:300])
            assert int(headers.get("retry-after", "0")) > 0, route
        assert "send the request again" in json.loads(answers["record"][2])["detail"]

        own_pg.start()
        outcome: list[Any] = []

        def answered() -> bool:
            status, _, body = api.call("POST", "/api/v1/events", biomarker("OUT1", "during"))
            outcome[:] = [status, body]
            return status != 503

        wait_until(answered, 60, "the server to answer again after the database came back", [server], every=0.2)
        assert outcome[0] == 200 and json.loads(outcome[1])[0]["status"] == "accepted", outcome
        assert api.call("GET", "/api/v1/patients", token=unused_token)[0] == 200
        assert server.poll() is None  # the same process: recovered without a restart
    assert "Traceback" not in server.stderr()
    with Engine.open(own_pg.url) as engine:
        history = engine.history("OUT1")
        assert [h.key for h in history if h.status == "accepted"] == ["ref", "during"]


def test_a_restart_mid_load_answers_every_request_and_stores_each_event_exactly_once(
        own_pg: PgCluster, tmp_path: Path) -> None:
    token = coordinator_token(own_pg.url)
    reports: list[LoadReport] = []
    with Sink() as sink, reaped([]) as processes:
        server = Server("serve", own_pg.url, tmp_path, "--no-scheduler")
        dispatcher = Dispatcher("run", own_pg.url, sink.url, tmp_path, now=None)
        processes += [server, dispatcher]
        server.wait_ready()
        load = threading.Thread(target=lambda: reports.append(run_load(
            server.url, token, clients=10, requests=1500, seconds=240, run="o", shared=5, retry=True)))
        load.start()
        wait_until(lambda: sink.count() > 50, 120, "the load to be under way", processes)
        own_pg.restart()
        load.join(300)
        assert not load.is_alive()
        report = reports[0]
        summary = report.summary()
        assert summary["http"] == {"200": 1500}, summary  # every request answered, in the end 200
        assert report.retried_after[503] >= 1, "the restart must have been felt: no request got 503"
        assert set(summary["events"]) <= {"accepted", "duplicate"}, summary
        assert server.poll() is None and dispatcher.poll() is None

        with Engine.open(own_pg.url) as engine:
            def all_delivered() -> bool:
                pending = engine.deliveries(status="pending")
                return bool(pending) and all(r.delivery == "sent" for r in pending)

            wait_until(all_delivered, 120, "every pending reminder to be delivered", processes, every=0.2)
            sent = {r.key for r in engine.deliveries() if r.delivery == "sent"}
    received = Counter(sink.keys())
    assert sent <= set(received)
    assert max(received.values()) == 1, {k: n for k, n in received.items() if n > 1}
    with Engine.open(own_pg.url) as engine:
        patients = sorted({a.patient for a in report.answers})
        stored = Counter(h.key for p in patients for h in engine.history(p) if h.status == "accepted")
        assert all(stored[a.key] == 1 for a in report.answers)
        assert all(engine.verify(p) == [] for p in patients)
    assert "Traceback" not in server.stderr()
