"""The core's conformance suite for source plugins, run against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from plugins.acumatica.tests.support import context, emulator

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.testing import ManualClock
from ml_connector_acumatica import PLUGIN_INFO, plugin

if TYPE_CHECKING:
    from ml_connector.testing.conformance import NotReadyKind

conformance = pytest.importorskip("ml_connector.testing.conformance")


class AcumaticaHarness(conformance.SourceHarness):
    plugin = plugin
    info = PLUGIN_INFO
    page_size = 6

    def __init__(self) -> None:
        # Time moves a millisecond per reading, so consecutive changes get distinct times.
        self.clock = ManualClock(
            datetime(2025, 3, 3, 12, tzinfo=UTC), tick=timedelta(milliseconds=1)
        )
        self.emu = emulator(self.clock, bills=0)
        self._lines = 0

    def context(self) -> ConnectionContext:
        return context(self.emu, page_size=self.page_size)

    def seed(self, count: int) -> set[str]:
        refs = set()
        for i in range(count):
            self._lines += 1
            refs.add(
                self.emu.add_bill(
                    ("DATAFLOW", "CITYPOWER", "ACMEOFFICE")[i % 3],
                    [("67000", "000-000", Decimal(self._lines) + Decimal("0.25"), "seeded")],
                    tax_rate=Decimal("8.25") if i % 2 else None,
                )
            )
            self.emu.add_bill(
                "BAYCLEAN", [("66000", "OPS-000", Decimal("5"), "held")], status="On Hold"
            )
        return refs

    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        # The plugin sends released bills only (Type Bill, Status Open; acumatica.md §6):
        # "On Hold" is a draft, "Pending Approval" waits in the approval workflow.
        # No "purchase_order": purchase orders are the PurchaseOrder entity, which the plugin
        # never reads, and get_payable reads Bill/Bill/<ReferenceNbr>, where none can be.
        lines = [("66000", "OPS-000", Decimal("5"), "not ready")]
        return {
            "on_hold": self.emu.add_bill("BAYCLEAN", lines, status="On Hold"),
            "unapproved": self.emu.add_bill("GREENLEAF", lines, status="Pending Approval"),
        }

    def touch(self, source_id: str) -> None:
        self.emu.edit_bill(source_id, Description="touched")

    def payments_posted(self, source_id: str) -> int:
        return len(self.emu.checks_for(source_id))

    def expire_sessions(self) -> None:
        self.emu.expire_sessions()

    def fail_next(self, kind: str) -> bool:
        faults = self.emu.faults
        if kind == "unauthorized":
            self.emu.credentials_valid = False
            self.emu.expire_sessions()
        elif kind == "throttled":
            faults.add(FaultAction(429, kind="throttled", retry_after=1), path_contains="/Bill")
        elif kind == "server_error":
            faults.add(FaultAction(500), path_contains="/Bill")
        else:
            faults.add(FaultAction(200, kind="malformed"), path_contains="/Bill")
        return True

    def now(self) -> datetime:
        return self.clock()


class TestAcumaticaConformance(conformance.SourcePluginSuite):
    @pytest.fixture
    def harness(self) -> AcumaticaHarness:
        return AcumaticaHarness()
