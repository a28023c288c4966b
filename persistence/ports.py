"""The ports of the persistence layer: what the engine and the reminder dispatcher ask of storage.

Two implementations of each port: SQL (`persistence.repository.Repository` and
`persistence.outbox.SqlOutbox`, on SQLite and PostgreSQL) and the in-memory twin
(`persistence.memory.MemoryRepository` and its outbox). One contract suite,
tests/test_repository_contract.py, runs against all three.

The Protocols hold only what the callers use: the SQL details (connections, cursors, statements)
stay in the SQL classes. The values that cross the ports (stored rows, events to append,
deliveries) are defined here, beside them.

Semantics every implementation keeps:

- A write transaction is all or nothing: what it wrote is visible to others only once its `with`
  block ends without an exception; an exception discards all of it. A transaction that met another
  writer raises `db.WriteConflict` (`StaleVersion` for the optimistic version check): nothing of
  it was stored, running it again is safe. Storage that cannot be used raises `db.DatabaseUnavailable`.
- `save_patient` inserts version 1 or updates from `version - 1` only (else `StaleVersion`).
- An accepted event's idempotency key is unique per patient (else one of `integrity_errors`).
- Reminders follow the projection (`reconcile`): a moved one (new `notify_at`) is queued for
  delivery again; any other change keeps its delivery record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from threading import Event
from typing import Any, NamedTuple, Protocol

from persistence import db
from states.plan import Planned, Reminder


class StaleVersion(db.WriteConflict):
    """Another writer changed (or created) the patient since it was read (optimistic version check)."""


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


class Delivery(NamedTuple):
    """One reminder to deliver, as claimed (what every notifier is given)."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    detail: str
    #: This attempt's number (1 for the first).
    attempt: int
    #: Seconds between notify_at and the claim (0 when on time or early).
    late_by_s: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The payload every notifier sends (the webhook's JSON body)."""
        return {
            "key": self.key,
            "patient": self.patient,
            "kind": self.kind,
            "due_on": self.due_on.isoformat(),
            "notify_at": self.notify_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "detail": self.detail,
            "late_by_s": self.late_by_s,
        }


#: A delivery this many seconds or more after its notify_at is late (nothing ran when it fell due).
LATE_AFTER_SECONDS = 60


class StoredReminder(NamedTuple):
    """A reminder with its delivery record (`pathway reminders`)."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    delivery: str
    attempts: int
    sent_at: datetime | None
    late_by_s: int | None
    last_error: str | None
    detail: str

    @property
    def late(self) -> bool:
        """Delivered LATE_AFTER_SECONDS or more after its notify_at."""
        return self.late_by_s is not None and self.late_by_s >= LATE_AFTER_SECONDS

    def as_dict(self) -> dict[str, Any]:
        def instant(value: datetime | None) -> str | None:
            return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")

        return {
            "key": self.key,
            "patient": self.patient,
            "kind": self.kind,
            "due_on": self.due_on.isoformat(),
            "notify_at": instant(self.notify_at),
            "status": self.status,
            "delivery": self.delivery,
            "attempts": self.attempts,
            "sent_at": instant(self.sent_at),
            "late_by_s": self.late_by_s,
            "late": self.late,
            "last_error": self.last_error,
            "detail": self.detail,
        }


#: Outcomes given to `Outbox.finish`.
Sent = tuple[str, int]  # (key, late_by_s)
Retry = tuple[str, datetime, str]  # (key, next attempt not before, error)
Failed = tuple[str, str]  # (key, error)

class PlanStatus(StrEnum):
    """A stored reminder in the care plan."""

    pending = "pending"  # planned and still expected
    done = "done"  # the event it waited for was recorded
    cancelled = "cancelled"  # no longer planned (route changed, terminal state, void)


class DeliveryStatus(StrEnum):
    """A stored reminder's notification (the outbox)."""

    queued = "queued"  # to be sent at send_after
    claimed = "claimed"  # a dispatcher is delivering it (until its lease ends)
    sent = "sent"
    failed = "failed"  # gave up after the policy's attempts (`pathway retry` queues it again)
#: Characters of a delivery error kept (`finish`).
MAX_ERROR = 2000


class ReadTx(Protocol):
    """A read transaction (each call sees committed data only)."""

    def patient(self, patient: str) -> StoredPatient | None: ...

    def patients(self, state: str | None = None) -> list[tuple[str, str]]:
        """(id, state) of every patient (in that state), by id."""
        ...

    def patient_ids(self) -> Iterator[str]:
        """Every patient's id, in order."""
        ...

    def counts_by_state(self) -> dict[str, int]: ...

    def clock_patients(self) -> list[StoredPatient]:
        """The patients with a running waiting-time clock, by its target date (the earliest of
        theirs) and id: the patient tracking list."""
        ...

    def accepted_with_key(self, patient: str, key: str) -> StoredEvent | None:
        """The accepted event of `patient` that bound `key`, if any."""
        ...

    def events(self, patient: str, *, accepted_only: bool = False) -> list[StoredEvent]:
        """The patient's audit log (accepted events only, if asked), oldest first (by id)."""
        ...

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[Reminder]:
        """The patient's reminders with one of `statuses` (None: all), by due_on, kind and key."""
        ...

    def due_by(self, until: date, *, limit: int | None = None) -> list[Reminder]:
        """Pending reminders due on or before `until` with the patient's state and their delivery,
        by due_on, patient and kind (overdue first)."""
        ...


class WriteTx(ReadTx, Protocol):
    """A write transaction: committed when its `with` block ends, discarded if it raises."""

    #: Loaded patients of this transaction, for the engine (valid until the transaction ends).
    memo: dict[str, Any]

    def lock_patients(self, patients: Sequence[str]) -> None:
        """Take the patients' locks (those that exist) in id order before any is read, where the
        storage has row locks: transactions over overlapping patients queue, never deadlock."""
        ...

    def version(self, patient: str) -> int | None:
        """The stored version (None: no such patient)."""
        ...

    def append(self, row: NewEvent) -> int:
        """Append to the audit log; returns the event's id (greater than every id before it).
        An accepted event's key already bound for the patient raises one of `integrity_errors`
        (or `StaleVersion`)."""
        ...

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
        """Insert version 1, or update from `version - 1` only (else StaleVersion). `clock_target`:
        the earliest target date of the patient's running waiting-time clocks (`clock_patients`)."""
        ...

    def rewrite_snapshot(self, patient: str, snapshot: Any, *, version: int, clock_target: date | None) -> None:
        """Replace the stored snapshot of `patient` at `version` (its version unchanged: the same
        history in a newer shape, `pathway db upgrade`); StaleVersion if the version moved on."""
        ...

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
        ones), close vanished keys with the status given per key, move changed ones."""
        ...

    def flush(self) -> None:
        """Write what the transaction buffered (the end of the `with` block does it too)."""
        ...


class Outbox(Protocol):
    """The reminders as a transactional outbox: claim what is due, record how delivery went.
    Each method is a short transaction of its own."""

    def claim(self, now: datetime, *, lease_until: datetime, token: str, limit: int) -> list[Delivery]:
        """Claim up to `limit` pending reminders to deliver whose `send_after` has come (the
        earliest first): `claimed` by `token` until `lease_until`, their attempt counted."""
        ...

    def finish(self, token: str, now: datetime, *, sent: Sequence[Sent] = (), retry: Sequence[Retry] = (),
               failed: Sequence[Failed] = (), unclaim: Sequence[str] = ()) -> int:
        """Record how the deliveries of a claim went, on the rows still carrying it; returns how many."""
        ...

    def forget_claim(self, token: str, now: datetime) -> int:
        """Return the rows of a claim whose outcome was never learnt to the queue, due at once,
        their attempt uncounted; returns how many."""
        ...

    def next_due(self) -> datetime | None:
        """When the earliest reminder still to deliver may be sent (None: nothing to deliver)."""
        ...

    def release(self, now: datetime) -> int:
        """Return to the queue the claims whose lease has not ended (their dispatcher died)."""
        ...

    def retry_failed(self, now: datetime, keys: Sequence[str] | None = None) -> int:
        """Queue failed deliveries of pending reminders again (all, or those `keys`), due at `now`,
        with a fresh count of attempts; returns how many."""
        ...

    def listen(self, stop: Event, on_notify: Callable[[], None], *, poll: float = 1.0) -> None:
        """Call `on_notify` when another process added or moved reminders, until `stop` is set
        (returns at once where no other process can write)."""
        ...

    def listing(self, *, patient: str | None = None, status: str | None = None, delivery: str | None = None,
                limit: int | None = None) -> list[StoredReminder]:
        """Reminders with their delivery record, by due_on, patient, kind and key."""
        ...


class Repository(Protocol):
    """Storage of patients, their event log and their reminders."""

    #: "sqlite", "postgresql" or "memory".
    dialect: str
    #: What `WriteTx.append` raises for an accepted key bound twice (a concurrent writer's).
    integrity_errors: tuple[type[Exception], ...]

    def write(self) -> AbstractContextManager[WriteTx]:
        """One write transaction, committed when the block ends (discarded if it raises)."""
        ...

    def read(self) -> AbstractContextManager[ReadTx]: ...

    def bulk(self) -> AbstractContextManager[None]:
        """Around a bulk import (many write transactions back to back)."""
        ...

    def outbox(self) -> Outbox: ...

    def close(self) -> None: ...
