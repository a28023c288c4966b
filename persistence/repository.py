"""The repository: all SQL of the project.

`Repository.write()` opens one write transaction (BEGIN IMMEDIATE on SQLite). A bulk import puts
many events in one transaction; any failure aborts the whole transaction (and the engine retries
or reports it), so an event is never half stored. Reads use `Repository.read()`.

Both translate driver errors (persistence.db.guard): a deadlock, a serialization failure or a row
changed meanwhile is a `WriteConflict` (retry the transaction), an unreachable server, a lost
connection or a full disk is `DatabaseUnavailable` (try again later).

Concurrency. On SQLite the threads of one process take their write transactions in turn (a
lock before BEGIN IMMEDIATE: waiting there costs nothing, while SQLite's own busy handler polls
with sleeps of up to 100 ms); other processes queue on the database's lock. On PostgreSQL a
write transaction locks the rows of the patients it writes (`SELECT ... FOR UPDATE`, a batch's
patients all at once in id order) before reading them, and writes its reminder rows in key order
at its end, the order in which the dispatcher records deliveries: two transactions never wait
for each other in a cycle, so list posts cannot deadlock.

Hot paths use SQLAlchemy Core statements (an ORM flush costs ~8x more per row here).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa

from persistence import db, ports
from persistence.ports import NewEvent as NewEvent
from persistence.ports import Outbox
from persistence.ports import StaleVersion as StaleVersion
from persistence.ports import StoredEvent as StoredEvent
from persistence.ports import StoredPatient as StoredPatient
from persistence.tables import patient_table
from states.plan import Planned, Reminder


def _json(value: Any, *, sort: bool = False) -> str:
    """Compact JSON text (orjson: ~15x faster than the json module on this hot path)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort else 0).decode()


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: PostgreSQL channel notified (at commit) by a transaction that added or moved reminders.
REMINDER_CHANNEL = "pathway_reminders"


