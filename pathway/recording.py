"""Recording events: the unit of work.

Recording one event is one transaction: check the envelope -> idempotency key -> guards ->
transition -> append to the event log -> update the snapshot with an optimistic version check ->
reconcile the reminders. A refused or invalid event changes nothing but the audit log.
`record_many` streams a large import: many events per transaction, each event all-or-nothing,
results handed back only once their batch is committed. A write conflict (deadlock, serialization
failure, a patient created or changed meanwhile) is retried from scratch; the snapshots a
transaction loaded or produced enter the shared cache only once it is committed."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from pathway import clock as clocks
from pathway.errors import ConcurrentUpdate, StorageError, storage_errors
from pathway.results import Result
from persistence import db
from persistence.ports import NewEvent, PlanStatus, StoredEvent, WriteTx
from states.definition import DEFINITION
from states.events import PATIENT_ID, Event, EventValidationError, parse_event, storable
from states.facts import SNAPSHOT_SCHEMA, Snapshot, StaleSnapshot
from states.pathway import Recorded, decide, decide_late, decide_void, replay
from states.plan import Planned, project
from states.rules import Reason
from states.vocabulary import EventType, Severity, Status

log = logging.getLogger("pathway")

MAX_STORED_INVALID = 16_000  # characters of an invalid submission kept in the audit log
SNAPSHOT_CACHE_SIZE = 40_000  # patients whose snapshot and projection stay in memory (LRU, ~4 KB each)


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


class SnapshotCache:
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


class Recording:
    """The engine's recording methods (a part of `Engine`)."""

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
        try:
            snapshot = Snapshot.from_dict(stored.snapshot)
        except StaleSnapshot:  # stored before its present shape (e.g. clocks): its history gives it
            replayed = replay([recorded(e) for e in tx.events(patient, accepted_only=True)], self.policy)
            assert replayed is not None  # a stored patient has its referral
            snapshot = replayed
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

        try:
            if event.type is EventType.void:
                outcome = decide_void(self._history(tx, event.patient, snapshot), snapshot, event, self.policy, today)
            elif snapshot is not None and event.on < snapshot.latest_on:  # a late entry: one replay
                outcome = decide_late(self._history(tx, event.patient, snapshot), snapshot, event, self.policy, today)
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
        fulfils = {p.key: (PlanStatus.done if DEFINITION.fulfils(event.type, p.kind) else PlanStatus.cancelled)
                   for p in old_planned}
        # the snapshot first: its version check (and row lock) orders concurrent writers
        tx.save_patient(
            patient=event.patient, primary=new.primary, state=str(new.state), snapshot=new,
            referred_on=new.referred_on, latest_on=new.latest_on, version=new_version, now=now,
            clock_target=new.clock_target,
        )
        try:
            event_id = tx.append(self._row(Status.accepted, event, by, now,
                                           state=str(outcome.placed_state or new.state),
                                           reasons=[r.as_dict() for r in outcome.reasons],
                                           version=new_version, refers_to=outcome.target))
        except self.repository.integrity_errors as exc:  # the same key bound by a concurrent writer
            raise db.WriteConflict(f"patient {event.patient}: key {event.key!r} was bound concurrently") from exc
        tx.reconcile(old_planned, planned, state=str(new.state), state_changed=snapshot is None or new.state != snapshot.state,
                     closed_status=fulfils, closed_by=event_id, now=now)
        tx.memo[event.patient] = _Loaded(new_version, new, planned)
        log.debug("accepted %s patient=%s state=%s", event.type, event.patient, new.state)
        return Result(Status.accepted, event.patient, str(event.type), str(new.state), outcome.reasons,
                      event_id=event_id, version=new_version, reevaluated=outcome.reevaluated)

    def upgrade_snapshots(self, batch: int = 500) -> int:
        """Rewrite every stored snapshot of an older shape (`SNAPSHOT_SCHEMA`) from its history,
        versions unchanged (`pathway db upgrade` runs it after the migrations); returns how many."""
        with storage_errors(), self.repository.read() as rtx:
            ids = list(rtx.patient_ids())
        rewritten = 0
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            with storage_errors(), self.repository.write() as tx:
                tx.lock_patients(chunk)
                for patient in chunk:
                    stored = tx.patient(patient)
                    if stored is None or stored.snapshot.get("schema") == SNAPSHOT_SCHEMA:
                        continue
                    snapshot = replay([recorded(e) for e in tx.events(patient, accepted_only=True)], self.policy)
                    assert snapshot is not None  # a stored patient has its referral
                    tx.rewrite_snapshot(patient, snapshot, version=stored.version, clock_target=snapshot.clock_target)
                    rewritten += 1
            for patient in chunk:
                self._cache.drop(patient)
        return rewritten

    @staticmethod
    def _history(tx: WriteTx, patient: str, snapshot: Snapshot | None) -> list[Recorded]:
        """The patient's accepted events, as the domain decides late entries and voids on them."""
        return [] if snapshot is None else [recorded(e) for e in tx.events(patient, accepted_only=True)]

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


def _field(raw: Any, name: str) -> str | None:
    if isinstance(raw, Mapping):
        value = raw.get(name)
        if isinstance(value, str):
            return value
    return None


def recorded(stored: StoredEvent) -> Recorded:
    """An accepted row of the event log as the domain's `Recorded`: its id, the event, the event a
    void undoes, and the outcome it was recorded with."""
    return Recorded(stored.id, parse_event(stored.payload), stored.refers_to if stored.type == EventType.void else None,
                    tuple((r["code"], r["severity"]) for r in stored.reasons))
