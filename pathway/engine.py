"""The engine: the unit of work that records events, and the read models coordinators use.

Recording one event is one transaction: check the envelope -> idempotency key -> guards ->
transition -> append to the event log -> update the snapshot with an optimistic version check ->
reconcile the reminders. A refused or invalid event changes nothing but the audit log.
`record_many` streams a large import: many events per transaction, each event all-or-nothing in
its own savepoint, results handed back only once their batch is committed.
"""

from __future__ import annotations

import gc
import getpass
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from pathway import clock as clocks
from pathway.config import database_url
from pathway.delivery import (
    SWEEP_SECONDS,
    Dispatcher,
    DispatcherLock,
    DispatchReport,
    ReminderScheduler,
)
from pathway.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    EventRefused,
    InvalidEvent,
    StorageError,
    UnknownPatient,
)
from persistence import db, ports
from persistence.memory import MemoryRepository, is_memory_url
from persistence.ports import (
    DELIVERY_STATUSES,
    PLAN_STATUSES,
    NewEvent,
    ReadTx,
    StoredEvent,
    StoredReminder,
    WriteTx,
)
from persistence.repository import Repository
from states.events import PATIENT_ID, Event, EventValidationError, parse_event, storable
from states.facts import Snapshot
from states.pathway import decide, decide_void, replay, voided_target
from states.plan import FULFILLED_BY, Planned, Reminder, project
from states.policy import DEFAULT_POLICY, Policy
from states.rules import Reason
from states.vocabulary import EventType, Severity, Status

log = logging.getLogger("pathway")

MAX_STORED_INVALID = 16_000  # characters of an invalid submission kept in the audit log
SNAPSHOT_CACHE_SIZE = 40_000  # patients whose snapshot and projection stay in memory (LRU, ~4 KB each)


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one submitted event."""

    status: Status
    patient: str | None = None
    type: str | None = None
    state: str | None = None
    reasons: tuple[Reason, ...] = ()
    error: str | None = None
    errors: tuple[tuple[str, str], ...] = ()
    event_id: int | None = None
    version: int | None = None

    @property
    def ok(self) -> bool:
        """Accepted, or a duplicate of an accepted event."""
        return self.status in (Status.accepted, Status.duplicate)

    def raise_for_status(self) -> Result:
        if self.status is Status.invalid:
            raise InvalidEvent(self.error or "invalid event", self.errors)
        if self.status is Status.refused:
            codes = ", ".join(r.code for r in self.reasons)
            raise EventRefused(f"{self.type} for {self.patient} refused: {codes}", self.reasons)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "type": self.type,
            "status": str(self.status),
            "state": self.state,
            "reasons": [r.as_dict() for r in self.reasons],
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a patient's audit history (accepted or not)."""

    id: int
    type: str | None
    on: date | None
    status: str
    by: str | None
    recorded_at: datetime
    reasons: tuple[dict[str, str], ...]
    data: dict[str, Any]
    note: str = ""
    override: tuple[dict[str, str], ...] = ()
    key: str | None = None
    error: str | None = None
    state_after: str | None = None
    voided_by: int | None = None
    void_of: int | None = None

    @property
    def voided(self) -> bool:
        return self.voided_by is not None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "on": self.on.isoformat() if self.on else None,
            "status": self.status,
            "by": self.by,
            "recorded_at": self.recorded_at.isoformat().replace("+00:00", "Z"),
            "state": self.state_after,
            "data": self.data,
            "reasons": list(self.reasons),
        }
        if self.note:
            out["note"] = self.note
        if self.override:
            out["override"] = list(self.override)
        if self.key:
            out["key"] = self.key
        if self.error:
            out["error"] = self.error
        if self.status == Status.accepted:
            out["voided"] = self.voided
            if self.voided_by is not None:
                out["voided_by"] = self.voided_by
        if self.void_of is not None:
            out["void_of"] = self.void_of
        return out


