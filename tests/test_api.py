"""The embedding API: what `pathway` exports is pinned (style rule 10), and it works as documented."""

from __future__ import annotations

import types

import pytest

import pathway
from pathway import (
    Engine,
    EventRefused,
    InvalidEvent,
    StorageError,
    UnknownPatient,
)
from states.vocabulary import Status

EXPECTED = {
    "RULES", "ConcurrentUpdate", "ConfigurationError", "Engine", "EventRefused", "EventType", "HistoryEntry",
    "InvalidEvent", "ManualClock", "PathwayError", "PatientView", "Policy", "Reason", "Reminder", "ReminderKind",
    "Result", "Severity", "State", "Status", "StorageError", "UnknownPatient", "WorklistItem", "fixed_clock",
    "load_policy", "system_clock",
    # reminder delivery (issue 3)
    "CallableNotifier", "Delivery", "DeliveryError", "DispatchReport", "DispatcherLocked", "EmailNotifier",
    "LogNotifier", "StoredReminder", "WebhookNotifier",
    # one error boundary (issue 9)
    "InvalidArgument", "PolicyError",
}


def test_the_public_api_is_exactly_what_embedders_are_promised() -> None:
    assert set(pathway.__all__) == EXPECTED
    for name in pathway.__all__:
        assert getattr(pathway, name) is not None


def test_all_is_sorted_and_lists_every_public_name_of_the_package() -> None:
    public = {name for name, value in vars(pathway).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert pathway.__all__ == sorted(pathway.__all__)
    assert set(pathway.__all__) == public


def test_raise_for_status_turns_refusals_and_invalid_events_into_exceptions(engine: Engine) -> None:
    ok = engine.record({"patient": "A1", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}})
    assert ok.raise_for_status() is ok and ok.ok
    refused = engine.record({"patient": "A1", "type": "cycle_given", "on": "2026-01-06"})
    with pytest.raises(EventRefused) as caught:
        refused.raise_for_status()
    assert [r.code for r in caught.value.reasons] == ["NOT_ALLOWED_IN_STATE"]
    invalid = engine.record({"patient": "A1", "type": "cycle_given"})
    with pytest.raises(InvalidEvent) as bad:
        invalid.raise_for_status()
    assert bad.value.errors == [("on", "is required")]


def test_json_text_is_accepted_as_an_event(engine: Engine) -> None:
    result = engine.record('{"patient": "A2", "type": "referral", "on": "2026-01-05", "data": {"primary": "breast"}}')
    assert result.status is Status.accepted and result.state == "referral"


def test_show_history_and_reminders_of_an_unknown_patient_raise_unknown_patient(engine: Engine) -> None:
    for call in (engine.show, engine.history, engine.reminders, engine.verify):
        with pytest.raises(UnknownPatient, match="record a referral first"):
            call("NOBODY")


def test_an_engine_opened_on_an_unreachable_database_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot open the database"):
        Engine.open("postgresql://nobody@127.0.0.1:1/none")


def test_record_many_streams_its_input(engine: Engine) -> None:
    """record_many pulls at most one batch ahead of what it has answered: constant memory."""
    pulled = 0

    def events():
        nonlocal pulled
        yield {"patient": "S1", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}}
        for n in range(10_000):
            pulled += 1
            yield {"patient": "S1", "type": "biomarker", "on": "2026-01-05", "data": {"msi": "mss"}, "key": f"k{n}"}

    results = engine.record_many(events(), batch_size=50)
    first = [next(results) for _ in range(60)]
    assert all(r.ok for r in first)
    assert pulled <= 100  # two batches of 50, not ten thousand events


def test_results_of_record_many_are_stored_when_they_are_handed_back(engine: Engine) -> None:
    stream = engine.record_many(
        [{"patient": "S2", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}}], batch_size=10
    )
    assert next(stream).ok
    assert engine.show("S2").state == "referral"
