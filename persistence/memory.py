"""The in-memory twin of the SQL repository and outbox (persistence.ports): plain dicts and two locks.

For the tests of the domain, and for embedders that want an engine without a database
(`Engine.open("memory://")`). Nothing is written to disk: the data lives as long as the object.

Transactions. One write transaction at a time, as on SQLite: `write()` takes the writer lock
(waiting up to the SQL busy timeout, then `DatabaseUnavailable`). The transaction writes into an
overlay of its own (the patients, events and reminder rows it changed), which its own reads look
through to the committed rows. When the `with` block ends, the overlay is merged into the committed
dicts in one step, under the state lock that every read takes; an exception discards the overlay,
so nothing of the transaction is ever seen. A read sees committed rows only, each call consistent
in itself (as PostgreSQL's read committed). Rows are frozen: a commit replaces them, never changes one.

The semantics are the SQL ones, and the contract suite (tests/test_repository_contract.py) holds
all three implementations to them: the optimistic version check, accepted keys unique per patient
(`DuplicateKey`, this twin's integrity error), reminders buffered by `reconcile` and upserted at
`flush` (a moved reminder is queued for delivery again), the outbox's claim, lease and finish.
JSON values (snapshots, payloads, reasons) are stored as orjson text, as the SQL columns hold
them, and come back as new objects from every read; instants come back in UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import orjson

from persistence import db, ports
from persistence.ports import (
    MAX_ERROR,
    Delivery,
    Failed,
    NewEvent,
    Retry,
    Sent,
    StaleVersion,
    StoredEvent,
    StoredPatient,
    StoredReminder,
)
from states.errors import PathwayError
from states.plan import Planned, Reminder

#: The URL that opens an engine on the twin (`Engine.open(MEMORY_URL)`).
MEMORY_URL = "memory://"


def is_memory_url(url: str) -> bool:
    return url == MEMORY_URL or url == "memory:"


class DuplicateKey(PathwayError):
    """An accepted event's idempotency key already bound for its patient (the twin's integrity
    error: SQL raises the driver's, from the unique index ux_event_log_accepted_key)."""


def _dumps(value: Any, *, sort: bool = False) -> bytes:
    """JSON as the SQL repository stores it (persistence.repository._json)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort else 0)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"instants must be timezone-aware datetimes, got {value!r}")
    return value.astimezone(UTC)


def _limited(rows: list[Any], limit: int | None) -> list[Any]:
    """SQL's LIMIT (SQLite's: a negative limit is none)."""
    return rows if limit is None or limit < 0 else rows[:limit]


@dataclass(frozen=True, slots=True)
class _Patient:
    id: str
    primary: str
    state: str
    version: int
    snapshot: bytes
    referred_on: date
    latest_on: date
    created_at: datetime
    updated_at: datetime
    clock_target: date | None = None


@dataclass(frozen=True, slots=True)
class _Event:
    id: int
    patient: str | None
    type: str | None
    on: date | None
    status: str
    by: str | None
    key: str | None
    content_hash: str | None
    payload: bytes
    reasons: bytes
    error: str | None
    state_after: str | None
    version: int | None
    refers_to: int | None
    recorded_at: datetime

    def stored(self) -> StoredEvent:
        return StoredEvent(self.id, self.patient, self.type, self.on, self.status, self.by, self.key,
                           self.content_hash, orjson.loads(self.payload), orjson.loads(self.reasons), self.error,
                           self.state_after, self.version, self.refers_to, self.recorded_at)


@dataclass(frozen=True, slots=True)
class _Reminder:
    """A row of the reminder table (see persistence.tables.ReminderRow)."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    detail: str
    state: str
    created_at: datetime
    updated_at: datetime
    closed_by: int | None = None
    delivery: str = "queued"
    send_after: datetime | None = None
    attempts: int = 0
    claim: str | None = None
    sent_at: datetime | None = None
    late_by_s: int | None = None
    last_error: str | None = None

    @property
    def in_outbox(self) -> bool:
        """persistence.tables.OUTBOX: pending, its notification still to go out."""
        return self.status == "pending" and self.delivery in ("queued", "claimed")

    def reminder(self) -> Reminder:
        return Reminder(self.key, self.patient, self.kind, self.due_on, self.notify_at, self.status, self.detail,
                        self.state)


