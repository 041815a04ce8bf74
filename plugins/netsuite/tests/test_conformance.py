"""The core's conformance suite for source plugins, against the NetSuite emulator in process.

Kinds of record that must not move (``seed_not_ready``):

- ``unapproved``: a vendor bill pending approval (approvalstatus 1, status D, netsuite.md §5).
- ``purchase_order``: a purchase order. Purchase orders are ``transaction`` rows too, in the
  same internal-id space as bills, so ``get_payable`` of its id reads it (and refuses it: not a
  vendor bill) and the listing (``type = 'VendBill'``) never returns it.
- ``on_hold``: an approved, open bill with ``paymenthold`` set (a ``transaction`` column and a
  vendorBill field, netsuite.md §5): the plugin leaves it out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.testing import ManualClock
from ml_connector.testing.conformance import (
    FaultKind,
    NotReadyKind,
    SourceHarness,
    SourcePluginSuite,
)

from ml_connector_netsuite import PLUGIN_INFO, plugin

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import netsuite_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.netsuite.tests import netsuite_testkit as kit  # type: ignore[import-not-found,no-redef]


class NetSuiteHarness(SourceHarness):
    """Drives a fresh emulator, on a clock the tests move instead of sleeping."""

    plugin = plugin
    info = PLUGIN_INFO
    page_size = 5
    # lastmodifieddate is read to the second: no overlap needed.
    change_overlap = timedelta(0)

    def __init__(self) -> None:
        self.clock = ManualClock(kit.START)
        self.emulator = kit.emulator(self.clock)
        self.company = kit.Company(self.emulator)

    def context(self) -> ConnectionContext[Any, Any]:
        return kit.context(self.emulator, page_size=self.page_size)

    def now(self) -> datetime:
        return self.clock()

    def seed(self, count: int) -> set[str]:
        company, emu = self.company, self.emulator
        ready = {str(company.bill(f"{10 + i}.25", split=i % 2 == 1)) for i in range(count)}
        # …and some that are not ready, where the plugin reads.
        company.bill("5.00", status="paid")
        company.bill("6.00", status="cancelled")
        company.bill("7.00", approved=False)
        company.bill("8.00", paymenthold=True)
        company.bill("9.00", subsidiary=2)  # another subsidiary than the connection's
        emu.add_purchase_order(company.bluebird, company.lines("9.50"))
        return ready

    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        company, emu = self.company, self.emulator
        return {
            "on_hold": str(company.bill("17.00", paymenthold=True)),
            "unapproved": str(company.bill("18.00", approved=False)),
            "purchase_order": str(emu.add_purchase_order(company.bluebird, company.lines("19.00"))),
        }

    def touch(self, source_id: str) -> None:
        self.clock.advance(timedelta(seconds=1))
        self.emulator.update_bill(int(source_id), memo="edited by a clerk")

    def payments_posted(self, source_id: str) -> int:
        return len(self.emulator.payments_for(int(source_id)))

    def expire_sessions(self) -> None:
        self.emulator.expire_tokens()

    def fail_next(self, kind: FaultKind) -> bool:
        emu = self.emulator
        if kind == "unauthorized":
            emu.credentials_valid = False
            emu.expire_tokens()
        elif kind == "throttled":
            emu.faults.add(FaultAction(429, kind="throttled"), path_contains="/query/")
        elif kind == "server_error":
            emu.faults.add(FaultAction(503), path_contains="/query/")
        else:
            emu.faults.add(FaultAction(200, kind="malformed"), path_contains="/query/")
        return True


class TestConformance(SourcePluginSuite):
    """Every rule of the suite, against this plugin."""

    @pytest.fixture
    def harness(self) -> NetSuiteHarness:
        return NetSuiteHarness()