@dataclass(frozen=True, slots=True)
class PatientView:
    patient: str
    primary: str
    state: str
    version: int
    history: tuple[HistoryEntry, ...]
    reminders: tuple[Reminder, ...]
    advice: tuple[dict[str, Any], ...]
    snapshot: Snapshot = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "primary": self.primary,
            "state": self.state,
            "version": self.version,
            "history": [h.as_dict() for h in self.history],
            "reminders": [
                {k: v for k, v in r.as_dict().items() if k in ("key", "kind", "due_on", "notify_at", "status", "detail")}
                for r in self.reminders
            ],
            "advice": list(self.advice),
        }


class WorklistItem(NamedTuple):
    """A reminder on a worklist (a named tuple: worklists are long)."""

    reminder: Reminder
    days: int  # due_on - today: negative when overdue

    @property
    def overdue(self) -> bool:
        return self.days < 0

    def as_dict(self) -> dict[str, Any]:
        out = self.reminder.as_dict()
        out["days"] = self.days
        out["overdue"] = self.overdue
        return out


class _Item(NamedTuple):
    """One submission of a transaction: as submitted, and the event it parsed to (or the errors)."""

    raw: Any
    event: Event | None
    errors: list[tuple[str, str]]

    def patient(self) -> str | None:
        """The patient it concerns (also of an invalid submission that names one: it is read too)."""
        if self.event is not None:
            return self.event.patient
        raw = self.raw
        if isinstance(raw, str | bytes):
            return None  # not parsed again: its patient, if any, is locked when it is read
        patient = _field(raw, "patient")
        return patient if patient is not None and PATIENT_ID.match(patient) else None


@dataclass(slots=True)
class _Loaded:
    version: int
    snapshot: Snapshot
    planned: list[Planned]


