"""The core's conformance suite for source plugins, driven through the Epicor emulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from plugins.epicor.tests.helpers import Chart, context, emulator

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.testing.conformance import (
    FaultKind,
    NotReadyKind,
    SourceHarness,
    SourcePluginSuite,
)
from ml_connector_epicor import PLUGIN_INFO, plugin


class EpicorHarness(SourceHarness):
    """Seeds the emulator with invoices and makes it fail as the suite asks."""

    plugin = plugin
    info = PLUGIN_INFO
    page_size = 10
    # ChangeDate may hold only a date (epicor.md §4, unconfirmed), so the plugin reads from
    # change_overlap_hours (default 24) before `since` rather than lose a change.
    change_overlap = timedelta(hours=24)

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

    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        # Only posted invoices are approved and final (epicor.md §5, no approval field): an
        # unposted one still sits in its AP entry group. A posted invoice on payment hold is
        # read by the plugin's server filter (Posted eq true) and must be dropped by the plugin.
        # No "purchase_order": purchase orders live in Erp.BO.POSvc, which the plugin never
        # reads; get_payable reads APInvHed, where none can be.
        return {
            "on_hold": Chart.source_id(self.chart.invoice("3.00", PayHold=True)),
            "unapproved": Chart.source_id(self.chart.invoice("4.00", posted=False)),
        }

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
