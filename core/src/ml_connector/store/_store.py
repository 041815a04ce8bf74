"""The :class:`Store`: an open state database and the transactions on it."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from sqlmodel import Session

from ml_connector.store import _connections, _locks, _secrets

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from sqlalchemy.engine import Connection, Dialect, Engine
    from sqlalchemy.engine.interfaces import DBAPICursor
    from sqlalchemy.pool import PoolProxiedConnection

    from ml_connector.store._tables import ConnectionRow

__all__ = ["BEGIN_OPTION", "Store", "WriteTransaction"]

#: Execution option read by the SQLite ``begin`` hook: ``"IMMEDIATE"`` takes the write lock when
#: the transaction starts, ``"DEFERRED"`` at the first write. A transaction that reads and then
#: writes must start IMMEDIATE: a deferred one fails with "database is locked" if another process
#: wrote in between, whatever the busy timeout.
BEGIN_OPTION = "ml_connector_sqlite_begin"


@dataclass(frozen=True)
class WriteTransaction:
    """A write transaction of :meth:`Store.transaction` on the database driver's connection.

    Attributes:
        dialect: The database's SQLAlchemy dialect, to compile statements for.
        connection: The pooled DB-API connection the transaction is on.
    """

    dialect: Dialect
    connection: PoolProxiedConnection

    @classmethod
    def within(cls, connection: Connection) -> WriteTransaction:
        """The transaction a SQLAlchemy connection (a session's) is in, for the same statements."""
        return cls(connection.dialect, connection.connection)

    def cursor(self) -> DBAPICursor:
        """A new DB-API cursor inside the transaction."""
        return self.connection.cursor()

    def commit(self) -> None:
        """Commit the transaction (the store does, when its block ends)."""
        self.connection.commit()


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
    def transaction(self) -> Iterator[WriteTransaction]:
        """One write transaction on the driver's own connection, for per-record hot paths.

        Same guarantees as :meth:`session` (committed when the block ends, rolled back if it
        raises, the SQLite write lock taken at the start) without SQLAlchemy's work per
        transaction and per statement: the block runs statements compiled beforehand (see
        :mod:`ml_connector.engine._statements`) on :meth:`WriteTransaction.cursor`.

        Yields:
            The transaction.
        """
        transaction = self._begin()
        try:
            yield transaction
            transaction.commit()
        finally:
            transaction.connection.close()  # back to the pool, which rolls back what is left

    def write_in_thread(
        self, statements: Callable[[WriteTransaction], None]
    ) -> asyncio.Future[None]:
        """Start ``statements`` in one :meth:`transaction` in a worker thread.

        The event loop that calls this has better things to do than the database's work: answer
        the responses that free the sink's slots. In the thread, the driver works without the
        GIL (SQLite's statements and fsync, PostgreSQL's round trips), so it runs beside the loop
        on another core. ``statements`` should get values prepared on the loop and only run them.

        Returns:
            The transaction's future: done once committed, or failed with what ``statements``
            or the commit raised (nothing committed). Await it through :func:`asyncio.shield`:
            once the thread has started, the transaction commits or rolls back whole whatever
            its caller does, and the future says which.
        """

        def transact() -> None:
            with self.transaction() as transaction:
                statements(transaction)

        return asyncio.get_running_loop().run_in_executor(None, transact)

    def _begin(self) -> WriteTransaction:
        connection = self._writer.raw_connection()
        try:
            if self.backend == "sqlite":
                # The connections run in autocommit mode (see _database._on_sqlite_connect), so
                # the transaction is begun here, IMMEDIATE like every write transaction's.
                connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            # PostgreSQL's driver begins one itself at the first statement.
        except BaseException:
            connection.close()
            raise
        return WriteTransaction(self._engine.dialect, connection)

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
