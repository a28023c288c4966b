"""The reminder table as a transactional outbox: claim what is due, record how delivery went.

The engine writes reminders (persistence.repository, in the event's transaction); dispatchers
read them from here. Every statement runs in a short transaction of its own, never around a
delivery: a claim marks rows `claimed` with a lease (their `send_after` becomes the lease's end),
the notifiers run with no transaction open, and `finish` records the outcome of each row — only if
the row still carries this claim (an event that moved or re-planned it meanwhile cleared the
claim: the new date will be announced on its own). See migration 0003 for the columns.

On PostgreSQL several dispatchers claim side by side with `FOR UPDATE SKIP LOCKED`; on SQLite the
database's write lock serializes claims, and one dispatcher process runs (pathway.delivery holds
a lock file for it). `finish` updates its rows in key order, the order in which event
transactions write reminders (persistence.repository), so the two cannot deadlock; a write
conflict all the same (another statement's order) is retried a few times, like every statement here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from persistence import db, ports
from persistence.ports import LATE_AFTER_SECONDS as LATE_AFTER_SECONDS
from persistence.ports import MAX_ERROR
from persistence.ports import Delivery as Delivery
from persistence.ports import Failed as Failed
from persistence.ports import Retry as Retry
from persistence.ports import Sent as Sent
from persistence.ports import StoredReminder as StoredReminder
from persistence.repository import REMINDER_CHANNEL, Repository
from persistence.tables import OUTBOX

log = logging.getLogger("pathway.delivery")


#: Seconds the dispatcher keeps trying to record deliveries (and to hand back a claim it lost
#: track of) while the database is unavailable — a restart takes seconds. Past that, the claims
#: come back when their lease ends, and those reminders are sent again (at least once).
OUTAGE_SECONDS = 60.0


def Outbox(repo: ports.Repository) -> ports.Outbox:  # named as the class it replaced
    """The outbox of a repository, SQL or the in-memory twin (`repo.outbox()`)."""
    return repo.outbox()


class SqlOutbox:
    """Claims and delivery records over a SQL repository's reminder table (ports.Outbox)."""

    def __init__(self, repo: Repository):
        self.repo = repo
        sql = repo.sql
        q = sql.q
        skip_locked = "" if sql.sqlite else " FOR UPDATE SKIP LOCKED"
        self._claim = (
            f"UPDATE reminder SET delivery = 'claimed', claim = {q}, send_after = {q}, attempts = attempts + 1 "
            f"WHERE key IN (SELECT key FROM reminder WHERE {OUTBOX} AND send_after <= {q} "
            f"ORDER BY send_after LIMIT {q}{skip_locked}) "
            "RETURNING key, patient, kind, due_on, notify_at, detail, attempts"
        )
        self._next = f"SELECT MIN(send_after) FROM reminder WHERE {OUTBOX}"
        self._sent = (
            f"UPDATE reminder SET delivery = 'sent', sent_at = {q}, late_by_s = {q}, last_error = NULL, "
            f"claim = NULL, send_after = NULL WHERE key = {q} AND claim = {q}"
        )
        self._retry = (
            f"UPDATE reminder SET delivery = 'queued', send_after = {q}, last_error = {q}, claim = NULL "
            f"WHERE key = {q} AND claim = {q}"
        )
        self._failed = (
            f"UPDATE reminder SET delivery = 'failed', last_error = {q}, claim = NULL, send_after = NULL "
            f"WHERE key = {q} AND claim = {q}"
        )
        self._unclaim = (
            f"UPDATE reminder SET delivery = 'queued', claim = NULL, send_after = {q}, attempts = attempts - 1 "
            f"WHERE key = {q} AND claim = {q}"
        )
        self._forget = (
            f"UPDATE reminder SET delivery = 'queued', claim = NULL, send_after = {q}, attempts = attempts - 1 "
            f"WHERE claim = {q} AND delivery = 'claimed'"
        )
        self._release = (
            f"UPDATE reminder SET delivery = 'queued', claim = NULL, send_after = {q} "
            f"WHERE {OUTBOX} AND send_after > {q} AND delivery = 'claimed'"
        )

    # -- dispatcher side -----------------------------------------------------------------------

    def claim(self, now: datetime, *, lease_until: datetime, token: str, limit: int) -> list[Delivery]:
        """Claim up to `limit` pending reminders whose time has come (oldest first): they are
        `claimed` by `token` until `lease_until`, their attempt counted."""
        sql = self.repo.sql

        def claim() -> list[Any]:
            with self.repo.write() as tx:
                tx.cursor.execute(self._claim, (token, sql.instant(lease_until), sql.instant(now), limit))
                return tx.cursor.fetchall()  # type: ignore[no-any-return]

        rows = db.retrying(claim, what="claim")
        out = []
        for key, patient, kind, due_on, notify_at, detail, attempts in rows:
            notify = sql.read_instant(notify_at)
            assert notify is not None
            late = max(0, int((now - notify).total_seconds()))
            out.append(Delivery(key, patient, kind, sql.read_day(due_on), notify, detail, attempts, late))  # type: ignore[arg-type]
        out.sort(key=lambda d: (d.notify_at, d.key))
        return out

    def finish(self, token: str, now: datetime, *, sent: Sequence[Sent] = (), retry: Sequence[Retry] = (),
               failed: Sequence[Failed] = (), unclaim: Sequence[str] = ()) -> int:
        """Record how the deliveries of a claim went (`unclaim`: not attempted — back to the
        queue, due at once, their attempt uncounted); returns how many rows still carried the claim."""
        sql = self.repo.sql
        stamp = sql.instant(now)
        rows: list[tuple[str, str, tuple[Any, ...]]] = [
            *((key, self._sent, (stamp, late, key, token)) for key, late in sent),
            *((key, self._retry, (sql.instant(when), error[:MAX_ERROR], key, token)) for key, when, error in retry),
            *((key, self._failed, (error[:MAX_ERROR], key, token)) for key, error in failed),
            *((key, self._unclaim, (stamp, key, token)) for key in unclaim),
        ]
        rows.sort(key=lambda item: item[0])  # key order: see the module's docstring

        def record() -> int:
            changed = 0
            with self.repo.write() as tx:
                for _key, statement, values in rows:
                    tx.cursor.execute(statement, values)
                    changed += max(0, tx.cursor.rowcount)
            return changed

        return db.retrying(record, what="delivery record", outage_seconds=OUTAGE_SECONDS)

    def forget_claim(self, token: str, now: datetime) -> int:
        """Return the rows of a claim whose outcome the dispatcher never learnt (the database went
        away while claiming: the claim may or may not have been committed) to the queue, due at
        once, their attempt uncounted; returns how many rows carried it."""
        sql = self.repo.sql

        def forget() -> int:
            with self.repo.write() as tx:
                tx.cursor.execute(self._forget, (sql.instant(now), token))
                return max(0, int(tx.cursor.rowcount))

        return db.retrying(forget, what="forgotten claim", outage_seconds=OUTAGE_SECONDS)

    def next_due(self) -> datetime | None:
        """When the earliest reminder still to deliver may be sent (None: nothing to deliver)."""
        with self.repo.read() as tx:
            rows = tx._rows(self._next, ())
        return self.repo.sql.read_instant(rows[0][0]) if rows else None

    def release(self, now: datetime) -> int:
        """Return to the queue the claims whose lease has not ended: a dispatcher alone on the
        database (SQLite, under its lock file) knows they belong to a process that died."""
        sql = self.repo.sql

        def release() -> int:
            with self.repo.write() as tx:
                tx.cursor.execute(self._release, (sql.instant(now), sql.instant(now)))
                return max(0, int(tx.cursor.rowcount))

        return db.retrying(release, what="release")

    def retry_failed(self, now: datetime, keys: Sequence[str] | None = None) -> int:
        """Queue failed deliveries of pending reminders again, due at `now`, with a fresh count of
        attempts (all of them, or those `keys`); returns how many."""
        sql = self.repo.sql
        q = sql.q
        statement = (
            f"UPDATE reminder SET delivery = 'queued', attempts = 0, send_after = {q}, last_error = NULL "
            "WHERE delivery = 'failed' AND status = 'pending'"
        )

        def queue() -> int:
            with self.repo.write() as tx:
                if keys is None:
                    tx.cursor.execute(statement, (sql.instant(now),))
                    return max(0, int(tx.cursor.rowcount))
                changed = 0
                for key in sorted(keys):
                    tx.cursor.execute(f"{statement} AND key = {q}", (sql.instant(now), key))
                    changed += max(0, tx.cursor.rowcount)
                return changed

        return db.retrying(queue, what="retry of failed deliveries")

    def listen(self, stop: threading.Event, on_notify: Callable[[], None], *, poll: float = 1.0) -> None:
        """PostgreSQL: call `on_notify` whenever a transaction that added or moved reminders
        commits (LISTEN on a connection of its own), until `stop` is set. Reconnects after errors;
        a no-op on SQLite (one process: the engine wakes its own dispatcher)."""
        if self.repo.sql.sqlite:
            return
        import psycopg

        conninfo = self.repo.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {REMINDER_CHANNEL}")
                    while not stop.is_set():
                        if any(True for _ in conn.notifies(timeout=poll, stop_after=1)):
                            on_notify()
            except psycopg.Error:
                log.warning("reminder notifications interrupted; listening again in 5 s (sweeps go on)")
                stop.wait(5.0)

    # -- reading -------------------------------------------------------------------------------

    def listing(self, *, patient: str | None = None, status: str | None = None, delivery: str | None = None,
                limit: int | None = None) -> list[StoredReminder]:
        """Reminders with their delivery record, by due date: a patient's, or by plan status
        (pending | done | cancelled) and/or delivery (queued | claimed | sent | failed)."""
        sql = self.repo.sql
        q = sql.q
        where: list[str] = []
        params: list[Any] = []
        if patient is not None:
            where += [f"key >= {q}", f"key < {q}"]
            params += [f"{patient}:", f"{patient};"]
        if status is not None:
            where.append(f"status = {q}")
            params.append(status)
        if delivery is not None:
            where.append(f"delivery = {q}")
            params.append(delivery)
        statement = (
            "SELECT key, patient, kind, due_on, notify_at, status, delivery, attempts, sent_at, late_by_s, "
            "last_error, detail FROM reminder"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY due_on, patient, kind, key"
        )
        if limit is not None:
            statement += f" LIMIT {q}"
            params.append(limit)
        with self.repo.read() as tx:
            rows = tx._rows(statement, params)
        return [
            StoredReminder(r[0], r[1], r[2], sql.read_day(r[3]), sql.read_instant(r[4]), r[5], r[6], r[7],  # type: ignore[arg-type]
                           sql.read_instant(r[8]), r[9], r[10], r[11])
            for r in rows
        ]