@dataclass(frozen=True, slots=True)
class _Planned:
    """A reminder row as `reconcile` plans it, upserted at `flush` (the SQL upsert's values)."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    detail: str
    stamp: datetime
    closed_by: int | None
    state: str


class MemoryRepository:
    """Patients, their event log and their reminders in dicts (ports.Repository)."""

    dialect = "memory"
    integrity_errors: tuple[type[Exception], ...] = (DuplicateKey,)

    def __init__(self) -> None:
        #: One write transaction at a time; the state lock guards the committed dicts.
        self._writer = threading.Lock()
        self._state = threading.Lock()
        self._patients: dict[str, _Patient] = {}
        self._events: list[_Event] = []  # event id n is _events[n - 1]
        self._events_of: dict[str, list[_Event]] = {}
        self._keys: dict[tuple[str, str], _Event] = {}
        self._reminders: dict[str, _Reminder] = {}
        self._reminder_keys: dict[str, set[str]] = {}  # patient -> its reminders' keys
        self._outbox = MemoryOutbox(self)

    def close(self) -> None:
        """Nothing to release (the data stays with the object)."""

    @contextmanager
    def write(self) -> Iterator[MemoryWriteTx]:
        """One write transaction, committed when the block ends (discarded if it raises)."""
        if not self._writer.acquire(timeout=db.BUSY_TIMEOUT_MS / 1000):
            raise db.DatabaseUnavailable("the in-memory store stayed busy with another writer beyond the busy timeout")
        try:
            tx = MemoryWriteTx(self)
            yield tx
            tx.flush()
            self._commit(tx)
        finally:
            self._writer.release()

    @contextmanager
    def read(self) -> Iterator[MemoryReadTx]:
        yield MemoryReadTx(self)

    def bulk(self) -> AbstractContextManager[None]:
        return nullcontext()

    def outbox(self) -> MemoryOutbox:
        return self._outbox

    def _commit(self, tx: MemoryWriteTx) -> None:
        with self._state:
            self._patients.update(tx._patients)
            self._events.extend(tx._events)
            for event in tx._events:
                if event.patient is not None:
                    self._events_of.setdefault(event.patient, []).append(event)
            self._keys.update(tx._keys)
            for key, row in tx._rows.items():
                self._reminders[key] = row
                self._reminder_keys.setdefault(row.patient, set()).add(key)


class _Reader:
    """The read methods, over the rows a transaction sees (subclasses say which)."""

    def __init__(self, repo: MemoryRepository):
        self.repo = repo

    # -- the rows seen --------------------------------------------------------------------------

    def _seeing(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _patient_row(self, patient: str) -> _Patient | None:
        raise NotImplementedError

    def _patient_rows(self) -> Iterable[_Patient]:
        raise NotImplementedError

    def _event_rows(self, patient: str) -> list[_Event]:
        raise NotImplementedError

    def _key_row(self, patient: str, key: str) -> _Event | None:
        raise NotImplementedError

    def _reminder_row(self, key: str) -> _Reminder | None:
        raise NotImplementedError

    def _reminder_rows(self) -> Iterable[_Reminder]:
        raise NotImplementedError

    def _reminder_rows_of(self, patient: str) -> Iterable[_Reminder]:
        raise NotImplementedError

    # -- ports.ReadTx ---------------------------------------------------------------------------

    def patient(self, patient: str) -> StoredPatient | None:
        with self._seeing():
            row = self._patient_row(patient)
        if row is None:
            return None
        return StoredPatient(row.id, row.state, row.version, orjson.loads(row.snapshot))

    def clock_patients(self) -> list[StoredPatient]:
        with self._seeing():
            rows = sorted((p for p in self._patient_rows() if p.clock_target is not None),
                          key=lambda p: (p.clock_target, p.id))
        return [StoredPatient(p.id, p.state, p.version, orjson.loads(p.snapshot)) for p in rows]

    def patients(self, state: str | None = None) -> list[tuple[str, str]]:
        with self._seeing():
            rows = [(p.id, p.state) for p in self._patient_rows() if state is None or p.state == state]
        return sorted(rows)

    def patient_ids(self) -> Iterator[str]:
        with self._seeing():
            ids = sorted(p.id for p in self._patient_rows())
        return iter(ids)

    def counts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._seeing():
            for row in self._patient_rows():
                counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def accepted_with_key(self, patient: str, key: str) -> StoredEvent | None:
        with self._seeing():
            row = self._key_row(patient, key)
        return None if row is None else row.stored()

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        with self._seeing():
            rows = self._event_rows(patient)
        return [e.stored() for e in rows if not accepted_only or e.status == "accepted"]

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[Reminder]:
        """A patient's reminders: the keys "<patient>:..."."""
        wanted = None if statuses is None else set(statuses)
        prefix = f"{patient}:"
        with self._seeing():
            rows = [r for r in self._reminder_rows_of(patient)
                    if r.key.startswith(prefix) and (wanted is None or r.status in wanted)]
        rows.sort(key=lambda r: (r.due_on, r.kind, r.key))
        return [r.reminder() for r in rows]

    def due_by(self, until: date, *, limit: int | None = None) -> list[Reminder]:
        with self._seeing():
            rows = [r for r in self._reminder_rows() if r.status == "pending" and r.due_on <= until]
        rows.sort(key=lambda r: (r.due_on, r.patient, r.kind, r.key))
        return [Reminder(r.key, r.patient, r.kind, r.due_on, r.notify_at, "pending", r.detail, r.state, r.delivery)
                for r in _limited(rows, limit)]


