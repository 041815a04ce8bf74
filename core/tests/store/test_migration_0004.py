"""Revision 0004: audit events and exception entries get a nullable ``correlation_id``.

A database written by an earlier version, with rows in both tables, is upgraded when it is opened
and keeps every row; the rows it had carry no correlation id, new ones can.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alembic import command
from sqlalchemy import MetaData, inspect
from sqlmodel import select

from ml_connector.engine._ledger import Ledger
from ml_connector.store import AuditEventRow, ExceptionItemRow, database_url, open_store
from ml_connector.store._database import create_store_engine
from ml_connector.store._migrate import (
    alembic_config,
    current_revisions,
    head_revisions,
    migration_transaction,
)
from ml_connector.store._store import BEGIN_OPTION

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

BEFORE = "0003"
THIS = "0004"
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _engine(location: str) -> Engine:
    engine = create_store_engine(database_url(location))
    return engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    with migration_transaction(engine) as connection:
        config = alembic_config(connection)
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def _seed_before(engine: Engine) -> None:
    """Rows as a version at 0003 wrote them (no ORM: the models are at the head already)."""
    tables = MetaData()
    tables.reflect(engine, only=["connection", "run", "audit_event", "exception_item"])
    rows: dict[str, dict[str, Any]] = {
        "connection": {
            "id": 1,
            "name": "acme",
            "source_system": "epicor",
            "sink_system": "bill",
            "source_settings": {},
            "sink_settings": {},
            "source_credentials": b"sealed-1",
            "sink_credentials": b"sealed-2",
            "options": {},
            "created_at": AT,
            "updated_at": AT,
        },
        "run": {
            "id": 7,
            "connection_id": 1,
            "started_at": AT,
            "finished_at": AT,
            "status": "succeeded",
            "counts": {"bills_failed": 1},
            "error": None,
        },
        "audit_event": {
            "id": 11,
            "run_id": 7,
            "connection_id": 1,
            "at": AT,
            "object_type": "bill",
            "source_id": "INV-1",
            "sink_id": None,
            "action": "failed",
            "outcome": "exception_queued",
            "error": "[epicor 500] boom (correlation id abc-123)",
            "payload_digest": "d" * 64,
            "plugin_versions": {"epicor": "1.0.0", "bill": "1.0.0"},
        },
        "exception_item": {
            "id": 21,
            "connection_id": 1,
            "run_id": 7,
            "object_type": "bill",
            "source_id": "INV-1",
            "field": None,
            "reason": "[epicor 500] boom (correlation id abc-123)",
            "status": "open",
            "payload_digest": "d" * 64,
            "first_seen": AT,
            "last_seen": AT,
            "attempts": 3,
        },
    }
    with engine.begin() as connection:
        for name, values in rows.items():
            connection.execute(tables.tables[name].insert().values(**values))


def test_an_existing_database_with_rows_is_upgraded_and_keeps_them(store_location: str) -> None:
    engine = _engine(store_location)
    try:
        _migrate(engine, BEFORE)
        assert "correlation_id" not in _columns(engine, "audit_event")
        _seed_before(engine)
    finally:
        engine.dispose()

    with open_store(store_location) as store:  # opening migrates to the head
        assert current_revisions(store.engine) == head_revisions()
        for table in ("audit_event", "exception_item"):
            assert "correlation_id" in _columns(store.engine, table)
        with store.session(read_only=True) as session:
            event = session.exec(select(AuditEventRow)).one()
            entry = session.exec(select(ExceptionItemRow)).one()
        assert (event.id, event.run_id, event.action, event.source_id) == (11, 7, "failed", "INV-1")
        assert event.error == "[epicor 500] boom (correlation id abc-123)"
        assert event.plugin_versions == {"epicor": "1.0.0", "bill": "1.0.0"}
        assert event.at == AT
        assert event.correlation_id is None
        assert (entry.id, entry.status, entry.attempts, entry.last_seen) == (21, "open", 3, AT)
        assert entry.correlation_id is None

        # The engine fills the new column on the old entry when the record fails again.
        ledger = Ledger(store, 1)
        ledger.start_run()
        ledger.add_exception("bill", "INV-1", None, "boom again", "d" * 64, correlation_id="c-9")
        with store.session(read_only=True) as session:
            entry = session.exec(select(ExceptionItemRow)).one()
            latest = session.exec(select(AuditEventRow).where(AuditEventRow.id != 11)).one()
        assert (entry.id, entry.attempts, entry.correlation_id) == (21, 4, "c-9")
        assert latest.correlation_id == "c-9"


def test_downgrading_drops_the_column_and_keeps_the_rows(store_location: str) -> None:
    engine = _engine(store_location)
    try:
        _migrate(engine, BEFORE)
        _seed_before(engine)
        _migrate(engine, THIS)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE exception_item SET correlation_id = 'c-1' WHERE id = 21"
            )
        _migrate(engine, BEFORE, down=True)
        assert current_revisions(engine) == {BEFORE}
        for table in ("audit_event", "exception_item"):
            assert "correlation_id" not in _columns(engine, table)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT id FROM exception_item").all() == [(21,)]
            assert connection.exec_driver_sql("SELECT id FROM audit_event").all() == [(11,)]
        indexes = {i["name"] for i in inspect(engine).get_indexes("audit_event")}
        assert {"ix_audit_event_run_id", "ix_audit_event_connection_id_object_type_source_id"} <= (
            indexes
        )
        _migrate(engine, THIS)  # and up again
        assert current_revisions(engine) == {THIS}
    finally:
        engine.dispose()
