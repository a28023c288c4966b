"""Delivering reminders: notifiers, the dispatcher, and its APScheduler glue (issue 3).

The reminder table is the store of record (persistence.outbox). `Dispatcher.dispatch_due(now)`
claims what is due in batches, hands each reminder to every notifier, and records the outcome:
`sent` (with `late_by_s`), a retry after an exponential backoff, or `failed` after the policy's
`delivery_max_attempts`. A reminder is delivered when every notifier took it; a retry goes to
every notifier again (each delivery carries the reminder's key, for receivers to de-duplicate).

`ReminderScheduler` runs it under APScheduler 3.x: a `BackgroundScheduler` in UTC whose
`MemoryJobStore` holds two jobs whatever the number of reminders — a periodic sweep and one date
job armed for the earliest pending `send_after` — on a single worker thread, with
`misfire_grace_time=None` and `coalesce=True` (a run found late runs, once; APScheduler's default
grace would drop it silently, its issue #296). Reminders due while nothing ran are simply found
due by the first run: delivered then, with `late_by_s` telling how late.

On SQLite one dispatcher process runs: `DispatcherLock` (a lock file beside the database, held
with flock, released by the kernel even on SIGKILL) makes a second one refuse to start. Holding
it, a dispatcher returns to the queue the claims a dead predecessor left. On PostgreSQL any number
run side by side (`FOR UPDATE SKIP LOCKED`); a dead one's claims come back when their lease ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.client
import json
import logging
import os
import re
import smtplib
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from typing import IO, Any, Protocol

from pathway.clock import system_clock
from pathway.errors import ConfigurationError, PathwayError, StorageError
from persistence import db
from persistence.outbox import LATE_AFTER_SECONDS, Delivery, Failed, Outbox, Retry, Sent
from persistence.ports import Repository
from states.policy import Policy

log = logging.getLogger("pathway.delivery")

#: Reminders claimed per transaction when every notifier is local (log, Python callables).
LOCAL_BATCH = 500
#: Reminders claimed per transaction when a notifier waits on the network.
NETWORK_BATCH = 50
#: Default interval of the safety sweep, seconds.
SWEEP_SECONDS = 30.0


class DeliveryError(PathwayError):
    """A notifier could not deliver a reminder (the message never names patient data)."""


class DispatcherLocked(PathwayError):
    """Another dispatcher already runs on this SQLite database."""


class Notifier(Protocol):
    """Delivers one reminder or raises. `timeout` bounds one call in seconds (0: local)."""

    name: str
    timeout: float

    def __call__(self, delivery: Delivery) -> None: ...


# -- notifiers -----------------------------------------------------------------------------------
#
# A setting a notifier cannot use as given (issue 8, D4: a URL or address with CR/LF would be
# accepted, then fail every delivery with a misleading message) is refused when the notifier is
# made, with a ConfigurationError naming the `pathway run`/`serve` option that carries it, saying
# what is wrong and showing the value escaped (repr: a CR LF shows as \r\n, never raw).

_CHARACTER_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\t": "a tab",
                    "\0": "a NUL character", " ": "a space"}


def _control_character(value: str) -> str | None:
    """The first control character of `value` (CR, LF, NUL, tab, other unprintable ones), described."""
    for char in value:
        if not char.isprintable():
            return _CHARACTER_NAMES.get(char, f"the unprintable character U+{ord(char):04X}")
    return None


def _check_url(url: str) -> None:
    """A URL urllib can POST to as given: http or https, a host, no credentials (urllib would
    not send them: they would be taken for part of the host), nothing to escape."""
    shown = repr(re.sub(r"(?<=://)[^/?#]*@", "***@", url))  # credentials never repeated
    problem = _control_character(url) or (_CHARACTER_NAMES[" "] if " " in url else None)
    if problem:
        raise ConfigurationError(f"--webhook: {shown} contains {problem}: a URL has no control characters or "
                                 "spaces (percent-encode a space as %20; check the shell quoting)")
    if not url.isascii():
        raise ConfigurationError(f"--webhook: {shown} contains non-ASCII characters: percent-encode them "
                                 "(and give an international host name in its xn-- form)")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, a broken [IPv6] host
        raise ConfigurationError(f"--webhook: {shown} has a bad host or port ({exc}): give "
                                 "http(s)://HOST[:PORT]/PATH with a port from 1 to 65535") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"--webhook: {shown} is not an http:// or https:// URL: give the receiver's "
                                 "URL, such as https://emr.example/hook")
    if not parts.hostname:
        raise ConfigurationError(f"--webhook: {shown} has no host: give http(s)://HOST[:PORT]/PATH")
    if port == 0:
        raise ConfigurationError(f"--webhook: {shown} has port 0: give a port from 1 to 65535")
    if "@" in parts.netloc:
        raise ConfigurationError(f"--webhook: {shown} carries credentials (user:password@), which the notifier "
                                 "does not send: remove them (a receiver that needs a secret can take it in "
                                 "the path or the query)")


def _check_address(option: str, address: str) -> None:
    """One plain addr-spec (local@domain): no display name, comment, <> or second address."""
    example = "pathway@hospital.example" if option == "--from" else "mdt@hospital.example"
    fix = f"give one plain address, such as {example}"
    shown = repr(address)
    problem = _control_character(address)
    if problem:
        raise ConfigurationError(f"{option}: {shown} contains {problem}: {fix}")
    if "," in address or ";" in address:
        more = ("the sender is one address" if option == "--from"
                else "give one address per --email (repeat the option for several recipients)")
        raise ConfigurationError(f"{option}: {shown} holds several addresses: {more}")
    if " " in address:
        raise ConfigurationError(f"{option}: {shown} contains a space: {fix} (without a display name)")
    if not address:
        raise ConfigurationError(f"{option}: the address is empty: {fix}")
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        raise ConfigurationError(f"{option}: {shown} has no domain (the part after @): {fix}")
    try:
        plain = Address(addr_spec=address).addr_spec == address
    except (ValueError, IndexError, MessageError):
        plain = False
    if not plain:
        raise ConfigurationError(f"{option}: {shown} is not a plain e-mail address: {fix} "
                                 "(a display name, a comment or <> is not accepted)")


class LogNotifier:
    """One JSON line per reminder on a stream (stdout by default)."""

    name = "log"
    timeout = 0.0

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        line = json.dumps(delivery.as_dict(), separators=(",", ":"))
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


class WebhookNotifier:
    """HTTP POST of the reminder as JSON, with header `Idempotency-Key: <key>`; any 2xx is a
    delivery, anything else (or no answer within `timeout` seconds) a failed attempt. A URL it
    cannot post to as given (not http/https, no host, control characters, spaces, non-ASCII,
    user:password@) raises ConfigurationError."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 10.0):
        _check_url(url)
        self.url = url
        self.timeout = timeout

    def __call__(self, delivery: Delivery) -> None:
        body = json.dumps(delivery.as_dict()).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": delivery.key,
                     "User-Agent": "liver-pathway"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http/https only)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"webhook unreachable: {type(reason).__name__}: {reason}") from None
        except http.client.HTTPException as exc:  # a malformed answer
            raise DeliveryError(f"webhook answered malformed HTTP: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook answered HTTP {status}")


