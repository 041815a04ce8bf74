"""Alembic environment for the state store.

Run by :func:`ml_connector.store._migrate.upgrade_to_head` with a connection already inside a
locked transaction (``config.attributes["connection"]``), which the caller commits. Without one
(a developer generating a revision), it connects to the default database itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from ml_connector.store._database import create_store_engine, database_url
from ml_connector.store._tables import metadata
from ml_connector.store._types import UtcDateTime

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext


def _render_item(kind: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    # Generated migrations spell out what is stored rather than import the model's types.
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead, so generated
        # operations work on both SQLite and PostgreSQL.
        render_as_batch=True,
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=database_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        return
    engine = create_store_engine(database_url())
    try:
        with engine.connect() as connection, connection.begin():
            _configure(connection)
    finally:
        engine.dispose()


_run()
