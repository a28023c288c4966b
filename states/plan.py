"""The care-plan projection: which reminders should be pending for a patient (spec section 5).

`project(snapshot, policy)` is a pure function of the snapshot (itself a fold of the accepted
history) and the policy: each reminder kind's planner (declared by its stage, see
states.definition) says what of its kind is pending. Every reminder has a stable key —
`<patient>:<kind>:<discriminator>`; the same planned thing keeps its key when its date moves — so
that stored reminders can be reconciled: new keys inserted, vanished keys closed, moved keys updated.
"""

from __future__ import annotations

from datetime import date, datetime

from states.definition import DEFINITION
from states.facts import Snapshot
from states.planning import Planned, Reminder, add_months
from states.policy import Policy
from states.vocabulary import ReminderKind

__all__ = ["Planned", "Reminder", "add_months", "notify_at", "project"]


def project(s: Snapshot, policy: Policy) -> list[Planned]:
    """The reminders that should be pending for this snapshot, in due order."""
    return DEFINITION.project(s, policy)


def notify_at(due_on: date, kind: ReminderKind, policy: Policy) -> datetime:
    """When a reminder of `kind` due on `due_on` is sent: 08:00 (policy) in the clinic's zone,
    its kind's lead days before, as a UTC instant."""
    return DEFINITION.notify_at(due_on, kind, policy)
