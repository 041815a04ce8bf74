"""Connections in the store, within a caller's transaction.

Credentials arrive here already sealed by :class:`ml_connector.vault.Vault`: the store handles
tokens only and never sees a secret or a master key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ml_connector.errors import ConfigurationError
from ml_connector.store._tables import ConnectionRow

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = ["add_connection", "get_connection", "list_connections", "remove_connection"]

_MAX_NAME = 200


def add_connection(
    session: Session,
    name: str,
    *,
    source_system: str,
    sink_system: str,
    source_credentials: bytes,
    sink_credentials: bytes,
    source_settings: dict[str, Any] | None = None,
    sink_settings: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> ConnectionRow:
    """Add a connection.

    Args:
        session: The transaction to add it in.
        name: A unique name, e.g. ``"acme-acumatica"``.
        source_system: The source plugin's system key, e.g. ``"acumatica"``.
        sink_system: The sink plugin's system key, e.g. ``"bill"``.
        source_credentials: The source credentials, sealed by ``Vault.seal``.
        sink_credentials: The sink credentials, sealed by ``Vault.seal``.
        source_settings: The source plugin's settings as JSON-ready data (no secrets).
        sink_settings: The sink plugin's settings as JSON-ready data (no secrets).
        options: Connection-wide switches, e.g. ``{"create_missing_accounts": True}``.

    Returns:
        The new row, with its id.

    Raises:
        ConfigurationError: The name is empty, too long or taken.
    """
    if not name.strip() or len(name) > _MAX_NAME:
        raise ConfigurationError(f"a connection name has 1 to {_MAX_NAME} characters")
    if _find(session, name) is not None:
        raise ConfigurationError(f"a connection named {name!r} already exists")
    row = ConnectionRow(
        name=name,
        source_system=source_system,
        sink_system=sink_system,
        source_credentials=source_credentials,
        sink_credentials=sink_credentials,
        source_settings=dict(source_settings or {}),
        sink_settings=dict(sink_settings or {}),
        options=dict(options or {}),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Another process added the same name between our check and our insert.
        raise ConfigurationError(f"a connection named {name!r} already exists") from None
    return row


def get_connection(session: Session, name: str) -> ConnectionRow:
    """The connection named ``name``.

    Raises:
        ConfigurationError: There is no connection of that name.
    """
    row = _find(session, name)
    if row is None:
        raise ConfigurationError(f"no connection named {name!r}")
    return row


def list_connections(session: Session) -> list[ConnectionRow]:
    """Every connection, ordered by name."""
    return list(session.exec(select(ConnectionRow).order_by(col(ConnectionRow.name))).all())


def remove_connection(session: Session, name: str) -> None:
    """Delete a connection; the database deletes its cursors, links, runs, audit, … with it.

    Raises:
        ConfigurationError: There is no connection of that name.
    """
    session.delete(get_connection(session, name))
    session.flush()


def _find(session: Session, name: str) -> ConnectionRow | None:
    return session.exec(select(ConnectionRow).where(ConnectionRow.name == name)).first()
