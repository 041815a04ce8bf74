"""Reads and small writes for the operator commands (runs, audit, exceptions, cursors, mappings).

Every function works inside the caller's transaction (``with store.session() as session``) and
raises :class:`~ml_connector.errors.ConfigurationError` for an id that does not exist, which the
CLI reports as bad input.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import col, select

from ml_connector.errors import ConfigurationError
from ml_connector.store._tables import (
    AccountMappingRow,
    AuditEventRow,
    ConnectionRow,
    CursorRow,
    ExceptionItemRow,
    IntentStatus,
    RecordLinkRow,
    RunRow,
    RunStatus,
    WriteIntentRow,
)
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from sqlmodel import Session

    from ml_connector.models import AccountMapping

__all__ = [
    "count_exceptions",
    "count_links",
    "delete_mapping",
    "get_exception",
    "get_run",
    "list_audit_events",
    "list_cursors",
    "list_exceptions",
    "list_mappings",
    "list_open_intents",
    "list_runs",
    "running_run",
    "save_cursor",
    "set_exception_status",
    "upsert_mappings",
]


# --- Runs ------------------------------------------------------------------------------------


def list_runs(
    session: Session, connection_id: int | None = None, limit: int | None = None
) -> list[tuple[RunRow, str]]:
    """Runs with their connection's name, newest first.

    Args:
        session: The transaction to read in.
        connection_id: Only this connection's runs; every connection's without it.
        limit: At most this many; all without it.
    """
    query = select(RunRow, ConnectionRow.name).join(
        ConnectionRow, col(ConnectionRow.id) == col(RunRow.connection_id)
    )
    if connection_id is not None:
        query = query.where(RunRow.connection_id == connection_id)
    query = query.order_by(col(RunRow.started_at).desc(), col(RunRow.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return [(run, name) for run, name in session.exec(query)]


def get_run(session: Session, run_id: int) -> tuple[RunRow, str]:
    """One run and its connection's name.

    Raises:
        ConfigurationError: There is no run with that id.
    """
    found = session.exec(
        select(RunRow, ConnectionRow.name)
        .join(ConnectionRow, col(ConnectionRow.id) == col(RunRow.connection_id))
        .where(RunRow.id == run_id)
    ).first()
    if found is None:
        raise ConfigurationError(f"no run with id {run_id}")
    return found[0], found[1]


def running_run(session: Session, connection_id: int) -> RunRow | None:
    """The newest run of a connection still marked ``running`` (it may have been killed)."""
    return session.exec(
        select(RunRow)
        .where(RunRow.connection_id == connection_id)
        .where(RunRow.status == RunStatus.RUNNING.value)
        .order_by(col(RunRow.started_at).desc())
    ).first()


# --- Audit -----------------------------------------------------------------------------------


def list_audit_events(
    session: Session,
    connection_id: int,
    *,
    source_id: str | None = None,
    object_type: str | None = None,
    limit: int | None = None,
) -> list[AuditEventRow]:
    """A connection's audit events, newest first.

    Args:
        session: The transaction to read in.
        connection_id: The connection.
        source_id: Only events about this record (its source id).
        object_type: Only events about this kind of record (``vendor``, ``bill``, …).
        limit: At most this many; all without it.
    """
    query = select(AuditEventRow).where(AuditEventRow.connection_id == connection_id)
    if source_id is not None:
        query = query.where(AuditEventRow.source_id == source_id)
    if object_type is not None:
        query = query.where(AuditEventRow.object_type == object_type)
    query = query.order_by(col(AuditEventRow.at).desc(), col(AuditEventRow.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


# --- Exceptions ------------------------------------------------------------------------------


def list_exceptions(
    session: Session, connection_id: int | None, statuses: Collection[str] | None
) -> list[tuple[ExceptionItemRow, str]]:
    """Exception queue entries with their connection's name, most recently seen first.

    Args:
        session: The transaction to read in.
        connection_id: Only this connection's entries; every connection's without it.
        statuses: Only entries in these statuses; all without it.
    """
    query = select(ExceptionItemRow, ConnectionRow.name).join(
        ConnectionRow, col(ConnectionRow.id) == col(ExceptionItemRow.connection_id)
    )
    if connection_id is not None:
        query = query.where(ExceptionItemRow.connection_id == connection_id)
    if statuses is not None:
        query = query.where(col(ExceptionItemRow.status).in_(list(statuses)))
    query = query.order_by(col(ExceptionItemRow.last_seen).desc(), col(ExceptionItemRow.id).desc())
    return [(item, name) for item, name in session.exec(query)]


def get_exception(session: Session, item_id: int) -> tuple[ExceptionItemRow, str]:
    """One exception queue entry and its connection's name.

    Raises:
        ConfigurationError: There is no entry with that id.
    """
    found = session.exec(
        select(ExceptionItemRow, ConnectionRow.name)
        .join(ConnectionRow, col(ConnectionRow.id) == col(ExceptionItemRow.connection_id))
        .where(ExceptionItemRow.id == item_id)
    ).first()
    if found is None:
        raise ConfigurationError(f"no exception with id {item_id}")
    return found[0], found[1]


def set_exception_status(session: Session, item_id: int, status: str) -> tuple[str, str]:
    """Move an exception queue entry to ``status``.

    Returns:
        The previous status and the entry's connection name.

    Raises:
        ConfigurationError: There is no entry with that id.
    """
    item, name = get_exception(session, item_id)
    previous = item.status
    item.status = status
    session.add(item)
    session.flush()
    return previous, name


def count_exceptions(session: Session, connection_id: int) -> dict[str, int]:
    """How many exception queue entries a connection has, by status."""
    rows = session.exec(
        select(ExceptionItemRow.status, func.count())
        .where(ExceptionItemRow.connection_id == connection_id)
        .group_by(col(ExceptionItemRow.status))
    )
    return {status: count for status, count in rows}


# --- Cursors, links, intents -----------------------------------------------------------------


def list_cursors(session: Session, connection_id: int) -> list[CursorRow]:
    """A connection's stored cursors, by stream name."""
    return list(
        session.exec(
            select(CursorRow)
            .where(CursorRow.connection_id == connection_id)
            .order_by(col(CursorRow.stream))
        )
    )