class _Sql:
    """The hot-path statements as driver SQL (no per-call compilation: ~10x cheaper than Core
    here), in the driver's parameter style, with the values converted as SQLAlchemy would store them."""

    def __init__(self, dialect: str):
        self.sqlite = dialect == "sqlite"
        self._instants: dict[datetime, str] = {}  # notify_at values repeat: convert each once
        self._parsed: dict[str, datetime] = {}
        q = "?" if self.sqlite else "%s"

        def marks(n: int) -> str:
            return ", ".join([q] * n)

        self.q = q
        self.select_events = (
            "SELECT id, patient, type, event_on, status, recorded_by, idem_key, content_hash, payload, reasons, "
            "error, state_after, version, refers_to, recorded_at FROM event_log"
        )
        self.select_reminders = "SELECT key, patient, kind, due_on, notify_at, status, detail, state FROM reminder"
        self.select_patient = f"SELECT state, version, snapshot FROM patient WHERE id = {q}"
        self.select_version = f"SELECT version FROM patient WHERE id = {q}"
        self.rewrite_snapshot = f"UPDATE patient SET snapshot = {q}, clock_target = {q} WHERE id = {q} AND version = {q}"
        self.select_clock_patients = (
            "SELECT id, state, version, snapshot FROM patient WHERE clock_target IS NOT NULL ORDER BY clock_target, id")
        # a writer locks the patient's row as it reads it (PostgreSQL; SQLite's writer holds the database)
        lock = "" if self.sqlite else " FOR UPDATE"
        self.select_patient_for_write = self.select_patient + lock
        self.select_version_for_write = self.select_version + lock
        self.lock_patients = "SELECT id FROM patient WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
        self.insert_event = (
            "INSERT INTO event_log (patient, type, event_on, status, recorded_by, idem_key, content_hash, "
            f"payload, reasons, error, state_after, version, refers_to, recorded_at) VALUES ({marks(14)}) "
            "RETURNING id"
        )
        self.insert_patient = (
            "INSERT INTO patient (id, primary_tumour, state, version, snapshot, referred_on, latest_on, "
            f"created_at, updated_at, clock_target) VALUES ({marks(10)})"
        )
        self.update_patient = (
            f"UPDATE patient SET state = {q}, version = {q}, snapshot = {q}, latest_on = {q}, updated_at = {q}, "
            f"clock_target = {q} WHERE id = {q} AND version = {q}"
        )
        self.insert_event_with_id = (
            "INSERT INTO event_log (id, patient, type, event_on, status, recorded_by, idem_key, content_hash, "
            f"payload, reasons, error, state_after, version, refers_to, recorded_at) VALUES ({marks(15)})"
        )
        self.max_event_id = "SELECT COALESCE(MAX(id), 0) FROM event_log"
        # A moved reminder (new notify_at) is queued again; otherwise its delivery is kept (SET
        # expressions read the row as it was before the update, on SQLite and PostgreSQL alike).
        same = "reminder.notify_at = excluded.notify_at"
        self.upsert_reminder = (
            "INSERT INTO reminder (key, patient, kind, due_on, notify_at, status, detail, created_at, updated_at, "
            f"closed_by, state, send_after, delivery, attempts) VALUES ({marks(12)}, 'queued', 0) "
            "ON CONFLICT (key) DO UPDATE SET due_on = excluded.due_on, "
            "notify_at = excluded.notify_at, detail = excluded.detail, status = excluded.status, "
            "updated_at = excluded.updated_at, closed_by = excluded.closed_by, state = excluded.state, "
            f"delivery = CASE WHEN {same} THEN reminder.delivery ELSE 'queued' END, "
            f"send_after = CASE WHEN {same} THEN reminder.send_after ELSE excluded.send_after END, "
            f"attempts = CASE WHEN {same} THEN reminder.attempts ELSE 0 END, "
            f"claim = CASE WHEN {same} THEN reminder.claim ELSE NULL END, "
            f"sent_at = CASE WHEN {same} THEN reminder.sent_at ELSE NULL END, "
            f"late_by_s = CASE WHEN {same} THEN reminder.late_by_s ELSE NULL END, "
            f"last_error = CASE WHEN {same} THEN reminder.last_error ELSE NULL END"
        )
        self.close_reminder = (
            f"UPDATE reminder SET status = {q}, closed_by = {q}, updated_at = {q} "
            f"WHERE key = {q} AND status = 'pending'"
        )

    def day(self, value: date | None) -> Any:
        if value is None or not self.sqlite:
            return value
        return value.isoformat()

    def read_day(self, value: Any) -> date | None:
        if value is None or isinstance(value, date):
            return value
        return date.fromisoformat(value)

    def read_instant(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            parsed = self._parsed.get(value)
            if parsed is None:
                if len(self._parsed) > 100_000:
                    self._parsed.clear()
                parsed = self._parsed[value] = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return parsed
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)  # type: ignore[no-any-return]

    def instant(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if self.sqlite:
            text = self._instants.get(value)
            if text is None:
                if len(self._instants) > 100_000:
                    self._instants.clear()
                text = self._instants[value] = self._instant(value)
            return text
        return self._instant(value)

    def _instant(self, value: datetime) -> Any:
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
        # SQLite: one writer at a time in this process (see the module's docstring); the bulk
        # imports under way share one background checkpointer, started by the first, stopped by the last
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._bulk_lock = threading.Lock()
        self._bulk_users = 0
        self._checkpointer: db.Checkpointer | None = None
        self._outbox: Outbox | None = None
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

    def outbox(self) -> Outbox:
        """The reminder table as an outbox (persistence.outbox.SqlOutbox)."""
        if self._outbox is None:
            from persistence.outbox import SqlOutbox  # it builds on this module

            self._outbox = SqlOutbox(self)
        return self._outbox

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """One write transaction, committed when the block ends (rolled back if it raises)."""
        with db.guard(), self._writer_turn(), self.engine.connect() as conn:
            conn = conn.execution_options(pathway_write=True)
            checkpointer = self._checkpointer
            raw = conn.connection.driver_connection  # pragmas outside any transaction
            if checkpointer is not None:  # a bulk import: checkpoints run beside it, not in its commits
                raw.execute("PRAGMA wal_autocheckpoint = 0")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    tx = WriteTx(conn, self)
                    yield tx
                    tx.flush()
            finally:
                if checkpointer is not None:
                    raw.execute(f"PRAGMA wal_autocheckpoint = {db.WAL_AUTOCHECKPOINT}")  # type: ignore[union-attr]
                    checkpointer.after_commit(raw)

    def _writer_turn(self) -> Any:
        """SQLite: wait for this process's other writers (as long as SQLite's busy timeout)."""
        lock = self._write_lock
        if lock is None:
            return nullcontext()
        if not lock.acquire(timeout=db.BUSY_TIMEOUT_MS / 1000):
            raise db.DatabaseUnavailable("the database stayed busy with other writers beyond the busy timeout")
        return _Held(lock)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """A bulk import. On SQLite, WAL checkpoints (copying committed pages into the database
        file, which dominated commits at 100,000 patients) run in a background thread with a
        connection of its own, overlapping the import's own work instead of stalling its commits.
        Imports may overlap (threads of an embedding host): they share the one checkpointer."""
        path = db.sqlite_path(self.engine) if self.dialect == "sqlite" else None
        if path is None:
            yield
            return
        with self._bulk_lock:
            if self._bulk_users == 0:
                self._checkpointer = db.Checkpointer(path)
            self._bulk_users += 1
        try:
            yield
        finally:
            with self._bulk_lock:
                self._bulk_users -= 1
                if self._bulk_users == 0:
                    checkpointer, self._checkpointer = self._checkpointer, None
                    if checkpointer is not None:
                        checkpointer.stop()

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        with db.guard(), self.engine.connect() as conn, conn.begin():
            yield ReadTx(conn, self)


class _Held:
    """Releases a lock acquired before (a context manager for `Repository._writer_turn`)."""

    def __init__(self, lock: threading.Lock):
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class ReadTx:
    def __init__(self, conn: sa.Connection, repo: Repository):
        self.conn = conn
        self.repo = repo

    def patient(self, patient: str) -> StoredPatient | None:
        row = self.conn.exec_driver_sql(self.repo.sql.select_patient, (patient,)).first()
        if row is None:
            return None
        return StoredPatient(patient, row[0], row[1], orjson.loads(row[2]))

    def clock_patients(self) -> list[StoredPatient]:
        rows = self.conn.exec_driver_sql(self.repo.sql.select_clock_patients).all()
        return [StoredPatient(row[0], row[1], row[2], orjson.loads(row[3])) for row in rows]

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

    def _rows(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """Rows straight from the driver's cursor (no per-row SQLAlchemy proxies: worklists are long)."""
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement, tuple(params))
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    def _event(self, row: Any) -> StoredEvent:
        sql = self.repo.sql
        return StoredEvent(row[0], row[1], row[2], sql.read_day(row[3]), row[4], row[5], row[6], row[7],
                           orjson.loads(row[8]), orjson.loads(row[9]), row[10], row[11], row[12], row[13],
                           cast(datetime, sql.read_instant(row[14])))

    def _reminder(self, row: Any) -> Reminder:
        due, notify = row[3], row[4]
        if type(due) is str:  # SQLite: text, as SQLAlchemy stores dates and instants there
            due = date.fromisoformat(due)
            notify = self.repo.sql.read_instant(notify)
        elif notify.tzinfo is not UTC:
            notify = notify.astimezone(UTC)
        return Reminder(row[0], row[1], row[2], due, notify, *row[5:])

    def accepted_with_key(self, patient: str, key: str) -> StoredEvent | None:
        sql = self.repo.sql
        rows = self._rows(f"{sql.select_events} WHERE patient = {sql.q} AND idem_key = {sql.q} "
                          "AND status = 'accepted'", (patient, key))
        return self._event(rows[0]) if rows else None

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        sql = self.repo.sql
        where = f" WHERE patient = {sql.q}" + (" AND status = 'accepted'" if accepted_only else "")
        return [self._event(row) for row in self._rows(f"{sql.select_events}{where} ORDER BY id", (patient,))]

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[Reminder]:
        """A patient's reminders: the key range "<patient>:" (its rows are clustered together)."""
        sql = self.repo.sql
        where, params = f" WHERE key >= {sql.q} AND key < {sql.q}", [f"{patient}:", f"{patient};"]
        if statuses is not None:
            wanted = list(statuses)
            where += f" AND status IN ({', '.join([sql.q] * len(wanted))})"
            params += wanted
        rows = self._rows(f"{sql.select_reminders}{where} ORDER BY due_on, kind, key", params)
        return [self._reminder(row) for row in rows]

    def due_by(self, until: date, *, limit: int | None = None) -> list[Reminder]:
        """Pending reminders due on or before `until`, the oldest first (overdue first)."""
        sql = self.repo.sql
        statement = (  # read from the partial index ix_reminder_pending_due alone
            "SELECT key, patient, kind, due_on, notify_at, 'pending', detail, state, delivery FROM reminder "
            f"WHERE status = 'pending' AND due_on <= {sql.q} ORDER BY due_on, patient, kind"
        )
        params: list[Any] = [sql.day(until)]
        if limit is not None:
            statement += f" LIMIT {sql.q}"
            params.append(limit)
        with _no_gc():  # tens of thousands of tuples, no cycles: skip the collector's passes
            rows = self._rows(statement, params)
            if not sql.sqlite:
                return [self._reminder(row) for row in rows]
            make, day, instant = Reminder._make, date.fromisoformat, sql.read_instant
            return [make((r[0], r[1], r[2], day(r[3]), instant(r[4]), r[5], r[6], r[7], r[8])) for r in rows]


class WriteTx(ReadTx):
    """A write transaction.

    Its hot-path statements go straight to the driver's cursor, inside the same connection and
    transaction as everything else. On SQLite, where the transaction holds the database's write
    lock from its BEGIN IMMEDIATE, the writes of a whole batch are buffered and flushed together
    (executemany, one UPDATE per patient however many of its events the batch holds) before the
    commit; event ids are handed out from MAX(id) + 1, which no one else can take meanwhile. On
    PostgreSQL each write goes out at once: the patient row's lock and version order concurrent
    writers, and ids come from the sequence in that order.
    """

    def __init__(self, conn: sa.Connection, repo: Repository):
        super().__init__(conn, repo)
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self.buffered = repo.dialect == "sqlite"
        #: Loaded patients of this transaction, for the engine (valid until the transaction ends).
        self.memo: dict[str, Any] = {}
        self._next_id: int | None = None
        self._events: list[tuple[Any, ...]] = []
        self._keys: dict[tuple[str, str], StoredEvent] = {}
        self._new_patients: dict[str, list[Any]] = {}
        self._updated_patients: dict[str, list[Any]] = {}
        self._reminders: dict[str, tuple[Any, ...]] = {}  # key -> the row's final values (upsert)
        self._closes: dict[str, tuple[Any, ...]] = {}  # key -> (status, closed_by, stamp, key)
        self._notified = False

    def lock_patients(self, patients: Sequence[str]) -> None:
        """PostgreSQL: lock the rows of these patients (those that exist) in id order, before
        any of them is read: transactions over overlapping patients then queue instead of
        deadlocking. A no-op on SQLite, where the write transaction holds the whole database."""
        if not self.repo.sql.sqlite and patients:
            self.cursor.execute(self.repo.sql.lock_patients, (sorted(patients),))

    def version(self, patient: str) -> int | None:
        """The stored version (the row locked for this transaction on PostgreSQL)."""
        self.cursor.execute(self.repo.sql.select_version_for_write, (patient,))
        row = self.cursor.fetchone()
        return None if row is None else int(row[0])

    def patient(self, patient: str) -> StoredPatient | None:
        """The stored row (locked for this transaction on PostgreSQL). Patients this transaction
        wrote are in `memo`: ask it first."""
        self.cursor.execute(self.repo.sql.select_patient_for_write, (patient,))
        row = self.cursor.fetchone()
        if row is None:
            return None
        return StoredPatient(patient, row[0], row[1], orjson.loads(row[2]))

    def accepted_with_key(self, patient: str, key: str) -> StoredEvent | None:
        buffered = self._keys.get((patient, key))
        return buffered if buffered is not None else super().accepted_with_key(patient, key)

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        self.flush()
        return super().events(patient, accepted_only=accepted_only)

    def append(self, row: NewEvent) -> int:
        sql = self.repo.sql
        payload = _json(row.payload, sort=True)
        reasons = _json(list(row.reasons))
        values = (row.patient, row.type, sql.day(row.on), row.status, row.by, row.key, row.content_hash, payload,
                  reasons, row.error, row.state_after, row.version, row.refers_to, sql.instant(row.recorded_at))
        if not self.buffered:
            self.cursor.execute(sql.insert_event, values)
            (event_id,) = self.cursor.fetchone()
            return int(event_id)
        if self._next_id is None:
            self.cursor.execute(sql.max_event_id)
            self._next_id = int(self.cursor.fetchone()[0]) + 1
        event_id = self._next_id
        self._next_id += 1
        self._events.append((event_id, *values))
        if row.status == "accepted" and row.key is not None and row.patient is not None:
            if (row.patient, row.key) in self._keys:
                raise StaleVersion(f"patient {row.patient}: key {row.key!r} bound twice")
            self._keys[(row.patient, row.key)] = StoredEvent(
                event_id, row.patient, row.type, row.on, row.status, row.by, row.key, row.content_hash,
                dict(row.payload), list(row.reasons), row.error, row.state_after, row.version, row.refers_to,
                row.recorded_at,
            )
        return event_id

    def save_patient(
        self,
        *,
        patient: str,
        primary: str,
        state: str,
        snapshot: Any,
        referred_on: date,
        latest_on: date,
        version: int,
        now: datetime,
        clock_target: date | None = None,
    ) -> None:
        """Insert version 1, or update from `version - 1` only (else StaleVersion). The snapshot is
        a value orjson serialises (a dict, or the frozen dataclass itself: ~10x faster)."""
        text = _json(snapshot)
        sql = self.repo.sql
        target = None if clock_target is None else sql.day(clock_target)
        if self.buffered:
            if patient in self._new_patients:
                row = self._new_patients[patient]
                row[2:5] = [state, version, text]
                row[6], row[8], row[9] = sql.day(latest_on), sql.instant(now), target
            elif patient in self._updated_patients:
                row = self._updated_patients[patient]  # its version check stays the first one read
                row[0:6] = [state, version, text, sql.day(latest_on), sql.instant(now), target]
            elif version == 1:
                self._new_patients[patient] = [patient, primary, state, 1, text, sql.day(referred_on),
                                               sql.day(latest_on), sql.instant(now), sql.instant(now), target]
            else:
                self._updated_patients[patient] = [state, version, text, sql.day(latest_on), sql.instant(now),
                                                   target, patient, version - 1]
            return
        if version == 1:
            try:
                self.cursor.execute(
                    sql.insert_patient,
                    (patient, primary, state, 1, text, sql.day(referred_on), sql.day(latest_on),
                     sql.instant(now), sql.instant(now), target),
                )
            except self.repo.integrity_errors as exc:  # the transaction is now unusable: the caller retries it
                raise StaleVersion(f"patient {patient} was created by another writer") from exc
            return
        self.cursor.execute(
            sql.update_patient,
            (state, version, text, sql.day(latest_on), sql.instant(now), target, patient, version - 1)
        )
        if self.cursor.rowcount != 1:
            raise StaleVersion(f"patient {patient} changed since version {version - 1} was read")

    def reconcile(
        self,
        old: Sequence[Planned],
        new: Sequence[Planned],
        *,
        state: str,
        state_changed: bool,
        closed_status: dict[str, str],
        closed_by: int | None,
        now: datetime,
    ) -> None:
        """Make the stored reminders follow the projection: insert new keys (or reopen closed
        ones), close vanished keys with the status given per key, move changed ones. Pending
        reminders carry the patient's `state`: when it changed, every kept one is rewritten too."""
        sql = self.repo.sql
        stamp = sql.instant(now)
        before = {p.key: p for p in old}
        upserts = [
            (p.key, p.patient, str(p.kind), sql.day(p.due_on), (at := sql.instant(p.notify_at)), "pending", p.detail,
             stamp, stamp, None, state, at)
            for p in new
            if state_changed
            or (q := before.get(p.key)) is None
            or (q.due_on, q.notify_at, q.detail) != (p.due_on, p.notify_at, p.detail)
        ]
        after = {p.key for p in new}
        closing = [
            (closed_status.get(key, "cancelled"), closed_by, stamp, key) for key in before if key not in after
        ]
        # buffered until the transaction's end (both databases): see `_flush_reminders`
        for row in upserts:
            self._closes.pop(row[0], None)
            self._reminders[row[0]] = row
        for status, by, when, key in closing:
            written = self._reminders.get(key)
            if written is not None:  # planned earlier in this batch: write it closed
                self._reminders[key] = (*written[:5], status, written[6], written[7], when, by, *written[10:])
            else:
                self._closes[key] = (status, by, when, key)

    def flush(self) -> None:
        """Write what the transaction buffered — on SQLite the whole batch, in an order the foreign
        keys accept; on PostgreSQL the reminders."""
        if self.buffered:
            self._flush_rows()
        self._flush_reminders()
        self._keys.clear()

    def rewrite_snapshot(self, patient: str, snapshot: Any, *, version: int, clock_target: date | None) -> None:
        sql = self.repo.sql
        if self.buffered:
            self._flush_rows()
        self.cursor.execute(sql.rewrite_snapshot, (_json(snapshot), sql.day(clock_target), patient, version))
        if self.cursor.rowcount != 1:
            raise StaleVersion(f"patient {patient} changed since version {version} was read")

    def _flush_rows(self) -> None:
        sql = self.repo.sql
        if self._new_patients:
            try:
                self._many(sql.insert_patient, [tuple(row) for row in self._new_patients.values()])
            except self.repo.integrity_errors as exc:
                raise StaleVersion("a patient was created by another writer") from exc
            self._new_patients.clear()
        if self._updated_patients:
            rows = [tuple(row) for row in self._updated_patients.values()]
            changed = 0
            for row in rows:
                self.cursor.execute(sql.update_patient, row)
                changed += self.cursor.rowcount
            if changed != len(rows):
                raise StaleVersion("a patient changed since it was read")
            self._updated_patients.clear()
        if self._events:
            self._many(sql.insert_event_with_id, self._events)
            self._events.clear()

    def _flush_reminders(self) -> None:
        """Write the reminders planned and closed. On PostgreSQL one statement per row in key
        order — the order the dispatcher's `Outbox.finish` locks rows in, so the two never
        deadlock — and NOTIFY the dispatchers at commit when reminders were added or moved."""
        sql = self.repo.sql
        if not self._reminders and not self._closes:
            return
        if self.buffered:
            if self._reminders:
                self._many(sql.upsert_reminder, list(self._reminders.values()))
            if self._closes:
                self._many(sql.close_reminder, list(self._closes.values()))
        else:
            rows = [(key, sql.upsert_reminder, row) for key, row in self._reminders.items()]
            rows += [(key, sql.close_reminder, row) for key, row in self._closes.items()]
            rows.sort(key=lambda item: item[0])
            for _key, statement, row in rows:
                self.cursor.execute(statement, row)
            if self._reminders and not self._notified:
                self.cursor.execute(f"NOTIFY {REMINDER_CHANNEL}")
                self._notified = True
        self._reminders.clear()
        self._closes.clear()

    def _many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) > 2:
            self.cursor.executemany(statement, rows)
        else:  # executemany costs more than two single executes
            for row in rows:
                self.cursor.execute(statement, row)


if TYPE_CHECKING:  # mypy checks that the SQL classes satisfy the ports

    def _conforms(repo: Repository) -> ports.Repository:
        return repo
