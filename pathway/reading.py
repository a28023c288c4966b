"""The read models coordinators use: a patient's view and history, reminders, worklists, counts."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta

from pathway.errors import InvalidArgument, UnknownPatient, storage_errors
from pathway.results import HistoryEntry, PatientView, WorklistItem, history_entries
from persistence.ports import ReadTx
from states.facts import Snapshot
from states.plan import Reminder
from states.vocabulary import Severity, Status


class Reading:
    """The engine's reading methods (a part of `Engine`)."""

    @contextmanager
    def _reading(self) -> Iterator[ReadTx]:
        """A read transaction; an unreachable database is a StorageError."""
        with storage_errors(), self.repository.read() as tx:
            yield tx

    def show(self, patient: str) -> PatientView:
        """The patient's state, full history (refusals included), pending reminders and advice."""
        with self._reading() as tx:
            stored = tx.patient(patient)
            if stored is None:
                raise UnknownPatient(patient)
            events = tx.events(patient)
            reminders = tx.reminders(patient)
        snapshot = Snapshot.from_dict(stored.snapshot)
        history = history_entries(events)
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
        return history_entries(events)

    def reminders(self, patient: str, statuses: Iterable[str] | None = ("pending",)) -> list[Reminder]:
        with self._reading() as tx:
            if tx.patient(patient) is None:
                raise UnknownPatient(patient)
            return tx.reminders(patient, statuses)

    def worklist(self, today: date | None = None, days: int = 7, *, limit: int | None = None) -> list[WorklistItem]:
        """Pending reminders due by `today` + `days`, overdue first (at most `limit`)."""
        if days < 0:
            raise InvalidArgument(f"days must not be negative, got {days}")
        _check_limit(limit)
        today = today or self.today()
        try:
            horizon = today + timedelta(days=days)
        except OverflowError:
            raise InvalidArgument(f"days={days} reaches past the last date there is") from None
        with self._reading() as tx:
            rows = tx.due_by(horizon, limit=limit)
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


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {limit}")
