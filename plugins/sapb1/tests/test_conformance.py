"""The core's conformance suite for source plugins, against the SAP B1 emulator, v1 and v2.

The harness is parametrised by service root: every rule runs once against ``/b1s/v1`` (OData
v3) and once against ``/b1s/v2`` (OData v4), through the same emulator's two roots.

Kinds of record that must not move (``seed_not_ready``):

- ``on_hold``: an approved A/P invoice with ``PaymentBlock`` tYES, B1's payment block (a
  Document property in both ``$metadata`` versions, MD; sapb1.md does not list it). It is in
  ``PurchaseInvoices``, where the plugin reads, and the plugin must leave it out.
- ``unapproved``: an A/P invoice in ``PurchaseInvoices`` whose ``AuthorizationStatus`` is
  dasPending. Whether B1 keeps documents awaiting approval there, or only as ``Drafts``, is
  UNCONFIRMED (sapb1.md §5, §8): the emulator keeps them as drafts, and the plugin must leave
  out pending ones it finds in ``PurchaseInvoices`` all the same; the suite can only check one
  ``get_payable`` knows, so it gets that one (``update_invoice`` sets the status). Drafts proper
  are never read at all (``test_reading``: a draft never comes back).
- ``purchase_order`` is left out: purchase orders live in ``PurchaseOrders``, which the plugin
  never reads, and whose ``DocEntry`` numbers are their own (``PurchaseOrders(1)`` and
  ``PurchaseInvoices(1)`` are different documents), so no id ``get_payable`` takes can name one
  (``test_reading`` checks that orders never come back).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from ml_connector.context import ConnectionContext
from ml_connector.testing import ManualClock
from ml_connector.testing.conformance import (
    FaultKind,
    NotReadyKind,
    SourceHarness,
    SourcePluginSuite,
)

from ml_connector_sapb1 import PLUGIN_INFO, plugin

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import sapb1_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.sapb1.tests import sapb1_testkit as kit  # type: ignore[import-not-found,no-redef]


class SapB1Harness(SourceHarness):
    """Drives a fresh emulator through one service root, on a clock the tests move."""

    plugin = plugin
    info = PLUGIN_INFO
    page_size = 5
    # UpdateTime is there (a Document property in both $metadata versions, MD, and the emulator
    # serves it), so change times are exact and no overlap is needed. A server that sends only
    # UpdateDate makes the plugin read back to the start of that day (test_reading).
    change_overlap = timedelta(0)

    def __init__(self, version: str) -> None:
        self.version = version
        self.clock = ManualClock(kit.START)
        self.emulator = kit.emulator(self.clock)
        self.company = kit.Company(self.emulator)
        self._serial = 0

    # The suite declares ConnectionContext (of BaseModel, BaseModel); the plugin's context is
    # of its own models, which the invariant generic does not accept in that place.
    def context(self) -> ConnectionContext[Any, Any]:
        return kit.context(
            self.emulator,
            self.version,
            page_size=self.page_size,
            dimension_kinds={"1": "department"},
        )

    def now(self) -> datetime:
        return self.clock()

    def seed(self, count: int) -> set[str]:
        company, emu = self.company, self.emulator
        ready: set[str] = set()
        for i in range(count):
            self._serial += 1
            amount = f"{10 + self._serial}.25"
            if i % 3 == 2:  # an item invoice: the line's AccountCode as B1 determines it
                ready.add(str(company.item_invoice(amount, 2)))
            else:
                tax = Decimal("1.10") if i % 2 else Decimal(0)
                line = {"CostingCode": "ADMIN"} if i % 4 == 0 else {}
                ready.add(str(company.invoice(amount, vat_sum=tax, line=line)))
        # …and some that are not ready, where the plugin reads and around it.
        cancelled = company.invoice("5.00")
        emu.cancel_invoice(cancelled)  # and its cancellation document
        paid = company.invoice("6.00")
        emu.pay_invoice(paid, reference="CHK-1")
        company.invoice("7.00", PaymentBlock="tYES")
        emu.add_draft(company.acme, [{"AccountCode": "6100", "LineTotal": Decimal("8.00")}],
                      num_at_card=company.number())  # fmt: skip
        emu.add_purchase_order(company.bluebird,
                               [{"AccountCode": "6200", "LineTotal": Decimal("9.00")}])  # fmt: skip
        return ready

    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        on_hold = self.company.invoice("17.00", PaymentBlock="tYES")
        pending = self.company.invoice("18.00")
        self.emulator.update_invoice(pending, AuthorizationStatus="dasPending")
        return {"on_hold": str(on_hold), "unapproved": str(pending)}

    def touch(self, source_id: str) -> None:
        self.clock.advance(timedelta(seconds=1))
        self.emulator.update_invoice(int(source_id), Comments="edited by a clerk")

    def payments_posted(self, source_id: str) -> int:
        return len(self.emulator.payments_for(int(source_id)))

    def expire_sessions(self) -> None:
        self.emulator.expire_sessions()

    def fail_next(self, kind: FaultKind) -> bool:
        self.emulator.fail_next(kind)
        return True


class TestConformance(SourcePluginSuite):
    """Every rule of the suite, against both service roots."""

    @pytest.fixture(params=kit.VERSIONS)
    def harness(self, request: pytest.FixtureRequest) -> SapB1Harness:
        return SapB1Harness(request.param)
