"""Reminder delivery (issue 3): the outbox, the dispatcher, the notifiers and the APScheduler glue.

Time is injected: `dispatch_due(now)` is given the instant to act at, and the engine's clock is
a pinned ManualClock (only the one APScheduler smoke test runs in real time). The main cases run
on SQLite and on PostgreSQL (`any_engine` / `db_url`).
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from pathway import ConfigurationError, Engine, ManualClock
from pathway.cli import main
from pathway.delivery import (
    DeliveryError,
    Dispatcher,
    DispatcherLock,
    DispatcherLocked,
    DispatchReport,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
)
from persistence.outbox import Delivery, Outbox, SqlOutbox, StoredReminder
from states.policy import Policy
from tests.builders import (
    accept,
    cycle,
    days,
    delayed,
    died,
    london_8am,
    referral,
    scheduled,
    walk_to,
    withdrawn,
)

LONDON = ZoneInfo("Europe/London")
SECOND = timedelta(seconds=1)
PAYLOAD_KEYS = {"key", "patient", "kind", "due_on", "notify_at", "detail", "late_by_s"}


class Recorder:
    """A notifier that records every call; it fails its first `fail` calls (raising an error
    that names the patient, which the dispatcher must not store)."""

    name = "recorder"
    timeout = 0.0

    def __init__(self, fail: int = 0, on_call: Callable[[Delivery], None] | None = None):
        self.fail = fail
        self.on_call = on_call
        self.calls: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self._lock:
            self.calls.append(delivery)
            failing = len(self.calls) <= self.fail
        if self.on_call is not None:
            self.on_call(delivery)
        if failing:
            raise RuntimeError(f"relay refused the reminder of patient {delivery.patient}")
        with self._lock:
            self.delivered.append(delivery)

    @property
    def keys(self) -> list[str]:
        with self._lock:
            return [d.key for d in self.delivered]


ALWAYS_FAILS = 10**9


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    """The outbox and the dispatcher's lock file are the database's: the cases without a backend
    of their own run on SQLite (the in-memory twin's outbox is held to the same contract in
    tests/test_repository_contract.py)."""
    return sqlite_engine


def stored(engine: Engine, key: str) -> StoredReminder:
    patient = key.split(":", 1)[0]
    found = [r for r in engine.deliveries(patient=patient) if r.key == key]
    assert len(found) == 1, f"{key} not stored exactly once: {found}"
    return found[0]


def the_reminder(engine: Engine, patient: str, kind: str, status: str = "pending") -> StoredReminder:
    found = [r for r in engine.deliveries(patient=patient, status=status) if r.kind == kind]
    assert len(found) == 1, f"expected one {status} {kind} of {patient}: {found}"
    return found[0]


def nothing_claimed(report: DispatchReport) -> bool:
    return (report.claimed, report.sent, report.retried, report.failed) == (0, 0, 0, 0)


def open_like(engine: Engine) -> Engine:
    """A second engine (as a second process would have) on the same database."""
    return Engine.open(engine.repository.engine.url.render_as_string(hide_password=False))


# -- 1. on time, once ------------------------------------------------------------------------------


def test_a_reminder_is_delivered_at_its_notify_at_not_before_and_only_once(any_engine: Engine) -> None:
    engine = any_engine
    accept(engine, referral("P1", date(2026, 1, 5)))
    accept(engine, referral("P2", date(2026, 1, 12)))
    r = the_reminder(engine, "P1", "mdt_due")
    # referral + 14 days, notified 2 days before at 08:00 London: GMT in January, so 08:00 UTC
    assert r.due_on == date(2026, 1, 19)
    assert r.notify_at == london_8am(date(2026, 1, 17)) == datetime(2026, 1, 17, 8, 0, tzinfo=UTC)
    assert (r.delivery, r.attempts, r.sent_at, r.late_by_s) == ("queued", 0, None, None)
    recorder = Recorder()

    early = engine.dispatch_due(r.notify_at - SECOND, notifiers=[recorder])
    assert nothing_claimed(early) and recorder.calls == []
    assert (stored(engine, r.key).delivery, stored(engine, r.key).attempts) == ("queued", 0)

    report = engine.dispatch_due(r.notify_at, notifiers=[recorder])
    assert report.as_dict() == {"claimed": 1, "sent": 1, "late": 0, "retried": 0, "failed": 0, "superseded": 0}
    (given,) = recorder.calls
    assert given == Delivery(r.key, "P1", "mdt_due", r.due_on, r.notify_at, r.detail, attempt=1, late_by_s=0)
    after = stored(engine, r.key)
    assert (after.delivery, after.sent_at, after.attempts, after.late_by_s, after.last_error) == (
        "sent", r.notify_at, 1, 0, None)
    assert after.status == "pending"  # delivery does not change the plan: the MDT is still to happen
    other = the_reminder(engine, "P2", "mdt_due")
    assert (other.delivery, other.attempts) == ("queued", 0)  # P2's time has not come

    for later in (r.notify_at, r.notify_at + timedelta(days=1)):
        assert nothing_claimed(engine.dispatch_due(later, notifiers=[recorder]))
    assert len(recorder.calls) == 1
    assert stored(engine, r.key).attempts == 1


# -- 2. late ---------------------------------------------------------------------------------------


def test_a_reminder_found_due_long_after_its_notify_at_is_delivered_then_with_its_real_lateness(
        any_engine: Engine) -> None:
    engine = any_engine
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    late = timedelta(days=3, hours=5, minutes=2, seconds=7)  # nothing ran meanwhile
    recorder = Recorder()
    report = engine.dispatch_due(r.notify_at + late, notifiers=[recorder])
    assert (report.sent, report.late) == (1, 1)
    assert recorder.delivered[0].late_by_s == 277_327 == int(late.total_seconds())
    after = stored(engine, r.key)
    assert (after.delivery, after.late_by_s, after.sent_at) == ("sent", 277_327, r.notify_at + late)


# -- 3. cancelled or done before delivery -----------------------------------------------------------


def test_reminders_cancelled_or_done_before_their_time_are_never_delivered(any_engine: Engine) -> None:
    engine = any_engine
    start = date(2026, 1, 5)
    accept(engine, referral("W1", start))
    accept(engine, withdrawn("W1", days(start, 1)))  # terminal: cancels everything
    accept(engine, referral("D1", start))
    accept(engine, died("D1", days(start, 1)))
    accept(engine, referral("S1", start))
    accept(engine, scheduled("S1", days(start, 1), days(start, 7)))  # mdt_due done: the meeting is set
    last = walk_to(engine, "C1", "neoadjuvant_chemo", on=start)
    cycle_reminder = the_reminder(engine, "C1", "chemo_cycle")
    accept(engine, scheduled("C1", days(last, 1), days(last, 8)))  # back to the MDT: the cycle is cancelled

    assert the_reminder(engine, "W1", "mdt_due", "cancelled")
    assert the_reminder(engine, "D1", "mdt_due", "cancelled")
    assert the_reminder(engine, "S1", "mdt_due", "done")
    assert stored(engine, cycle_reminder.key).status == "cancelled"
    closed = engine.deliveries(status="cancelled") + engine.deliveries(status="done")
    pending = {r.key for r in engine.deliveries(status="pending")}
    assert pending == {the_reminder(engine, "S1", "mdt_meeting").key, the_reminder(engine, "C1", "mdt_meeting").key}

    recorder = Recorder()
    report = engine.dispatch_due(datetime(2026, 6, 1, tzinfo=UTC), notifiers=[recorder])  # all long due
    assert set(recorder.keys) == pending and report.sent == 2
    for r in closed:
        after = stored(engine, r.key)
        assert (after.delivery, after.attempts, after.sent_at) == ("queued", 0, None), r.key


def test_a_reminder_waiting_for_a_retry_is_not_retried_once_cancelled(any_engine: Engine) -> None:
    engine = any_engine
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    engine.dispatch_due(r.notify_at, notifiers=[Recorder(fail=ALWAYS_FAILS)])
    assert (stored(engine, r.key).delivery, stored(engine, r.key).attempts) == ("queued", 1)
    accept(engine, withdrawn("P1", date(2026, 1, 17)))
    recorder = Recorder()
    assert nothing_claimed(engine.dispatch_due(r.notify_at + timedelta(days=30), notifiers=[recorder]))
    assert recorder.calls == []
    after = stored(engine, r.key)
    assert (after.status, after.attempts, after.delivery) == ("cancelled", 1, "queued")


# -- 4. moved by cycle_delayed -----------------------------------------------------------------------


def test_a_delayed_cycle_is_announced_at_its_new_time_not_the_old_and_again_after_a_later_move(
        any_engine: Engine) -> None:
    engine = any_engine
    last = walk_to(engine, "P1", "neoadjuvant_chemo", on=date(2026, 1, 5))  # decision on 12 January
    first = days(last, 7)
    accept(engine, cycle("P1", first))  # cycle 1 on 19 January: cycle 2 due 14 days later
    old = the_reminder(engine, "P1", "chemo_cycle")
    assert (old.due_on, old.notify_at) == (days(first, 14), london_8am(days(first, 12)))

    accept(engine, delayed("P1", days(first, 3), days=7))
    moved = the_reminder(engine, "P1", "chemo_cycle")
    assert moved.key == old.key
    assert (moved.due_on, moved.notify_at) == (days(first, 21), old.notify_at + timedelta(days=7))
    assert (moved.delivery, moved.attempts) == ("queued", 0)

    recorder = Recorder()
    for when in (old.notify_at, old.notify_at + timedelta(days=3), moved.notify_at - SECOND):
        engine.dispatch_due(when, notifiers=[recorder])
    assert old.key not in recorder.keys
    engine.dispatch_due(moved.notify_at, notifiers=[recorder])
    assert [(d.key, d.notify_at, d.due_on, d.late_by_s) for d in recorder.delivered] == [
        (old.key, moved.notify_at, moved.due_on, 0)]
    assert stored(engine, old.key).delivery == "sent"

    # already sent, then moved again: queued anew, announced again at the new time, same key
    accept(engine, delayed("P1", days(first, 20), days=3))
    again = stored(engine, old.key)
    assert (again.due_on, again.notify_at) == (days(first, 24), moved.notify_at + timedelta(days=3))
    assert (again.delivery, again.attempts, again.sent_at, again.late_by_s) == ("queued", 0, None, None)
    engine.dispatch_due(again.notify_at - SECOND, notifiers=[recorder])
    assert len(recorder.delivered) == 1
    engine.dispatch_due(again.notify_at, notifiers=[recorder])
    assert [(d.key, d.notify_at, d.attempt) for d in recorder.delivered[1:]] == [(old.key, again.notify_at, 1)]
    assert (stored(engine, old.key).delivery, stored(engine, old.key).sent_at) == ("sent", again.notify_at)


def test_a_reminder_moved_while_being_delivered_is_queued_for_its_new_date(engine: Engine) -> None:
    """The event that moves it clears the claim: the dispatcher's outcome no longer applies to it
    (superseded), and the new date is announced on its own."""
    last = walk_to(engine, "P1", "neoadjuvant_chemo", on=date(2026, 1, 5))
    accept(engine, cycle("P1", days(last, 7)))
    old = the_reminder(engine, "P1", "chemo_cycle")
    recorder = Recorder(on_call=lambda d: accept(engine, delayed("P1", d.due_on - timedelta(days=2), days=5))
                        if len(recorder.calls) == 1 else None)
    report = engine.dispatch_due(old.notify_at, notifiers=[recorder])
    assert (report.claimed, report.sent, report.superseded) == (1, 1, 1)
    after = stored(engine, old.key)
    assert after.notify_at == old.notify_at + timedelta(days=5)
    assert (after.delivery, after.attempts, after.sent_at) == ("queued", 0, None)
    engine.dispatch_due(after.notify_at, notifiers=[recorder])
    assert [d.notify_at for d in recorder.delivered] == [old.notify_at, after.notify_at]
    assert stored(engine, old.key).delivery == "sent"


# -- 5. retried, then failed -----------------------------------------------------------------------


@pytest.fixture
def three_attempts(db_url: str, clock: ManualClock) -> Iterator[Engine]:
    with Engine.open(db_url, policy=Policy.from_mapping({"delivery_max_attempts": 3}), clock=clock) as engine:
        yield engine


def test_a_failing_notifier_is_retried_after_60_then_120_s_and_the_reminder_fails_after_the_max(
        three_attempts: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = three_attempts
    accept(engine, referral("PX7", date(2026, 1, 5)))
    r = the_reminder(engine, "PX7", "mdt_due")
    failing = Recorder(fail=ALWAYS_FAILS)
    t0 = r.notify_at

    first = engine.dispatch_due(t0, notifiers=[failing])
    assert (first.claimed, first.retried, first.sent, first.failed) == (1, 1, 0, 0)
    s = stored(engine, r.key)
    assert (s.delivery, s.attempts, s.sent_at) == ("queued", 1, None)
    assert s.last_error is not None and "RuntimeError" in s.last_error and "PX7" not in s.last_error

    assert nothing_claimed(engine.dispatch_due(t0 + 59 * SECOND, notifiers=[failing]))
    assert engine.dispatch_due(t0 + 60 * SECOND, notifiers=[failing]).retried == 1  # 60 s after attempt 1
    assert stored(engine, r.key).attempts == 2
    t2 = t0 + 60 * SECOND
    assert nothing_claimed(engine.dispatch_due(t2 + 119 * SECOND, notifiers=[failing]))
    last = engine.dispatch_due(t2 + 120 * SECOND, notifiers=[failing])  # 120 s after attempt 2
    assert (last.claimed, last.retried, last.failed) == (1, 0, 1)
    assert [c.attempt for c in failing.calls] == [1, 2, 3]

    s = stored(engine, r.key)
    assert (s.delivery, s.attempts, s.sent_at, s.status) == ("failed", 3, None, "pending")
    assert s.last_error is not None and "RuntimeError" in s.last_error and "PX7" not in s.last_error
    assert nothing_claimed(engine.dispatch_due(t0 + timedelta(days=30), notifiers=[failing]))  # given up
    assert len(failing.calls) == 3

    assert [x.key for x in engine.deliveries(delivery="failed")] == [r.key]
    (item,) = [i for i in engine.worklist(today=r.due_on, days=0) if i.reminder.key == r.key]
    assert item.reminder.delivery == "failed"

    for name in ("PATHWAY_DB", "PATHWAY_POLICY", "PATHWAY_NOW"):
        monkeypatch.delenv(name, raising=False)
    out = CliRunner().invoke(main, ["reminders", "--failed", "--json", "--db", db_url], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    (listed,) = json.loads(out.stdout)["reminders"]
    assert (listed["key"], listed["delivery"], listed["attempts"], listed["last_error"]) == (
        r.key, "failed", 3, s.last_error)
    worklist = CliRunner().invoke(main, ["worklist", "--today", r.due_on.isoformat(), "--days", "0", "--json",
                                         "--db", db_url], catch_exceptions=False)
    assert [x["delivery"] for x in json.loads(worklist.stdout)["reminders"] if x["key"] == r.key] == ["failed"]


def test_a_notifier_that_recovers_before_the_max_gets_the_reminder_sent(three_attempts: Engine) -> None:
    engine = three_attempts
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    flaky = Recorder(fail=2)
    for offset in (0, 60, 180):
        engine.dispatch_due(r.notify_at + offset * SECOND, notifiers=[flaky])
    assert [c.attempt for c in flaky.calls] == [1, 2, 3]
    assert flaky.keys == [r.key]
    s = stored(engine, r.key)
    assert (s.delivery, s.attempts, s.last_error, s.late_by_s, s.sent_at) == (
        "sent", 3, None, 180, r.notify_at + 180 * SECOND)


def test_retries_double_from_60_s_up_to_an_hour_and_stop_after_the_default_8_attempts(engine: Engine) -> None:
    assert engine.policy.delivery_max_attempts == 8
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    outbox = Outbox(engine.repository)
    failing = Recorder(fail=ALWAYS_FAILS)
    at = r.notify_at
    assert outbox.next_due() == at
    waits = []
    while True:
        report = engine.dispatch_due(at, notifiers=[failing])
        assert report.claimed == 1
        if report.failed:
            break
        following = outbox.next_due()
        assert following is not None
        assert nothing_claimed(engine.dispatch_due(following - SECOND, notifiers=[failing]))
        waits.append(int((following - at).total_seconds()))
        at = following
    assert waits == [60, 120, 240, 480, 960, 1920, 3600]  # 3840 capped at delivery_retry_max_seconds
    assert stored(engine, r.key).attempts == 8 == len(failing.calls)
    assert outbox.next_due() is None


# -- 6. daylight saving time -------------------------------------------------------------------------


def test_notify_at_is_0800_london_across_both_dst_changes_and_delivery_waits_for_that_instant(
        any_engine: Engine) -> None:
    """British Summer Time 2027 begins on Sunday 28 March at 01:00 UTC and ends on Sunday 31
    October at 01:00 UTC (the last Sundays of March and October). 08:00 in London is therefore
    07:00 UTC on 28 March (already BST) and 08:00 UTC on 31 October (GMT again); the days before
    each change are the other way round. mdt_due is referral + 14 days, notified 2 days earlier."""
    engine = any_engine
    cases = {  # referral -> (notify day, the UTC hour of 08:00 London that day)
        "DST1": (date(2027, 3, 15), date(2027, 3, 27), 8),  # last day of GMT
        "DST2": (date(2027, 3, 16), date(2027, 3, 28), 7),  # spring forward
        "DST3": (date(2027, 10, 18), date(2027, 10, 30), 7),  # last day of BST
        "DST4": (date(2027, 10, 19), date(2027, 10, 31), 8),  # fall back
    }
    for patient, (referred, notify_day, hour) in cases.items():
        # the zone database agrees with the reasoning above
        offset = datetime(notify_day.year, notify_day.month, notify_day.day, 8, tzinfo=LONDON).utcoffset()
        assert offset == timedelta(hours=8 - hour)
        accept(engine, referral(patient, referred))
        r = the_reminder(engine, patient, "mdt_due")
        assert r.due_on == days(notify_day, 2) == days(referred, 14)
        assert r.notify_at == datetime(notify_day.year, notify_day.month, notify_day.day, hour, tzinfo=UTC)
        assert r.notify_at.astimezone(LONDON).strftime("%H:%M") == "08:00"

    recorder = Recorder()
    for patient in cases:
        r = the_reminder(engine, patient, "mdt_due")
        engine.dispatch_due(r.notify_at - SECOND, notifiers=[recorder])
        assert r.key not in recorder.keys, f"{patient} delivered one second before {r.notify_at}"
        engine.dispatch_due(r.notify_at, notifiers=[recorder])
        assert recorder.keys[-1] == r.key and recorder.delivered[-1].late_by_s == 0
        assert stored(engine, r.key).sent_at == r.notify_at
    assert len(recorder.delivered) == 4


# -- 7. one dispatcher per SQLite database -----------------------------------------------------------


def test_a_second_dispatcher_on_the_same_sqlite_file_is_refused_until_the_first_stops(engine: Engine) -> None:
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    lock = DispatcherLock(engine.repository)
    lock.acquire()
    other = open_like(engine)
    try:
        recorder = Recorder()
        with pytest.raises(DispatcherLocked) as refused:
            other.dispatch_due(r.notify_at, notifiers=[recorder])
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "already delivers reminders" in message
        assert f"{lock.path}" in message and "stop it first" in message and "PostgreSQL" in message
        assert recorder.calls == [] and stored(engine, r.key).attempts == 0  # nothing was claimed
        lock.release()
        assert other.dispatch_due(r.notify_at, notifiers=[recorder]).sent == 1
        assert recorder.keys == [r.key]
    finally:
        lock.release()
        other.close()


def test_a_running_scheduler_holds_the_sqlite_lock_and_stopping_it_releases_it(engine: Engine) -> None:
    scheduler = engine.start_scheduler([Recorder()], sweep_seconds=60)
    other = open_like(engine)
    try:
        with pytest.raises(DispatcherLocked, match="another dispatcher"):
            other.dispatch_due(notifiers=[Recorder()])
        with pytest.raises(DispatcherLocked):
            other.start_scheduler([Recorder()], sweep_seconds=60)
        scheduler.stop()
        scheduler.stop()  # stopping twice is harmless: the lock is released once
        engine.stop_scheduler()
        assert nothing_claimed(other.dispatch_due(notifiers=[Recorder()]))
        engine.start_scheduler([Recorder()], sweep_seconds=60)  # the same engine's lock, taken again
        with pytest.raises(DispatcherLocked):
            other.dispatch_due(notifiers=[Recorder()])
        engine.stop_scheduler()
        assert nothing_claimed(other.dispatch_due(notifiers=[Recorder()]))
    finally:
        other.close()


def test_pathway_run_once_exits_4_while_another_dispatcher_holds_the_sqlite_database(
        engine: Engine, tmp_path: Path) -> None:
    accept(engine, referral("P1", date(2026, 1, 5)))
    key = the_reminder(engine, "P1", "mdt_due").key
    exe = Path(sys.executable).with_name("pathway")
    url = engine.repository.engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PATHWAY_POLICY",)}
    env.update(PATHWAY_DB=url, PATHWAY_NOW="2026-02-01T09:00:00+00:00")

    def run_once() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "run", "--once", "--log"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    lock = DispatcherLock(engine.repository)
    with lock.held():
        refused = run_once()
    assert refused.returncode == 4, refused.stderr
    assert "another dispatcher" in refused.stderr and f"pid {os.getpid()}" in refused.stderr
    assert refused.stdout == "" and stored(engine, key).attempts == 0

    ran = run_once()
    assert ran.returncode == 0, ran.stderr
    assert [json.loads(line)["key"] for line in ran.stdout.splitlines()] == [key]
    assert "delivered 1 reminders (1 late)" in ran.stderr
    assert stored(engine, key).delivery == "sent"


# -- 8. notifiers --------------------------------------------------------------------------------------


def test_the_log_notifier_writes_one_json_line_with_exactly_the_payload_keys(engine: Engine) -> None:
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    stream = io.StringIO()
    engine.dispatch_due(r.notify_at + 90 * SECOND, notifiers=[LogNotifier(stream)])
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    line = json.loads(text)
    assert set(line) == PAYLOAD_KEYS
    assert line == {"key": r.key, "patient": "P1", "kind": "mdt_due", "due_on": "2026-01-19",
                    "notify_at": "2026-01-17T08:00:00Z", "detail": r.detail, "late_by_s": 90}


class _HookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.status = 200
        self.delay = 0.0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.wake = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout case) is expected


class _Hook(BaseHTTPRequestHandler):
    server: _HookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.command, dict(self.headers.items()), body))
        if self.server.delay:
            self.server.wake.wait(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def failure_of(notifier: Callable[[Delivery], None], delivery: Delivery) -> str:
    """The DeliveryError a notifier raises, as text (the exception itself is not kept: its
    traceback holds the notifier's socket until the garbage collector runs)."""
    try:
        notifier(delivery)
    except DeliveryError as exc:
        return str(exc)
    raise AssertionError("the notifier did not fail")


@pytest.fixture
def hook() -> Iterator[_HookServer]:
    server = _HookServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.wake.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_webhook_posts_the_payload_with_the_key_as_idempotency_key_and_a_2xx_delivers(
        engine: Engine, hook: _HookServer) -> None:
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    hook.status = 202
    report = engine.dispatch_due(r.notify_at, notifiers=[WebhookNotifier(hook.url, timeout=5)])
    assert report.sent == 1
    ((method, headers, body),) = hook.requests
    assert method == "POST"
    assert headers["Idempotency-Key"] == r.key and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert set(payload) == PAYLOAD_KEYS
    assert (payload["key"], payload["patient"], payload["due_on"], payload["late_by_s"]) == (
        r.key, "P1", "2026-01-19", 0)
    assert stored(engine, r.key).delivery == "sent"


@pytest.mark.parametrize("failure", ["HTTP 500", "timeout", "refused"])
def test_a_webhook_error_fails_the_attempt_with_a_message_that_names_no_patient(
        engine: Engine, hook: _HookServer, failure: str) -> None:
    patient = "PQZ93"
    accept(engine, referral(patient, date(2026, 1, 5)))
    r = the_reminder(engine, patient, "mdt_due")
    url = hook.url
    if failure == "HTTP 500":
        hook.status = 500
    elif failure == "timeout":
        hook.delay = 5.0  # the notifier waits 0.3 s
    else:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    notifier = WebhookNotifier(url, timeout=0.3)
    assert patient not in failure_of(notifier, Delivery(r.key, patient, r.kind, r.due_on, r.notify_at, r.detail, 1))
    started = time.monotonic()
    report = engine.dispatch_due(r.notify_at, notifiers=[notifier])
    assert time.monotonic() - started < 3  # the timeout bounds the wait
    assert (report.retried, report.sent) == (1, 0)
    s = stored(engine, r.key)
    assert (s.delivery, s.attempts) == ("queued", 1)
    assert s.last_error is not None and s.last_error.startswith("webhook: ") and patient not in s.last_error
    expected = {"HTTP 500": "HTTP 500", "timeout": "timed out", "refused": "unreachable"}[failure]
    assert expected in s.last_error


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[int, list[bytes]]]:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_the_email_notifier_sends_one_plain_text_message_per_reminder_without_the_detail(
        engine: Engine, smtp_inbox: tuple[int, list[bytes]]) -> None:
    port, received = smtp_inbox
    accept(engine, referral("PE1", date(2026, 1, 5)))
    accept(engine, referral("PE2", date(2026, 1, 6)))
    reminders = [the_reminder(engine, p, "mdt_due") for p in ("PE1", "PE2")]
    notifier = EmailNotifier(["mdt.coordinator@hospital.example"], "127.0.0.1", port, timeout=5)
    report = engine.dispatch_due(datetime(2026, 2, 1, tzinfo=UTC), notifiers=[notifier])
    assert report.sent == 2 and len(received) == 2
    for r, raw in zip(reminders, received, strict=True):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert not message.is_multipart() and message.get_content_type() == "text/plain"
        assert message["To"] == "mdt.coordinator@hospital.example"
        assert message["X-Pathway-Key"] == r.key
        subject, body = str(message["Subject"]), message.get_content()
        for text in (subject, body):
            assert r.patient in text and "mdt_due" in text and r.due_on.isoformat() in text
        assert r.detail and r.detail not in subject and r.detail not in body and r.detail.encode() not in raw


