"""The read models coordinators use: a patient's view and history, reminders, worklists, counts."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from pathway.errors import InvalidArgument, UnknownPatient, storage_errors
from pathway.recording import recorded
from pathway.results import HistoryEntry, PatientView, PtlRow, WorklistItem, history_entries
from persistence.ports import ReadTx, StoredEvent
from states.clocks import ClockView
from states.clocks import views as clock_views
from states.definition import DEFINITION
from states.facts import Snapshot, StaleSnapshot
from states.pathway import effective, evolve, replay
from states.plan import Reminder, project
from states.vocabulary import Severity, Status


class Reading:
    """The engine's reading methods (a part of `Engine`)."""

    @contextmanager
    def _reading(self) -> Iterator[ReadTx]:
        """A read transaction; an unreachable database is a StorageError."""
        with storage_errors(), self.repository.read() as tx:
            yield tx

    def show(self, patient: str, *, as_recorded_at: datetime | None = None) -> PatientView:
        """The patient's state, full history (refusals included) in clinical order, pending
        reminders and advice. With `as_recorded_at` (an aware instant): the patient exactly as the
        engine knew them then — the history recorded by that instant, the state and snapshot its
        replay gives, and the reminders it plans (under the current policy)."""
        with self._reading() as tx:
            stored = tx.patient(patient)
            if stored is None:
                raise UnknownPatient(patient)
            events = tx.events(patient)
            reminders = tx.reminders(patient)
        if as_recorded_at is not None:
            return self._as_recorded_at(patient, events, as_recorded_at)
        try:
            snapshot = Snapshot.from_dict(stored.snapshot)
        except StaleSnapshot:  # stored before its present shape: its history gives it
            replayed = replay([recorded(e) for e in events if e.status == Status.accepted], self.policy)
            assert replayed is not None
            snapshot = replayed
        return self._view(patient, snapshot, stored.state, stored.version, events, reminders, self.today())

    def clock_views(self, snapshot: Snapshot, today: date) -> list[ClockView]:
        """The patient's waiting-time clocks on `today`, forecast against their care plan."""
        if not snapshot.clocks:
            return []
        return clock_views(snapshot, project(snapshot, self.policy), self.policy, today, _kind_label)

    def _view(self, patient: str, snapshot: Snapshot, state: str, version: int, events: list[StoredEvent],
              reminders: Iterable[Reminder], today: date) -> PatientView:
        history = history_entries(events, self.policy.zone)
        if any(h.late_entry for h in history):
            history = self._states_in_date_order(events, history)
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
            state=state,
            version=version,
            history=tuple(history),
            reminders=tuple(reminders),
            advice=advice,
            snapshot=snapshot,
            clocks=tuple(self.clock_views(snapshot, today)),
        )

    def _states_in_date_order(self, events: list[StoredEvent], history: list[HistoryEntry]) -> list[HistoryEntry]:
        """After a late entry, the state each effective event led to in date order (the log keeps
        the state as recorded; an event recorded before a late one may have been in another state
        since): replayed here, as `verify` would."""
        items = effective([recorded(e) for e in events if e.status == Status.accepted])
        states: dict[int, str] = {}
        s = None
        for item in items:
            s = evolve(s, item.event, self.policy)
            states[item.id] = str(s.state)
        return [dataclasses.replace(h, state_after=states[h.id]) if h.id in states else h for h in history]

    def _as_recorded_at(self, patient: str, events: list[StoredEvent], at: datetime) -> PatientView:
        if at.tzinfo is None:
            raise InvalidArgument(f"as_recorded_at must be an instant with a UTC offset, got {at.isoformat()}")
        known = [e for e in events if e.recorded_at <= at]
        accepted = [e for e in known if e.status == Status.accepted]
        if not accepted:
            raise UnknownPatient(patient)  # not yet referred then
        snapshot = replay([recorded(e) for e in accepted], self.policy)
        assert snapshot is not None  # its referral is among them
        planned = project(snapshot, self.policy)
        reminders = [Reminder(p.key, p.patient, str(p.kind), p.due_on, p.notify_at, "pending", p.detail)
                     for p in planned]
        then = at.astimezone(self.policy.zone).date()  # the clinic's day at that instant
        return self._view(patient, snapshot, str(snapshot.state), len(accepted), known, reminders, then)

    def history(self, patient: str) -> list[HistoryEntry]:
        with self._reading() as tx:
            events = tx.events(patient)
        if not events:
            raise UnknownPatient(patient)
        return history_entries(events, self.policy.zone)

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

    def ptl(self, today: date | None = None) -> list[PtlRow]:
        """The patient tracking list: every running waiting-time clock on `today`, the most urgent
        first (fewest days left; breached ones lead), with the patient's next step."""
        today = today or self.today()
        with self._reading() as tx:
            stored = tx.clock_patients()
        rows = []
        for p in stored:
            try:
                snapshot = Snapshot.from_dict(p.snapshot)
            except StaleSnapshot:
                continue  # no clock row is written in an older shape: `pathway db upgrade` rebuilds them
            planned = project(snapshot, self.policy)
            nxt = planned[0] if planned else None
            step = f"{_kind_label(str(nxt.kind))}: {nxt.detail}" if nxt is not None else None
            for view in clock_views(snapshot, planned, self.policy, today, _kind_label):
                if view.stopped_on is None:
                    rows.append(PtlRow(p.id, p.state, view, step, nxt.due_on if nxt else None))
        rows.sort(key=lambda r: (r.clock.days_left if r.clock.days_left is not None else 0, r.patient,
                                 r.clock.standard))
        return rows

    def clock_alerts(self, today: date | None = None) -> list[PtlRow]:
        """The running clocks at risk or forecast to breach (worklists show them with reminders)."""
        return [row for row in self.ptl(today) if row.breach_risk]

    def patients(self, state: str | None = None) -> list[tuple[str, str]]:
        with self._reading() as tx:
            return tx.patients(state)

    def counts_by_state(self) -> dict[str, int]:
        with self._reading() as tx:
            return tx.counts_by_state()

    # -- reminder delivery (pathway.delivery) ----------------------------------------------------


def _kind_label(kind: str) -> str:
    spec = DEFINITION.reminders.get(kind)  # type: ignore[call-overload]
    return spec.label if spec is not None else kind


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {limit}")
