"""Initial schema: patients and their snapshots, the append-only event log, reminders.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACCEPTED_KEY = "status = 'accepted' AND idem_key IS NOT NULL"
KEY = sa.String(200).with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")


def upgrade() -> None:
    # Every accepted event rewrites its patient's row: one page. No index on state (each state
    # change would rewrite two more pages): listing patients by state scans this table.
    op.create_table(
        "patient",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("primary_tumour", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("referred_on", sa.Date(), nullable=False),
        sa.Column("latest_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "event_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("patient", sa.String(64), nullable=True),
        sa.Column("type", sa.String(32), nullable=True),
        sa.Column("event_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=True),
        sa.Column("idem_key", sa.String(200), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("state_after", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("refers_to", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_event_log_patient_id", "event_log", ["patient", "id"])
    op.create_index(
        "ux_event_log_accepted_key",
        "event_log",
        ["patient", "idem_key"],
        unique=True,
        sqlite_where=sa.text(ACCEPTED_KEY),
        postgresql_where=sa.text(ACCEPTED_KEY),
    )

    # Reminders are clustered by key ("<patient>:<kind>:..."): a patient's reminders share pages,
    # so reconciling them after an event touches one page, and "a patient's reminders" is a key
    # range. The key sorts bytewise on PostgreSQL too (collation C) for that range to hold.
    # `state` is the patient's state, kept on pending reminders so that worklists read one index.
    op.create_table(
        "reminder",
        sa.Column("key", KEY, primary_key=True),
        sa.Column("patient", sa.String(64), sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("notify_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sqlite_with_rowid=False,
    )

    # The audit log is append-only: the database itself refuses updates and deletes.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER event_log_no_{action.lower()} BEFORE {action} ON event_log "
                "BEGIN SELECT RAISE(ABORT, 'event_log is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'event_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER event_log_no_change BEFORE UPDATE OR DELETE ON event_log "
            "FOR EACH ROW EXECUTE FUNCTION event_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER event_log_no_truncate BEFORE TRUNCATE ON event_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION event_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS event_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS event_log_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS event_log_no_truncate ON event_log")
        op.execute("DROP TRIGGER IF EXISTS event_log_no_change ON event_log")
        op.execute("DROP FUNCTION IF EXISTS event_log_append_only()")
    op.drop_table("reminder")
    op.drop_table("event_log")
    op.drop_table("patient")
