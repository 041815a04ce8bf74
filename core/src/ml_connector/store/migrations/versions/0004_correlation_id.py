"""Audit events and exception entries keep the failing system's correlation id.

Systems answer an error with a request or correlation id (``UpstreamError.correlation_id``) that
their support asks for; until now it was lost or buried in the error text. Nullable: rows written
before this revision, and failures no system answered, have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("audit_event", "exception_item")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("correlation_id", sa.String(200), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("correlation_id")
