"""The :class:`Store`: an open state database and the transactions on it."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Self

from sqlmodel import Session

from ml_connector.store import _connections, _locks, _secrets

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import TracebackType

    from sqlalchemy.engine import Connection, Engine

    from ml_connector.store._tables import ConnectionRow

__all__ = ["BEGIN_OPTION", "Store"]

#: Execution option read by the SQLite ``begin`` hook: ``"IMMEDIATE"`` takes the write lock when
#: the transaction starts, ``"DEFERRED"`` at the first write. A transaction that reads and then
#: writes must start IMMEDIATE: a deferred one fails with "database is locked" if another process
#: wrote in between, whatever the busy timeout.
BEGIN_OPTION = "ml_connector_sqlite_begin"


class Store:
    """The state store: connections, cursors, links, intents, runs, audit, exceptions, webhooks.

    Build it with :func:`~ml_connector.store.open_store`, which also migrates the schema.

    Args:
        engine: The engine, as made by :func:`~ml_connector.store.create_store_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        if engine.dialect.name == "postgresql":
            self._reader = engine.execution_options(postgresql_readonly=True)
        else:
            self._reader = engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for code that needs Core access)."""
        return self._engine

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL for display, password masked."""
        return self._engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def connection_lock(
        self, connection_id: int, name: str
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the run lock of one connection (see :mod:`ml_connector.store._locks`).

        Raises:
            ConnectionBusyError: Another process is running that connection.
        """
        return _locks.connection_lock(self._engine, connection_id, name)

    def dispose(self) -> None:
        """Close every pooled connection. The store can still be used; it reconnects."""
        self._engine.dispose()

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Objects stay readable after the block (``expire_on_commit=False``), so a function can
        return the rows it loaded.

        Args:
            read_only: The block only reads. On SQLite it then does not take the write lock
                (other processes keep writing); on PostgreSQL writes are refused.

        Yields:
            A sqlmodel session.
        """
        with Session(self._reader if read_only else self._writer, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on SQLAlchemy Core, for per-record hot paths.

        Same guarantees as :meth:`session` (committed when the block ends, rolled back if it
        raises, the SQLite write lock taken at the start) without the ORM's per-row work.

        Yields:
            A SQLAlchemy connection inside the transaction.
        """
        with self._writer.begin() as connection:
            yield connection

    @asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[Connection]:
        """Like :meth:`transaction`, but the commit runs in a worker thread.

        The commit is where the durable write happens (SQLite's fsync, PostgreSQL's round trip)
        and the event loop has better things to do meanwhile: answer the responses that free the
        sink's slots. The statements themselves still run in the caller's thread.

        Yields:
            A SQLAlchemy connection inside the transaction.
        """
        connection = self._writer.connect()
        try:
            transaction = connection.begin()
            yield connection
        except BaseException:
            connection.close()  # rolls the transaction back
            raise
        # Handed to the thread at once, not at the loop's next turn: until it commits, the
        # transaction holds SQLite's write lock, and a writer on the loop would wait for it.
        commit = asyncio.get_running_loop().run_in_executor(None, transaction.commit)
        # A cancelled caller cannot stop a commit under way in its thread: the connection is
        # closed when the commit is over, never under it.
        commit.add_done_callback(lambda _: connection.close())
        await asyncio.shield(commit)

    # --- Connections ---------------------------------------------------------------------------

    def add_connection(
        self,
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
        """Store a new connection; see :func:`~ml_connector.store._connections.add_connection`."""
        with self.session() as session:
            return _connections.add_connection(
                session,
                name,
                source_system=source_system,
                sink_system=sink_system,
                source_credentials=source_credentials,
                sink_credentials=sink_credentials,
                source_settings=source_settings,
                sink_settings=sink_settings,
                options=options,
            )

    def get_connection(self, name: str) -> ConnectionRow:
        """The connection named ``name``.

        Raises:
            ConfigurationError: There is no connection of that name.
        """
        with self.session(read_only=True) as session:
            return _connections.get_connection(session, name)

    def list_connections(self) -> list[ConnectionRow]:
        """Every connection, by name."""
        with self.session(read_only=True) as session:
            return _connections.list_connections(session)

    def remove_connection(self, name: str) -> None:
        """Delete a connection and every row that belongs to it.

        Raises:
            ConfigurationError: There is no connection of that name.
        """
        with self.session() as session:
            _connections.remove_connection(session, name)

    # --- Secrets -------------------------------------------------------------------------------

    def reencrypt_secrets(self, transform: Callable[[bytes], bytes]) -> int:
        """Replace every stored secret by ``transform(secret)``, all in one transaction.

        Used by key rotation with :meth:`ml_connector.vault.Vault.reencrypt`: if ``transform``
        raises for any secret, nothing is changed.

        Returns:
            How many secrets were re-encrypted.
        """
        with self.session() as session:
            return _secrets.reencrypt_secrets(session, transform)