def test_an_email_relay_that_does_not_answer_fails_the_attempt_without_patient_data(engine: Engine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivery = Delivery("PE9:mdt_due:1", "PE9", "mdt_due", date(2026, 1, 19),
                        datetime(2026, 1, 17, 8, tzinfo=UTC), "first discussion", 1)
    message = failure_of(EmailNotifier("a@b.example", "127.0.0.1", port, timeout=1), delivery)
    assert f"127.0.0.1:{port}" in message and "PE9" not in message


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h/hook\r\nX-Injected: 1", "carriage return (CR)"),
    ("http://h/hook\nX-Injected: 1", "line feed (LF)"),
    ("http://h/ho\x00ok", "NUL"),
    ("http://h/hook\t", "tab"),
    ("http://h/my hook", "space"),
    (" http://h/hook", "space"),
    ("http://h/h\u00e9", "non-ASCII"),
    ("ftp://h/hook", "not an http:// or https:// URL"),
    ("h/hook", "not an http:// or https:// URL"),
    ("http:///hook", "no host"),
    ("http://:8080/hook", "no host"),
    ("http://h:99999/hook", "port"),
    ("http://h:port/hook", "port"),
    ("https://user:s3cr3t-pw@h/hook", "credentials"),
], ids=lambda value: repr(value)[:24])
def test_a_webhook_url_that_cannot_be_posted_to_as_given_is_refused_when_the_notifier_is_made(
        url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        WebhookNotifier(url)
    message = str(refused.value)
    assert message.startswith("--webhook: ") and problem in message
    assert "\r" not in message and "\n" not in message and "\x00" not in message  # shown escaped
    assert "s3cr3t-pw" not in message  # a password in the URL is not repeated


@pytest.mark.parametrize("url", ["http://h/hook", "https://emr.example:8443/api/reminders?source=pathway&v=2",
                                 "HTTPS://EMR.EXAMPLE/hook", "http://[::1]:8080/hook", "http://10.0.0.5/a%20b"])
def test_a_plain_http_or_https_url_makes_a_webhook_notifier(url: str) -> None:
    assert WebhookNotifier(url).url == url


@pytest.mark.parametrize(("option", "address", "problem"), [
    ("--email", "mdt@hospital.example\r\nBcc: x@y.example", "carriage return (CR)"),
    ("--email", "mdt@hospital.example\n", "line feed (LF)"),
    ("--email", "mdt@hosp\x00ital.example", "NUL"),
    ("--email", "mdt@hospital.example, audit@hospital.example", "several addresses"),
    ("--email", "mdt@hospital.example;audit@hospital.example", "one address per --email"),
    ("--email", "MDT Team <mdt@hospital.example>", "space"),
    ("--email", "MDT<mdt@hospital.example>", "display name"),
    ("--email", "mdt", "no domain"),
    ("--email", "mdt@", "no domain"),
    ("--email", "@hospital.example", "not a plain e-mail address"),
    ("--email", "", "empty"),
    ("--from", "pathway@hospital.example\r\nBcc: x@y.example", "carriage return (CR)"),
    ("--from", "Pathway\r\n <pathway@hospital.example>", "carriage return (CR)"),
    ("--from", "a@b.example, c@d.example", "the sender is one address"),
    ("--from", "pathway", "no domain"),
    ("--from", "(note)pathway@hospital.example", "display name"),
], ids=lambda value: repr(value)[:24])
def test_an_email_setting_that_is_not_one_plain_address_is_refused_when_the_notifier_is_made(
        option: str, address: str, problem: str) -> None:
    to, sender = (address, "pathway@localhost") if option == "--email" else ("mdt@hospital.example", address)
    with pytest.raises(ConfigurationError) as refused:
        EmailNotifier(to, "smtp.hospital.example", 25, sender=sender)
    message = str(refused.value)
    assert message.startswith(f"{option}: ") and problem in message
    assert "\r" not in message and "\n" not in message and "\x00" not in message


def test_one_bad_address_among_several_recipients_refuses_the_email_notifier() -> None:
    with pytest.raises(ConfigurationError, match="^--email: 'audit@hospital.example\\\\r\\\\nBcc"):
        EmailNotifier(["mdt@hospital.example", "audit@hospital.example\r\nBcc: x@y.example"], "smtp.example")


@pytest.mark.parametrize(("host", "problem"), [
    ("smtp.hospital.example\r\nRCPT TO:<x@y>", "carriage return (CR)"),
    ("smtp.hospital.example\n", "line feed (LF)"),
    ("smtp hospital.example", "space"),
    ("smtp.hospital.example\t", "tab"),
    ("", "no host"),
], ids=lambda value: repr(value)[:24])
def test_an_smtp_host_with_control_characters_or_spaces_is_refused_when_the_notifier_is_made(
        host: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        EmailNotifier("mdt@hospital.example", host, 25)
    message = str(refused.value)
    assert message.startswith("--smtp: ") and problem in message and "\r" not in message and "\n" not in message


def test_plain_addresses_and_a_plain_smtp_host_make_an_email_notifier() -> None:
    notifier = EmailNotifier(["mdt.coordinator@hospital.example", "audit+pathway@nhs.example"], "smtp-1.hospital.example",
                             587, sender="pathway@localhost")
    assert (notifier.to, notifier.host, notifier.port, notifier.sender) == (
        ["mdt.coordinator@hospital.example", "audit+pathway@nhs.example"], "smtp-1.hospital.example", 587,
        "pathway@localhost")


# -- 9. the APScheduler glue, in real time ---------------------------------------------------------


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_scheduler_delivers_what_is_due_keeps_two_jobs_and_releases_the_lock_when_stopped(
        engine: Engine) -> None:
    now = engine.now()  # pinned: 2033-01-01 09:00 UTC
    due = [accept(engine, referral(f"D{i}", date(2032, 12, 1) + timedelta(days=i))).patient for i in range(3)]
    for i in range(12):  # notified from 2 January 2033 on, one a day: later than the pinned clock
        accept(engine, referral(f"F{i}", date(2032, 12, 21) + timedelta(days=i)))
    due_keys = {the_reminder(engine, p, "mdt_due").key for p in due}
    earliest_future = min(r.notify_at for r in engine.deliveries(status="pending") if r.notify_at > now)
    assert earliest_future == datetime(2033, 1, 2, 8, tzinfo=UTC)

    from apscheduler.events import EVENT_JOB_EXECUTED

    sweeps: list[str] = []
    recorder = Recorder()
    scheduler = engine.start_scheduler([recorder], sweep_seconds=0.2)
    scheduler.scheduler.add_listener(lambda event: sweeps.append(event.job_id), EVENT_JOB_EXECUTED)
    most_jobs = 0

    def settled() -> bool:
        nonlocal most_jobs
        most_jobs = max(most_jobs, len(scheduler.scheduler.get_jobs()))
        return set(recorder.keys) == due_keys and sweeps.count("sweep") >= 3

    try:
        assert wait_for(settled), f"delivered {recorder.keys}, sweeps {sweeps}"
        jobs = {job.id: job for job in scheduler.scheduler.get_jobs()}
        assert most_jobs <= 2 and set(jobs) == {"sweep", "next"}
        # the date job is armed for the earliest future reminder, by its distance from the clock
        in_real_time = jobs["next"].next_run_time - datetime.now(UTC)
        assert abs(in_real_time - (earliest_future - now)) < timedelta(seconds=30)
    finally:
        engine.stop_scheduler()
    assert not scheduler.running
    assert sorted(recorder.keys) == sorted(due_keys)  # several sweeps, each sent once
    other = open_like(engine)
    try:
        assert nothing_claimed(other.dispatch_due(notifiers=[Recorder()]))  # the lock is free again
    finally:
        other.close()


def test_an_event_that_brings_a_reminder_forward_wakes_the_scheduler_before_its_next_sweep(
        engine: Engine) -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED

    accept(engine, referral("F1", date(2032, 12, 25)))  # notified on 6 January 2033: after the clock
    runs: list[str] = []
    recorder = Recorder()
    scheduler = engine.start_scheduler([recorder], sweep_seconds=60)
    scheduler.scheduler.add_listener(lambda event: runs.append(event.job_id), EVENT_JOB_EXECUTED)
    try:
        # the first sweep is over once it has armed the date job for F1, five days ahead
        assert wait_for(lambda: scheduler.armed_for == the_reminder(engine, "F1", "mdt_due").notify_at)
        assert recorder.calls == []
        accept(engine, referral("E1", date(2032, 12, 1)))  # notified 13 December 2032: due now
        key = the_reminder(engine, "E1", "mdt_due").key
        assert wait_for(lambda: recorder.keys == [key], 10), runs
        assert "next" in runs and runs.count("sweep") <= 1  # the date job delivered it, not a sweep
    finally:
        engine.stop_scheduler()


def test_a_dispatch_that_fails_is_retried_by_the_next_sweep_not_at_once_in_a_loop(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    accept(engine, referral("F1", date(2032, 12, 25)))  # notified after the pinned clock
    scheduler = engine.start_scheduler([Recorder()], sweep_seconds=60)
    try:
        assert wait_for(lambda: scheduler.armed_for == the_reminder(engine, "F1", "mdt_due").notify_at)
        monkeypatch.setattr(scheduler.dispatcher, "dispatch_due", lambda now: 1 / 0)  # e.g. the database away
        accept(engine, referral("E1", date(2032, 12, 1)))  # due now: wakes the scheduler, whose run fails
        assert wait_for(lambda: scheduler.errors >= 1)
        time.sleep(0.3)
        assert scheduler.errors == 1
        assert [job.id for job in scheduler.scheduler.get_jobs()] == ["sweep"]
    finally:
        engine.stop_scheduler()


# -- 10. graceful stop, and claims left behind --------------------------------------------------------


def test_a_stop_during_a_delivery_finishes_it_and_returns_the_rest_of_the_batch_to_the_queue(
        any_engine: Engine) -> None:
    engine = any_engine
    for i in range(5):
        accept(engine, referral(f"P{i}", date(2026, 1, 5)))
    now = datetime(2026, 2, 1, tzinfo=UTC)

    def stop_now(delivery: Delivery) -> None:
        if len(recorder.calls) == 1:
            dispatcher.stopping.set()  # as SIGTERM does, while this delivery is in flight

    recorder = Recorder(on_call=stop_now)
    dispatcher = Dispatcher(engine.repository, engine.policy, [recorder])
    report = dispatcher.dispatch_due(now)
    assert (report.claimed, report.sent, report.retried, report.failed) == (1, 1, 0, 0)
    assert len(recorder.calls) == 1
    rows = {r.key: r for r in engine.deliveries(status="pending")}
    (sent,) = recorder.keys
    assert (rows[sent].delivery, rows[sent].attempts) == ("sent", 1)
    rest = [r for key, r in rows.items() if key != sent]
    assert len(rest) == 4
    assert all((r.delivery, r.attempts, r.last_error) == ("queued", 0, None) for r in rest), rest

    dispatcher.stopping.clear()
    again = Recorder()
    assert Dispatcher(engine.repository, engine.policy, [again]).dispatch_due(now).sent == 4
    assert sorted(again.keys) == sorted(r.key for r in rest)
    assert all(d.attempt == 1 for d in again.delivered)  # the interrupted batch cost them no attempt


def test_on_sqlite_claims_left_by_a_dispatcher_that_died_are_delivered_by_the_next(engine: Engine) -> None:
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    now = r.notify_at
    (claimed,) = Outbox(engine.repository).claim(now, lease_until=now + timedelta(hours=1), token="dead", limit=10)
    assert claimed.key == r.key and stored(engine, r.key).delivery == "claimed"
    recorder = Recorder()
    report = engine.dispatch_due(now + SECOND, notifiers=[recorder])  # the lease has not ended
    assert report.sent == 1 and recorder.keys == [r.key]
    assert recorder.delivered[0].attempt == 2  # the dead one may have delivered it: at least once


def test_on_postgresql_a_dead_dispatchers_claim_comes_back_when_its_lease_ends(pg_url: str,
                                                                               clock: ManualClock) -> None:
    with Engine.open(pg_url, clock=clock) as engine:
        accept(engine, referral("P1", date(2026, 1, 5)))
        r = the_reminder(engine, "P1", "mdt_due")
        lease_end = r.notify_at + timedelta(minutes=5)
        Outbox(engine.repository).claim(r.notify_at, lease_until=lease_end, token="dead", limit=10)
        recorder = Recorder()
        # others may be running side by side: a claim is theirs until its lease ends
        assert nothing_claimed(engine.dispatch_due(lease_end - SECOND, notifiers=[recorder]))
        assert engine.dispatch_due(lease_end, notifiers=[recorder]).sent == 1
        assert recorder.keys == [r.key] and stored(engine, r.key).delivery == "sent"


def test_a_second_dispatch_in_the_same_process_does_not_take_the_claims_of_one_in_flight(engine: Engine) -> None:
    """Only the first holder of the SQLite lock may return claims to the queue as a dead
    process's: a dispatch started while another of this process is delivering must leave its
    claims alone, or the reminder in flight would be delivered twice."""
    accept(engine, referral("P1", date(2026, 1, 5)))
    r = the_reminder(engine, "P1", "mdt_due")
    inner = Recorder()
    inner_reports = []
    outer = Recorder(on_call=lambda d: inner_reports.append(engine.dispatch_due(r.notify_at, notifiers=[inner])))
    report = engine.dispatch_due(r.notify_at, notifiers=[outer])
    assert report.sent == 1 and report.superseded == 0
    assert inner.calls == [] and nothing_claimed(inner_reports[0])
    assert [d.key for d in outer.delivered] == [r.key]
    assert stored(engine, r.key).delivery == "sent"


def test_stopping_while_the_job_thread_is_arming_the_next_run_does_not_deadlock(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() waits (APScheduler's shutdown(wait=True), holding its job-store lock) for the job
    thread; a job thread between wake()'s "stopping?" check and its add_job (which needs that lock)
    used to wait for stop() in turn: `pathway run` hung on SIGTERM. The window is held open here:
    the first sweep's wake() reads the next reminder only once the shutdown has begun."""
    from apscheduler.schedulers.base import STATE_STOPPED

    engine = Engine.open(sqlite_url, clock=ManualClock(datetime(2026, 2, 1, 9, tzinfo=UTC)))
    engine.record(referral("X1", "2026-01-05"))
    engine.record(referral("X2", "2026-02-01"))  # a reminder still to come: wake() arms for it
    in_wake = threading.Event()
    original = SqlOutbox.next_due
    scheduler: Any = None

    def next_due_once_the_stop_began(outbox: SqlOutbox) -> datetime | None:
        in_wake.set()
        wait_for(lambda: scheduler is not None and scheduler.scheduler.state == STATE_STOPPED)
        return original(outbox)

    monkeypatch.setattr(SqlOutbox, "next_due", next_due_once_the_stop_began)
    scheduler = engine.start_scheduler([lambda d: None], sweep_seconds=60)  # its first sweep runs at once
    assert in_wake.wait(10)
    stopper = threading.Thread(target=engine.stop_scheduler, daemon=True)
    stopper.start()
    stopper.join(timeout=15)
    assert not stopper.is_alive(), "stop_scheduler deadlocked with the job thread"
    engine.close()


def test_a_date_job_handed_to_the_job_thread_as_the_scheduler_stops_is_not_reported_missing(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """APScheduler removes a date job right after handing it to the job thread; a stop() that
    began in between made that removal find no job (it looked among the jobs of a stopped
    scheduler): `JobLookupError: 'No job by the id of next was found'` in APScheduler's thread.
    The window is held open here: the hand-over of the date job waits for the stop."""
    from apscheduler.schedulers.base import STATE_STOPPED

    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    engine = Engine.open(sqlite_url, clock=ManualClock(datetime(2026, 2, 1, 9, tzinfo=UTC)))
    engine.record(referral("X2", "2026-02-01"))  # a reminder still to come: the first sweep arms for it
    delivering = threading.Event()
    delivered: list[str] = []

    def deliver_once_the_stop_began(delivery: Delivery) -> None:  # the job thread arms nothing meanwhile
        delivering.set()
        wait_for(scheduler.dispatcher.stopping.is_set)
        delivered.append(delivery.key)

    scheduler = engine.start_scheduler([deliver_once_the_stop_began], sweep_seconds=60)
    try:
        assert wait_for(lambda: scheduler.armed_for == the_reminder(engine, "X2", "mdt_due").notify_at)
        executor = scheduler.scheduler._lookup_executor("default")
        submit = executor.submit_job
        handed_over = threading.Event()

        def hand_over_then_wait_for_the_stop(job: Any, run_times: Any) -> None:
            submit(job, run_times)
            if job.id == "next":
                handed_over.set()
                wait_for(lambda: scheduler.scheduler.state == STATE_STOPPED)

        monkeypatch.setattr(executor, "submit_job", hand_over_then_wait_for_the_stop)
        caplog.set_level("WARNING")
        engine.record(referral("X1", "2026-01-05"))  # due now: the date job is armed to run at once
        assert handed_over.wait(10) and delivering.wait(10)
    finally:
        stopper = threading.Thread(target=engine.stop_scheduler, daemon=True)
        stopper.start()
        stopper.join(timeout=15)
    assert not stopper.is_alive(), "stop_scheduler deadlocked"
    engine.close()
    assert delivered == ["X1:mdt_due:1"]
    assert thread_errors == []
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


def test_on_postgresql_an_event_recorded_by_another_process_wakes_the_dispatcher_at_once(pg_url: str) -> None:
    """LISTEN/NOTIFY: a reminder added by another engine (another process in production) is
    delivered long before the next sweep (60 s here), not by it."""
    clock = ManualClock(datetime(2026, 2, 1, 9, tzinfo=UTC))
    delivered: list[str] = []
    with Engine.open(pg_url, clock=clock) as dispatching, Engine.open(pg_url, clock=clock) as recording:
        scheduler = dispatching.start_scheduler([lambda d: delivered.append(d.key)], sweep_seconds=60)
        try:
            deadline = time.monotonic() + 10
            while scheduler._listener is None or not scheduler._listener.is_alive():
                assert time.monotonic() < deadline, "no listener thread on PostgreSQL"
                time.sleep(0.05)
            time.sleep(0.5)  # the first sweep (nothing due) and LISTEN are done
            assert recording.record(referral("N1", "2026-01-05")).status == "accepted"  # mdt_due notify 17 Jan: due
            started = time.monotonic()
            while not delivered and time.monotonic() - started < 15:
                time.sleep(0.05)
            assert delivered == ["N1:mdt_due:1"]
        finally:
            dispatching.stop_scheduler()
        assert scheduler._listener is None  # stopped with the scheduler


def test_a_failed_delivery_is_queued_again_by_pathway_retry_once_the_cause_is_fixed(
        three_attempts: Engine, db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = three_attempts
    accept(engine, referral("PR1", date(2026, 1, 5)))
    r = the_reminder(engine, "PR1", "mdt_due")
    failing = Recorder(fail=ALWAYS_FAILS)
    for wait in (0, 60, 120):  # three attempts, the policy's maximum
        engine.dispatch_due(r.notify_at + wait * 3 * SECOND, notifiers=[failing])
    assert stored(engine, r.key).delivery == "failed"
    clock.now = r.notify_at + timedelta(days=1)
    monkeypatch.setenv("PATHWAY_DB", db_url)
    monkeypatch.setenv("PATHWAY_NOW", clock.now.isoformat())
    runner = CliRunner()
    assert runner.invoke(main, ["retry"]).exit_code == 2  # keys or --all
    unknown = runner.invoke(main, ["retry", "PR1:nothing:1"])
    assert unknown.exit_code == 1 and "not failed deliveries" in unknown.output
    again = runner.invoke(main, ["retry", "--all"])
    assert again.exit_code == 0 and "1 failed deliveries queued again" in again.output
    s = stored(engine, r.key)
    assert (s.delivery, s.attempts, s.last_error) == ("queued", 0, None)
    fixed = Recorder()
    report = engine.dispatch_due(clock.now, notifiers=[fixed])
    assert report.sent == 1 and stored(engine, r.key).delivery == "sent"