class EmailNotifier:
    """One plain-text e-mail per reminder through an SMTP relay. It names the patient by id only.
    Recipients and sender are plain addresses (local@domain), one per item; one that is not, or a
    relay host with control characters or spaces, raises ConfigurationError."""

    name = "email"

    def __init__(self, to: str | Sequence[str], host: str, port: int = 25, *, sender: str = "pathway@localhost",
                 timeout: float = 10.0, starttls: bool = False, username: str | None = None,
                 password: str | None = None):
        self.to = [to] if isinstance(to, str) else list(to)
        if not self.to:
            raise ConfigurationError("--email: no recipient: give at least one address")
        for address in self.to:
            _check_address("--email", address)
        _check_address("--from", sender)
        if not host:
            raise ConfigurationError("--smtp: no host: give HOST:PORT, such as smtp.hospital.example:25")
        problem = _control_character(host) or (_CHARACTER_NAMES[" "] if " " in host else None)
        if problem:
            raise ConfigurationError(f"--smtp: the host {host!r} contains {problem}: give HOST:PORT, such as "
                                     "smtp.hospital.example:25")
        if not (isinstance(port, int) and 0 < port < 65536):
            raise ConfigurationError(f"--smtp: port {port!r} is not a whole number from 1 to 65535")
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.starttls, self.username, self.password = starttls, username, password

    @staticmethod
    def message(delivery: Delivery, sender: str, to: Sequence[str]) -> EmailMessage:
        d = delivery.as_dict()
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = f"Reminder: {d['kind']} due {d['due_on']} (patient {d['patient']})"
        message["X-Pathway-Key"] = delivery.key
        late = f"\nLate by: {d['late_by_s']} s" if delivery.late_by_s >= LATE_AFTER_SECONDS else ""
        message.set_content(
            f"Patient: {d['patient']}\nReminder: {d['kind']}\nDue on: {d['due_on']}\n"
            f"Notify at: {d['notify_at']}\nKey: {d['key']}{late}\n"
        )
        return message

    def __call__(self, delivery: Delivery) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(delivery, self.sender, self.to))
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"e-mail not accepted by {self.host}:{self.port}: {type(exc).__name__}") from None


