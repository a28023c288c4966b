"""Benchmark of the HTTP API under concurrent clients (issue 8): `pathway serve` in a subprocess,
the load generator of bench/load.py posting single events over loopback.

    python -m bench.engine http [--requests 3000] [--seconds 60] [--clients 10,50]
                                [--configs sqlite-1,pg-1,pg-2] [--pg URL] [--repeat 300] [--dir DIR] [--keep]

For each configuration (`sqlite-1`: SQLite, 1 worker; `pg-N`: PostgreSQL, N workers):
1. a fresh database: a new SQLite file in the scratch folder, or `CREATE DATABASE
   pathway_bench_<random>` on the `--pg` server (dropped afterwards); a coordinator `bench` and its
   token made with the CLI (`pathway user add`, `pathway token create`);
2. `pathway serve --no-scheduler --workers N` on a free loopback port, started in a session of its
   own; ready when GET /login answers 200 (`start_s`, bounded by `--start-timeout`);
3. a warm-up (200 requests at the largest client count, not reported), then one `run_load` per
   client count (`--requests` events or `--seconds`, whichever comes first), with the CPU seconds
   of the server's processes (/proc/PID/stat utime+stime of every process of its group) and of this
   process (the load generator: getrusage) over each run. PostgreSQL's own backends are not counted;
4. SIGTERM, wait; SIGKILL to the process group if anything of it is left.

Then, on the database of the first configuration of each backend (server stopped), the cost of one
request, piece by piece, in-process: each piece called on its own, its median wall microseconds and
the mean CPU microseconds of this process per call — connection checkout, token lookup with and
without the cache, session load, envelope validation, the hand-off to a worker thread, the
transaction (a biomarker, a referral), response rendering — and the whole request through the ASGI
app (no socket). The pure-CPU pieces run in loops of their own (10 x `--repeat` calls); those that
touch the database and the whole request in `--repeat` rounds of one call each, so that they see
the same (shared) machine. "HTTP, routing and middleware" is the whole request minus its pieces;
"server_outside_app" the server's CPU per request under load minus the whole request's CPU.

Progress goes to stderr (and a table at the end); stdout gets one JSON object. Figures only:
nothing here asserts a timing (compare with "targets"; the machine is shared, load generator included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.engine import progress
from bench.load import START, run_load

#: The issue's targets on this 2-core machine (the load generator runs on it too).
TARGETS = {
    "pg_2_workers_50_clients_events_per_s_min": 500,
    "pg_2_workers_50_clients_p99_ms_max": 500,
    "sqlite_events_per_s_min": 400,
    "errors_max": 0,
}

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
USER = "bench"
PASSWORD = "bench-password-not-secret"
WARMUP_REQUESTS = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pathway_command() -> str:
    script = Path(sys.executable).parent / "pathway"
    if script.exists():
        return str(script)
    found = shutil.which("pathway")
    if found is None:
        raise SystemExit("bench: cannot find the `pathway` command (install the project: scripts/bench does)")
    return found


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- configurations and databases ------------------------------------------------------------------


@dataclass
class Config:
    name: str
    database: str  # "sqlite" or "postgresql"
    workers: int


def parse_configs(text: str) -> list[Config]:
    out = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        backend, _, workers = name.partition("-")
        if backend not in ("sqlite", "pg") or not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"unknown configuration {name!r}: sqlite-1, pg-1, pg-2, ... (backend-workers)")
        if backend == "sqlite" and int(workers) != 1:
            raise ValueError(f"{name}: SQLite is served by one worker (sqlite-1)")
        out.append(Config(name, "sqlite" if backend == "sqlite" else "postgresql", int(workers)))
    if not out:
        raise ValueError("no configuration")
    return out


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


class PgServer:
    """The `--pg` server: scratch databases created on it and dropped afterwards."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        self.admin = sa.create_engine(_sa_url(url), isolation_level="AUTOCOMMIT",
                                      connect_args={"connect_timeout": 3})
        with self.admin.connect() as conn:
            self.version = str(conn.execute(sa.text("SHOW server_version")).scalar_one())
        self.created: list[str] = []

    def create(self) -> tuple[str, str]:
        """A new database: (its name, its URL)."""
        import sqlalchemy as sa

        name = f"pathway_bench_{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        url = sa.make_url(self.url).set(database=name).render_as_string(hide_password=False)
        return name, url

    def drop(self, name: str) -> None:
        import sqlalchemy as sa

        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            try:
                self.drop(name)
            except Exception as exc:  # noqa: BLE001 - say so, go on cleaning
                progress(f"could not drop database {name}: {exc}")
        self.admin.dispose()


