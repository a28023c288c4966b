"""Cancer waiting-time clocks (issue 10): `patient.clock_target`, the earliest target date of the
patient's running clocks (NULL when none), indexed for the patient tracking list.

The clocks themselves live in the snapshot (schema 2). Snapshots stored before this revision
have no clocks: the engine replays such a patient's history when it meets one, and `pathway db
upgrade` rewrites them all after migrating (pathway.recording.upgrade_snapshots).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("patient", sa.Column("clock_target", sa.Date(), nullable=True))
    op.create_index("ix_patient_clock_target", "patient", ["clock_target", "id"],
                    sqlite_where=sa.text("clock_target IS NOT NULL"),
                    postgresql_where=sa.text("clock_target IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_patient_clock_target", table_name="patient")
    op.drop_column("patient", "clock_target")
