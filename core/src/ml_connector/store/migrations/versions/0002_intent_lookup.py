"""Write intents keep what looking their record up needs.

The startup sweep decides every open intent by looking its record up on the side it was written
to; for a vendor that needs the vendor's name, which the sink is searched by.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("write_intent") as batch:
        batch.add_column(sa.Column("lookup", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("write_intent") as batch:
        batch.drop_column("lookup")
