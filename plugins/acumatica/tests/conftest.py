from __future__ import annotations

import pytest
from plugins.acumatica.tests.support import START

from ml_connector.testing import ManualClock, reset_fakes


@pytest.fixture(autouse=True)
def _isolated():
    """No test sees another test's fakes (the home is isolated by the root conftest.py)."""
    reset_fakes()
    yield
    reset_fakes()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)
