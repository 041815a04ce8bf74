"""A store on each supported database: every test using ``store`` runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ml_connector.store import Store, open_store
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


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


@pytest.fixture
def vault() -> Vault:
    """A vault with the isolated home's key file (created on first use)."""
    return Vault.from_environment()