class MemoryReadTx(_Reader):
    """A read transaction: committed rows, each call under the state lock (ports.ReadTx)."""

    def _seeing(self) -> AbstractContextManager[Any]:
        return self.repo._state

    def _patient_row(self, patient: str) -> _Patient | None:
        return self.repo._patients.get(patient)

    def _patient_rows(self) -> Iterable[_Patient]:
        return self.repo._patients.values()

    def _event_rows(self, patient: str) -> list[_Event]:
        return list(self.repo._events_of.get(patient, ()))

    def _key_row(self, patient: str, key: str) -> _Event | None:
        return self.repo._keys.get((patient, key))

    def _reminder_row(self, key: str) -> _Reminder | None:
        return self.repo._reminders.get(key)

    def _reminder_rows(self) -> Iterable[_Reminder]:
        return self.repo._reminders.values()

    def _reminder_rows_of(self, patient: str) -> Iterable[_Reminder]:
        committed = self.repo._reminders
        return [committed[key] for key in self.repo._reminder_keys.get(patient, ())]


class MemoryWriteTx(_Reader):
    """A write transaction: its own rows over the committed ones (ports.WriteTx). Holding the
    writer lock, it reads the committed rows without the state lock: only a writer changes them."""

    def __init__(self, repo: MemoryRepository):
        super().__init__(repo)
        #: Loaded patients of this transaction, for the engine (valid until the transaction ends).
        self.memo: dict[str, Any] = {}
        self._next_id = len(repo._events) + 1
        self._patients: dict[str, _Patient] = {}
        self._events: list[_Event] = []
        self._events_of: dict[str, list[_Event]] = {}
        self._keys: dict[tuple[str, str], _Event] = {}
        self._rows: dict[str, _Reminder] = {}  # reminder rows written, by key
        self._planned: dict[str, _Planned] = {}  # upserts buffered until `flush` (as on SQL)
        self._closes: dict[str, tuple[str, int | None, datetime]] = {}  # key -> (status, closed_by, stamp)

    # -- the rows seen: this transaction's, else the committed ones -----------------------------

    def _seeing(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def _patient_row(self, patient: str) -> _Patient | None:
        row = self._patients.get(patient)
        return row if row is not None else self.repo._patients.get(patient)

    def _patient_rows(self) -> Iterable[_Patient]:
        return {**self.repo._patients, **self._patients}.values()

    def _event_rows(self, patient: str) -> list[_Event]:
        return [*self.repo._events_of.get(patient, ()), *self._events_of.get(patient, ())]

    def _key_row(self, patient: str, key: str) -> _Event | None:
        row = self._keys.get((patient, key))
        return row if row is not None else self.repo._keys.get((patient, key))

    def _reminder_row(self, key: str) -> _Reminder | None:
        row = self._rows.get(key)
        return row if row is not None else self.repo._reminders.get(key)

    def _reminder_rows(self) -> Iterable[_Reminder]:
        return {**self.repo._reminders, **self._rows}.values()

    def _reminder_rows_of(self, patient: str) -> Iterable[_Reminder]:
        keys = set(self.repo._reminder_keys.get(patient, ()))
        keys.update(key for key, row in self._rows.items() if row.patient == patient)
        return [row for row in map(self._reminder_row, keys) if row is not None]

    # -- ports.WriteTx --------------------------------------------------------------------------

    def lock_patients(self, patients: Sequence[str]) -> None:
        """A no-op: the transaction holds the writer lock (as SQLite's writer holds the database)."""

    def version(self, patient: str) -> int | None:
        row = self._patient_row(patient)
        return None if row is None else row.version

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        self.flush()  # as on SQL: what follows is upserted against the rows as they are now
        return super().events(patient, accepted_only=accepted_only)

    def append(self, row: NewEvent) -> int:
        payload = _dumps(row.payload, sort=True)
        reasons = _dumps(list(row.reasons))
        bound = row.status == "accepted" and row.key is not None and row.patient is not None
        if bound and self._key_row(row.patient, row.key) is not None:  # type: ignore[arg-type]
            raise DuplicateKey(f"patient {row.patient}: key {row.key!r} is already bound")
        event = _Event(self._next_id, row.patient, row.type, row.on, row.status, row.by, row.key, row.content_hash,
                       payload, reasons, row.error, row.state_after, row.version, row.refers_to,
                       _utc(row.recorded_at))
        self._next_id += 1
        self._events.append(event)
        if row.patient is not None:
            self._events_of.setdefault(row.patient, []).append(event)
        if bound:
            self._keys[(row.patient, row.key)] = event  # type: ignore[index]
        return event.id

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
        """Insert version 1, or update from `version - 1` only (else StaleVersion)."""
        text = _dumps(snapshot)
        stamp = _utc(now)
        current = self._patient_row(patient)
        if version == 1:
            if current is not None:
                raise StaleVersion(f"patient {patient} was created by another writer")
            self._patients[patient] = _Patient(patient, primary, state, 1, text, referred_on, latest_on, stamp, stamp,
                                              clock_target)
            return
        if current is None or current.version != version - 1:
            raise StaleVersion(f"patient {patient} changed since version {version - 1} was read")
        self._patients[patient] = replace(current, state=state, version=version, snapshot=text, latest_on=latest_on,
                                          updated_at=stamp, clock_target=clock_target)

    def rewrite_snapshot(self, patient: str, snapshot: Any, *, version: int, clock_target: date | None) -> None:
        current = self._patient_row(patient)
        if current is None or current.version != version:
            raise StaleVersion(f"patient {patient} changed since version {version} was read")
        self._patients[patient] = replace(current, snapshot=_dumps(snapshot), clock_target=clock_target)

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
        """As the SQL repository: the upserts and closes are buffered until `flush`, the last
        one per key winning; a key planned earlier in the transaction and now closed is written closed."""
        stamp = _utc(now)
        before = {p.key: p for p in old}
        upserts = [
            _Planned(p.key, p.patient, str(p.kind), p.due_on, _utc(p.notify_at), "pending", p.detail, stamp, None, state)
            for p in new
            if state_changed
            or (q := before.get(p.key)) is None
            or (q.due_on, q.notify_at, q.detail) != (p.due_on, p.notify_at, p.detail)
        ]
        after = {p.key for p in new}
        for planned in upserts:
            self._closes.pop(planned.key, None)
            self._planned[planned.key] = planned
        for key in before:
            if key in after:
                continue
            status = closed_status.get(key, "cancelled")
            written = self._planned.get(key)
            if written is not None:  # planned earlier in this transaction: write it closed
                self._planned[key] = replace(written, status=status, stamp=stamp, closed_by=closed_by)
            else:
                self._closes[key] = (status, closed_by, stamp)

    def flush(self) -> None:
        """Upsert the reminders planned (a moved one — new notify_at — is queued again, any other
        keeps its delivery record), then close the vanished ones still pending."""
        for p in self._planned.values():
            stored = self._reminder_row(p.key)
            if stored is None:
                self._rows[p.key] = _Reminder(p.key, p.patient, p.kind, p.due_on, p.notify_at, p.status, p.detail,
                                              p.state, p.stamp, p.stamp, p.closed_by, send_after=p.notify_at)
                continue
            row = replace(stored, due_on=p.due_on, notify_at=p.notify_at, detail=p.detail, status=p.status,
                          updated_at=p.stamp, closed_by=p.closed_by, state=p.state)
            if p.notify_at != stored.notify_at:
                row = replace(row, delivery="queued", send_after=p.notify_at, attempts=0, claim=None, sent_at=None,
                              late_by_s=None, last_error=None)
            self._rows[p.key] = row
        for key, (status, by, stamp) in self._closes.items():
            current = self._reminder_row(key)
            if current is not None and current.status == "pending":
                self._rows[key] = replace(current, status=status, closed_by=by, updated_at=stamp)
        self._planned.clear()
        self._closes.clear()

    def _put(self, row: _Reminder) -> None:
        self._rows[row.key] = row


class MemoryOutbox:
    """The twin's reminders as an outbox (ports.Outbox): each method one write transaction of the
    repository, with the SQL statements' conditions (see persistence.outbox)."""

    def __init__(self, repo: MemoryRepository):
        self.repo = repo

    def claim(self, now: datetime, *, lease_until: datetime, token: str, limit: int) -> list[Delivery]:
        at, lease = _utc(now), _utc(lease_until)
        out = []
        with self.repo.write() as tx:
            due = [r for r in tx._reminder_rows() if r.in_outbox and r.send_after is not None and r.send_after <= at]
            due.sort(key=lambda r: (r.send_after, r.key))
            for row in _limited(due, limit):
                tx._put(replace(row, delivery="claimed", claim=token, send_after=lease, attempts=row.attempts + 1))
                late = max(0, int((now - row.notify_at).total_seconds()))
                out.append(Delivery(row.key, row.patient, row.kind, row.due_on, row.notify_at, row.detail,
                                    row.attempts + 1, late))
        out.sort(key=lambda d: (d.notify_at, d.key))
        return out

    def finish(self, token: str, now: datetime, *, sent: Sequence[Sent] = (), retry: Sequence[Retry] = (),
               failed: Sequence[Failed] = (), unclaim: Sequence[str] = ()) -> int:
        at = _utc(now)
        changes: list[tuple[str, Callable[[_Reminder], _Reminder]]] = [
            *((key, _sent(at, late)) for key, late in sent),
            *((key, _retry(_utc(when), error[:MAX_ERROR])) for key, when, error in retry),
            *((key, _failed(error[:MAX_ERROR])) for key, error in failed),
            *((key, _unclaim(at)) for key in unclaim),
        ]
        changes.sort(key=lambda item: item[0])
        changed = 0
        with self.repo.write() as tx:
            for key, change in changes:
                row = tx._reminder_row(key)
                if row is not None and row.claim == token:
                    tx._put(change(row))
                    changed += 1
        return changed

    def forget_claim(self, token: str, now: datetime) -> int:
        at = _utc(now)
        with self.repo.write() as tx:
            rows = [r for r in tx._reminder_rows() if r.claim == token and r.delivery == "claimed"]
            for row in rows:
                tx._put(_unclaim(at)(row))
        return len(rows)

    def next_due(self) -> datetime | None:
        with self.repo.read() as tx, tx._seeing():
            times = [r.send_after for r in tx._reminder_rows() if r.in_outbox and r.send_after is not None]
        return min(times, default=None)

    def release(self, now: datetime) -> int:
        at = _utc(now)
        with self.repo.write() as tx:
            rows = [r for r in tx._reminder_rows() if r.in_outbox and r.delivery == "claimed"
                    and r.send_after is not None and r.send_after > at]
            for row in rows:
                tx._put(replace(row, delivery="queued", claim=None, send_after=at))
        return len(rows)

    def retry_failed(self, now: datetime, keys: Sequence[str] | None = None) -> int:
        at = _utc(now)
        changed = 0
        with self.repo.write() as tx:
            rows = (list(tx._reminder_rows()) if keys is None
                    else [r for r in map(tx._reminder_row, sorted(keys)) if r is not None])
            for row in rows:
                current = tx._reminder_row(row.key)  # a key given twice is queued once
                if current is not None and current.delivery == "failed" and current.status == "pending":
                    tx._put(replace(current, delivery="queued", attempts=0, send_after=at, last_error=None))
                    changed += 1
        return changed

    def listen(self, stop: threading.Event, on_notify: Callable[[], None], *, poll: float = 1.0) -> None:
        """A no-op: no other process writes here (the engine wakes its own dispatcher)."""

    def listing(self, *, patient: str | None = None, status: str | None = None, delivery: str | None = None,
                limit: int | None = None) -> list[StoredReminder]:
        prefix = None if patient is None else f"{patient}:"
        with self.repo.read() as tx, tx._seeing():
            rows = [r for r in tx._reminder_rows()
                    if (prefix is None or r.key.startswith(prefix)) and (status is None or r.status == status)
                    and (delivery is None or r.delivery == delivery)]
        rows.sort(key=lambda r: (r.due_on, r.patient, r.kind, r.key))
        return [StoredReminder(r.key, r.patient, r.kind, r.due_on, r.notify_at, r.status, r.delivery, r.attempts,
                               r.sent_at, r.late_by_s, r.last_error, r.detail)
                for r in _limited(rows, limit)]


# -- the outcomes of `finish` (the SQL outbox's UPDATE statements) -------------------------------------


def _sent(at: datetime, late: int) -> Callable[[_Reminder], _Reminder]:
    return lambda r: replace(r, delivery="sent", sent_at=at, late_by_s=late, last_error=None, claim=None,
                             send_after=None)


def _retry(when: datetime, error: str) -> Callable[[_Reminder], _Reminder]:
    return lambda r: replace(r, delivery="queued", send_after=when, last_error=error, claim=None)


def _failed(error: str) -> Callable[[_Reminder], _Reminder]:
    return lambda r: replace(r, delivery="failed", last_error=error, claim=None, send_after=None)


def _unclaim(at: datetime) -> Callable[[_Reminder], _Reminder]:
    return lambda r: replace(r, delivery="queued", claim=None, send_after=at, attempts=r.attempts - 1)


if TYPE_CHECKING:  # mypy checks that the twin satisfies the ports

    def _conforms(repo: MemoryRepository, outbox: MemoryOutbox) -> tuple[ports.Repository, ports.Outbox]:
        return repo, outbox
