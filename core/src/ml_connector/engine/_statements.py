"""The ledger's per-record writes, compiled once per dialect and run on the DB-API cursor.

Every bill costs an intent before its create and a link, a closed intent, a resolved exception
and an audit event after it, and the event loop that runs these is the one that keeps BILL's
three slots busy. Through the ORM that was about 4 ms of CPU per bill; through SQLAlchemy Core's
``Connection.execute`` it was still a fifth of the loop's time (per execution: the compiled-cache
lookup, the execution context, the parameter processing). So each statement is built here with
SQLAlchemy (the tables and dialects stay SQLAlchemy's business), compiled once per dialect, and
executed with the driver's ``executemany`` inside a :meth:`~ml_connector.store.Store.transaction`
(the driver's connection, no SQLAlchemy ``Connection`` either), with the column types' own bind
processors (the UTC timestamps) applied to the values.

Bound parameter names start with ``p_``: SQLAlchemy reserves the column names for the ``SET``
clause of an ``UPDATE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Table, bindparam, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from ml_connector.store import (
    AuditEventRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    RecordLinkRow,
    WriteIntentRow,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql import ClauseElement

    from ml_connector.store import WriteTransaction

__all__ = [
    "AUDIT_COLUMNS",
    "close_intents",
    "insert_audit",
    "open_intents",
    "resolve_exceptions",
    "write_links",
]


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


_LINK = _table(RecordLinkRow)
_INTENT = _table(WriteIntentRow)
_EXCEPTION = _table(ExceptionItemRow)
_AUDIT = _table(AuditEventRow)

AUDIT_COLUMNS = tuple(c.name for c in _AUDIT.c if c.name != "id")
"""The columns of an audit row, as :func:`insert_audit` takes them (JSON ones already encoded)."""


def _upserts(insert: Any) -> tuple[Any, Any]:
    """The link and intent upserts in one dialect's ``INSERT … ON CONFLICT`` form."""
    link = insert(_LINK).values(
        connection_id=bindparam("p_connection"),
        object_type=bindparam("p_type"),
        source_id=bindparam("p_source"),
        sink_id=bindparam("p_sink"),
        fingerprint=bindparam("p_fingerprint"),
        updated_at=bindparam("p_now"),
    )
    link = link.on_conflict_do_update(
        index_elements=[_LINK.c.connection_id, _LINK.c.object_type, _LINK.c.source_id],
        set_={
            "sink_id": link.excluded.sink_id,
            "fingerprint": link.excluded.fingerprint,
            "updated_at": link.excluded.updated_at,
        },
    )
    intent = insert(_INTENT).values(
        key=bindparam("p_key"),
        connection_id=bindparam("p_connection"),
        object_type=bindparam("p_type"),
        source_id=bindparam("p_source"),
        content_version=bindparam("p_version"),
        lookup=bindparam("p_lookup"),
        status=IntentStatus.OPEN.value,
        attempts=1,
        created_at=bindparam("p_now"),
        updated_at=bindparam("p_now"),
    )
    intent = intent.on_conflict_do_update(
        index_elements=[_INTENT.c.key],
        set_={
            "status": IntentStatus.OPEN.value,
            "attempts": _INTENT.c.attempts + 1,
            "lookup": intent.excluded.lookup,
            "updated_at": intent.excluded.updated_at,
        },
    )
    return link, intent


# The store runs on these two; both have spoken ON CONFLICT since SQLite 3.24 and PostgreSQL 9.5.
_UPSERTS = {"sqlite": _upserts(sqlite.insert), "postgresql": _upserts(postgresql.insert)}

_CLOSE_INTENTS = (
    update(_INTENT)
    .where(_INTENT.c.connection_id == bindparam("p_connection"))
    .where(_INTENT.c.object_type == bindparam("p_type"))
    .where(_INTENT.c.source_id == bindparam("p_source"))
    .where(_INTENT.c.status == IntentStatus.OPEN.value)
    .values(
        status=IntentStatus.DONE.value, sink_id=bindparam("p_sink"), updated_at=bindparam("p_now")
    )
)

