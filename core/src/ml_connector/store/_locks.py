"""One run per connection at a time, across processes.

Two processes syncing one connection at once could both find no link for a new bill and both
create it. So a run holds the connection's lock for its whole length: on PostgreSQL an advisory
lock on a connection of its own, on SQLite an exclusive ``flock`` on a file beside the database.
Both are released by the operating system or the server when the process dies, so a killed run
never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from ml_connector.errors import ConnectorError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Engine

__all__ = ["ConnectionBusyError", "connection_lock"]

# Advisory lock keys are 64-bit; a fixed high half keeps ours apart from other users' keys.
_ADVISORY_NAMESPACE = 0x6D6C_6300 << 32


class ConnectionBusyError(ConnectorError):
    """Another process is running this connection."""


def _busy(name: str) -> ConnectionBusyError:
    return ConnectionBusyError(
        f"connection {name!r} is being synced by another process; try again when it finishes"
    )


@contextlib.contextmanager
def _file_lock(path: Path, name: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(name) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def connection_lock(engine: Engine, connection_id: int, name: str) -> Iterator[None]:
    """Hold the run lock of one connection for the block.

    Raises:
        ConnectionBusyError: Another process holds it.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as db:
            key = _ADVISORY_NAMESPACE | connection_id
            got = db.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if not got:
                raise _busy(name)
            try:
                yield
            finally:
                db.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                db.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # one process owns an in-memory database anyway
        return
    with _file_lock(Path(f"{database}.connection-{connection_id}.lock"), name):
        yield
