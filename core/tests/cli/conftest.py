"""Fixtures for the operator command tests: a state database on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from core.tests.cli.operations_support import add_connection

import ml_connector.store
from ml_connector.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ml_connector.engine._ledger import Ledger
    from ml_connector.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A new state database the CLI finds through ML_CONNECTOR_DB: SQLite, then PostgreSQL."""
    location: str = (
        str(tmp_path / "state.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    monkeypatch.setenv("ML_CONNECTOR_DB", location)
    # The CLI never disposes the store it opens; close its pooled connections after the test
    # (psycopg warns about a connection collected while open).
    opened: list[Store] = []

    def open_and_keep(url_or_path: str | None = None) -> Store:
        store = open_store(url_or_path)
        opened.append(store)
        return store

    monkeypatch.setattr(ml_connector.store, "open_store", open_and_keep)
    yield location
    for store in opened:
        store.dispose()


@pytest.fixture
def store(state_db: str) -> Iterator[Store]:
    """The same database, opened for seeding and checking rows."""
    with open_store(state_db) as opened:
        yield opened


@pytest.fixture
def acme(store: Store) -> Ledger:
    """Connection ``acme``, through the ledger its runs write with."""
    return add_connection(store, "acme")
