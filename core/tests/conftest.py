"""Fixtures for the state store: PostgreSQL databases, stores, slow commits.

The isolated home (``ml_connector_home``) comes from the workspace's root ``conftest.py``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ml_connector.store import Store, WriteTransaction, open_store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

POSTGRES_URL_ENV = "ML_CONNECTOR_TEST_POSTGRES_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test.

    The server comes from ``eval "$(scripts/postgres start)"``. Without it the test is skipped,
    except in CI (``CI`` set), where PostgreSQL tests must run and the test fails instead.
    """
    base = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not base:
        message = f'{POSTGRES_URL_ENV} is not set; run: eval "$(scripts/postgres start)"'
        if _in_ci():
            pytest.fail(f"PostgreSQL tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)
    url = make_url(base)
    name = f"mlc_test_{uuid.uuid4().hex[:16]}"
    # The base database serves only as the maintenance connection for CREATE/DROP DATABASE.
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a test that forgot to dispose its engine must not leak the database.
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location for a new store: a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:
    """An open, migrated, empty store, disposed after the test."""
    with open_store(store_location) as opened:
        yield opened


@dataclass
class SlowCommits:
    """Write transactions whose commit takes 0.2 s, and events for its start and end."""

    committing: threading.Event = field(default_factory=threading.Event)
    committed: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def slow_commits(monkeypatch: pytest.MonkeyPatch) -> SlowCommits:
    """Make every ``WriteTransaction`` commit slow, long enough to outlive a cancelled caller."""
    slow = SlowCommits()
    commit = WriteTransaction.commit

    def commit_slowly(self: WriteTransaction) -> None:
        slow.committing.set()
        time.sleep(0.2)
        commit(self)
        slow.committed.set()

    monkeypatch.setattr(WriteTransaction, "commit", commit_slowly)
    return slow
