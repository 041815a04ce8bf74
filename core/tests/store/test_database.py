"""Where the store is, opening it, and its migrations."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import String, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import NullPool
from sqlmodel import select

import ml_connector.store as store_module
from ml_connector.errors import ConfigurationError
from ml_connector.store import (
    ConnectionRow,
    CursorRow,
    Store,
    database_url,
    default_database,
    metadata,
    open_store,
)
from ml_connector.store._database import _switch_to_wal
from ml_connector.store._migrate import current_revisions, head_revisions, migration_transaction
from ml_connector.store._store import BEGIN_OPTION
from ml_connector.vault import default_key_file

if TYPE_CHECKING:
    from pathlib import Path

DOMAIN_TABLES = {
    "connection",
    "cursor",
    "record_link",
    "write_intent",
    "run",
    "audit_event",
    "exception_item",
    "account_mapping",
    "webhook_subscription",
    "webhook_event",
    "plugin_session",
}


def add_connection(store: Store, name: str = "acme") -> ConnectionRow:
    return store.add_connection(
        name,
        source_system="acumatica",
        sink_system="bill",
        source_credentials=b"token-1",
        sink_credentials=b"token-2",
    )


# --- Location ----------------------------------------------------------------------------------


def test_default_database_is_next_to_the_key_file(ml_connector_home: Path) -> None:
    assert default_database() == str(ml_connector_home / "ml-connector.db")
    assert database_url(None).database == str(default_key_file().parent / "ml-connector.db")


def test_ml_connector_db_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ML_CONNECTOR_DB", str(tmp_path / "other.db"))
    assert database_url(None).database == str(tmp_path / "other.db")


def test_a_path_is_a_sqlite_file_and_a_url_is_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")).render_as_string() == f"sqlite:///{tmp_path}/x.db"
    url = database_url("postgresql+psycopg://ap:pw@db.internal:5432/mlc")
    assert (url.host, url.port, url.database) == ("db.internal", 5432, "mlc")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_urls_use_psycopg(scheme: str) -> None:
    assert database_url(f"{scheme}://ap@db/mlc").drivername == "postgresql+psycopg"


def test_unsupported_or_malformed_urls_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="unsupported database 'mysql'"):
        database_url("mysql://ap@db/mlc")
    with pytest.raises(ConfigurationError, match="malformed"):
        database_url("::://nonsense")


def test_store_url_masks_the_password() -> None:
    engine = create_engine("postgresql+psycopg://ap:s3cret@db.internal/mlc", poolclass=NullPool)
    store = Store(engine)
    assert "s3cret" not in store.url
    assert "s3cret" not in repr(store)
    assert store.url == "postgresql+psycopg://ap:***@db.internal/mlc"


def test_unreachable_postgres_is_a_configuration_error() -> None:
    # Port 1 on loopback: nothing listens there.
    with pytest.raises(ConfigurationError, match="cannot open the state database"):
        open_store("postgresql+psycopg://ap:s3cret@127.0.0.1:1/mlc?connect_timeout=2")


def test_sqlite_file_and_directory_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private" / "state.db"
    with open_store(str(path)):
        pass
    assert path.stat().st_mode & 0o077 == 0
    assert path.parent.stat().st_mode & 0o077 == 0


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "s.db")) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


# --- Migrations --------------------------------------------------------------------------------


def test_the_models_declare_the_domain_tables() -> None:
    assert set(metadata.tables) == DOMAIN_TABLES


def test_migrations_create_exactly_what_the_models_declare(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    assert set(inspect(store.engine).get_table_names()) == DOMAIN_TABLES | {"alembic_version"}
    assert current_revisions(store.engine) == head_revisions()


def test_opening_again_keeps_the_data(store_location: str) -> None:
    with open_store(store_location) as store:
        add_connection(store)
    with open_store(store_location) as store:
        assert [c.name for c in store.list_connections()] == ["acme"]
        assert current_revisions(store.engine) == head_revisions()


def test_a_database_from_a_newer_version_is_refused(store_location: str) -> None:
    with open_store(store_location) as store, store.session() as session:
        session.connection().execute(text("UPDATE alembic_version SET version_num = 'zz99'"))
    with pytest.raises(ConfigurationError, match="newer ml-connector"):
        open_store(store_location)


def test_rebuilding_a_parent_table_in_a_migration_keeps_its_children(store: Store) -> None:
    connection_id = add_connection(store).id
    assert connection_id is not None
    with store.session() as session:
        session.add(CursorRow(connection_id=connection_id, stream="payables"))

    # What a future migration changing the connection table does (SQLite: copy, drop, rename).
    with migration_transaction(store.engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})) as c:
        operations = Operations(MigrationContext.configure(c))
        with operations.batch_alter_table("connection") as batch:
            batch.alter_column("sink_system", existing_type=String(64), type_=String(80))

    with store.session(read_only=True) as session:
        assert session.exec(select(CursorRow)).one().connection_id == connection_id
    with store.engine.connect() as c:
        if store.backend == "sqlite":
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_concurrent_opens_migrate_once(store_location: str) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            stores.append(open_store(store_location))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.dispose()
    assert errors == []
    with open_store(store_location) as store:
        assert current_revisions(store.engine) == head_revisions()


class _LockedTwice:
    """A cursor whose first two statements find the database locked, as SQLite says it."""

    def __init__(self, code: int = sqlite3.SQLITE_BUSY) -> None:
        self.code = code
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if len(self.statements) <= 2:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = self.code
            raise error


def test_switching_to_wal_is_tried_again_when_sqlite_answers_busy_without_waiting() -> None:
    # Connections switching a new file at once get SQLITE_BUSY at once, not after the timeout.
    cursor = _LockedTwice()
    _switch_to_wal(cursor)  # type: ignore[arg-type]
    assert cursor.statements == ["PRAGMA journal_mode=WAL"] * 3


def test_other_errors_of_the_switch_to_wal_are_not_retried() -> None:
    cursor = _LockedTwice(sqlite3.SQLITE_READONLY)
    with pytest.raises(sqlite3.OperationalError):
        _switch_to_wal(cursor)  # type: ignore[arg-type]
    assert len(cursor.statements) == 1


# --- Sessions and column types -----------------------------------------------------------------


def a_connection_row(name: str = "row") -> ConnectionRow:
    return ConnectionRow(
        name=name,
        source_system="a",
        sink_system="b",
        source_credentials=b"1",
        sink_credentials=b"2",
    )


def insert(store: Store, row: object, *, read_only: bool = False, then_fail: bool = False) -> None:
    with store.session(read_only=read_only) as session:
        session.add(row)
        session.flush()
        if then_fail:
            raise RuntimeError("boom")


def test_a_failing_session_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError):
        insert(store, a_connection_row(), then_fail=True)
    assert store.list_connections() == []


def test_times_come_back_aware_and_in_utc(store: Store) -> None:
    connection_id = add_connection(store).id
    assert connection_id is not None
    eastern = timezone(timedelta(hours=-5))
    position = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=eastern)
    with store.session() as session:
        session.add(CursorRow(connection_id=connection_id, stream="payables", position=position))
    with store.session(read_only=True) as session:
        cursor = session.exec(select(CursorRow)).one()
    assert cursor.position == position
    assert cursor.position is not None
    assert cursor.position.tzinfo == UTC
    assert cursor.position.hour == 14
    assert cursor.updated_at.tzinfo == UTC


def test_naive_times_are_refused(store: Store) -> None:
    connection_id = add_connection(store).id
    assert connection_id is not None
    naive = datetime(2026, 1, 1)  # no tzinfo: the point of the test
    row = CursorRow(connection_id=connection_id, stream="payables", position=naive)
    with pytest.raises(StatementError, match="naive datetime"):
        insert(store, row)


def test_read_only_sessions_refuse_writes_on_postgresql(store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("SQLite has no read-only transactions")
    with pytest.raises(DBAPIError, match="read-only transaction"):
        insert(store, a_connection_row(), read_only=True)
    # The pooled connection is writable again for the next session.
    insert(store, a_connection_row())
    assert len(store.list_connections()) == 1


def test_store_exports_are_sorted_and_complete() -> None:
    exported = store_module.__all__
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    public = {name for name in vars(store_module) if not name.startswith("_")}
    modules = {"store", "_database", "_migrate", "_secrets", "_store", "_tables", "_types"}
    assert public - modules - set(exported) == set()