# Not ``in_``: an expanding IN is rendered per execution, and this one is compiled once.
_RESOLVE_EXCEPTION = (
    update(_EXCEPTION)
    .where(_EXCEPTION.c.connection_id == bindparam("p_connection"))
    .where(_EXCEPTION.c.object_type == bindparam("p_type"))
    .where(_EXCEPTION.c.source_id == bindparam("p_source"))
    .where(
        or_(
            _EXCEPTION.c.status == ExceptionStatus.OPEN.value,
            _EXCEPTION.c.status == ExceptionStatus.RETRYING.value,
        )
    )
    .values(status=ExceptionStatus.RESOLVED.value, last_seen=bindparam("p_now"))
)

_INSERT_AUDIT = insert(_AUDIT)


@dataclass(frozen=True)
class _Compiled:
    """One statement in one dialect: its SQL and how to turn named values into its parameters."""

    sql: str
    names: Sequence[str] | None  # positional order (qmark, format), or None: named (pyformat)
    fixed: Mapping[str, Any]  # the values the statement carries itself (``status='open'``)
    processors: Mapping[str, Callable[[Any], Any]]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for one row: a list (positional styles) or a dict."""
        merged = {**self.fixed, **values}
        for name, process in self.processors.items():
            merged[name] = process(merged[name])
        if self.names is None:
            return merged
        return [merged[name] for name in self.names]


_COMPILED: dict[tuple[int, str], _Compiled] = {}


def _compiled(statement: ClauseElement, dialect: Dialect, columns: Sequence[str] = ()) -> _Compiled:
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is not None:
        return found
    compiled = statement.compile(
        dialect=dialect, column_keys=list(columns) or None, for_executemany=True
    )
    assert isinstance(compiled, SQLCompiler)
    binds = compiled.binds
    names = compiled.positiontup
    used = set(names) if names is not None else set(binds)
    processors = {}
    for name in used:
        # JSON values come encoded (the same for every row), so the dialects agree on them.
        if not isinstance(binds[name].type, JSON):
            process = binds[name].type.bind_processor(dialect)
            if process is not None:
                processors[name] = process
    made = _Compiled(
        compiled.string,
        list(names) if names is not None else None,
        {n: binds[n].effective_value for n in used if not binds[n].required},
        processors,
    )
    _COMPILED[key] = made
    return made


def _execute_many(
    transaction: WriteTransaction,
    statement: ClauseElement,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] = (),
) -> None:
    if not rows:
        return
    compiled = _compiled(statement, transaction.dialect, columns)
    cursor = transaction.cursor()
    try:
        cursor.executemany(compiled.sql, [compiled.parameters(row) for row in rows])
    finally:
        cursor.close()


def write_links(transaction: WriteTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update links: ``p_connection, p_type, p_source, p_sink, p_fingerprint, p_now``."""
    _execute_many(transaction, _UPSERTS[transaction.dialect.name][0], rows)


def open_intents(transaction: WriteTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Open intents, or reopen those with these keys counting one more attempt.

    Each row: ``p_key, p_connection, p_type, p_source, p_version, p_lookup, p_now``
    (``p_lookup`` encoded JSON, or ``None``).
    """
    _execute_many(transaction, _UPSERTS[transaction.dialect.name][1], rows)


def close_intents(transaction: WriteTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Mark records' open intents done: ``p_connection, p_type, p_source, p_sink, p_now``."""
    _execute_many(transaction, _CLOSE_INTENTS, rows)


def resolve_exceptions(transaction: WriteTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Resolve records' open or retrying exceptions: ``p_connection, p_type, p_source, p_now``."""
    _execute_many(transaction, _RESOLVE_EXCEPTION, rows)


def insert_audit(transaction: WriteTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert audit events, each a mapping of :data:`AUDIT_COLUMNS` (JSON ones encoded)."""
    _execute_many(transaction, _INSERT_AUDIT, rows, AUDIT_COLUMNS)