class CallableNotifier:
    """A Python callable as a notifier (for embedders): it delivers by returning, fails by raising."""

    timeout = 0.0

    def __init__(self, function: Callable[[Delivery], Any], name: str | None = None):
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", "callable"))

    def __call__(self, delivery: Delivery) -> None:
        self.function(delivery)


def as_notifier(value: Any) -> Notifier:
    """A notifier object as is; a plain callable wrapped."""
    if hasattr(value, "timeout") and hasattr(value, "name") and callable(value):
        return value  # type: ignore[no-any-return]
    if callable(value):
        return CallableNotifier(value)
    raise ConfigurationError(f"a notifier must be callable with a Delivery, got {type(value).__name__}")


# -- the SQLite lock -----------------------------------------------------------------------------


class DispatcherLock:
    """An exclusive flock on `<database>.dispatcher.lock` (SQLite files only; a no-op otherwise)."""

    def __init__(self, repository: Repository):
        path = db.sqlite_path(repository.engine) if repository.dialect == "sqlite" else None
        self.path = None if path is None else f"{path}.dispatcher.lock"
        self._file: IO[str] | None = None
        self._depth = 0
        self._mutex = threading.Lock()
        self._orphans_checked = False
        self._orphans_mutex = threading.Lock()

    def acquire(self) -> None:
        with self._mutex:
            if self._depth == 0 and self.path is not None:
                try:
                    handle = open(self.path, "a+")  # noqa: SIM115 (held until release)
                except OSError as exc:
                    raise StorageError(f"cannot open the dispatcher's lock file {self.path}: "
                                       f"{exc.strerror or exc}") from exc
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    handle.close()
                    raise DispatcherLocked(
                        f"another dispatcher ({holder}) already delivers reminders from this SQLite "
                        f"database (lock file {self.path}); SQLite allows one: stop it first (a `pathway "
                        "serve` delivers reminders itself unless started with --no-scheduler), or use "
                        "PostgreSQL to run several"
                    ) from None
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()}\n")
                handle.flush()
                self._file = handle
            if self._depth == 0:
                self._orphans_checked = False
            self._depth += 1

    def release(self) -> None:
        with self._mutex:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0 and self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
                self._file = None

    def once_per_hold(self, action: Callable[[], Any]) -> None:
        """Run `action` once per acquisition from free, before any holder goes on: then no other
        dispatcher of this process has claimed anything yet, so the claims found are a dead
        process's (a nested or parallel holder must not take the claims of one in flight)."""
        with self._orphans_mutex:
            if not self._orphans_checked:
                action()
                self._orphans_checked = True

    @contextlib.contextmanager
    def held(self) -> Any:
        self.acquire()
        try:
            yield self
        finally:
            self.release()


# -- the dispatcher ------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What one `dispatch_due` did."""

    claimed: int = 0
    sent: int = 0
    late: int = 0
    retried: int = 0
    failed: int = 0
    #: Rows re-planned by an event while being delivered (their new date is announced later).
    superseded: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        for name in ("claimed", "sent", "late", "retried", "failed", "superseded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.keys += other.keys

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ("claimed", "sent", "late", "retried", "failed", "superseded")}


