"""A load generator for the HTTP API: concurrent clients posting single events, as a hospital's
systems and coordinators would (loopback only, bounded in count and in time).

    python -m bench.load --url http://127.0.0.1:8000 --token pwt_... [--clients 10] [--requests 3000]
                         [--seconds 60] [--run R] [--shared 10] [--retry]

Each client is one keep-alive HTTP/1.1 connection (a minimal asyncio client: httpx would spend
more of the machine's two cores than the server it measures). It walks patients of its own —
referral, mdt_scheduled, then biomarker results — and one request in five records a biomarker on
one of `--shared` patients every client writes to (concurrent writers on the same patients).
Every event carries an idempotency key, so a client that lost its connection (a killed worker)
sends the same event again (`--retry`) and the engine answers `duplicate` if it was stored.

Prints one JSON object: events/s, latency p50/p95/p99 in ms, answers by HTTP status and by event
status, connection errors. Figures only, no asserts (tests use `run_load` and check the answers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

#: Clinical dates of the generated events (in the past whatever the clock, spaced as the rules want).
START = date(2026, 1, 5)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0.5 = median, 0.99 = p99); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- the workload --------------------------------------------------------------------------------------


def shared_patients(run: str, count: int) -> list[str]:
    return [f"S{run}x{k}" for k in range(count)]


def referral(patient: str, on: date, key: str) -> dict[str, Any]:
    return {"patient": patient, "type": "referral", "on": on.isoformat(), "key": key,
            "data": {"primary": "colorectal"}}


class Workload:
    """The events one client posts, in order: its own patients' referral, MDT booking and
    biomarker results, with every fifth event a biomarker on a shared patient."""

    def __init__(self, run: str, client: int, shared: Sequence[str], seed: int = 0):
        self.run = run
        self.client = client
        self.shared = list(shared)
        self.random = random.Random(seed * 1_000_003 + client)
        self.n = 0

    def next(self) -> dict[str, Any]:
        n = self.n
        self.n += 1
        key = f"{self.run}-{self.client}-{n}"
        if self.shared and n % 5 == 4:
            patient = self.random.choice(self.shared)
            return {"patient": patient, "type": "biomarker", "on": (START + timedelta(days=1)).isoformat(),
                    "key": key, "data": self._biomarker()}
        own = n - n // 5 if self.shared else n  # the position among this client's own events
        patient, step = f"L{self.run}x{self.client}x{own // 6}", own % 6
        if step == 0:
            return referral(patient, START, key)
        if step == 1:
            return {"patient": patient, "type": "mdt_scheduled", "on": (START + timedelta(days=1)).isoformat(),
                    "key": key, "data": {"meeting_on": (START + timedelta(days=8)).isoformat()}}
        return {"patient": patient, "type": "biomarker", "on": (START + timedelta(days=2)).isoformat(),
                "key": key, "data": self._biomarker()}

    def _biomarker(self) -> dict[str, str]:
        return {"ras": self.random.choice(("wild_type", "mutant")), "msi": self.random.choice(("mss", "msi_high"))}


# -- a minimal HTTP/1.1 client --------------------------------------------------------------------------


class ConnectionLost(Exception):
    """The server closed or reset the connection before answering."""


class Connection:
    """One keep-alive connection: POST a JSON body, read the answer (Content-Length framed)."""

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port = host, port
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        try:
            return await asyncio.wait_for(self._post(path, body), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            raise ConnectionLost(type(exc).__name__) from None

    async def _post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, payload


# -- the run -----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """The answer a client finally got for one event (after retries of lost connections)."""

    key: str
    patient: str
    http: int  # 0: never answered
    status: str | None  # the event's status (accepted, duplicate, refused, invalid) on a 200
    ms: float  # from the first send to the answer
    attempts: int


@dataclass
class LoadReport:
    clients: int
    seconds: float
    answers: list[Answer] = field(default_factory=list)
    connection_errors: int = 0
    retried_after: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ok = [a for a in self.answers if a.http == 200]
        latencies = [a.ms for a in ok]
        return {
            "clients": self.clients,
            "requests": len(self.answers),
            "seconds": round(self.seconds, 2),
            "events_per_s": round(len(ok) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies, default=0.0), 1),
            "http": {str(k): v for k, v in sorted(Counter(a.http for a in self.answers).items())},
            "events": dict(sorted(Counter(a.status for a in ok if a.status).items())),
            "errors": sum(1 for a in self.answers if a.http != 200),
            "connection_errors": self.connection_errors,
            "answered_after_retry": {str(k): v for k, v in sorted(self.retried_after.items())},
        }


async def _client(index: int, url: str, token: str, workload: Workload, deadline: float, quota: list[int],
                  report: LoadReport, retry: bool, timeout: float) -> None:
    parts = urlsplit(url)
    conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80, token)
    path = "/api/v1/events"
    try:
        while time.monotonic() < deadline and quota[0] > 0:
            quota[0] -= 1
            event = workload.next()
            body = json.dumps(event).encode()
            started = time.perf_counter()
            attempts = 0
            http, status = 0, None
            while True:
                attempts += 1
                try:
                    http, headers, payload = await conn.post(path, body, timeout)
                except ConnectionLost:
                    report.connection_errors += 1
                    if not retry or time.monotonic() > deadline + 60:
                        break
                    await asyncio.sleep(0.05)
                    continue
                if retry and http in (409, 503) and time.monotonic() < deadline + 60:
                    report.retried_after[http] += 1
                    await asyncio.sleep(min(2.0, float(headers.get("retry-after", "1") or 1)))
                    continue
                if http == 200:
                    results = json.loads(payload)
                    status = results[0]["status"] if results else None
                break
            report.answers.append(Answer(event["key"], event["patient"], http, status,
                                         (time.perf_counter() - started) * 1000, attempts))
    finally:
        await conn.close()


async def _setup(url: str, token: str, shared: Sequence[str], timeout: float) -> None:
    """Refer the shared patients (one request, before the clock starts)."""
    if not shared:
        return
    parts = urlsplit(url)
    conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80, token)
    body = json.dumps([referral(p, START, f"{p}-referral") for p in shared]).encode()
    try:
        http, _headers, payload = await conn.post("/api/v1/events", body, timeout)
    finally:
        await conn.close()
    if http != 200:
        raise RuntimeError(f"setup failed: HTTP {http}: {payload[:300]!r}")


async def run_load_async(url: str, token: str, *, clients: int = 10, requests: int = 3000, seconds: float = 60,
                         run: str = "r", shared: int = 10, retry: bool = False, timeout: float = 60,
                         seed: int = 0) -> LoadReport:
    patients = shared_patients(run, shared)
    await _setup(url, token, patients, timeout)
    report = LoadReport(clients, 0.0)
    quota = [requests]
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(
        _client(i, url, token, Workload(run, i, patients, seed), deadline, quota, report, retry, timeout)
        for i in range(clients)
    ))
    report.seconds = time.perf_counter() - started
    return report


def run_load(url: str, token: str, **options: Any) -> LoadReport:
    """Run the load to completion (`requests` events or `seconds`, whichever comes first)."""
    return asyncio.run(run_load_async(url, token, **options))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--run", default=f"{random.randrange(36**4):04x}", help="prefix of patient ids and keys")
    parser.add_argument("--shared", type=int, default=10, help="patients every client writes to")
    parser.add_argument("--retry", action="store_true", help="resend on lost connections, 409 and 503")
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only targets loopback addresses")
    report = run_load(args.url, args.token, clients=args.clients, requests=args.requests, seconds=args.seconds,
                      run=args.run, shared=args.shared, retry=args.retry)
    json.dump(report.summary(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
