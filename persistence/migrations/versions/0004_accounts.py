"""Accounts of the web app and the HTTP API (issue 4): users, API tokens, sessions, login failures.

- `user_account`: name (unique), role (viewer | coordinator | admin), argon2id password hash,
  created_at, disabled.
- `api_token`: bearer tokens; only the SHA-256 of the secret is stored (the secret is shown once);
  `revoked_at` set by `pathway token revoke`.
- `web_session`: login sessions; the cookie carries a random secret, the table its SHA-256, the
  user, the expiry and the session's CSRF token.
- `login_failure`: failed logins by user name and client address, for throttling.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def instant(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        instant("created_at"),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        instant("created_at"),
        instant("revoked_at", nullable=True),
        instant("last_used_at", nullable=True),
    )
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"])
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        instant("created_at"),
        instant("expires_at"),
    )
    op.create_index("ix_web_session_user_id", "web_session", ["user_id"])
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        instant("at"),
    )
    op.create_index("ix_login_failure_name_at", "login_failure", ["name", "at"])
    op.create_index("ix_login_failure_address_at", "login_failure", ["address", "at"])


def downgrade() -> None:
    op.drop_table("login_failure")
    op.drop_table("web_session")
    op.drop_table("api_token")
    op.drop_table("user_account")