class Dispatcher:
    """Claims due reminders and delivers them through notifiers (see the module's docstring)."""

    def __init__(self, repository: Repository, policy: Policy, notifiers: Iterable[Any], *,
                 lock: DispatcherLock | None = None, batch: int | None = None, keep_keys: bool = False):
        self.repository = repository
        self.policy = policy
        self.notifiers = [as_notifier(n) for n in notifiers]
        if not self.notifiers:
            raise ConfigurationError("no notifier: give at least one (log, webhook, e-mail or a Python callable)")
        self.outbox = Outbox(repository)
        self.lock = lock or DispatcherLock(repository)
        network = sum(n.timeout for n in self.notifiers)
        self.batch = batch or (NETWORK_BATCH if network else LOCAL_BATCH)
        #: A claim must outlive the slowest delivery of its batch.
        self.lease = timedelta(seconds=120 + self.batch * network)
        self.keep_keys = keep_keys
        self.stopping = threading.Event()

    def release_orphans(self, now: datetime) -> int:
        """On SQLite, under the lock: claims left by a dispatcher that died go back to the queue."""
        if self.repository.dialect != "sqlite":
            return 0
        count = self.outbox.release(now)
        if count:
            log.warning("returned %d reminders claimed by a dispatcher that stopped to the queue", count)
        return count

    def dispatch_due(self, now: datetime | Callable[[], datetime]) -> DispatchReport:
        """Deliver every reminder due at `now` (or, given a clock, at each batch's now) in batches
        until none is left or `stopping` is set. Synchronous; returns what it did."""
        clock = now if callable(now) else (lambda: now)
        report = DispatchReport()
        with self.lock.held():
            self.lock.once_per_hold(lambda: self.release_orphans(clock()))
            while not self.stopping.is_set():
                batch = self._dispatch_batch(clock(), clock)
                report.add(batch)
                if batch.claimed < self.batch:
                    break
        return report

    def _dispatch_batch(self, now: datetime, clock: Callable[[], datetime]) -> DispatchReport:
        token = uuid.uuid4().hex
        try:
            claimed = self.outbox.claim(now, lease_until=now + self.lease, token=token, limit=self.batch)
        except db.DatabaseUnavailable:
            # the claim may have been committed without our hearing of it: hand back whatever
            # carries this token (retried while the database comes back), then report the outage
            with contextlib.suppress(db.DatabaseUnavailable):
                self.outbox.forget_claim(token, clock())
            raise
        report = DispatchReport(claimed=len(claimed))
        sent: list[Sent] = []
        retry: list[Retry] = []
        failed: list[Failed] = []
        unclaimed: list[str] = []
        for delivery in claimed:
            if self.stopping.is_set():  # graceful stop: what was not started goes back untouched
                unclaimed.append(delivery.key)
                continue
            error = self._deliver(delivery)
            if error is None:
                sent.append((delivery.key, delivery.late_by_s))
                report.sent += 1
                report.late += delivery.late_by_s >= LATE_AFTER_SECONDS
                if self.keep_keys:
                    report.keys.append(delivery.key)
            elif delivery.attempt >= self.policy.delivery_max_attempts:
                failed.append((delivery.key, error))
                report.failed += 1
                log.error("reminder %s failed after %d attempts: %s", delivery.key, delivery.attempt, error)
            else:
                wait = self.policy.retry_delay(delivery.attempt)
                retry.append((delivery.key, now + timedelta(seconds=wait), error))
                report.retried += 1
                log.warning("reminder %s: attempt %d failed (%s); retry in %d s",
                            delivery.key, delivery.attempt, error, wait)
        if claimed:
            done = self.outbox.finish(token, clock(), sent=sent, retry=retry, failed=failed, unclaim=unclaimed)
            report.superseded = len(claimed) - done
            report.claimed -= len(unclaimed)
        return report

    def _deliver(self, delivery: Delivery) -> str | None:
        """None when every notifier took it, else the first error (no patient data in it)."""
        for notifier in self.notifiers:
            try:
                notifier(delivery)
            except DeliveryError as exc:
                return f"{notifier.name}: {exc}"
            except Exception as exc:  # a host's callable: its failure is a failed attempt, not a crash
                return f"{notifier.name}: {type(exc).__name__}"
        return None


# -- APScheduler ---------------------------------------------------------------------------------


@functools.cache
def _background_scheduler() -> type:
    """APScheduler's `BackgroundScheduler`, whose removal of a job already gone is not an error.

    Its thread hands a date job that is due to the job thread, then removes it from the job
    store. `shutdown()` marks the scheduler stopped at once, before it takes the job-store lock
    (and empties the store); `remove_job` on a stopped scheduler looks only among the jobs added
    before a start. A stop that began between the hand-over and the removal therefore made the
    removal find nothing and raise `JobLookupError` ("No job by the id of next was found") in
    APScheduler's thread. A job that is gone, whoever removed it, counts as removed here."""
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.schedulers.background import BackgroundScheduler

    class Scheduler(BackgroundScheduler):
        def remove_job(self, job_id: str, jobstore: str | None = None) -> None:
            try:
                super().remove_job(job_id, jobstore)
            except JobLookupError:
                log.debug("job %s was already gone (run and removed, or the scheduler stopped)", job_id)

    return Scheduler


