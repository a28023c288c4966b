"""Shared fixtures: databases (SQLite in a temp dir; PostgreSQL in a schema of its own), clocks.

PostgreSQL tests run whenever a server answers: the one PATHWAY_TEST_PG names (CI sets it; then an
unreachable server fails the run instead of skipping), else postgresql://postgres@127.0.0.1:5432/test
if it answers. Each test gets a fresh schema, dropped afterwards: the server outlives test runs.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pathway import Engine, ManualClock
from persistence.memory import MemoryRepository

#: The spec's worked examples, copied into the repository (tests/examples/README.md).
EXAMPLES = Path(__file__).resolve().parent / "examples"
#: Where the spec keeps them, beside the project (absent in a lone clone).
SPEC_EXAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / "examples"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PINNED = datetime(2033, 1, 1, 9, 0, tzinfo=UTC)


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def _answers(url: str) -> str | None:
    try:
        engine = sa.create_engine(_sa_url(url), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str | None:
    named = os.environ.get("PATHWAY_TEST_PG")
    if named:
        problem = _answers(named)
        if problem:
            pytest.fail(f"PATHWAY_TEST_PG={named} does not answer: {problem}", pytrace=False)
        return named
    return None if _answers(DEFAULT_PG) else DEFAULT_PG


@pytest.fixture
def pg_url(pg_server: str | None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if pg_server is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 and PATHWAY_TEST_PG is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_sa_url(pg_server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server else "?"
    try:
        yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every backend the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pathway.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every implementation of the repository port: the in-memory twin, SQLite (a migrated
    template's copy) and PostgreSQL (when a server answers) — for the contract suite."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite database of the current schema: a copy of a migrated template, on memory-backed
    storage when the machine has it (migrating and fsyncing each test's file costs more than the
    test). Tests of creating and migrating a database use `db_url`, a fresh file."""
    from tests.builders import fast_sqlite

    yield from fast_sqlite(tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(PINNED)


@pytest.fixture
def engine(clock: ManualClock) -> Iterator[Engine]:
    """An engine on the in-memory twin (persistence.memory), for tests of the domain: the rules,
    the plan, keys and voids, validation. The repository contract suite holds the twin to the
    SQL semantics (tests/test_repository_contract.py)."""
    with Engine(MemoryRepository(), clock=clock) as engine:
        yield engine


@pytest.fixture
def sqlite_engine(sqlite_url: str, clock: ManualClock) -> Iterator[Engine]:
    """An engine on SQLite, for tests of what the database does (delivery, the CLI, processes, the web)."""
    with Engine.open(sqlite_url, clock=clock) as engine:
        yield engine


@pytest.fixture
def any_engine(db_url: str, clock: ManualClock) -> Iterator[Engine]:
    """An engine on each backend (SQLite, and PostgreSQL when a server answers)."""
    with Engine.open(db_url, clock=clock) as engine:
        yield engine


def example_names() -> list[str]:
    return sorted(p.name.split(".")[0] for p in EXAMPLES.glob("*.events.jsonl"))


def load_example(name: str) -> tuple[list[dict], list[dict]]:
    events = [json.loads(line) for line in (EXAMPLES / f"{name}.events.jsonl").read_text().splitlines() if line.strip()]
    expected = [json.loads(line) for line in (EXAMPLES / f"{name}.expected.jsonl").read_text().splitlines()]
    return events, expected


def pending_by_kind(engine: Engine, patient: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in engine.show(patient).reminders:
        out.setdefault(r.kind, []).append(r.due_on.isoformat())
    return {k: sorted(v) for k, v in sorted(out.items())}


# Hypothesis profiles: `ci` by default (fast), `long` for 10,000 histories:
#   scripts/test tests/test_stateful.py --hypothesis-profile=long
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=40, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=10_000, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- the web app (tests/test_web_*.py) -------------------------------------------------------------

#: The password of the test accounts `viewer`, `coordinator` and `admin` (fixture `app`).
WEB_PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the smallest cost: the tests hash many passwords (production keeps the defaults)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr("persistence.accounts._hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def app(any_engine: Engine) -> Any:
    """The web app on each backend, with one account per role (named after it, WEB_PASSWORD)."""
    from pathway.web import create_app

    app = create_app(any_engine, scheduler=False)
    for role in ("viewer", "coordinator", "admin"):
        app.state.accounts.add_user(role, role, WEB_PASSWORD)
    return app


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


def csrf_of(html: str) -> str:
    """The CSRF token of the (first) form in a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)
