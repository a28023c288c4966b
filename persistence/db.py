"""Database engines and migrations: SQLite by default, PostgreSQL (psycopg 3) with the same code.

SQLite gets, on every connection and in this order: a busy timeout, WAL, synchronous=FULL (the
audit log must survive a power loss) and foreign keys; write transactions start with BEGIN
IMMEDIATE so that two writers queue instead of failing half-way. The schema is managed by
Alembic (persistence/migrations); an empty database is migrated on first use, an outdated one is
refused with the command that upgrades it.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from states.errors import PathwayError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
WAL_AUTOCHECKPOINT = 1000  # pages: SQLite's default
#: During a bulk import the WAL may grow to this before a commit checkpoints it itself.
BULK_WAL_LIMIT = 512 * 1024 * 1024
PAGE_SIZE = 4096  # SQLite's default page size, which these databases keep
CACHE_KIB = 64 * 1024


class SchemaError(PathwayError, RuntimeError):
    """The database schema is not the one this version needs."""


class DatabaseUnavailable(PathwayError, RuntimeError):
    """The database cannot be reached or used for now (server down or restarting, connection
    lost, disk full or read-only, locked beyond the busy timeout): the same request may succeed
    later, so callers answer "try again" (HTTP 503 with Retry-After)."""


class WriteConflict(PathwayError, RuntimeError):
    """Another transaction got in the way (a deadlock, a serialization failure, a row changed or
    created meanwhile). Nothing of this transaction was stored: running it again is safe."""


log = logging.getLogger("pathway.db")

#: Connections per process kept open (PostgreSQL; SQLite files too), and how many more may be
#: opened for a burst. The web server runs at most WEB_THREADS requests at a time (pathway.web).
POOL_SIZE = 20
POOL_OVERFLOW = 10
#: Seconds a request waits for a free connection before the database counts as unavailable.
POOL_TIMEOUT = 30
#: Attempts of a transaction that met a write conflict (the first included).
CONFLICT_ATTEMPTS = 6

#: SQLite errors that are outages (the same statement may work later), by their message.
_SQLITE_OUTAGES = (
    "database is locked", "database table is locked", "disk i/o error", "database or disk is full",
    "unable to open database", "readonly database", "interrupted", "out of memory", "disk image is malformed",
    "file is not a database", "locking protocol",
)
#: PostgreSQL SQLSTATE classes of outages: connection exception, insufficient resources,
#: operator intervention (shutdown, cannot connect now, query cancelled), system error.
_PG_OUTAGE_CLASSES = ("08", "53", "57", "58")


def classify(exc: BaseException) -> type[WriteConflict] | type[DatabaseUnavailable] | None:
    """What a driver (or SQLAlchemy) error means for the caller: a conflict to retry, an outage,
    or None (anything else — a bug or a constraint — which must not be hidden)."""
    if isinstance(exc, WriteConflict | DatabaseUnavailable):
        return type(exc)
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return DatabaseUnavailable
    if isinstance(exc, sa.exc.DBAPIError):
        inner = classify(exc.orig) if exc.orig is not None else None
        if inner is None and exc.connection_invalidated:
            return DatabaseUnavailable
        return inner
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        message = str(exc).lower()
        return DatabaseUnavailable if any(text in message for text in _SQLITE_OUTAGES) else None
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("40"):  # transaction rollback: serialization failure, deadlock
            return WriteConflict
        if isinstance(exc, psycopg.InterfaceError) or state[:2] in _PG_OUTAGE_CLASSES:
            return DatabaseUnavailable
        if isinstance(exc, psycopg.OperationalError) and not state:  # no connection at all
            return DatabaseUnavailable
    return None


@contextmanager
def guard() -> Iterator[None]:
    """Re-raise driver errors that are conflicts or outages as WriteConflict / DatabaseUnavailable
    (with the driver's error as the cause); let everything else through unchanged."""
    try:
        yield
    except (WriteConflict, DatabaseUnavailable):
        raise
    except Exception as exc:
        kind = classify(exc)
        if kind is None:
            raise
        raise kind(describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """The driver's error in one line: its type and the first line of its message."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


T = TypeVar("T")


def retrying(action: Callable[[], T], *, attempts: int = CONFLICT_ATTEMPTS, what: str = "transaction",
             outage_seconds: float = 0.0) -> T:
    """Run `action` (one whole transaction) again after a WriteConflict, with a short randomised
    backoff, up to `attempts` times in all; the last conflict is raised. With `outage_seconds`,
    a DatabaseUnavailable is retried too, every second or so, for that long (for work that must
    not be lost when the database restarts: recording deliveries already made)."""
    deadline = time.monotonic() + outage_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except WriteConflict:
            if attempt >= attempts:
                raise
            log.info("%s retried after a write conflict (attempt %d)", what, attempt)
            backoff(attempt)
        except DatabaseUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s waits for the database: %s", what, exc)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def backoff(attempt: int) -> None:
    """Wait before retry number `attempt`: up to 5, 10, 20... ms, randomised so that the
    transactions that collided do not collide again in step."""
    time.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 6)))  # noqa: S311 - jitter, not security


def normalize_url(url: str) -> str:
    """Accept the usual spellings: postgres://, postgresql:// -> psycopg 3; a bare path -> SQLite."""
    if "://" not in url:
        return f"sqlite:///{url}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def create(url: str, **kwargs: Any) -> sa.Engine:
    url = normalize_url(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise DatabaseUnavailable(
                    f"cannot create the SQLite database {database}: folder {folder} does not exist"
                )
        if database and database != ":memory:":
            kwargs = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": POOL_TIMEOUT, **kwargs}
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _sqlite_events(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # connect_timeout: a server that does not answer is an outage after 10 s, not a hang
        kwargs = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": POOL_TIMEOUT,
                  "connect_args": {"connect_timeout": 10}, **kwargs}
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    raise sa.exc.ArgumentError(f"unsupported database URL scheme '{parsed.drivername}': use sqlite:/// or postgresql://")


def _sqlite_events(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # negative: KiB of page cache per connection
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("pathway_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def sqlite_file(url: str) -> str | None:
    """The file a sqlite:/// URL names (None for other databases and in-memory SQLite)."""
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def sqlite_path(engine: sa.Engine) -> str | None:
    """The file of a SQLite engine (None for other databases and in-memory SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class Checkpointer:
    """Checkpoints a SQLite WAL from a background thread (PASSIVE: it never blocks the writer)."""

    def __init__(self, path: str, interval: float = 0.25):
        self.path = path
        self.interval = interval
        #: Frames in the WAL at the last pass (its logical length; -1: the pass could not run).
        self.log_frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pathway-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            while not self._stop.wait(self.interval):
                ((busy, frames, _copied),) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.log_frames = -1 if busy else frames
        finally:
            conn.close()

    def after_commit(self, conn: Any) -> None:
        """Bound the WAL. Passive checkpoints copy the pages into the database beside the import,
        but the log itself only restarts from its beginning when a write transaction starts with
        every frame copied — which an import that commits back to back almost never gives them
        (measured: a 28 GB WAL after 10 minutes at 100,000 patients). So once the log grows past
        BULK_WAL_LIMIT the writer, between its transactions, waits for a RESTART checkpoint: the
        next transaction then writes from the start of the file again."""
        if self.log_frames * PAGE_SIZE > BULK_WAL_LIMIT:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            self.log_frames = 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def alembic_config(engine: sa.Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (`pathway db upgrade`)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_schema(engine: sa.Engine) -> None:
    """Migrate an empty database; refuse one at another revision with the command that fixes it."""
    try:
        current = current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot open the database {engine.url.render_as_string()}: {exc.orig}") from exc
    head = head_revision()
    if current == head:
        return
    if current is None:
        with engine.connect() as conn:
            existing = sa.inspect(conn).get_table_names()
        if existing:
            raise SchemaError(
                f"the database {engine.url.render_as_string()} has tables ({', '.join(sorted(existing)[:5])}) "
                "but no pathway schema version: use an empty database or a pathway database"
            )
        upgrade(engine)
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database is at schema revision {current}, which this version of pathway does not know "
            "(it was written by a newer version): upgrade pathway"
        )
    raise SchemaError(
        f"the database is at schema revision {current}, this version needs {head}: "
        "run `pathway db upgrade` (back the database up first)"
    )
