"""Reminder delivery: the reminder table becomes a transactional outbox (issue 3).

A reminder's plan status (pending | done | cancelled) says whether the planned thing is still to
happen; its `delivery` says whether its notification went out:

- `queued`: to be sent once `send_after` has passed (`send_after` = `notify_at`, or later after a
  failed attempt: exponential backoff);
- `claimed`: a dispatcher is delivering it; `send_after` is then the end of its lease, after
  which another dispatcher may claim it again (at-least-once; receivers de-duplicate on the key);
- `sent` (with `sent_at` and `late_by_s`, seconds after `notify_at`) or `failed` (after the
  policy's maximum attempts, `last_error` says why).

Moving a reminder (a new `notify_at`) queues it again: the new date is announced. Only pending
reminders are ever claimed, so one cancelled or done before delivery is never sent.

Indexes: `ix_reminder_outbox` (send_after, delivery) holds only pending reminders still to be
delivered: the dispatcher's "what is due" and "when is the next one" are range reads of it, and a
delivered reminder leaves it. `ix_reminder_failed` lists failures (few) without a scan;
`ix_reminder_claimed` finds the claims in flight (a handful) without walking the outbox, which a
dispatcher starting on SQLite does to take back a dead predecessor's (5 s at 1,000,000 reminders
without it, 0.1 ms with it). The worklist's covering index gains `delivery` (to flag failures),
replacing `ix_reminder_pending_notify`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"
OUTBOX = "status = 'pending' AND delivery IN ('queued', 'claimed')"
FAILED = "delivery = 'failed'"
CLAIMED = "status = 'pending' AND delivery = 'claimed'"
WORKLIST = ["due_on", "patient", "kind", "key", "notify_at", "detail", "state", "status"]


def upgrade() -> None:
    op.add_column("reminder", sa.Column("delivery", sa.String(16), nullable=False, server_default="queued"))
    op.add_column("reminder", sa.Column("send_after", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reminder", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("reminder", sa.Column("claim", sa.String(64), nullable=True))
    op.add_column("reminder", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reminder", sa.Column("late_by_s", sa.Integer(), nullable=True))
    op.add_column("reminder", sa.Column("last_error", sa.Text(), nullable=True))
    op.execute("UPDATE reminder SET send_after = notify_at")
    op.drop_index("ix_reminder_pending_notify", table_name="reminder")
    op.drop_index("ix_reminder_pending_due", table_name="reminder")
    op.create_index(
        "ix_reminder_pending_due", "reminder", [*WORKLIST, "delivery"],
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "ix_reminder_outbox", "reminder", ["send_after", "delivery"],
        sqlite_where=sa.text(OUTBOX), postgresql_where=sa.text(OUTBOX),
    )
    op.create_index(
        "ix_reminder_failed", "reminder", ["due_on"],
        sqlite_where=sa.text(FAILED), postgresql_where=sa.text(FAILED),
    )
    op.create_index(
        "ix_reminder_claimed", "reminder", ["send_after"],
        sqlite_where=sa.text(CLAIMED), postgresql_where=sa.text(CLAIMED),
    )


def downgrade() -> None:
    op.drop_index("ix_reminder_claimed", table_name="reminder")
    op.drop_index("ix_reminder_failed", table_name="reminder")
    op.drop_index("ix_reminder_outbox", table_name="reminder")
    op.drop_index("ix_reminder_pending_due", table_name="reminder")
    op.create_index(
        "ix_reminder_pending_due", "reminder", WORKLIST,
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "ix_reminder_pending_notify", "reminder", ["notify_at"],
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )
    for column in ("last_error", "late_by_s", "sent_at", "claim", "attempts", "send_after", "delivery"):
        op.drop_column("reminder", column)  # SQLite >= 3.35 drops columns in place