def pg_problem(url: str) -> str | None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(_sa_url(url), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def cli_env(db_url: str) -> dict[str, str]:
    env = dict(os.environ, PATHWAY_DB=db_url, PATHWAY_PASSWORD=PASSWORD)
    env.pop("PATHWAY_NOW", None)
    env.pop("PATHWAY_POLICY", None)
    return env


def make_token(db_url: str) -> str:
    """A coordinator `bench` and a token for it, through the CLI (which also creates the schema)."""
    env = cli_env(db_url)
    added = subprocess.run([pathway_command(), "user", "add", USER, "--role", "coordinator"], env=env,
                           capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if added.returncode != 0:
        raise RuntimeError(f"`pathway user add` failed ({added.returncode}): {added.stderr.strip()[-1500:]}")
    made = subprocess.run([pathway_command(), "token", "create", USER], env=env,
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if made.returncode != 0 or not made.stdout.strip():
        raise RuntimeError(f"`pathway token create` failed ({made.returncode}): {made.stderr.strip()[-1500:]}")
    return made.stdout.strip().splitlines()[0]


# -- the server ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def group_pids(pgid: int) -> list[int]:
    """The processes of process group `pgid` (the server, its workers, their helpers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of the group (utime, stime: fields 14, 15)."""
    total = 0
    for pid in group_pids(pgid):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class Server:
    """`pathway serve --no-scheduler --workers N` on a free loopback port, in a session of its own."""

    def __init__(self, db_url: str, workers: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 (closed by stop)
        command = [pathway_command(), "serve", "--port", str(self.port), "--no-scheduler", "--workers", str(workers)]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._err, stderr=subprocess.STDOUT,
                                     env=cli_env(db_url), start_new_session=True)
        self.pid = self.proc.pid
        self.killed = 0

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/login", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        while not self.answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} before answering:\n"
                                   f"{self.output()[-2000:]}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the server did not answer GET /login within {timeout} s:\n{self.output()[-2000:]}")
            time.sleep(0.05)
        return time.monotonic() - started

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu_s(self) -> float:
        return group_cpu_s(self.pid)

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM and wait; SIGKILL whatever is left of its group. Returns the seconds it took."""
        started = time.monotonic()
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=timeout)
            left = group_pids(self.pid)
            if left:
                self.killed = len(left)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            deadline = time.monotonic() + 10
            while group_pids(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            self._err.close()
        return time.monotonic() - started


# -- the cost of one request, in-process ----------------------------------------------------------------


def timed_us(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(median wall µs, mean CPU µs of this process) of `repeat` calls, after one to warm up."""
    call()  # warm: first use of a connection, a cache, a code path
    samples = []
    cpu_before = time.process_time()
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples), (time.process_time() - cpu_before) / repeat * 1e6


def biomarker(patient: str, key: str) -> dict[str, Any]:
    return {"patient": patient, "type": "biomarker", "on": (START + timedelta(days=2)).isoformat(), "key": key,
            "data": {"ras": "wild_type", "msi": "mss"}}


def new_referral(patient: str, key: str) -> dict[str, Any]:
    return {"patient": patient, "type": "referral", "on": START.isoformat(), "key": key,
            "data": {"primary": "colorectal"}}


class Numbered:
    def __init__(self, prefix: str):
        self.prefix, self.n = prefix, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n}"


def asgi_poster(app: Any, token: str) -> Callable[[bytes], Any]:
    """POST /api/v1/events with a bearer token, straight into the ASGI app (no client, no socket,
    no HTTP parsing): returns a coroutine function giving (status, body)."""
    headers_base = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"), (b"accept", b"application/json")]

    async def post(body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/api/v1/events", "raw_path": b"/api/v1/events",
            "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            "headers": [*headers_base, (b"content-length", str(len(body)).encode())], "state": {},
        }
        delivered = False
        status = [0]
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never goes away
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return status[0], b"".join(chunks)

    return post


