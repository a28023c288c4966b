"""The care-plan projection: which reminders should be pending for a patient (spec section 5).

`project(snapshot, policy)` is a pure function of the snapshot (itself a fold of the accepted
history) and the policy. Every reminder has a stable key — the same planned thing keeps its key
when its date moves — so that stored reminders can be reconciled: new keys inserted, vanished keys
closed, moved keys updated. Dates are clinic-local; `notify_at` is 08:00 (policy) in the clinic's
zone on `due_on - lead_days`, as a UTC instant, so daylight saving never shifts a reminder's day.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from states.context import plus
from states.facts import Snapshot
from states.policy import Policy
from states.vocabulary import EventType, PhaseKind, ReminderKind, State

#: Which `lead_days` group each kind uses (spec section 5).
LEAD_GROUP = {
    ReminderKind.mdt_due: "mdt",
    ReminderKind.mdt_meeting: "mdt",
    ReminderKind.chemo_cycle: "chemo",
    ReminderKind.restaging_scan: "restaging",
    ReminderKind.surgery_due: "surgery",
    ReminderKind.pve_due: "flr",
    ReminderKind.flr_scan: "flr",
    ReminderKind.ablation_due: "ablation",
    ReminderKind.ablation_scan: "ablation",
    ReminderKind.imaging_followup: "imaging",
    ReminderKind.surveillance: "surveillance",
}

#: The event types that fulfil a reminder of each kind: a reminder that vanishes because of one
#: of these is `done`; one that vanishes for any other reason is `cancelled`.
FULFILLED_BY: dict[ReminderKind, frozenset[EventType]] = {
    ReminderKind.mdt_due: frozenset({EventType.mdt_scheduled, EventType.mdt_decision}),
    ReminderKind.mdt_meeting: frozenset({EventType.mdt_decision}),
    ReminderKind.chemo_cycle: frozenset({EventType.cycle_given}),
    ReminderKind.restaging_scan: frozenset({EventType.restaging}),
    ReminderKind.surgery_due: frozenset({EventType.surgery}),
    ReminderKind.pve_due: frozenset({EventType.pve_performed}),
    ReminderKind.flr_scan: frozenset({EventType.restaging}),
    ReminderKind.ablation_due: frozenset({EventType.ablation_performed}),
    ReminderKind.ablation_scan: frozenset({EventType.ablation_checked, EventType.surveillance_visit}),
    ReminderKind.imaging_followup: frozenset({EventType.surveillance_visit, EventType.recurrence}),
    ReminderKind.surveillance: frozenset({EventType.surveillance_visit}),
}


@dataclass(frozen=True, slots=True)
class Planned:
    """A reminder the care plan says should be pending."""

    key: str
    patient: str
    kind: ReminderKind
    due_on: date
    notify_at: datetime  # UTC
    detail: str


class Reminder(NamedTuple):
    """A stored reminder: a planned one with its status (and, on worklists, the patient's state).
    A named tuple: worklists build tens of thousands of them, and tuples are built fastest."""

    key: str
    patient: str
    kind: str
    due_on: date
    notify_at: datetime
    status: str
    detail: str
    state: str | None = None
    #: Its notification (queued | claimed | sent | failed), on worklists.
    delivery: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "key": self.key,
            "patient": self.patient,
            "kind": self.kind,
            "due_on": self.due_on.isoformat(),
            "notify_at": self.notify_at.isoformat().replace("+00:00", "Z"),
            "status": self.status,
            "detail": self.detail,
        }
        if self.state is not None:
            out["state"] = self.state
        if self.delivery is not None:
            out["delivery"] = self.delivery
        return out


def add_months(start: date, months: int) -> date:
    """`start` + `months` calendar months, clamped to the month's end (31 Aug + 6 = 28/29 Feb).

    Always computed from the start date, never cumulatively, so clamping never drifts.
    """
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


_NOTIFY_CACHE: dict[tuple[date, str, str], datetime] = {}


def notify_at(due_on: date, kind: ReminderKind, policy: Policy) -> datetime:
    """08:00 (policy) in the clinic's zone on due_on - lead_days, as a UTC instant."""
    lead = policy.lead_days[LEAD_GROUP[kind]]
    local_day = due_on - timedelta(days=lead)
    cache_key = (local_day, policy.clinic_timezone, policy.notify_time)
    instant = _NOTIFY_CACHE.get(cache_key)
    if instant is None:
        if len(_NOTIFY_CACHE) > 100_000:
            _NOTIFY_CACHE.clear()
        local = datetime.combine(local_day, policy.notify_clock, tzinfo=policy.zone)
        instant = _NOTIFY_CACHE[cache_key] = local.astimezone(UTC)
    return instant


def planned_preop(regimen: str, policy: Policy) -> int:
    return policy.preop_cycles[regimen]


def planned_postop(regimen: str, policy: Policy) -> int:
    return policy.postop_cycles[regimen]


def surveillance_key(patient: str, anchor: date, month: int) -> str:
    return f"{patient}:surveillance:{anchor.isoformat()}:{month}"


def surveillance_visits(s: Snapshot, policy: Policy) -> list[tuple[str, date, int]]:
    """The visits of the current surveillance course not yet done: (key, due_on, month)."""
    if s.surv_anchor is None:
        return []
    done = set(s.surv_done)
    prefix = f"{s.patient}:surveillance:"
    return [(prefix + mark, due, month) for mark, due, month in _course(s.surv_anchor, policy.surveillance_months)
            if mark not in done]


@functools.lru_cache(maxsize=8192)
def _course(anchor: date, months: tuple[int, ...]) -> tuple[tuple[str, date, int], ...]:
    """A surveillance course's visits: ("anchor:month", due_on, month), computed once per anchor."""
    return tuple((f"{anchor.isoformat()}:{month}", add_months(anchor, month), month) for month in months)


def project(s: Snapshot, policy: Policy) -> list[Planned]:
    """The reminders that should be pending for this snapshot, in due order."""
    items: list[tuple[ReminderKind, str, date, str]] = []

    def add(kind: ReminderKind, discriminator: str, due: date, detail: str) -> None:
        items.append((kind, discriminator, due, detail))

    state = s.state
    if state is State.referral:
        add(ReminderKind.mdt_due, str(s.mdt_seq), plus(s.mdt_anchor or s.referred_on, policy.mdt_due_days),
            "first discussion at the HPB MDT")
    elif state is State.mdt_assessment:
        if s.meeting_on is not None:
            add(ReminderKind.mdt_meeting, str(s.mdt_seq), s.meeting_on, "HPB MDT meeting")
        else:
            anchor = s.mdt_anchor or s.entered_on
            add(ReminderKind.mdt_due, str(s.mdt_seq), plus(anchor, policy.mdt_due_days),
                "discussion at the HPB MDT")
    elif s.phase is not None and state in (
        State.neoadjuvant_chemo, State.conversion_chemo, State.systemic_therapy, State.adjuvant_chemo
    ):
        phase = s.phase
        if phase.kind is PhaseKind.neoadjuvant and phase.cycles >= planned_preop(phase.regimen, policy):
            last = phase.last_cycle_on or phase.started_on
            add(ReminderKind.restaging_scan, f"{phase.seq}:{phase.restagings + 1}",
                plus(last, policy.preop_restaging_days), "restaging after pre-operative chemotherapy")
        else:
            n = phase.cycles + 1
            of = ""
            if phase.kind is PhaseKind.neoadjuvant:
                of = f" of {planned_preop(phase.regimen, policy)}"
            elif phase.kind is PhaseKind.adjuvant:
                of = f" of {planned_postop(phase.regimen, policy)}"
            add(ReminderKind.chemo_cycle, f"{phase.seq}:{n}", phase.next_due,
                f"{phase.kind} {phase.regimen} cycle {n}{of}")
            if phase.restaging_due is not None:
                add(ReminderKind.restaging_scan, f"{phase.seq}:{phase.restagings + 1}", phase.restaging_due,
                    f"restaging during {phase.kind} therapy")
        if state is State.adjuvant_chemo and s.ablation_scan_due is not None:
            add(ReminderKind.ablation_scan, str(s.ablation_scan_seq), s.ablation_scan_due,
                "contrast CT/MRI after ablation")
    elif state is State.resection:
        due = plus(s.entered_on, policy.surgery_after_entry_days)
        if s.last_cycle_on is not None:
            due = max(due, plus(s.last_cycle_on, policy.surgery_after_last_cycle_days))
        if s.last_bev_on is not None:
            due = max(due, plus(s.last_bev_on, policy.bevacizumab_washout_days))
        add(ReminderKind.surgery_due, str(s.resection_seq), due, "liver surgery")
    elif state is State.portal_vein_embolization:
        if s.pve_due_planned:
            add(ReminderKind.pve_due, str(s.pve_seq), plus(s.entered_on, policy.pve_due_days),
                "portal vein embolization")
        if s.flr_scan_due is not None:
            add(ReminderKind.flr_scan, f"{s.pve_seq}:{s.flr_scan_seq}", s.flr_scan_due,
                "CT volumetry of the future liver remnant")
    elif state is State.ablation:
        add(ReminderKind.ablation_due, str(s.ablation_seq), plus(s.entered_on, policy.ablation_due_days),
            "thermal ablation")
    elif state is State.follow_up:
        for key, due, month in surveillance_visits(s, policy):
            items.append((ReminderKind.surveillance, key, due,
                          f"surveillance month {month}: history, CEA, CT chest/abdomen/pelvis"))
        if s.imaging_due is not None:
            add(ReminderKind.imaging_followup, str(s.imaging_seq), s.imaging_due,
                "imaging after a suspicious surveillance finding")
        if s.ablation_scan_due is not None:
            add(ReminderKind.ablation_scan, str(s.ablation_scan_seq), s.ablation_scan_due,
                "contrast CT/MRI after ablation")

    out = []
    for kind, discriminator, due, detail in items:
        key = discriminator if kind is ReminderKind.surveillance else f"{s.patient}:{kind}:{discriminator}"
        booked = s.booking(key)
        if booked is not None:
            due = booked
        out.append(Planned(key, s.patient, kind, due, notify_at(due, kind, policy), detail))
    out.sort(key=lambda p: (p.due_on, p.kind, p.key))
    return out
