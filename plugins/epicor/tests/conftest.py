from __future__ import annotations

import pytest

from ml_connector.testing import reset_fakes


@pytest.fixture(autouse=True)
def _fresh_fakes():
    """The reference sink's fakes are process-wide: start and end each test without them."""
    reset_fakes()
    yield
    reset_fakes()
