"""liver-pathway: the care-pathway engine for patients with liver metastases.

The embedding API for hospital scheduling systems::

    from pathway import Engine
    engine = Engine.open("sqlite:///pathway.db")
    result = engine.record({"patient": "P1", "type": "referral", "on": "2026-01-05",
                            "data": {"primary": "colorectal"}})
    engine.show("P1").state          # 'referral'
    engine.worklist(days=7)          # reminders due in the next week, overdue first
    engine.start_scheduler(notifiers=[WebhookNotifier("https://emr.example/hook")])
"""

from pathway.clock import ManualClock, fixed_clock, system_clock
from pathway.config import load_policy
from pathway.delivery import (
    CallableNotifier,
    DeliveryError,
    DispatcherLocked,
    DispatchReport,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
)
from pathway.engine import Engine, HistoryEntry, PatientView, Reminder, Result, WorklistItem
from pathway.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    EventRefused,
    InvalidArgument,
    InvalidEvent,
    PathwayError,
    PolicyError,
    StorageError,
    UnknownPatient,
)
from persistence.outbox import Delivery, StoredReminder
from states.definition import RULES
from states.policy import Policy
from states.rules import Reason
from states.vocabulary import EventType, ReminderKind, Severity, State, Status

__all__ = [
    "CallableNotifier",
    "ConcurrentUpdate",
    "ConfigurationError",
    "Delivery",
    "DeliveryError",
    "DispatchReport",
    "DispatcherLocked",
    "EmailNotifier",
    "Engine",
    "EventRefused",
    "EventType",
    "HistoryEntry",
    "InvalidArgument",
    "InvalidEvent",
    "LogNotifier",
    "ManualClock",
    "PathwayError",
    "PatientView",
    "Policy",
    "PolicyError",
    "RULES",
    "Reason",
    "Reminder",
    "ReminderKind",
    "Result",
    "Severity",
    "State",
    "Status",
    "StorageError",
    "StoredReminder",
    "UnknownPatient",
    "WebhookNotifier",
    "WorklistItem",
    "fixed_clock",
    "load_policy",
    "system_clock",
]