def measure_costs(db_url: str, database: str, repeat: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The pieces of one POST of one event, each on its own: median wall µs over `repeat` calls
    ("us") and the mean CPU µs of this process per call ("cpu_us": the difference is waiting, on
    the disk's flush or on PostgreSQL). The pieces that touch the database and the whole request
    are measured in rounds (one call of each per round), so that they see the same machine: it is
    shared, and what else runs on it drifts."""
    from starlette.responses import JSONResponse

    from pathway.engine import Engine
    from pathway.web import api
    from pathway.web.app import create_app
    from persistence.accounts import Accounts
    from states.events import unstorable

    problems: list[str] = []
    fast = repeat * 10  # pure CPU pieces: cheap, noisier, more samples
    tag = secrets.token_hex(3)
    costs: dict[str, dict[str, Any]] = {}

    def put(name: str, us: float, cpu: float | None, what: str) -> None:
        costs[name] = {"us": round(us, 1), **({"cpu_us": round(cpu, 1)} if cpu is not None else {}), "what": what}
        progress(f"  {database}: {name} {us:,.1f} µs" + (f" (CPU {cpu:,.1f} µs)" if cpu is not None else ""))

    with Engine.open(db_url) as engine:
        sa_engine = engine.repository.engine
        accounts = Accounts(sa_engine, engine.clock)
        account = accounts.user(USER)
        if account is None:
            account = accounts.add_user(USER, "coordinator", PASSWORD)
        _token_id, token = accounts.create_token(USER, "cost")
        secret, _csrf = accounts.create_session(account)

        # -- pure CPU: each in a loop of its own ---------------------------------------------------
        cached = Accounts(sa_engine, engine.clock, token_cache_seconds=5.0, monotonic=time.monotonic)
        cached.token_user(token)
        put("token_lookup_cached", *timed_us(lambda: cached.cached_token_user(token), fast),
            "Accounts.cached_token_user after a first lookup (what the API does first): hash + dict lookup")

        body = json.dumps(biomarker("Xenvelope", "k")).encode()

        def envelope() -> list[dict[str, Any]]:
            payload = json.loads(body, parse_constant=api._no_constant)
            if unstorable(payload) or api._by_errors(payload):
                raise AssertionError("the bench event is malformed")
            parsed = api._EVENTS.validate_python(payload)
            events = parsed if isinstance(parsed, list) else [parsed]
            return [e.model_dump(mode="json", exclude_unset=True) for e in events]

        put("envelope_validation", *timed_us(envelope, fast),
            "json.loads + unstorable + `by` check + _EVENTS.validate_python + model_dump(mode=json) of one event")

        patients = [f"C{tag}x{k}" for k in range(20)]  # biomarkers go round robin over these
        engine.record_batch([new_referral(p, f"{p}-ref") for p in patients], by=USER)
        keys = Numbered(f"C{tag}-k")
        result = engine.record_batch([biomarker(patients[0], keys())], by=USER)[0]

        def response() -> Any:
            return JSONResponse([{"index": 0, "line": 1, **result.as_dict()}]).body

        put("response_building", *timed_us(response, fast),
            "the result dict (index, line, as_dict) rendered by starlette JSONResponse(...).body")

        # the hand-off of the transaction to a worker thread and back (run_in_threadpool), alone
        from starlette.concurrency import run_in_threadpool

        handoff_loop = asyncio.new_event_loop()

        async def handoffs(count: int) -> list[tuple[float, float]]:
            out = []
            for _ in range(count):
                cpu_before, started = time.process_time(), time.perf_counter()
                await run_in_threadpool(int)
                out.append((time.perf_counter() - started, time.process_time() - cpu_before))
            return out

        try:
            handoff_loop.run_until_complete(handoffs(10))
            walls, cpus = zip(*handoff_loop.run_until_complete(handoffs(fast)), strict=True)
        finally:
            handoff_loop.close()
        put("thread_handoff", statistics.median(walls) * 1e6, sum(cpus) / len(cpus) * 1e6,
            "`await run_in_threadpool(no-op)`: the event loop hands the transaction to a worker thread and is "
            "woken with its result (the API does this once per request)")

        # -- the database and the whole request: in rounds ----------------------------------------
        statuses: dict[str, int] = {}
        answers: dict[int, int] = {}
        turn = [0]

        def checkout() -> None:
            with sa_engine.connect():
                pass

        def one_biomarker() -> None:
            turn[0] += 1
            done = engine.record_batch([biomarker(patients[turn[0] % len(patients)], keys())], by=USER)[0]
            statuses[str(done.status)] = statuses.get(str(done.status), 0) + 1

        new_patients = Numbered(f"N{tag}x")

        def one_referral() -> None:
            p = new_patients()
            done = engine.record_batch([new_referral(p, f"{p}-ref")], by=USER)[0]
            statuses[str(done.status)] = statuses.get(str(done.status), 0) + 1

        # the whole request through the app: token (cached after the first), envelope, thread hand-off,
        # transaction, response, FastAPI routing and dependencies, the app's two ASGI middlewares; timed
        # inside one event loop (kept across calls, as a server's is)
        app = create_app(engine, scheduler=False)
        post = asgi_poster(app, token)
        loop = asyncio.new_event_loop()

        async def timed_post(payload: bytes) -> tuple[float, float]:
            cpu_before, started = time.process_time(), time.perf_counter()
            status, _answer = await post(payload)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
            answers[status] = answers.get(status, 0) + 1
            return wall, cpu

        def whole() -> tuple[float, float]:
            turn[0] += 1
            payload = json.dumps(biomarker(patients[turn[0] % len(patients)], keys())).encode()
            return loop.run_until_complete(timed_post(payload))

        def timed_call(call: Callable[[], Any]) -> tuple[float, float]:
            cpu_before, started = time.process_time(), time.perf_counter()
            call()
            return time.perf_counter() - started, time.process_time() - cpu_before

        rounds: dict[str, Callable[[], tuple[float, float]]] = {
            "connection_checkout": lambda: timed_call(checkout),
            "token_lookup_uncached": lambda: timed_call(lambda: accounts.token_user(token)),
            "session_load": lambda: timed_call(lambda: accounts.session(secret)),
            "transaction_biomarker": lambda: timed_call(one_biomarker),
            "transaction_referral": lambda: timed_call(one_referral),
            "whole_request_in_process": whole,
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rounds}
        try:
            for measure in rounds.values():
                measure()  # warm
            for _ in range(repeat):
                for name, measure in rounds.items():
                    samples[name].append(measure())
        finally:
            loop.close()
        if set(statuses) != {"accepted"}:
            problems.append(f"{database}: in-process transactions answered {statuses} (all should be accepted)")
        if set(answers) != {200}:
            problems.append(f"{database}: in-process requests answered {answers} (all should be 200)")

        def figures(name: str) -> tuple[float, float]:
            walls, cpus = zip(*samples[name], strict=True)
            return statistics.median(walls) * 1e6, sum(cpus) / len(cpus) * 1e6

        put("connection_checkout", *figures("connection_checkout"),
            "take a connection from the engine's pool and give it back (on PostgreSQL pool_pre_ping: a "
            "round trip); part of every database piece below")
        put("token_lookup_uncached", *figures("token_lookup_uncached"),
            "Accounts.token_user without cache: hash the secret, one SELECT joining token and user "
            "(on the API's path once per token every 5 s per worker)")
        put("session_load", *figures("session_load"),
            "Accounts.session: one SELECT joining session and user (browser requests; not on the "
            "bearer-token path, not in the sums below)")
        put("transaction_biomarker", *figures("transaction_biomarker"),
            "engine.record_batch([one biomarker], by=) on an existing patient: parse, load the patient, rules, "
            "one write transaction (event, snapshot, reminders) and its commit")
        put("transaction_referral", *figures("transaction_referral"),
            "engine.record_batch([one referral of a new patient], by=): as above, creating the patient and "
            "planning its reminders")
        whole_us, whole_cpu = figures("whole_request_in_process")
        put("whole_request_in_process", whole_us, whole_cpu,
            "POST /api/v1/events of one biomarker with a bearer token, into the ASGI app in this process "
            "(middlewares, routing, dependencies, thread hand-off, the pieces above); no socket, no HTTP parsing")
        pieces = ("token_lookup_cached", "envelope_validation", "thread_handoff", "transaction_biomarker",
                  "response_building")
        put("http_routing_middleware", whole_us - sum(costs[p]["us"] for p in pieces),
            whole_cpu - sum(costs[p]["cpu_us"] for p in pieces),
            "HTTP, routing and middleware: whole_request_in_process minus " + " + ".join(pieces)
            + " (FastAPI routing and dependency injection, the ASGI middlewares, request and response objects, "
            "and the transaction being slower in a worker thread than alone); a difference of medians, noisy")
    order = ("connection_checkout", "token_lookup_uncached", "token_lookup_cached", "session_load",
             "envelope_validation", "thread_handoff", "transaction_biomarker", "transaction_referral",
             "response_building",
             "whole_request_in_process", "http_routing_middleware")
    return {name: costs[name] for name in order}, problems


# -- the benchmark --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    runs: list[dict[str, Any]] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def target_of(config: Config, clients: int) -> dict[str, Any] | None:
    if config.database == "postgresql" and config.workers == 2 and clients == 50:
        return {"events_per_s_min": TARGETS["pg_2_workers_50_clients_events_per_s_min"],
                "p99_ms_max": TARGETS["pg_2_workers_50_clients_p99_ms_max"], "errors_max": 0}
    if config.database == "sqlite":
        return {"events_per_s_min": TARGETS["sqlite_events_per_s_min"], "errors_max": 0}
    return {"errors_max": 0}


def met(run: dict[str, Any], target: dict[str, Any]) -> bool:
    ok = bool(run["errors"] <= target["errors_max"] and run["connection_errors"] == 0)
    if "events_per_s_min" in target:
        ok = ok and run["events_per_s"] >= target["events_per_s_min"]
    if "p99_ms_max" in target:
        ok = ok and run["p99_ms"] <= target["p99_ms_max"]
    return ok


def run_config(config: Config, db_url: str, work: Path, args: argparse.Namespace, out: Outcome,
               servers: list[Server]) -> None:
    progress(f"{config.name}: user and token through the CLI")
    started = time.perf_counter()
    token = make_token(db_url)
    setup_s = time.perf_counter() - started
    server = Server(db_url, config.workers, work / f"{config.name}.log")
    servers.append(server)
    progress(f"{config.name}: pathway serve --workers {config.workers} on {server.url} (pid {server.pid})")
    start_s = server.wait_ready(args.start_timeout)
    progress(f"{config.name}: answering after {start_s:.2f} s")
    record: dict[str, Any] = {"config": config.name, "database": config.database, "workers": config.workers,
                              "setup_s": round(setup_s, 2), "start_s": round(start_s, 2)}
    try:
        biggest = max(args.clients)
        warm = run_load(server.url, token, clients=biggest, requests=WARMUP_REQUESTS, seconds=args.seconds,
                        run="w", shared=10).summary()
        record["warmup"] = {k: warm[k] for k in ("clients", "requests", "events_per_s", "p99_ms", "errors")}
        progress(f"{config.name}: warm-up {warm['requests']} requests at {biggest} clients, "
                 f"{warm['events_per_s']} events/s, {warm['errors']} errors")
        for index, clients in enumerate(args.clients):
            progress(f"{config.name}: {args.requests} requests at {clients} clients (cap {args.seconds} s)")
            server_before, self_before = server.cpu_s(), cpu_s()
            report = run_load(server.url, token, clients=clients, requests=args.requests, seconds=args.seconds,
                              run=f"r{index}c{clients}", shared=10)
            server_cpu, loadgen_cpu = server.cpu_s() - server_before, cpu_s() - self_before
            summary = report.summary()
            answered = summary["http"].get("200", 0)
            run: dict[str, Any] = {
                "config": config.name, "workers": config.workers, "database": config.database,
                **summary,
                "server_cpu_s": round(server_cpu, 2),
                "server_cpu_us_per_request": round(server_cpu / answered * 1e6, 1) if answered else None,
                "loadgen_cpu_s": round(loadgen_cpu, 2),
                "loadgen_cpu_us_per_request": round(loadgen_cpu / len(report.answers) * 1e6, 1)
                if report.answers else None,
                "cpu_cores_busy": round((server_cpu + loadgen_cpu) / summary["seconds"], 2)
                if summary["seconds"] else None,
            }
            target = target_of(config, clients)
            if target is not None:
                run["target"] = {**target, "met": met(run, target)}
            out.runs.append(run)
            progress(f"{config.name} @ {clients}: {run['events_per_s']} events/s, p50 {run['p50_ms']} / p95 "
                     f"{run['p95_ms']} / p99 {run['p99_ms']} ms, {run['errors']} errors, server CPU "
                     f"{run['server_cpu_s']} s, load generator CPU {run['loadgen_cpu_s']} s")
            if summary["seconds"] >= args.seconds and summary["requests"] < args.requests:
                out.notes.append(f"{config.name} @ {clients} clients: stopped by --seconds {args.seconds} after "
                                 f"{summary['requests']} of {args.requests} requests")
    finally:
        stop_s = server.stop()
        servers.remove(server)
        record["stop_s"] = round(stop_s, 2)
        if server.killed:
            out.notes.append(f"{config.name}: {server.killed} server processes were still there after SIGTERM "
                             f"and were killed")
        log = server.output()
        tracebacks = log.count("Traceback")
        if tracebacks:
            record["server_log_tracebacks"] = tracebacks
            record["server_log_tail"] = log[-3000:]
        out.configs.append(record)
    progress(f"{config.name}: server stopped in {stop_s:.2f} s")


def table(out: Outcome) -> str:
    lines = [f"{'config':<9} {'clients':>7} {'ev/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'err':>4} "
             f"{'srv µs/req':>10} {'gen µs/req':>10} target"]
    for r in out.runs:
        target = r.get("target", {})
        lines.append(f"{r['config']:<9} {r['clients']:>7} {r['events_per_s']:>7.0f} {r['p50_ms']:>7.1f} "
                     f"{r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} {r['errors']:>4} "
                     f"{r['server_cpu_us_per_request'] or 0:>10.0f} {r['loadgen_cpu_us_per_request'] or 0:>10.0f} "
                     f"{'met' if target.get('met') else 'MISSED' if target else ''}")
    if out.cost:
        databases = list(out.cost)
        names = list(dict.fromkeys(name for costs in out.cost.values() for name in costs))
        lines.append("")
        lines.append(f"{'cost of one request, µs (CPU)':<30}" + "".join(f"{d:>22}" for d in databases))
        for name in names:
            cells = []
            for d in databases:
                item = out.cost[d].get(name)
                if item is None or item.get("us") is None:
                    cells.append(f"{'':>22}")
                else:
                    text = f"{item['us']:.0f}" + (f" ({item['cpu_us']:.0f})" if "cpu_us" in item else "")
                    cells.append(f"{text:>22}")
            lines.append(f"{name:<30}" + "".join(cells))
    return "\n".join(lines)


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so that the cleanup below runs (servers, databases)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine http",
                                     description="Throughput of the HTTP API under concurrent clients (loopback), "
                                                 "and the cost of one request. Prints one JSON object.")
    parser.add_argument("--requests", type=int, default=3000, help="per configuration and client count (default 3000)")
    parser.add_argument("--seconds", type=float, default=60, help="cap of each load run (default 60)")
    parser.add_argument("--clients", default="10,50", help="client counts, comma-separated (default 10,50)")
    parser.add_argument("--configs", default="sqlite-1,pg-1,pg-2",
                        help="backend-workers, comma-separated (default sqlite-1,pg-1,pg-2)")
    parser.add_argument("--pg", default=DEFAULT_PG,
                        help=f"PostgreSQL server to create scratch databases on (default {DEFAULT_PG})")
    parser.add_argument("--repeat", type=int, default=300,
                        help="calls per piece of the in-process cost breakdown (default 300; 0 skips it)")
    parser.add_argument("--start-timeout", type=float, default=60, help="seconds to wait for a server (default 60)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (SQLite files, server logs; PostgreSQL scratch databases "
                             "are dropped anyway)")
    args = parser.parse_args(argv)
    try:
        configs = parse_configs(args.configs)
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients must list positive numbers")
    if args.requests < 1 or args.seconds <= 0 or args.repeat < 0:
        parser.error("--requests and --seconds must be positive, --repeat not negative")

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pathway-bench-http-", dir=args.dir))
    out = Outcome()
    servers: list[Server] = []
    pg: PgServer | None = None
    machine: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    interrupted = False
    with terminated_as_interrupt():
        try:
            if any(c.database == "postgresql" for c in configs):
                problem = pg_problem(args.pg)
                if problem is None:
                    pg = PgServer(args.pg)
                    machine["postgresql"] = pg.version
                    progress(f"PostgreSQL {pg.version} at {args.pg}")
                else:
                    skipped = [c.name for c in configs if c.database == "postgresql"]
                    out.notes.append(f"PostgreSQL at {args.pg} does not answer ({problem}): skipped "
                                     f"{', '.join(skipped)}")
                    progress(out.notes[-1])
                    configs = [c for c in configs if c.database != "postgresql"]
            for config in configs:
                pg_name = None
                if config.database == "sqlite":
                    db_url = f"sqlite:///{work / (config.name + '.db')}"
                else:
                    assert pg is not None
                    pg_name, db_url = pg.create()
                    progress(f"{config.name}: scratch database {pg_name}")
                try:
                    try:
                        run_config(config, db_url, work, args, out, servers)
                    except RuntimeError as exc:
                        out.errors.append(f"{config.name}: {exc}")
                        progress(f"{config.name} FAILED: {exc}")
                        continue
                    if args.repeat and config.database not in out.cost:
                        progress(f"{config.name}: cost of one request, in-process, {args.repeat} calls a piece")
                        costs, problems = measure_costs(db_url, config.database, args.repeat)
                        out.errors += problems
                        ones = [r for r in out.runs if r["config"] == config.name]
                        if ones:
                            busiest = max(ones, key=lambda r: r["clients"])
                            costs["server_cpu_per_request"] = {
                                "us": busiest["server_cpu_us_per_request"],
                                "what": f"CPU of the server's processes per answered request in the load run "
                                        f"{config.name} @ {busiest['clients']} clients (uvicorn, HTTP parsing, "
                                        "sockets, event loop and all of the above"
                                        + ("; not PostgreSQL's backends)" if config.database == "postgresql"
                                           else ")"),
                            }
                            in_app = costs["whole_request_in_process"]["cpu_us"]
                            if busiest["server_cpu_us_per_request"] is not None:
                                costs["server_outside_app"] = {
                                    "us": round(busiest["server_cpu_us_per_request"] - in_app, 1),
                                    "what": "server_cpu_per_request minus the CPU of whole_request_in_process: "
                                            "uvicorn (HTTP parsing, sockets, the event loop) and running many "
                                            "requests at once (thread switches, contention)",
                                }
                        out.cost[config.database] = costs
                finally:
                    if pg_name is not None and pg is not None:
                        pg.drop(pg_name)
                        progress(f"{config.name}: dropped {pg_name}")
        except KeyboardInterrupt:
            interrupted = True
            out.errors.append("interrupted (SIGINT or SIGTERM): the figures are those of the runs done before")
            progress("interrupted: stopping servers, dropping scratch databases")
        finally:
            for server in list(servers):
                server.stop()
            if pg is not None:
                pg.close()
            if args.keep:
                progress(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)

    out.notes += [
        "one machine for server and load generator: cpu_cores_busy is (server + load generator CPU seconds) / "
        "wall seconds; PostgreSQL's backends also run on it and are not counted",
        "latencies are from the first send to the answer, per request, on keep-alive connections; events are "
        "referrals, MDT bookings and biomarkers, one in five on 10 patients every client writes to",
        "cost_us: per piece, `us` the median wall microseconds of a call and `cpu_us` the mean CPU microseconds of "
        "this process per call (the difference is waiting: the disk's flush, PostgreSQL), in this process, on the "
        "database of the first configuration of that backend after its load runs (its server stopped); the "
        f"pure-CPU pieces in loops of their own ({args.repeat * 10} calls), the database pieces and the whole "
        f"request in {args.repeat} rounds of one call each",
    ]
    result: dict[str, Any] = {
        "benchmark": "http",
        "requests": args.requests,
        "seconds_cap": args.seconds,
        "clients": args.clients,
        "machine": machine,
        "targets": TARGETS,
        "runs": out.runs,
        "configs": out.configs,
        "cost_us": out.cost,
        "notes": out.notes,
    }
    if out.errors:
        result["errors"] = out.errors
    print(json.dumps(result, indent=2))
    print(table(out), file=sys.stderr, flush=True)
    return 130 if interrupted else 1 if out.errors else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
