"""The engine: one object for embedders, made of its parts.

    Engine = Recording (pathway.recording: the unit of work)
           + Reading (pathway.reading: patient views, worklists)
           + Reminding (pathway.reminding: reminder delivery)
           + Verifying (pathway.verifying: replay against what is stored)

Its values (Result, PatientView, HistoryEntry, WorklistItem) are in pathway.results.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from pathway import clock as clocks
from pathway.config import database_url
from pathway.delivery import Dispatcher, DispatcherLock, ReminderScheduler
from pathway.errors import ConfigurationError, StorageError
from pathway.reading import Reading
from pathway.recording import SNAPSHOT_CACHE_SIZE, Recording, SnapshotCache
from pathway.reminding import Reminding
from pathway.results import HistoryEntry, PatientView, Result, WorklistItem
from pathway.verifying import Verifying
from persistence import db, ports
from persistence.memory import MemoryRepository, is_memory_url
from persistence.repository import Repository
from states.plan import Reminder
from states.policy import DEFAULT_POLICY, Policy

__all__ = ["Engine", "HistoryEntry", "PatientView", "Reminder", "Result", "WorklistItem"]


class Engine(Recording, Reading, Reminding, Verifying):
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
        self._cache = SnapshotCache(SNAPSHOT_CACHE_SIZE)
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


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
