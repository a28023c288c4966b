"""The repository: all SQL of the project.

`Repository.write()` opens one write transaction (BEGIN IMMEDIATE on SQLite); inside it,
`WriteTx.event()` is a SAVEPOINT making one event all-or-nothing, so a bulk import can put many
events in one transaction and still never store half an event. Reads use `Repository.read()`.

Hot paths use SQLAlchemy Core statements (an ORM flush costs ~8x more per row here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from persistence import db
from persistence.tables import event_table, patient_table, reminder_table
from states.plan import Planned


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
        payload=json.loads(row.payload),
        reasons=json.loads(row.reasons),
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


class Repository:
    """Storage of patients, their event log and their reminders, on SQLite or PostgreSQL."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        stmt = insert(reminder_table)
        self._upsert_reminder = stmt.on_conflict_do_update(
            index_elements=[reminder_table.c.key],
            set_={
                "due_on": stmt.excluded.due_on,
                "notify_at": stmt.excluded.notify_at,
                "detail": stmt.excluded.detail,
                "status": stmt.excluded.status,
                "updated_at": stmt.excluded.updated_at,
                "closed_by": None,
            },
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
        row = self.conn.execute(
            sa.select(patient_table.c.state, patient_table.c.version, patient_table.c.snapshot).where(
                patient_table.c.id == patient
            )
        ).first()
        if row is None:
            return None
        return StoredPatient(patient, row.state, row.version, json.loads(row.snapshot))

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
    @contextmanager
    def event(self) -> Iterator[None]:
        """One event, all or nothing (a SAVEPOINT inside the batch's transaction)."""
        with self.conn.begin_nested():
            yield

    def append(self, row: NewEvent) -> int:
        result = self.conn.execute(
            event_table.insert().values(
                patient=row.patient,
                type=row.type,
                event_on=row.on,
                status=row.status,
                recorded_by=row.by,
                idem_key=row.key,
                content_hash=row.content_hash,
                payload=json.dumps(row.payload, separators=(",", ":"), sort_keys=True, default=str),
                reasons=json.dumps(list(row.reasons), separators=(",", ":")),
                error=row.error,
                state_after=row.state_after,
                version=row.version,
                refers_to=row.refers_to,
                recorded_at=row.recorded_at,
            )
        )
        (event_id,) = result.inserted_primary_key  # type: ignore[misc]
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
        text = json.dumps(snapshot, separators=(",", ":"))
        if version == 1:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(
                        patient_table.insert().values(
                            id=patient,
                            primary_tumour=primary,
                            state=state,
                            version=1,
                            snapshot=text,
                            referred_on=referred_on,
                            latest_on=latest_on,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            except sa.exc.IntegrityError as exc:
                raise StaleVersion(f"patient {patient} was created by another writer") from exc
            return
        result = self.conn.execute(
            patient_table.update()
            .where(patient_table.c.id == patient, patient_table.c.version == version - 1)
            .values(state=state, version=version, snapshot=text, latest_on=latest_on, updated_at=now)
        )
        if result.rowcount != 1:
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
        before = {p.key: p for p in old}
        upserts = [
            {
                "key": p.key,
                "patient": p.patient,
                "kind": str(p.kind),
                "due_on": p.due_on,
                "notify_at": p.notify_at,
                "status": "pending",
                "detail": p.detail,
                "created_at": now,
                "updated_at": now,
            }
            for p in new
            if (q := before.get(p.key)) is None or (q.due_on, q.notify_at, q.detail) != (p.due_on, p.notify_at, p.detail)
        ]
        if upserts:
            self.conn.execute(self._upsert(), upserts)
        after = {p.key for p in new}
        closing = [
            {"k": key, "s": closed_status.get(key, "cancelled"), "by": closed_by, "now": now}
            for key in before
            if key not in after
        ]
        if closing:
            self.conn.execute(
                reminder_table.update()
                .where(reminder_table.c.key == sa.bindparam("k"), reminder_table.c.status == "pending")
                .values(status=sa.bindparam("s"), closed_by=sa.bindparam("by"), updated_at=sa.bindparam("now")),
                closing,
            )

    def _upsert(self) -> Any:
        return self.repo._upsert_reminder

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
