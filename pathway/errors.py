"""The error tree of the embedding API (httpx / procrastinate style).

    PathwayError                the root (states.errors; every layer's errors derive from it)
    ├── InvalidEvent            the event does not fit the contract; .errors = [(field, message)]
    ├── EventRefused            a guard refused it; .reasons = [Reason(code, severity, message, source)]
    ├── UnknownPatient          no patient with that id (also a LookupError)
    ├── InvalidArgument         an argument out of range or not one of the values accepted, such as
    │                           worklist(days=-1) or deliveries(status="lost") (also a ValueError)
    ├── ConcurrentUpdate        another writer changed the patient first: read again and retry
    ├── ConfigurationError      a bad policy file, URL or setting
    ├── StorageError            the database cannot be used (unreachable, wrong schema, lock file)
    ├── DeliveryError           a notifier could not deliver a reminder (pathway.delivery)
    ├── DispatcherLocked        another dispatcher already runs on this SQLite database (pathway.delivery)
    └── PolicyError             a policy setting unknown or out of range, from Policy(...) itself
                                (states.policy; also a ValueError; load_policy makes it a ConfigurationError)

`Engine.record` returns a `Result` for invalid, refused and duplicate events rather than raising;
`Result.raise_for_status()` turns the first two into exceptions for callers who prefer them.

The layers beneath have errors of their own, under the same root so that nothing the packages
raise on purpose escapes an `except PathwayError`. The engine translates them at its boundary
(driver errors are classified by one helper, `persistence.db.guard`, on reads and writes alike),
re-raised with `from exc`; its methods never raise these:

    PathwayError
    ├── EventValidationError    states.events (also ValueError)  -> a Result with status invalid
    ├── SchemaError             persistence.db (also RuntimeError) -> StorageError
    ├── DatabaseUnavailable     persistence.db (also RuntimeError) -> StorageError
    ├── WriteConflict           persistence.db (also RuntimeError) -> retried, then ConcurrentUpdate
    │   └── StaleVersion        persistence.repository
    ├── AccountError            persistence.accounts (also ValueError): accounts are the front ends'
    │                           business (`pathway user`, the admin page), not the engine's
    └── InvalidDefinition       states.stage: the pathway definition is broken (raised on import,
                                naming the missing member: a test catches it, never a patient)

The front ends' own control flow derives from it too: `pathway.cli.Fail` (a message and an exit
status), the web app's `LoginRequired` and its 413 refusal, and the demo's `CohortError`.
tests/test_errors.py checks that every exception class of `states`, `persistence` and `pathway`
derives from PathwayError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from persistence import db
from states.errors import PathwayError
from states.policy import PolicyError
from states.rules import Reason

__all__ = [
    "ConcurrentUpdate",
    "ConfigurationError",
    "EventRefused",
    "InvalidArgument",
    "InvalidEvent",
    "PathwayError",
    "PolicyError",
    "StorageError",
    "UnknownPatient",
]


class InvalidEvent(PathwayError):
    def __init__(self, message: str, errors: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.errors = list(errors)


class EventRefused(PathwayError):
    def __init__(self, message: str, reasons: Sequence[Reason] = ()):
        super().__init__(message)
        self.reasons = list(reasons)


class UnknownPatient(PathwayError, LookupError):
    def __init__(self, patient: str):
        super().__init__(f"no patient '{patient}': record a referral first")
        self.patient = patient


class InvalidArgument(PathwayError, ValueError):
    """An argument of an engine method is out of range or not one of the values it accepts."""


class ConcurrentUpdate(PathwayError):
    """Another writer recorded an event for this patient first; nothing of this event was stored."""


class ConfigurationError(PathwayError):
    pass


class StorageError(PathwayError):
    pass


@contextmanager
def storage_errors() -> Iterator[None]:
    """The persistence layer's errors as the embedding API's: an outage is a StorageError, a
    conflict that outlasted its retries a ConcurrentUpdate."""
    try:
        yield
    except db.DatabaseUnavailable as exc:
        raise StorageError(f"the database is unavailable: {exc}") from exc
    except db.WriteConflict as exc:
        raise ConcurrentUpdate(f"{exc}: nothing was changed, try again") from exc
