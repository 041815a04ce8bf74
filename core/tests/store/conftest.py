"""The store tests' vault; ``store`` (SQLite and PostgreSQL) is in ``core/tests/conftest.py``."""

from __future__ import annotations

import pytest

from ml_connector.vault import Vault


@pytest.fixture
def vault() -> Vault:
    """A vault with the isolated home's key file (created on first use)."""
    return Vault.from_environment()
