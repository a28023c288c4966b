"""What the engine answers: the result of recording an event, a patient's view and history,
worklist items (plain values, each with `as_dict()` for JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from pathway.errors import EventRefused, InvalidEvent
from persistence.ports import StoredEvent
from states.clocks import ClockView
from states.facts import Snapshot
from states.plan import Reminder
from states.rules import Reason
from states.vocabulary import EventType, Forecast, Status


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
    #: A late entry or a void: the ids of the later events decided again (each kept its outcome).
    reevaluated: tuple[int, ...] = ()

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
        out = {
            "patient": self.patient,
            "type": self.type,
            "status": str(self.status),
            "state": self.state,
            "reasons": [r.as_dict() for r in self.reasons],
            "error": self.error,
        }
        if self.reevaluated:
            out["reevaluated"] = list(self.reevaluated)
        return out


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
    #: Days between the clinical date and the (clinic-local) day it was recorded.
    late_by_days: int | None = None
    #: Recorded after an event with a later clinical date: placed back in date order.
    late_entry: bool = False

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
        if self.late_by_days is not None:
            out["late_by_days"] = self.late_by_days
        if self.late_entry:
            out["late_entry"] = True
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
    #: The waiting-time clocks on the day shown (running first).
    clocks: tuple[ClockView, ...] = ()

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
            "clocks": [c.as_dict() for c in self.clocks],
        }


@dataclass(frozen=True, slots=True)
class PtlRow:
    """A running waiting-time clock on the patient tracking list (`pathway ptl`), with the
    patient's next step: their earliest pending reminder."""

    patient: str
    state: str
    clock: ClockView
    next_step: str | None
    next_due: date | None

    @property
    def breach_risk(self) -> bool:
        return self.clock.forecast in (Forecast.at_risk, Forecast.will_breach)

    def as_dict(self) -> dict[str, Any]:
        c = self.clock
        return {
            "patient": self.patient,
            "state": self.state,
            "standard": c.standard,
            "started_on": c.started_on.isoformat(),
            "days_waited": c.days_waited,
            "band": c.band,
            "target_on": c.target_on.isoformat(),
            "days_left": c.days_left,
            "status": c.status,
            "forecast": c.forecast,
            "reason": c.reason,
            "treatment": c.treatment,
            "next_step": self.next_step,
            "next_due": self.next_due.isoformat() if self.next_due else None,
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


def history_entries(events: list[StoredEvent], zone: ZoneInfo) -> list[HistoryEntry]:
    """A patient's audit history in clinical order — by date, and on one day in the order of
    recording — with what each void undid, how late each event was recorded (in the clinic's
    days), and which were late entries (recorded after an event dated later)."""
    voided_by = {e.refers_to: e.id for e in events
                 if e.status == Status.accepted and e.type == EventType.void and e.refers_to is not None}
    out = []
    latest: date | None = None  # the latest clinical date among the accepted events recorded so far
    for e in events:  # record order
        payload = e.payload if isinstance(e.payload, dict) else {}
        data = payload.get("data") if e.status != Status.invalid else payload
        counts = e.status == Status.accepted and e.type != EventType.void and e.on is not None
        late_entry = counts and latest is not None and e.on < latest  # type: ignore[operator]
        if counts and (latest is None or e.on > latest):  # type: ignore[operator]
            latest = e.on
        out.append(HistoryEntry(
            id=e.id, type=e.type, on=e.on, status=e.status, by=e.by, recorded_at=e.recorded_at,
            reasons=tuple(e.reasons), data=data if isinstance(data, dict) else {},
            note=payload.get("note", "") if e.status != Status.invalid else "",
            override=tuple(payload.get("override", ())) if e.status != Status.invalid else (),
            key=e.key, error=e.error, state_after=e.state_after, voided_by=voided_by.get(e.id),
            void_of=e.refers_to if e.type == EventType.void and e.status == Status.accepted else None,
            late_by_days=(e.recorded_at.astimezone(zone).date() - e.on).days if e.on is not None else None,
            late_entry=bool(late_entry),
        ))
    out.sort(key=lambda h: (h.on or h.recorded_at.astimezone(zone).date(), h.id))
    return out
