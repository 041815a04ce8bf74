r"""Schema migrations, run programmatically: operators never see alembic or an alembic.ini.

The migration scripts live in ``migrations/`` next to this module and ship inside the wheel.
Developers add one with (against a database at the current head)::

    ML_CONNECTOR_DB=/tmp/dev.db uv run python -c "from alembic import command; \\
    from ml_connector.store._migrate import alembic_config; \\
    command.revision(alembic_config(), message='add x', autogenerate=True)"

then read and tidy the generated file (see ``migrations/README.md``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ml_connector.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "MIGRATIONS",
    "alembic_config",
    "current_revisions",
    "head_revisions",
    "migration_transaction",
    "upgrade_to_head",
]

MIGRATIONS = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key for "migrating the ml-connector schema" (ASCII "mlcmigr"), so two
# processes opening one PostgreSQL database at once migrate it one after the other.
_PG_MIGRATION_LOCK = 0x6D6C636D696772


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic configuration for the store's migrations, without any ini file.

    Args:
        connection: The connection to migrate, in a transaction the caller commits. Without
            one, ``migrations/env.py`` connects to :func:`~ml_connector.store.default_database`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revisions() -> set[str]:
    """The revisions the code's schema is at."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database's schema is at (empty for a new database)."""
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def upgrade_to_head(engine: Engine, shown: str) -> None:
    """Migrate the database to the current schema, under a lock; do nothing if it is there.

    Args:
        engine: The engine; on SQLite its transactions must begin IMMEDIATE, which is the lock.
        shown: The database's location for messages (password masked).

    Raises:
        ConfigurationError: The database was migrated by a newer ml-connector.
    """
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    current = current_revisions(engine)
    if current == heads:
        return
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        raise ConfigurationError(
            f"the state database {shown} has schema revision {', '.join(sorted(current))}, "
            "which this version of ml-connector does not know: it was upgraded by a newer "
            "ml-connector; upgrade ml-connector"
        )
    with migration_transaction(engine) as connection:
        # The lock is held: a process that waited for it finds the work done and does nothing.
        command.upgrade(alembic_config(connection), "head")


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for schema changes, under the migration lock; committed on success.

    On SQLite this follows SQLite's documented procedure for schema changes: foreign keys are
    off meanwhile (rebuilding a table drops the old one, and with foreign keys on, that
    cascade-deletes every row that refers to it) and are checked before the commit.

    Raises:
        ConfigurationError: After the changes, a row refers to a row that does not exist.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _pragma_outside_transaction(connection, "foreign_keys=OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _pragma_outside_transaction(connection, "foreign_keys=ON")


def _pragma_outside_transaction(connection: Connection, pragma: str) -> None:
    # Straight to the driver: through SQLAlchemy the statement would begin a transaction, and
    # SQLite silently ignores PRAGMA foreign_keys inside one.
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - only after the connection was invalidated
        raise RuntimeError("the SQLite connection is closed")
    driver.execute(f"PRAGMA {pragma}")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = ", ".join(sorted({str(row[0]) for row in broken}))
        raise ConfigurationError(
            f"the schema migration would leave rows pointing at missing rows in {tables}; "
            "nothing was changed"
        )
