"""Fixtures: a BILL emulator in process, and connection contexts whose client talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from plugins.bill.tests.support import make_context, make_emulator, new_clock

from ml_connector.context import ConnectionContext
from ml_connector.testing import ManualClock
from ml_connector_bill import plugin
from ml_connector_bill.emulator import BillEmulator


@pytest.fixture
def clock() -> ManualClock:
    return new_clock()


@pytest.fixture
def emulator(clock: ManualClock) -> BillEmulator:
    return make_emulator(clock)


@pytest.fixture
async def ctx(emulator: BillEmulator) -> AsyncIterator[ConnectionContext]:
    context = make_context(emulator)
    yield context
    await plugin.close_connection(context)