class _SnapshotCache:
    """A small LRU of loaded patients, shared by the engine's threads. An entry is used only while
    the stored version still equals its version, and only committed versions enter it."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, _Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, patient: str) -> _Loaded | None:
        with self._lock:
            item = self._items.get(patient)
            if item is not None:
                self._items.move_to_end(patient)
            return item

    def put(self, patient: str, item: _Loaded) -> None:
        with self._lock:
            self._items[patient] = item
            self._items.move_to_end(patient)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, patient: str) -> None:
        with self._lock:
            self._items.pop(patient, None)


class Engine:
    """The care-pathway engine: record events, read patients, worklists and histories.

    >>> engine = Engine.open("sqlite:///pathway.db")            # doctest: +SKIP
    >>> engine.record({"patient": "P1", "type": "referral", "on": "2026-01-05",
    ...                "data": {"primary": "colorectal"}}).status  # doctest: +SKIP
    <Status.accepted: 'accepted'>
    """

    def __init__(self, repository: ports.Repository, policy: Policy = DEFAULT_POLICY, clock: clocks.Clock | None = None):
        self.repository = repository
        self.policy = policy
        self.clock = clock or clocks.system_clock
        self.default_by = _os_user()
        self._cache = _SnapshotCache(SNAPSHOT_CACHE_SIZE)
        #: Notifiers of `dispatch_due` and the scheduler (set by `open(..., notifiers=)` or
        #: `start_scheduler(notifiers=)`).
        self.notifiers: list[Any] = []
        self._dispatcher: Dispatcher | None = None
        self._scheduler: ReminderScheduler | None = None
        self._lock: DispatcherLock | None = None

    @classmethod
    def open(
        cls,
        url: str | None = None,
        policy: Policy | None = None,
        clock: clocks.Clock | None = None,
        *,
        notifiers: Iterable[Any] = (),
    ) -> Engine:
        """Open (and on first use create and migrate) the database at `url`.

        `url` defaults to PATHWAY_DB, then sqlite:///pathway.db ("memory://": the in-memory twin,
        persistence.memory, gone when the engine is); `policy` to the spec's defaults;
        `clock` to PATHWAY_NOW if set, else the system clock; `notifiers` (see pathway.delivery)
        are those `dispatch_due` and `start_scheduler` deliver reminders through.
        """
        url = database_url(url)
        try:
            repository: ports.Repository = MemoryRepository() if is_memory_url(url) else Repository.open(url)
        except (db.SchemaError, db.DatabaseUnavailable) as exc:
            raise StorageError(str(exc)) from exc
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"bad database URL: {exc}") from exc
        except sa.exc.OperationalError as exc:
            raise StorageError(f"cannot open the database: {exc.orig}") from exc
        engine = cls(repository, policy or DEFAULT_POLICY, clock or clocks.from_environment())
        engine.notifiers = list(notifiers)
        return engine

    def close(self) -> None:
        self.stop_scheduler()
        self.repository.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return clocks.local_today(self.clock(), self.policy.zone)

    # -- recording -----------------------------------------------------------------------------

    def record(
        self,
        event: Mapping[str, Any] | Event,
        *,
        by: str | None = None,
        expected_version: int | None = None,
    ) -> Result:
        """Record one event in its own transaction.

        Returns the result (accepted, refused with reasons, duplicate, invalid). A writer that got
        in the way (another process or thread on the same patient) is waited for or retried
        against the new state. Raises `ConcurrentUpdate` when `expected_version` (the version the
        caller looked at) is stale, or when the conflicts outlast the retries; `StorageError` when
        the database cannot be used. Either way nothing of the event is stored.
        """
        return self._transact([self._parse(event)], by, expected_version)[0]

    def record_batch(self, events: Iterable[Mapping[str, Any] | Event], *, by: str | None = None) -> list[Result]:
        """Record a short list of events (an API request) in order, in one transaction: every
        result returned is stored; on an exception nothing is. Each event is judged on its own
        (a refused event does not stop the next). Conflicts are retried as in `record`."""
        return self._transact([self._parse(e) for e in events], by)

    def record_many(
        self,
        events: Iterable[Mapping[str, Any] | Event],
        *,
        by: str | None = None,
        batch_size: int = 500,
        retries: int = db.CONFLICT_ATTEMPTS - 1,
    ) -> Iterator[Result]:
        """Record a stream of events in order, in batches of one transaction each.

        Each event is still all-or-nothing. Results are yielded once their batch is committed, so
        a result that says accepted is stored. Memory stays constant whatever the stream's length.
        A concurrent writer on the same patient is retried (`retries` times) against the new state.
        """
        iterator = iter(events)
        with self.repository.bulk():
            while True:
                batch = [self._parse(item) for _, item in zip(range(batch_size), iterator, strict=False)]
                if not batch:
                    return
                yield from self._transact(batch, by, attempts=retries + 1)

    def _parse(self, raw: Mapping[str, Any] | Event | str | bytes) -> _Item:
        """A submission checked against the contract (outside any transaction)."""
        try:
            return _Item(raw, parse_event(raw), [])
        except EventValidationError as exc:
            return _Item(raw, None, exc.errors)

    def _transact(self, items: list[_Item], by: str | None, expected_version: int | None = None,
                  attempts: int = db.CONFLICT_ATTEMPTS) -> list[Result]:
        """Record parsed events in one write transaction, retried from scratch after a write
        conflict (deadlock, serialization failure, a patient created or changed meanwhile)."""
        patients = sorted({p for p in (item.patient() for item in items) if p is not None})
        for attempt in range(1, attempts + 1):
            now = self.clock()
            today = clocks.local_today(now, self.policy.zone)
            try:
                with self._writing() as tx:
                    if len(patients) > 1:
                        tx.lock_patients(patients)  # in id order: overlapping batches queue, never deadlock
                    results = [self._record(tx, item, by, now, today, expected_version) for item in items]
            except db.WriteConflict as exc:
                if attempt == attempts:
                    raise ConcurrentUpdate(
                        f"{exc}; still conflicting after {attempts} attempts: nothing was stored, try again"
                    ) from exc
                log.info("transaction retried after a write conflict (attempt %d): %s", attempt, exc)
                db.backoff(attempt)
                continue
            except db.DatabaseUnavailable as exc:
                raise StorageError(f"the database is unavailable: {exc}") from exc
            if any(r.status is Status.accepted for r in results):
                self._wake()
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _writing(self) -> Iterator[WriteTx]:
        """A write transaction. The snapshots it loaded or produced (`tx.memo`) enter the shared
        cache only once it is committed: another thread never sees a version that may roll back."""
        with self.repository.write() as tx:
            yield tx
        for patient, loaded in tx.memo.items():
            self._cache.put(patient, loaded)

    @contextmanager
    def _reading(self) -> Iterator[ReadTx]:
        """A read transaction; an unreachable database is a StorageError."""
        with _storage_errors(), self.repository.read() as tx:
            yield tx

    def _load(self, tx: WriteTx, patient: str) -> _Loaded | None:
        """The patient's snapshot and pending projection: as this transaction left it; else from the
        cache when the stored version is the cached one (a cheap check); else from the database."""
        mine = tx.memo.get(patient)
        if mine is not None:
            return mine  # type: ignore[no-any-return]
        cached = self._cache.get(patient)
        if cached is not None:
            if tx.version(patient) == cached.version:
                tx.memo[patient] = cached
                return cached
            self._cache.drop(patient)
        stored = tx.patient(patient)
        if stored is None:
            return None
        snapshot = Snapshot.from_dict(stored.snapshot)
        loaded = _Loaded(stored.version, snapshot, project(snapshot, self.policy))
        tx.memo[patient] = loaded
        return loaded

    def _record(
        self,
        tx: WriteTx,
        item: _Item,
        by: str | None,
        now: datetime,
        today: date,
        expected_version: int | None,
    ) -> Result:
        raw, event = item.raw, item.event
        if event is None:
            return self._invalid(tx, raw, item.errors, by, now, None, None)
        by = event.by or by or self.default_by
        loaded = self._load(tx, event.patient)
        version = loaded.version if loaded else 0
        if expected_version is not None and expected_version != version:
            raise ConcurrentUpdate(
                f"patient {event.patient} is at version {version}, not {expected_version}: read it again"
            )
        snapshot = loaded.snapshot if loaded else None
        state = str(snapshot.state) if snapshot else None

        if event.key is not None and snapshot is not None:
            first = tx.accepted_with_key(event.patient, event.key)
            if first is not None:
                if first.content_hash == event.content_hash():
                    tx.append(self._row(Status.duplicate, event, by, now, state=state, refers_to=first.id,
                                        reasons=first.reasons))
                    reasons = tuple(Reason(r["code"], Severity(r["severity"]), r["message"], r["source"])
                                    for r in first.reasons)
                    # the first result again: its reasons and the state it led to
                    return Result(Status.duplicate, event.patient, str(event.type), first.state_after, reasons,
                                  event_id=first.id, version=first.version)
                return self._invalid(
                    tx, raw, [("key", f"{event.key!r} is already bound to event #{first.id} ({first.type} on "
                                      f"{first.on}) with different content; use a new key")],
                    by, now, event, state,
                )

        refers_to = None
        try:
            if event.type is EventType.void:
                stored_history = tx.events(event.patient, accepted_only=True) if snapshot else []
                history = [parse_event(e.payload) for e in stored_history]
                outcome = decide_void(history, snapshot, event, self.policy, today)
                refers_to = stored_history[voided_target(history)].id
            else:
                outcome = decide(snapshot, event, self.policy, today)
        except EventValidationError as exc:
            return self._invalid(tx, raw, exc.errors, by, now, event, state)

        if outcome.status is Status.refused:
            event_id = tx.append(self._row(Status.refused, event, by, now, state=state,
                                           reasons=[r.as_dict() for r in outcome.reasons]))
            log.info("refused %s patient=%s codes=%s", event.type, event.patient,
                     ",".join(r.code for r in outcome.reasons))
            return Result(Status.refused, event.patient, str(event.type), state, outcome.reasons,
                          event_id=event_id, version=version)

        new = outcome.snapshot
        new_version = version + 1
        planned = project(new, self.policy)
        old_planned = loaded.planned if loaded else []
        fulfils = {p.key: ("done" if event.type in FULFILLED_BY[p.kind] else "cancelled") for p in old_planned}
        # the snapshot first: its version check (and row lock) orders concurrent writers
        tx.save_patient(
            patient=event.patient, primary=new.primary, state=str(new.state), snapshot=new,
            referred_on=new.referred_on, latest_on=new.latest_on, version=new_version, now=now,
        )
        try:
            event_id = tx.append(self._row(Status.accepted, event, by, now, state=str(new.state),
                                           reasons=[r.as_dict() for r in outcome.reasons],
                                           version=new_version, refers_to=refers_to))
        except self.repository.integrity_errors as exc:  # the same key bound by a concurrent writer
            raise db.WriteConflict(f"patient {event.patient}: key {event.key!r} was bound concurrently") from exc
        tx.reconcile(old_planned, planned, state=str(new.state), state_changed=snapshot is None or new.state != snapshot.state,
                     closed_status=fulfils, closed_by=event_id, now=now)
        tx.memo[event.patient] = _Loaded(new_version, new, planned)
        log.debug("accepted %s patient=%s state=%s", event.type, event.patient, new.state)
        return Result(Status.accepted, event.patient, str(event.type), str(new.state), outcome.reasons,
                      event_id=event_id, version=new_version)

    def _row(
        self,
        status: Status,
        event: Event,
        by: str | None,
        now: datetime,
        *,
        state: str | None,
        reasons: Any = (),
        version: int | None = None,
        refers_to: int | None = None,
    ) -> NewEvent:
        return NewEvent(
            status=str(status), payload=event.as_dict(), recorded_at=now, patient=event.patient,
            type=str(event.type), on=event.on, by=by, key=event.key, content_hash=event.content_hash(),
            reasons=list(reasons), state_after=state, version=version, refers_to=refers_to,
        )

    def _invalid(
        self,
        tx: WriteTx,
        raw: Any,
        errors: list[tuple[str, str]],
        by: str | None,
        now: datetime,
        event: Event | None,
        state: str | None,
    ) -> Result:
        message = "; ".join(f"{f}: {m}" if f else m for f, m in errors)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = {"submitted": raw}
        patient = event.patient if event else _field(raw, "patient")
        if patient is not None and not PATIENT_ID.match(patient):
            patient = None
        kind = str(event.type) if event else _field(raw, "type")
        if kind is not None and len(kind) > 32:
            kind = None
        payload = raw.as_dict() if isinstance(raw, Event) else raw
        text = json.dumps(payload, default=str) if isinstance(payload, Mapping | list) else repr(payload)
        if len(text) > MAX_STORED_INVALID:
            payload = {"truncated": text[:MAX_STORED_INVALID]}
        elif not isinstance(payload, Mapping):
            payload = {"submitted": text}
        if state is None and patient is not None and event is None:
            known = self._load(tx, patient)
            state = str(known.snapshot.state) if known else None
        event_id = tx.append(NewEvent(  # as submitted, made storable (NUL, lone surrogates, huge integers)
            status=str(Status.invalid), payload=storable(json.loads(json.dumps(payload, default=str))),
            recorded_at=now, patient=patient, type=storable(kind) if kind is not None else None,
            on=event.on if event else None, by=storable(by) if by is not None else None,
            key=storable(event.key) if event and event.key else None, error=storable(message), state_after=state,
        ))
        log.info("invalid event patient=%s type=%s fields=%s", patient, kind, ",".join(f for f, _ in errors))
        return Result(Status.invalid, patient, kind, state, (), message, tuple(errors), event_id=event_id)

    # -- reading -------------------------------------------------------------------------------

    def show(self, patient: str) -> PatientView:
        """The patient's state, full history (refusals included), pending reminders and advice."""
        with self._reading() as tx:
            stored = tx.patient(patient)
            if stored is None:
                raise UnknownPatient(patient)
            events = tx.events(patient)
            reminders = tx.reminders(patient)
        snapshot = Snapshot.from_dict(stored.snapshot)
        history = _history(events)
        advice = tuple(
            {**reason, "on": entry.on.isoformat() if entry.on else None, "event": entry.id, "type": entry.type}
            for entry in history
            if entry.status == Status.accepted and not entry.voided
            for reason in entry.reasons
            if reason.get("severity") == Severity.advice
        )
        return PatientView(
            patient=patient,
            primary=snapshot.primary,
            state=stored.state,
            version=stored.version,
            history=tuple(history),
            reminders=tuple(reminders),
            advice=advice,
            snapshot=snapshot,
        )

    def history(self, patient: str) -> list[HistoryEntry]:
        with self._reading() as tx:
            events = tx.events(patient)
        if not events:
            raise UnknownPatient(patient)
        return _history(events)

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[Reminder]:
        with self._reading() as tx:
            if tx.patient(patient) is None:
                raise UnknownPatient(patient)
            return tx.reminders(patient, statuses)

    def worklist(self, today: date | None = None, days: int = 7, *, limit: int | None = None) -> list[WorklistItem]:
        """Pending reminders due by `today` + `days`, overdue first."""
        if days < 0:
            raise ValueError("days must not be negative")
        today = today or self.today()
        with self._reading() as tx:
            rows = tx.due_by(today + timedelta(days=days), limit=limit)
        make = WorklistItem._make
        gc_was_on = gc.isenabled()
        gc.disable()  # tens of thousands of small tuples without cycles
        try:
            return [make((r, (r.due_on - today).days)) for r in rows]
        finally:
            if gc_was_on:
                gc.enable()

    def patients(self, state: str | None = None) -> list[tuple[str, str]]:
        with self._reading() as tx:
            return tx.patients(state)

    def counts_by_state(self) -> dict[str, int]:
        with self._reading() as tx:
            return tx.counts_by_state()

    # -- reminder delivery (pathway.delivery) ----------------------------------------------------

    def _get_dispatcher(self, notifiers: Iterable[Any] | None) -> Dispatcher:
        if notifiers is not None:
            self.notifiers = list(notifiers)
        if self._lock is None:
            self._lock = DispatcherLock(self.repository)
        if self._dispatcher is None or notifiers is not None:
            self._dispatcher = Dispatcher(self.repository, self.policy, self.notifiers, lock=self._lock)
        return self._dispatcher

    def dispatch_due(self, now: datetime | None = None, *, notifiers: Iterable[Any] | None = None) -> DispatchReport:
        """Deliver every reminder due at `now` (default: the clock's now) through the engine's
        notifiers, synchronously — for hosts that bring their own scheduling. Raises
        `DispatcherLocked` when another process dispatches from the same SQLite database."""
        dispatcher = self._get_dispatcher(notifiers)
        if self._scheduler is None or not self._scheduler.running:
            dispatcher.stopping.clear()  # a stop requested earlier (a signal, a notifier) is over
        with _storage_errors():
            return dispatcher.dispatch_due(now if now is not None else self.clock)

    def start_scheduler(self, notifiers: Iterable[Any] | None = None, *, sweep_seconds: float = SWEEP_SECONDS,
                        on_report: Any = None) -> ReminderScheduler:
        """Deliver reminders in the background (APScheduler) until `stop_scheduler()`; events
        recorded through this engine that bring a reminder forward wake it at once."""
        if self._scheduler is not None and self._scheduler.running:
            raise ConfigurationError("the scheduler is already running: stop_scheduler() first")
        dispatcher = self._get_dispatcher(notifiers)
        scheduler = ReminderScheduler(dispatcher, self.clock, sweep_seconds=sweep_seconds, on_report=on_report)
        scheduler.start()
        self._scheduler = scheduler
        return scheduler

    def stop_scheduler(self, wait: bool = True) -> None:
        """Stop the background delivery after the delivery in flight (a no-op when not running)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop(wait=wait)

    def interrupt_delivery(self) -> None:
        """Ask a dispatch under way to stop after the delivery in flight (safe from a signal
        handler: it only sets a flag; `stop_scheduler` then stops the scheduler)."""
        if self._dispatcher is not None:
            self._dispatcher.stopping.set()

    def _wake(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.wake()

    def retry_failed(self, keys: Iterable[str] | None = None) -> int:
        """Queue failed deliveries again (after the notifier was fixed): every failed pending
        reminder, or those `keys`; they go out at the dispatcher's next run. Returns how many."""
        with _storage_errors():
            count = self.repository.outbox().retry_failed(self.clock(), None if keys is None else list(keys))
        self._wake()
        return count

    def deliveries(self, *, patient: str | None = None, status: str | None = None, delivery: str | None = None,
                   limit: int | None = None) -> list[StoredReminder]:
        """Reminders with their delivery record (`pathway reminders`): filter by patient, plan
        status (pending | done | cancelled) and delivery (queued | claimed | sent | failed)."""
        if status is not None and status not in PLAN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(PLAN_STATUSES)}, got {status!r}")
        if delivery is not None and delivery not in DELIVERY_STATUSES:
            raise ValueError(f"delivery must be one of {', '.join(DELIVERY_STATUSES)}, got {delivery!r}")
        with _storage_errors():
            return self.repository.outbox().listing(patient=patient, status=status, delivery=delivery, limit=limit)

    # -- integrity -----------------------------------------------------------------------------

    def verify(self, patient: str) -> list[str]:
        """Replay the patient's accepted history: differences from the stored snapshot and pending
        reminders (an empty list when they agree exactly)."""
        with self._reading() as tx:
            stored = tx.patient(patient)
            if stored is None:
                raise UnknownPatient(patient)
            events = tx.events(patient, accepted_only=True)
            reminders = tx.reminders(patient)
        problems = []
        replayed = replay([parse_event(e.payload) for e in events], self.policy)
        assert replayed is not None
        kept = Snapshot.from_dict(stored.snapshot)
        if replayed != kept:
            a, b = replayed.__dict__, kept.__dict__
            problems.append(f"snapshot differs in {', '.join(sorted(k for k in a if a[k] != b[k]))}")
        if str(replayed.state) != stored.state:
            problems.append(f"state {stored.state} stored, {replayed.state} replayed")
        if stored.version != len(events):
            problems.append(f"version {stored.version} but {len(events)} accepted events")
        want = {(p.key, p.kind, p.due_on, p.notify_at) for p in project(replayed, self.policy)}
        have = {(r.key, r.kind, r.due_on, r.notify_at) for r in reminders}
        if want != have:
            def listed(items: set[tuple[Any, ...]]) -> str:
                return "; ".join(f"{key} due {due.isoformat()}" for key, _kind, due, _at in sorted(items)) or "none"

            problems.append(
                f"pending reminders differ from the replay under the current policy: stored only: "
                f"{listed(have - want)}; replay only: {listed(want - have)}"
            )
        return problems


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The persistence layer's errors as the embedding API's: an outage is a StorageError, a
    conflict that outlasted its retries a ConcurrentUpdate."""
    try:
        yield
    except db.DatabaseUnavailable as exc:
        raise StorageError(f"the database is unavailable: {exc}") from exc
    except db.WriteConflict as exc:
        raise ConcurrentUpdate(f"{exc}: nothing was changed, try again") from exc


def _history(events: list[StoredEvent]) -> list[HistoryEntry]:
    voided_by: dict[int, int] = {}
    stack: list[int] = []
    for e in events:
        if e.status != Status.accepted:
            continue
        if e.type == EventType.void:
            voided_by[stack.pop()] = e.id
        else:
            stack.append(e.id)
    out = []
    for e in events:
        payload = e.payload if isinstance(e.payload, dict) else {}
        data = payload.get("data") if e.status != Status.invalid else payload
        out.append(HistoryEntry(
            id=e.id, type=e.type, on=e.on, status=e.status, by=e.by, recorded_at=e.recorded_at,
            reasons=tuple(e.reasons), data=data if isinstance(data, dict) else {},
            note=payload.get("note", "") if e.status != Status.invalid else "",
            override=tuple(payload.get("override", ())) if e.status != Status.invalid else (),
            key=e.key, error=e.error, state_after=e.state_after, voided_by=voided_by.get(e.id),
            void_of=e.refers_to if e.type == EventType.void and e.status == Status.accepted else None,
        ))
    return out


def _field(raw: Any, name: str) -> str | None:
    if isinstance(raw, Mapping):
        value = raw.get(name)
        if isinstance(value, str):
            return value
    return None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
