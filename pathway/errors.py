"""The error tree of the embedding API (httpx / procrastinate style).

    PathwayError
    ├── InvalidEvent          the event does not fit the contract; .errors = [(field, message)]
    ├── EventRefused          a guard refused it; .reasons = [Reason(code, severity, message, source)]
    ├── UnknownPatient        no patient with that id
    ├── ConcurrentUpdate      another writer changed the patient first: read again and retry
    ├── ConfigurationError    a bad policy file, URL or setting
    └── StorageError          the database cannot be used (unreachable, wrong schema)

`Engine.record` returns a `Result` for invalid, refused and duplicate events rather than raising;
`Result.raise_for_status()` turns the first two into exceptions for callers who prefer them.
Driver errors are re-raised from these with `from exc`.
"""

from __future__ import annotations

from collections.abc import Sequence

from states.rules import Reason


class PathwayError(Exception):
    """Root of every error the engine raises on purpose."""


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


class ConcurrentUpdate(PathwayError):
    """Another writer recorded an event for this patient first; nothing of this event was stored."""


class ConfigurationError(PathwayError):
    pass


class StorageError(PathwayError):
    pass
