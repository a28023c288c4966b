"""One error boundary (issue 9, item 4): every exception class of `states`, `persistence` and
`pathway` derives from PathwayError, and the engine's methods raise the documented errors (never
a bare ValueError, an AssertionError or a lower layer's error) for arguments and data they cannot use.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterator
from datetime import date, datetime
from types import ModuleType

import pytest
import sqlalchemy as sa

import pathway
import persistence
import states
from pathway import Engine, InvalidArgument, PathwayError, StorageError
from persistence import db
from tests.builders import accept, referral


def modules() -> Iterator[ModuleType]:
    """Every module of the three packages (a package's __main__ would run its command: skipped)."""
    for package in (states, persistence, pathway):
        yield package
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith(".__main__"):
                yield importlib.import_module(info.name)


def exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for module in modules():
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_of_states_persistence_and_pathway_derives_from_pathway_error() -> None:
    classes = exception_classes()
    # the walk reaches every layer, the front ends included
    assert {"states.events.EventValidationError", "persistence.db.DatabaseUnavailable",
            "pathway.delivery.DispatcherLocked", "pathway.cli.Fail", "pathway.web.security.LoginRequired"} <= set(classes)
    assert [name for name, cls in classes.items() if not issubclass(cls, PathwayError)] == []


def test_pathway_error_is_one_class_whichever_layer_names_it() -> None:
    from states.errors import PathwayError as root

    assert pathway.PathwayError is root and pathway.errors.PathwayError is root


def test_a_worklist_with_negative_days_raises_invalid_argument_which_is_a_value_error(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="days must not be negative") as caught:
        engine.worklist(date(2026, 1, 1), -1)
    assert isinstance(caught.value, ValueError)


def test_a_worklist_reaching_past_the_last_date_raises_invalid_argument(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="past the last date"):
        engine.worklist(date(2026, 1, 1), 10**7)


@pytest.mark.parametrize("call", [
    lambda engine: engine.worklist(date(2026, 1, 1), 7, limit=-1),
    lambda engine: engine.deliveries(limit=-1),
], ids=["worklist", "deliveries"])
def test_a_negative_limit_raises_invalid_argument(any_engine: Engine, call) -> None:
    with pytest.raises(InvalidArgument, match="limit must not be negative"):
        call(any_engine)


@pytest.mark.parametrize("filters", [{"status": "lost"}, {"delivery": "lost"}], ids=["status", "delivery"])
def test_deliveries_filtered_by_a_status_that_does_not_exist_raise_invalid_argument(
        engine: Engine, filters: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument, match="must be one of"):
        engine.deliveries(**filters)


def test_dispatch_due_at_an_instant_without_a_time_zone_raises_invalid_argument(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        engine.dispatch_due(datetime(2026, 2, 1, 9), notifiers=[lambda d: None])


def test_a_dispatcher_lock_file_that_cannot_be_opened_is_a_storage_error(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    path = db.sqlite_path(engine.repository.engine)
    assert path is not None
    os.mkdir(f"{path}.dispatcher.lock")  # a directory where the lock file goes
    with pytest.raises(StorageError, match="lock file"):
        engine.dispatch_due(notifiers=[lambda d: None])


def test_verify_reports_a_stored_history_that_no_longer_replays_rather_than_failing(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    accept(engine, referral("V1", "2026-01-05"))
    with engine.repository.engine.begin() as conn:  # the event log refuses updates: drop its guard here
        conn.execute(sa.text("DROP TRIGGER event_log_no_update"))
        conn.execute(sa.text("UPDATE event_log SET payload = :payload WHERE patient = 'V1'"),
                     {"payload": '{"patient": "V1", "type": "referral", "on": "2026-01-05", "data": {}}'})
    (problem,) = engine.verify("V1")
    assert problem.startswith("its accepted history does not replay: ") and "primary" in problem
