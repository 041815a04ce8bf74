"""Fixtures: fresh fakes for every test, and both reference plugins signed in."""

from __future__ import annotations

import pytest
from core.tests.testing.helpers import ORG, Side, erp_ctx, sink_ctx, vendor

from ml_connector.testing import (
    FakeErp,
    FakeSink,
    ReferenceErpPlugin,
    ReferenceSinkPlugin,
    reset_fakes,
)


@pytest.fixture(autouse=True)
def _fresh_fakes():
    reset_fakes()
    yield
    reset_fakes()


@pytest.fixture
def erp() -> FakeErp:
    fake = FakeErp.in_memory("acme")
    fake.add_vendors([vendor(1), vendor(2)])
    return fake


@pytest.fixture
def sink() -> FakeSink:
    fake = FakeSink.in_memory(ORG)
    fake.add_account("Office Supplies", "6000")
    return fake


@pytest.fixture
async def source(erp: FakeErp) -> Side:
    side = Side(ReferenceErpPlugin(), erp_ctx())
    await side("authenticate")
    erp.faults.reset_counters()
    return side


@pytest.fixture
async def bill(sink: FakeSink) -> Side:
    side = Side(ReferenceSinkPlugin(), sink_ctx())
    await side("authenticate")
    sink.faults.reset_counters()
    return side