class ReminderScheduler:
    """A `BackgroundScheduler` running `Dispatcher.dispatch_due`: a sweep every `sweep_seconds`
    and a date job armed for the earliest pending `send_after` (see the module's docstring)."""

    def __init__(self, dispatcher: Dispatcher, clock: Callable[[], datetime], *, sweep_seconds: float = SWEEP_SECONDS,
                 on_report: Callable[[DispatchReport], None] | None = None):
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore

        if sweep_seconds <= 0:
            raise ConfigurationError(f"--sweep must be a positive number of seconds, got {sweep_seconds}")
        self.dispatcher = dispatcher
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self.on_report = on_report
        self.scheduler = _background_scheduler()(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(1)},  # one dispatch at a time
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self.armed_for: datetime | None = None
        self._arm_lock = threading.Lock()
        self._holds_lock = False
        self.errors = 0
        #: PostgreSQL: a thread LISTENing for other processes' new reminders (set = stop it).
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        self.dispatcher.lock.acquire()  # refuse to start beside another SQLite dispatcher
        self._holds_lock = True
        try:
            self.dispatcher.stopping.clear()
            self.scheduler.start()
            self.scheduler.add_job(self._run, "interval", seconds=self.sweep_seconds, id="sweep",
                                   next_run_time=system_clock())
            if self.dispatcher.repository.dialect == "postgresql":  # other processes' events wake it too
                self._listening.clear()
                self._listener = threading.Thread(
                    target=self.dispatcher.outbox.listen, args=(self._listening, self.wake),
                    name="pathway-reminder-listen", daemon=True,
                )
                self._listener.start()
        except BaseException:
            self._holds_lock = False
            self.dispatcher.lock.release()
            raise

    def stop(self, wait: bool = True) -> None:
        """Stop after the delivery in flight (the rest of its batch returns to the queue).
        Stopping again, or a scheduler that never started, is a no-op."""
        if not self._holds_lock:
            return
        with self._arm_lock:  # no wake() is between its check and its add_job from here on
            self.dispatcher.stopping.set()
        self._listening.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        if self.scheduler.running:  # holds APScheduler's job-store lock until the job thread ends
            self.scheduler.shutdown(wait=wait)
        self.dispatcher.stopping.clear()  # a later dispatch_due on the same dispatcher may run
        self._holds_lock = False
        self.dispatcher.lock.release()

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def _run(self) -> None:
        failed = False
        try:
            report = self.dispatcher.dispatch_due(self.clock)
            if self.on_report is not None and report.claimed:
                self.on_report(report)
        except Exception:  # the database may be away for a moment: the next sweep tries again
            failed = True
            self.errors += 1
            log.exception("dispatch failed; the next sweep retries")
        finally:
            with self._arm_lock:
                self.armed_for = None
            if not failed:  # re-arming now would retry at once, in a loop, while the failure lasts
                self.wake()

    def wake(self) -> None:
        """Arm the date job for the earliest pending reminder, if sooner than what is armed
        (called after every dispatch, and by the engine after an event changed reminders)."""
        if not self.scheduler.running or self.dispatcher.stopping.is_set():
            return
        try:
            earliest = self.dispatcher.outbox.next_due()
        except Exception:
            log.exception("could not read the next reminder; the sweep will find it")
            return
        if earliest is None:
            return
        # The scheduler runs in real time; the clock may be pinned (PATHWAY_NOW): arm by the
        # distance between the reminder and the clock's now.
        delay = max(0.0, (earliest - self.clock()).total_seconds())
        run_at = system_clock() + timedelta(seconds=delay)  # APScheduler's own time line: real time
        # Check and arm under one lock that stop() takes to set `stopping`: add_job needs the
        # job-store lock that shutdown(wait=True) holds while it waits for this very thread, so
        # arming after a stop began would deadlock both.
        with self._arm_lock:
            if self.dispatcher.stopping.is_set() or not self.scheduler.running:
                return
            if self.armed_for is not None and self.armed_for <= earliest:
                return
            self.armed_for = earliest
            self.scheduler.add_job(self._run, "date", run_date=run_at, id="next", replace_existing=True)
