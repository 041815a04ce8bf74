from __future__ import annotations

import pytest
from plugins.acumatica.tests.support import START

from ml_connector.testing import ManualClock, reset_fakes


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test touches a real key, database or another test's fakes."""
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEY", raising=False)
    monkeypatch.delenv("ML_CONNECTOR_DB", raising=False)
    reset_fakes()
    yield
    reset_fakes()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)
