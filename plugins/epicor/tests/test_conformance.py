"""The core's conformance suite for source plugins, driven through the Epicor emulator."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from plugins.epicor.tests.helpers import Chart, context, emulator

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.testing.conformance import FaultKind, SourceHarness, SourcePluginSuite
from ml_connector_epicor import PLUGIN_INFO, plugin


class EpicorHarness(SourceHarness):
    """Seeds the emulator with invoices and makes it fail as the suite asks."""

    plugin = plugin
    info = PLUGIN_INFO
    page_size = 10

    def __init__(self) -> None:
        self.emulator = emulator()
        self.chart = Chart(self.emulator)

    def context(self) -> ConnectionContext:
        return context(self.emulator, page_size=self.page_size)

    def now(self) -> datetime:
        return self.emulator.now()

    def seed(self, count: int) -> set[str]:
        ready = {Chart.source_id(self.chart.invoice(f"{10 + i}.25")) for i in range(count)}
        self.chart.invoice("1.00", posted=False)
        self.chart.invoice("2.00", PayHold=True)
        return ready

    def touch(self, source_id: str) -> None:
        number, invoice = source_id.split(":", 1)
        self.emulator.books.touch((int(number), invoice))

    def payments_posted(self, source_id: str) -> int:
        number, invoice = source_id.split(":", 1)
        return len(self.emulator.books.payments_against((int(number), invoice)))

    def expire_sessions(self) -> None:
        self.emulator.expire_tokens()

    def fail_next(self, kind: FaultKind) -> bool:
        if kind == "unauthorized":
            self.emulator.revoke_credentials()
        elif kind == "throttled":
            self.emulator.faults.add(FaultAction(429, kind="throttled", retry_after=2))
        elif kind == "server_error":
            # a 503: a 500 on an OData read is Kinetic's known quirk and GetRows answers it
            self.emulator.faults.add(FaultAction(503))
        else:
            self.emulator.malform_next()
        return True


class TestConformance(SourcePluginSuite):
    @pytest.fixture
    def harness(self) -> SourceHarness:
        return EpicorHarness()


def test_the_harness_seeds_money_as_decimal() -> None:
    harness = EpicorHarness()
    harness.seed(1)
    (invoice,) = [i for i in harness.emulator.books.invoices.values() if i.head["Posted"]
                  and not i.head["PayHold"]]  # fmt: skip
    assert invoice.head["DocInvoiceAmt"] == Decimal("10.25")
