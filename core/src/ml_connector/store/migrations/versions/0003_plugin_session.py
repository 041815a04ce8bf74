"""Plugins' saved server-side sessions (contract 1.2, ``ConnectionContext.saved_session``).

A run killed before it signed out leaves its session on the server, where a scarce one (an
Acumatica licence's API-user slot) stays taken until it times out. The plugin keeps it here,
sealed, so that the next run reuses it or signs it out first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    # As in 0001: 64-bit ids; on SQLite only INTEGER PRIMARY KEY auto-increments.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "plugin_session",
        sa.Column("id", _id(), nullable=False),
        sa.Column("connection_id", _id(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name="fk_plugin_session_connection_id_connection",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plugin_session"),
        sa.UniqueConstraint("connection_id", "role", name="uq_plugin_session_connection_id_role"),
    )


def downgrade() -> None:
    op.drop_table("plugin_session")
