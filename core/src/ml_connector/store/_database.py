"""Where the state database is, how to connect to it, and opening it at the current schema.

A location is either a SQLAlchemy URL (it contains ``://``, e.g.
``postgresql+psycopg://ap@db.internal:5432/ml_connector``) or a SQLite file path. Without one, the
store is ``$ML_CONNECTOR_DB``, else ``ml-connector.db`` in :func:`ml_connector.vault.data_home`.
Only SQLite and PostgreSQL (through psycopg 3) are supported.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ml_connector.errors import ConfigurationError
from ml_connector.store._migrate import upgrade_to_head
from ml_connector.store._store import BEGIN_OPTION, Store
from ml_connector.vault import data_home

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "DB_FILE_NAME",
    "ENV_DB",
    "create_store_engine",
    "database_url",
    "default_database",
    "open_store",
]

ENV_DB = "ML_CONNECTOR_DB"
"""Environment variable holding the state database's path or URL."""

DB_FILE_NAME = "ml-connector.db"

# Seconds a SQLite connection waits for another process's write lock before giving up.
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_database() -> str:
    """The database used when none is given: ``$ML_CONNECTOR_DB``, else the default file."""
    return os.environ.get(ENV_DB, "").strip() or str(data_home() / DB_FILE_NAME)


def database_url(url_or_path: str | None = None) -> URL:
    """Turn a location (URL or SQLite path; default :func:`default_database`) into a URL.

    ``postgresql://`` and ``postgres://`` URLs, as libpq and hosting providers write them, are
    read as ``postgresql+psycopg://``: psycopg 3 is the driver this project supports.

    Raises:
        ConfigurationError: The URL is malformed or names an unsupported database.
    """
    location = (url_or_path or "").strip() or default_database()
    if "://" not in location:
        return URL.create("sqlite", database=str(Path(location).expanduser().absolute()))
    try:
        url = make_url(location)
    except ArgumentError:
        raise ConfigurationError(
            "the database URL is malformed; expected e.g. "
            "postgresql+psycopg://user@host:5432/dbname or a SQLite file path"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {url.get_backend_name()!r}: use a SQLite file path or a "
            "postgresql+psycopg:// URL"
        )
    return url


def create_store_engine(url: URL) -> Engine:
    """Create the engine for ``url``, with the settings the store relies on.

    SQLite gets WAL (readers never block the writer), enforced foreign keys (for the cascades), a
    busy timeout (processes wait for each other's write lock instead of failing) and
    SQLAlchemy-controlled transactions (see :data:`~ml_connector.store._store.BEGIN_OPTION`).

    Raises:
        ConfigurationError: The database driver is not installed.
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _prepare_sqlite_file(Path(url.database))
        engine = create_engine(url)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    try:
        # pre_ping: a long-running `serve` outlives server restarts and idle-connection reaping.
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the database driver {exc.name!r} is not installed; for PostgreSQL install "
            "ml-connector[postgres]"
        ) from None


def open_store(url_or_path: str | None = None) -> Store:
    """Open the state store and migrate it to the current schema.

    Migrating takes a lock (SQLite's write lock, a PostgreSQL advisory lock), so processes that
    open the same database at once migrate it exactly once. A database already at the current
    schema is not locked at all.

    Args:
        url_or_path: A SQLAlchemy URL or a SQLite file path; default :func:`default_database`.

    Returns:
        The open store; call :meth:`Store.dispose` when done with it.

    Raises:
        ConfigurationError: The location is malformed or unsupported, the database cannot be
            reached, or it was migrated by a newer ml-connector.
    """
    url = database_url(url_or_path)
    engine = create_store_engine(url)
    shown = url.render_as_string(hide_password=True)
    try:
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            raise ConfigurationError(
                f"cannot open the state database {shown}: {exc.orig}"
            ) from None
        upgrade_to_head(engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), shown)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


def _prepare_sqlite_file(path: Path) -> None:
    # The file holds encrypted credentials and business data: create it owner-only (SQLite gives
    # its -wal and -shm files the same permissions), in an owner-only directory.
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the state database {path}: {exc.strerror}"
        ) from None


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the sqlite3 module (it defers BEGIN until the first
    # write, so a read-then-write transaction is not one); _on_sqlite_begin emits BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # The wait first: switching a new file to WAL needs its lock, which another process
        # opening it at the same moment may hold while it migrates (sqlite3's own wait is 5 s).
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL, not WAL's usual NORMAL: a write intent must survive a power cut once committed,
        # or the bill it guards could be created twice. The connector waits on the network anyway.
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (once per file: the mode is stored in it), waiting for the lock.

    The busy timeout does not always wait here: when connections opening a new file switch it
    at the same moment, each holds a shared lock and wants the exclusive one, and SQLite answers
    "database is locked" at once rather than let them wait on each other. So the switch is
    retried until the timeout; another connection's switch usually ends the contention.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _on_sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE"):
        raise ValueError(f"unknown SQLite transaction mode {mode!r}")
    # On the driver's connection: SQLAlchemy's execution path costs more than the BEGIN itself.
    connection.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
