"""The schema: patients (snapshot + version), the append-only event log, and reminders.

SQLModel table modules must not use `from __future__ import annotations` (sqlmodel issue #196).
Instants are stored in UTC and come back timezone-aware; clinical dates are plain dates.
"""

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend (SQLite keeps no zone, so we keep UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"instants must be timezone-aware datetimes, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _instant(nullable: bool = False) -> Any:
    return Field(sa_type=UTCDateTime(), nullable=nullable)


class PatientRow(SQLModel, table=True):
    """One row per patient: the current snapshot, for fast reads, with an optimistic version.
    Not indexed by state: every state change would rewrite two more pages (see migration 0001)."""

    __tablename__ = "patient"

    id: str = Field(primary_key=True, max_length=64)
    primary_tumour: str = Field(max_length=32)
    state: str = Field(max_length=32)
    #: Incremented by every accepted event; a writer updates only the version it read.
    version: int
    #: The snapshot (states.facts.Snapshot) as JSON text.
    snapshot: str = Field(sa_type=sa.Text())
    referred_on: date
    latest_on: date
    created_at: datetime = _instant()
    updated_at: datetime = _instant()
    #: The earliest target date of the running waiting-time clocks (NULL: none): the PTL's index.
    clock_target: date | None = Field(default=None)


class EventRow(SQLModel, table=True):
    """The audit log: every event submitted, accepted or not. Append-only (triggers refuse changes)."""

    __tablename__ = "event_log"
    __table_args__ = (
        sa.Index("ix_event_log_patient_id", "patient", "id"),
        sa.Index(
            "ux_event_log_accepted_key",
            "patient",
            "idem_key",
            unique=True,
            sqlite_where=sa.text("status = 'accepted' AND idem_key IS NOT NULL"),
            postgresql_where=sa.text("status = 'accepted' AND idem_key IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The patient id when the event names a well-formed one (invalid events may not).
    patient: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=32)
    event_on: date | None = None
    #: accepted | refused | duplicate | invalid
    status: str = Field(max_length=16)
    recorded_by: str | None = Field(default=None, max_length=128)
    idem_key: str | None = Field(default=None, max_length=200)
    content_hash: str | None = Field(default=None, max_length=64)
    #: The event as checked (accepted, refused, duplicate) or as submitted (invalid), JSON.
    payload: str = Field(sa_type=sa.Text())
    #: Reasons returned: [{code, severity, message, source}], JSON.
    reasons: str = Field(default="[]", sa_type=sa.Text())
    error: str | None = Field(default=None, sa_type=sa.Text())
    state_after: str | None = Field(default=None, max_length=32)
    #: The patient's version after an accepted event.
    version: int | None = None
    #: For a void: the id of the event it undid. For a duplicate: the id of the first event.
    refers_to: int | None = None
    recorded_at: datetime = _instant()


#: Pending reminders whose notification is still to go out (migration 0003).
OUTBOX = "status = 'pending' AND delivery IN ('queued', 'claimed')"
CLAIMED = "status = 'pending' AND delivery = 'claimed'"


class ReminderRow(SQLModel, table=True):
    """A reminder of the projected care plan, reconciled with every accepted event. Clustered by
    key on SQLite (a patient's reminders share pages); see migrations 0001 and 0002."""

    __tablename__ = "reminder"
    __table_args__ = (
        # the worklist reads this partial index alone, in its order
        sa.Index(
            "ix_reminder_pending_due",
            "due_on", "patient", "kind", "key", "notify_at", "detail", "state", "status", "delivery",
            sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"),
        ),
        # the dispatcher's outbox: pending reminders still to be delivered, by when they may be sent
        sa.Index(
            "ix_reminder_outbox", "send_after", "delivery",
            sqlite_where=sa.text(OUTBOX), postgresql_where=sa.text(OUTBOX),
        ),
        sa.Index(
            "ix_reminder_failed", "due_on",
            sqlite_where=sa.text("delivery = 'failed'"), postgresql_where=sa.text("delivery = 'failed'"),
        ),
        sa.Index(
            "ix_reminder_claimed", "send_after",
            sqlite_where=sa.text(CLAIMED), postgresql_where=sa.text(CLAIMED),
        ),
        {"sqlite_with_rowid": False},
    )

    #: Stable key of the planned thing, "<patient>:<kind>:...", e.g. "P1:chemo_cycle:2:3";
    #: receivers de-duplicate on it. Sorts bytewise (collation C on PostgreSQL).
    key: str = Field(
        primary_key=True,
        sa_type=sa.String(200).with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql"),
    )
    patient: str = Field(foreign_key="patient.id", max_length=64)
    kind: str = Field(max_length=32)
    due_on: date
    notify_at: datetime = _instant()
    #: pending | done | cancelled
    status: str = Field(max_length=16)
    detail: str = Field(default="", max_length=500)
    #: The patient's state (kept current while the reminder is pending: worklists need no join).
    state: str = Field(max_length=32)
    created_at: datetime = _instant()
    updated_at: datetime = _instant()
    #: The event that closed it (done or cancelled).
    closed_by: int | None = None
    #: Its notification: queued | claimed | sent | failed (see migration 0003).
    delivery: str = Field(default="queued", max_length=16, sa_column_kwargs={"server_default": "queued"})
    #: Not before: notify_at, a retry's backoff, or the end of a dispatcher's claim.
    send_after: datetime | None = _instant(nullable=True)
    #: Delivery attempts so far (a claim counts as one).
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    #: The claim token of the dispatcher delivering it.
    claim: str | None = Field(default=None, max_length=64)
    sent_at: datetime | None = _instant(nullable=True)
    #: Seconds between notify_at and the delivery.
    late_by_s: int | None = None
    last_error: str | None = Field(default=None, sa_type=sa.Text())


# -- accounts of the web app and the HTTP API (migration 0004; SQL in persistence/accounts.py) ------


class UserRow(SQLModel, table=True):
    """A person who may use the web app or the API: viewer < coordinator < admin."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    role: str = Field(max_length=16)
    #: argon2id hash (argon2-cffi's PHC string, "$argon2id$...").
    password_hash: str = Field(max_length=255)
    created_at: datetime = _instant()
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class ApiTokenRow(SQLModel, table=True):
    """A bearer token of the API, acting as its user. Only the SHA-256 of the secret is kept."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(default="", max_length=100)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: datetime = _instant()
    revoked_at: datetime | None = _instant(nullable=True)
    last_used_at: datetime | None = _instant(nullable=True)


class SessionRow(SQLModel, table=True):
    """A login session of the web app: the cookie holds a secret whose SHA-256 is the key here."""

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    #: The CSRF token of the session's forms.
    csrf: str = Field(max_length=64)
    created_at: datetime = _instant()
    expires_at: datetime = _instant()


class LoginFailureRow(SQLModel, table=True):
    """A failed (or a still running) login, for throttling (persistence/accounts.py, migration 0005).
    From a browser known for the name, `device` is that browser's hash and the failure counts only
    against (name, device); from any other, `device` is NULL and it counts against (name, address),
    the name and the address."""

    __tablename__ = "login_failure"
    __table_args__ = (
        sa.Index("ix_login_failure_name_device_at", "name", "device", "at"),
        sa.Index("ix_login_failure_address_device_at", "address", "device", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    address: str = Field(max_length=64)
    #: The SHA-256 of the device cookie when the browser is known for `name`, else NULL.
    device: str | None = Field(default=None, max_length=64)
    at: datetime = _instant()


class KnownDeviceRow(SQLModel, table=True):
    """A browser on which a user has logged in: its device cookie's SHA-256 (one browser may be
    known for several users: shared ward PCs). Migration 0005."""

    __tablename__ = "known_device"

    device_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(primary_key=True, foreign_key="user_account.id")
    first_seen: datetime = _instant()
    last_login_at: datetime = _instant()


metadata = SQLModel.metadata
patient_table: sa.Table = PatientRow.__table__  # type: ignore[attr-defined]
event_table: sa.Table = EventRow.__table__  # type: ignore[attr-defined]
reminder_table: sa.Table = ReminderRow.__table__  # type: ignore[attr-defined]
user_table: sa.Table = UserRow.__table__  # type: ignore[attr-defined]
token_table: sa.Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
session_table: sa.Table = SessionRow.__table__  # type: ignore[attr-defined]
login_failure_table: sa.Table = LoginFailureRow.__table__  # type: ignore[attr-defined]
known_device_table: sa.Table = KnownDeviceRow.__table__  # type: ignore[attr-defined]
