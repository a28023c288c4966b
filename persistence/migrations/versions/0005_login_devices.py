"""Login throttling that is not a denial of service (issue 8): known devices, per-key failures.

- `known_device`: a browser on which a user logged in; the `pathway_device` cookie carries a
  random secret, the table its SHA-256 (`device_hash`), with the user (one browser may be known for
  several users: shared ward PCs), `first_seen` and `last_login_at`.
- `login_failure.device`: the device hash when the failed login came from a browser known for its
  name (then it counts only against that name on that browser), else NULL (it counts against the
  name at the address, the name, and the address). Existing failures become unknown-device ones.
- The failure indexes gain `device`: (name, device, at) and (address, device, at) answer each
  throttle key with a range read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def instant(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "known_device",
        sa.Column("device_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), primary_key=True),
        instant("first_seen"),
        instant("last_login_at"),
    )
    with op.batch_alter_table("login_failure") as batch:  # SQLite: batch mode
        batch.drop_index("ix_login_failure_name_at")
        batch.drop_index("ix_login_failure_address_at")
        batch.add_column(sa.Column("device", sa.String(64), nullable=True))
        batch.create_index("ix_login_failure_name_device_at", ["name", "device", "at"])
        batch.create_index("ix_login_failure_address_device_at", ["address", "device", "at"])


def downgrade() -> None:
    with op.batch_alter_table("login_failure") as batch:
        batch.drop_index("ix_login_failure_address_device_at")
        batch.drop_index("ix_login_failure_name_device_at")
        batch.drop_column("device")
        batch.create_index("ix_login_failure_name_at", ["name", "at"])
        batch.create_index("ix_login_failure_address_at", ["address", "at"])
    op.drop_table("known_device")
