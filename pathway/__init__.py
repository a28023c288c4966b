"""liver-pathway: the care-pathway engine for patients with liver metastases.

The embedding API for hospital scheduling systems::

    from pathway import Engine
    engine = Engine.open("sqlite:///pathway.db")
    result = engine.record({"patient": "P1", "type": "referral", "on": "2026-01-05",
                            "data": {"primary": "colorectal"}})
    engine.show("P1").state          # 'referral'
    engine.worklist(days=7)          # reminders due in the next week, overdue first
"""

from pathway.clock import ManualClock, fixed_clock, system_clock
from pathway.config import load_policy
from pathway.engine import Engine, HistoryEntry, PatientView, Reminder, Result, WorklistItem
from pathway.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    EventRefused,
    InvalidEvent,
    PathwayError,
    StorageError,
    UnknownPatient,
)
from states.policy import Policy
from states.rules import RULES, Reason
from states.vocabulary import EventType, ReminderKind, Severity, State, Status

__all__ = [
    "RULES",
    "ConcurrentUpdate",
    "ConfigurationError",
    "Engine",
    "EventRefused",
    "EventType",
    "HistoryEntry",
    "InvalidEvent",
    "ManualClock",
    "PathwayError",
    "PatientView",
    "Policy",
    "Reason",
    "Reminder",
    "ReminderKind",
    "Result",
    "Severity",
    "State",
    "Status",
    "StorageError",
    "UnknownPatient",
    "WorklistItem",
    "fixed_clock",
    "load_policy",
    "system_clock",
]
