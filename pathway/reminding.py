"""The engine's face to reminder delivery (pathway.delivery): dispatch now, run the scheduler,
queue failed deliveries again, list deliveries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pathway.delivery import SWEEP_SECONDS, Dispatcher, DispatcherLock, DispatchReport, ReminderScheduler
from pathway.errors import ConfigurationError, InvalidArgument, storage_errors
from pathway.reading import _check_limit
from persistence.ports import DeliveryStatus, PlanStatus, StoredReminder


class Reminding:
    """The engine's delivery methods (a part of `Engine`)."""

    def _get_dispatcher(self, notifiers: Iterable[Any] | None) -> Dispatcher:
        if notifiers is not None:
            self.notifiers = list(notifiers)
        if self._lock is None:
            self._lock = DispatcherLock(self.repository)
        if self._dispatcher is None or notifiers is not None:
            self._dispatcher = Dispatcher(self.repository, self.policy, self.notifiers, lock=self._lock)
        return self._dispatcher

    def dispatch_due(self, now: datetime | None = None, *, notifiers: Iterable[Any] | None = None) -> DispatchReport:
        """Deliver every reminder due at `now` (default: the clock's now) through the engine's
        notifiers, synchronously — for hosts that bring their own scheduling. Raises
        `DispatcherLocked` when another process dispatches from the same SQLite database."""
        if now is not None and now.utcoffset() is None:
            raise InvalidArgument(f"now must be a timezone-aware datetime, got {now!r}")
        dispatcher = self._get_dispatcher(notifiers)
        if self._scheduler is None or not self._scheduler.running:
            dispatcher.stopping.clear()  # a stop requested earlier (a signal, a notifier) is over
        with storage_errors():
            return dispatcher.dispatch_due(now if now is not None else self.clock)

    def start_scheduler(self, notifiers: Iterable[Any] | None = None, *, sweep_seconds: float = SWEEP_SECONDS,
                        on_report: Any = None) -> ReminderScheduler:
        """Deliver reminders in the background (APScheduler) until `stop_scheduler()`; events
        recorded through this engine that bring a reminder forward wake it at once."""
        if self._scheduler is not None and self._scheduler.running:
            raise ConfigurationError("the scheduler is already running: stop_scheduler() first")
        dispatcher = self._get_dispatcher(notifiers)
        scheduler = ReminderScheduler(dispatcher, self.clock, sweep_seconds=sweep_seconds, on_report=on_report)
        scheduler.start()
        self._scheduler = scheduler
        return scheduler

    def stop_scheduler(self, wait: bool = True) -> None:
        """Stop the background delivery after the delivery in flight (a no-op when not running)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop(wait=wait)

    def interrupt_delivery(self) -> None:
        """Ask a dispatch under way to stop after the delivery in flight (safe from a signal
        handler: it only sets a flag; `stop_scheduler` then stops the scheduler)."""
        if self._dispatcher is not None:
            self._dispatcher.stopping.set()

    def _wake(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.wake()

    def retry_failed(self, keys: Iterable[str] | None = None) -> int:
        """Queue failed deliveries again (after the notifier was fixed): every failed pending
        reminder, or those `keys`; they go out at the dispatcher's next run. Returns how many."""
        with storage_errors():
            count = self.repository.outbox().retry_failed(self.clock(), None if keys is None else list(keys))
        self._wake()
        return count

    def deliveries(self, *, patient: str | None = None, status: str | None = None, delivery: str | None = None,
                   limit: int | None = None) -> list[StoredReminder]:
        """Reminders with their delivery record (`pathway reminders`): filter by patient, plan
        status (pending | done | cancelled) and delivery (queued | claimed | sent | failed)."""
        if status is not None and status not in PlanStatus.__members__:
            raise InvalidArgument(f"status must be one of {', '.join(PlanStatus)}, got {status!r}")
        if delivery is not None and delivery not in DeliveryStatus.__members__:
            raise InvalidArgument(f"delivery must be one of {', '.join(DeliveryStatus)}, got {delivery!r}")
        _check_limit(limit)
        with storage_errors():
            return self.repository.outbox().listing(patient=patient, status=status, delivery=delivery, limit=limit)

    # -- integrity -----------------------------------------------------------------------------
