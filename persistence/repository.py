"""The repository: all SQL of the project.

`Repository.write()` opens one write transaction (BEGIN IMMEDIATE on SQLite). A bulk import puts
many events in one transaction; any failure aborts the whole transaction (and the engine retries
or reports it), so an event is never half stored. Reads use `Repository.read()`.

Hot paths use SQLAlchemy Core statements (an ORM flush costs ~8x more per row here).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from persistence import db
from persistence.tables import event_table, patient_table, reminder_table
from states.plan import Planned


def _json(value: Any, *, sort: bool = False) -> str:
    """Compact JSON text (orjson: ~15x faster than the json module on this hot path)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort else 0).decode()


class StaleVersion(RuntimeError):
    """Another writer changed the patient since it was read (optimistic version check)."""


@dataclass(frozen=True, slots=True)
class StoredPatient:
    id: str
    state: str
    version: int
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    patient: str | None
    type: str | None
    on: date | None
    status: str
    by: str | None
    key: str | None
    content_hash: str | None
    payload: dict[str, Any]
    reasons: list[dict[str, str]]
    error: str | None
    state_after: str | None
    version: int | None
    refers_to: int | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredReminder:
    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    detail: str
    state: str | None = None  # the patient's state, on worklist rows


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An audit-log row to append."""

    status: str
    payload: dict[str, Any]
    recorded_at: datetime
    patient: str | None = None
    type: str | None = None
    on: date | None = None
    by: str | None = None
    key: str | None = None
    content_hash: str | None = None
    reasons: Sequence[dict[str, str]] = ()
    error: str | None = None
    state_after: str | None = None
    version: int | None = None
    refers_to: int | None = None


_EVENT_COLUMNS = (
    event_table.c.id,
    event_table.c.patient,
    event_table.c.type,
    event_table.c.event_on,
    event_table.c.status,
    event_table.c.recorded_by,
    event_table.c.idem_key,
    event_table.c.content_hash,
    event_table.c.payload,
    event_table.c.reasons,
    event_table.c.error,
    event_table.c.state_after,
    event_table.c.version,
    event_table.c.refers_to,
    event_table.c.recorded_at,
)


def _stored_event(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        patient=row.patient,
        type=row.type,
        on=row.event_on,
        status=row.status,
        by=row.recorded_by,
        key=row.idem_key,
        content_hash=row.content_hash,
        payload=orjson.loads(row.payload),
        reasons=orjson.loads(row.reasons),
        error=row.error,
        state_after=row.state_after,
        version=row.version,
        refers_to=row.refers_to,
        recorded_at=row.recorded_at,
    )


_REMINDER_COLUMNS = (
    reminder_table.c.key,
    reminder_table.c.patient,
    reminder_table.c.kind,
    reminder_table.c.due_on,
    reminder_table.c.notify_at,
    reminder_table.c.status,
    reminder_table.c.detail,
)


def _stored_reminder(row: Any, state: str | None = None) -> StoredReminder:
    return StoredReminder(row.key, row.patient, row.kind, row.due_on, row.notify_at, row.status, row.detail, state)


class _Sql:
    """The hot-path statements as driver SQL (no per-call compilation: ~10x cheaper than Core
    here), in the driver's parameter style, with the values converted as SQLAlchemy would store them."""

    def __init__(self, dialect: str):
        self.sqlite = dialect == "sqlite"
        q = "?" if self.sqlite else "%s"

        def marks(n: int) -> str:
            return ", ".join([q] * n)

        self.select_patient = f"SELECT state, version, snapshot FROM patient WHERE id = {q}"
        self.select_version = f"SELECT version FROM patient WHERE id = {q}"
        self.insert_event = (
            "INSERT INTO event_log (patient, type, event_on, status, recorded_by, idem_key, content_hash, "
            f"payload, reasons, error, state_after, version, refers_to, recorded_at) VALUES ({marks(14)}) "
            "RETURNING id"
        )
        self.insert_patient = (
            "INSERT INTO patient (id, primary_tumour, state, version, snapshot, referred_on, latest_on, "
            f"created_at, updated_at) VALUES ({marks(9)})"
        )
        self.update_patient = (
            f"UPDATE patient SET state = {q}, version = {q}, snapshot = {q}, latest_on = {q}, updated_at = {q} "
            f"WHERE id = {q} AND version = {q}"
        )
        self.upsert_reminder = (
            "INSERT INTO reminder (key, patient, kind, due_on, notify_at, status, detail, created_at, updated_at) "
            f"VALUES ({marks(9)}) ON CONFLICT (key) DO UPDATE SET due_on = excluded.due_on, "
            "notify_at = excluded.notify_at, detail = excluded.detail, status = excluded.status, "
            "updated_at = excluded.updated_at, closed_by = NULL"
        )
        self.close_reminder = (
            f"UPDATE reminder SET status = {q}, closed_by = {q}, updated_at = {q} "
            f"WHERE key = {q} AND status = 'pending'"
        )

    def day(self, value: date | None) -> Any:
        if value is None or not self.sqlite:
            return value
        return value.isoformat()

    def instant(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"instants must be timezone-aware datetimes, got {value!r}")
        value = value.astimezone(UTC)
        if not self.sqlite:
            return value
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class Repository:
    """Storage of patients, their event log and their reminders, on SQLite or PostgreSQL."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sql = _Sql(self.dialect)
        #: The driver's integrity error (hot-path statements bypass SQLAlchemy's wrapping).
        self.integrity_errors: tuple[type[Exception], ...] = (
            sa.exc.IntegrityError,
            engine.dialect.loaded_dbapi.IntegrityError,
        )

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Repository:
        engine = db.create(url)
        if migrate:
            db.ensure_schema(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(pathway_write=True)
            with conn.begin():
                yield WriteTx(conn, self)

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        with self.engine.connect() as conn, conn.begin():
            yield ReadTx(conn, self)


class ReadTx:
    def __init__(self, conn: sa.Connection, repo: Repository):
        self.conn = conn
        self.repo = repo

    def patient(self, patient: str) -> StoredPatient | None:
        row = self.conn.exec_driver_sql(self.repo.sql.select_patient, (patient,)).first()
        if row is None:
            return None
        return StoredPatient(patient, row[0], row[1], orjson.loads(row[2]))

    def patients(self, state: str | None = None) -> list[tuple[str, str]]:
        query = sa.select(patient_table.c.id, patient_table.c.state).order_by(patient_table.c.id)
        if state is not None:
            query = query.where(patient_table.c.state == state)
        return [(row.id, row.state) for row in self.conn.execute(query)]

    def patient_ids(self) -> Iterator[str]:
        for row in self.conn.execute(sa.select(patient_table.c.id).order_by(patient_table.c.id)):
            yield row.id

    def counts_by_state(self) -> dict[str, int]:
        query = sa.select(patient_table.c.state, sa.func.count()).group_by(patient_table.c.state)
        return {state: n for state, n in self.conn.execute(query)}

    def accepted_with_key(self, patient: str, key: str) -> StoredEvent | None:
        row = self.conn.execute(
            sa.select(*_EVENT_COLUMNS).where(
                event_table.c.patient == patient,
                event_table.c.idem_key == key,
                event_table.c.status == "accepted",
            )
        ).first()
        return _stored_event(row) if row is not None else None

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        query = sa.select(*_EVENT_COLUMNS).where(event_table.c.patient == patient)
        if accepted_only:
            query = query.where(event_table.c.status == "accepted")
        return [_stored_event(row) for row in self.conn.execute(query.order_by(event_table.c.id))]

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[StoredReminder]:
        query = sa.select(*_REMINDER_COLUMNS).where(reminder_table.c.patient == patient)
        if statuses is not None:
            query = query.where(reminder_table.c.status.in_(list(statuses)))
        query = query.order_by(reminder_table.c.due_on, reminder_table.c.kind, reminder_table.c.key)
        return [_stored_reminder(row) for row in self.conn.execute(query)]

    def due_by(self, until: date, *, limit: int | None = None) -> list[StoredReminder]:
        """Pending reminders due on or before `until`, the oldest first (overdue first)."""
        query = (
            sa.select(*_REMINDER_COLUMNS, patient_table.c.state)
            .join(patient_table, patient_table.c.id == reminder_table.c.patient)
            .where(reminder_table.c.status == "pending", reminder_table.c.due_on <= until)
            .order_by(reminder_table.c.due_on, reminder_table.c.patient, reminder_table.c.kind)
        )
        if limit is not None:
            query = query.limit(limit)
        return [_stored_reminder(row, row.state) for row in self.conn.execute(query)]


class WriteTx(ReadTx):
    """A write transaction. Its hot-path statements go straight to the driver's cursor, inside the
    same connection and transaction as everything else."""

    def __init__(self, conn: sa.Connection, repo: Repository):
        super().__init__(conn, repo)
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def version(self, patient: str) -> int | None:
        self.cursor.execute(self.repo.sql.select_version, (patient,))
        row = self.cursor.fetchone()
        return None if row is None else int(row[0])

    def patient(self, patient: str) -> StoredPatient | None:
        self.cursor.execute(self.repo.sql.select_patient, (patient,))
        row = self.cursor.fetchone()
        if row is None:
            return None
        return StoredPatient(patient, row[0], row[1], orjson.loads(row[2]))

    def append(self, row: NewEvent) -> int:
        sql = self.repo.sql
        self.cursor.execute(
            sql.insert_event,
            (
                row.patient,
                row.type,
                sql.day(row.on),
                row.status,
                row.by,
                row.key,
                row.content_hash,
                _json(row.payload, sort=True),
                _json(list(row.reasons)),
                row.error,
                row.state_after,
                row.version,
                row.refers_to,
                sql.instant(row.recorded_at),
            ),
        )
        (event_id,) = self.cursor.fetchone()
        return int(event_id)

    def save_patient(
        self,
        *,
        patient: str,
        primary: str,
        state: str,
        snapshot: dict[str, Any],
        referred_on: date,
        latest_on: date,
        version: int,
        now: datetime,
    ) -> None:
        """Insert version 1, or update from `version - 1` only (else StaleVersion)."""
        text = _json(snapshot)
        sql = self.repo.sql
        if version == 1:
            try:
                self.cursor.execute(
                    sql.insert_patient,
                    (patient, primary, state, 1, text, sql.day(referred_on), sql.day(latest_on),
                     sql.instant(now), sql.instant(now)),
                )
            except self.repo.integrity_errors as exc:  # the transaction is now unusable: the caller retries it
                raise StaleVersion(f"patient {patient} was created by another writer") from exc
            return
        self.cursor.execute(
            sql.update_patient,
            (state, version, text, sql.day(latest_on), sql.instant(now), patient, version - 1),
        )
        if self.cursor.rowcount != 1:
            raise StaleVersion(f"patient {patient} changed since version {version - 1} was read")

    def reconcile(
        self,
        old: Sequence[Planned],
        new: Sequence[Planned],
        *,
        closed_status: dict[str, str],
        closed_by: int | None,
        now: datetime,
    ) -> None:
        """Make the stored reminders follow the projection: insert new keys (or reopen closed
        ones), close vanished keys with the status given per key, move changed ones."""
        sql = self.repo.sql
        stamp = sql.instant(now)
        before = {p.key: p for p in old}
        upserts = [
            (p.key, p.patient, str(p.kind), sql.day(p.due_on), sql.instant(p.notify_at), "pending", p.detail,
             stamp, stamp)
            for p in new
            if (q := before.get(p.key)) is None or (q.due_on, q.notify_at, q.detail) != (p.due_on, p.notify_at, p.detail)
        ]
        self._many(sql.upsert_reminder, upserts)
        after = {p.key for p in new}
        closing = [
            (closed_status.get(key, "cancelled"), closed_by, stamp, key) for key in before if key not in after
        ]
        self._many(sql.close_reminder, closing)

    def _many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) > 2:
            self.cursor.executemany(statement, rows)
        else:  # executemany costs more than two single executes
            for row in rows:
                self.cursor.execute(statement, row)

    def replace_reminders(self, patient: str, new: Sequence[Planned], *, now: datetime) -> int:
        """Make the stored pending reminders of `patient` exactly `new` (used by rebuild): returns
        how many rows changed."""
        stored = {r.key: r for r in self.reminders(patient)}
        wanted = {p.key: p for p in new}
        old = [
            Planned(r.key, r.patient, r.kind, r.due_on, r.notify_at, r.detail)  # type: ignore[arg-type]
            for r in stored.values()
        ]
        changed = sum(1 for k in wanted if k not in stored or _differs(stored[k], wanted[k]))
        changed += sum(1 for k in stored if k not in wanted)
        if changed:
            self.reconcile(old, new, closed_status={}, closed_by=None, now=now)
        return changed


def _differs(r: StoredReminder, p: Planned) -> bool:
    return (r.due_on, r.notify_at, r.detail) != (p.due_on, p.notify_at, p.detail)