def save_cursor(
    session: Session, connection_id: int, stream: str, position: datetime | None
) -> datetime | None:
    """Set a stream's cursor (``None``: read from the beginning).

    Returns:
        The previous position (``None`` also when the stream had no cursor yet).
    """
    row = session.exec(
        select(CursorRow)
        .where(CursorRow.connection_id == connection_id)
        .where(CursorRow.stream == stream)
    ).first()
    if row is None:
        row = CursorRow(connection_id=connection_id, stream=stream)
    previous = row.position
    row.position = position
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return previous


def count_links(session: Session, connection_id: int) -> dict[str, int]:
    """How many source records a connection has linked to the sink, by object type."""
    rows = session.exec(
        select(RecordLinkRow.object_type, func.count())
        .where(RecordLinkRow.connection_id == connection_id)
        .group_by(col(RecordLinkRow.object_type))
    )
    return {object_type: count for object_type, count in rows}


def list_open_intents(session: Session, connection_id: int) -> list[WriteIntentRow]:
    """A connection's creates that were started and not yet decided, oldest first."""
    return list(
        session.exec(
            select(WriteIntentRow)
            .where(col(WriteIntentRow.connection_id) == connection_id)
            .where(col(WriteIntentRow.status) == IntentStatus.OPEN.value)
            .order_by(col(WriteIntentRow.id))
        )
    )


# --- Account mappings ------------------------------------------------------------------------


def list_mappings(session: Session, connection_id: int) -> list[AccountMappingRow]:
    """A connection's account and dimension mappings, by source kind and id."""
    return list(
        session.exec(
            select(AccountMappingRow)
            .where(AccountMappingRow.connection_id == connection_id)
            .order_by(col(AccountMappingRow.source_kind), col(AccountMappingRow.source_id))
        )
    )


def upsert_mappings(
    session: Session, connection_id: int, mappings: Iterable[AccountMapping]
) -> list[AccountMappingRow]:
    """Write mappings as given (method included), replacing any for the same source value.

    Mappings not named are left alone.

    Returns:
        The written rows.
    """
    existing = {(r.source_kind, r.source_id): r for r in list_mappings(session, connection_id)}
    written = []
    for mapping in mappings:
        row = existing.get((mapping.source_kind, mapping.source_id))
        if row is None:
            row = AccountMappingRow(
                connection_id=connection_id,
                source_kind=mapping.source_kind,
                source_id=mapping.source_id,
                sink_kind=mapping.sink_kind,
                sink_id=mapping.sink_id,
                method=mapping.method.value,
            )
            existing[(mapping.source_kind, mapping.source_id)] = row
        row.sink_kind, row.sink_id = mapping.sink_kind, mapping.sink_id
        row.method = mapping.method.value
        row.updated_at = utcnow()
        session.add(row)
        written.append(row)
    session.flush()
    return written


def delete_mapping(
    session: Session, connection_id: int, source_kind: str, source_id: str
) -> AccountMappingRow:
    """Delete the mapping of one source value.

    Returns:
        The deleted row.

    Raises:
        ConfigurationError: That source value has no mapping.
    """
    row = session.exec(
        select(AccountMappingRow)
        .where(AccountMappingRow.connection_id == connection_id)
        .where(AccountMappingRow.source_kind == source_kind)
        .where(AccountMappingRow.source_id == source_id)
    ).first()
    if row is None:
        raise ConfigurationError(f"no mapping for {source_kind} {source_id!r}")
    session.delete(row)
    session.flush()
    return row
