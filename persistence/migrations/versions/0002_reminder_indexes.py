"""Worklist and dispatch indexes: partial indexes over pending reminders only.

- (due_on, patient, kind, key, notify_at, detail, state, status): the worklist is read from this
  index alone, already in its order (no table lookups, no join, no sort). `status` must be a column
  too, although the index holds only pending rows: without it SQLite looks every row up in the
  table to check the WHERE clause (measured at 100,000 patients: 120 ms instead of 38 ms).
- (notify_at): what is due to be sent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"


def upgrade() -> None:
    op.create_index(
        "ix_reminder_pending_due",
        "reminder",
        ["due_on", "patient", "kind", "key", "notify_at", "detail", "state", "status"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "ix_reminder_pending_notify",
        "reminder",
        ["notify_at"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_reminder_pending_notify", table_name="reminder")
    op.drop_index("ix_reminder_pending_due", table_name="reminder")
