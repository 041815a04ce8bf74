"""Plugins' saved server-side sessions, within a caller's transaction.

One row per connection side. The data arrives sealed by :class:`ml_connector.vault.Vault`: the
store handles tokens only (see :class:`ml_connector.context.SessionKeeper` for what it is for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from ml_connector.store._tables import PluginSessionRow, metadata
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = ["clear_plugin_session", "load_plugin_session", "save_plugin_session"]

_TABLE = metadata.tables["plugin_session"]
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def load_plugin_session(session: Session, connection_id: int, role: str) -> PluginSessionRow | None:
    """The saved session of one side of a connection, or ``None``."""
    query = select(PluginSessionRow).where(
        PluginSessionRow.connection_id == connection_id, PluginSessionRow.role == role
    )
    return session.exec(query).first()


def save_plugin_session(
    session: Session, connection_id: int, role: str, system: str, data: bytes
) -> None:
    """Save (or replace) the sealed session of one side of a connection.

    An upsert, so two processes saving at once cannot fail on the unique key: the last one wins,
    which is the session most recently opened.
    """
    insert: Any = _INSERTS[session.connection().dialect.name]
    now = utcnow()
    statement = insert(_TABLE).values(
        connection_id=connection_id, role=role, system=system, data=data, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[_TABLE.c.connection_id, _TABLE.c.role],
        set_={"system": system, "data": data, "updated_at": now},
    )
    session.connection().execute(statement)


def clear_plugin_session(session: Session, connection_id: int, role: str) -> bool:
    """Forget the saved session of one side of a connection; whether there was one."""
    result = session.connection().execute(
        delete(_TABLE).where(_TABLE.c.connection_id == connection_id, _TABLE.c.role == role)
    )
    return bool(result.rowcount)
