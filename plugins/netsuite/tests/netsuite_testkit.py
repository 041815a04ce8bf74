"""What the NetSuite tests share: an emulator on a manual clock, contexts, a small company.

Imported as ``netsuite_testkit`` under this plugin's own pytest configuration (import mode
prepend puts this folder on ``sys.path``), and as ``plugins.netsuite.tests.netsuite_testkit``
under the repository's (rootdir the repository, import mode importlib), as the ``try`` at the
top of each test module does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.testing import ManualClock

from ml_connector_netsuite.emulator import NetSuiteEmulator
from ml_connector_netsuite.schemas import Credentials, Settings

HOST = "http://netsuite.test"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def emulator(clock: ManualClock | None = None, **extra: Any) -> NetSuiteEmulator:
    """An account with its reference data only, on a manual clock."""
    return NetSuiteEmulator(EmulatorOptions(clock=clock or ManualClock(START), extra=extra))


def settings(emu: NetSuiteEmulator, **overrides: Any) -> Settings:
    """The emulator's own settings (its A/P and bank accounts), with overrides."""
    return Settings.model_validate({**emu.settings(HOST), **overrides})


def context(
    emu: NetSuiteEmulator,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    credentials: dict[str, Any] | None = None,
    **overrides: Any,
) -> ConnectionContext[Settings, Credentials]:
    """A source context whose HTTP goes to the emulator in process."""
    return ConnectionContext(
        connection="test",
        system="netsuite",
        role=Role.SOURCE,
        settings=settings(emu, **overrides),
        credentials=Credentials.model_validate({**emu.credentials(), **(credentials or {})}),
        transport=transport or emu.transport(),
    )


class Company:
    """A small chart, segments and vendors in the emulator, and bills made from them."""

    def __init__(self, emu: NetSuiteEmulator) -> None:
        self.emu = emu
        self.expense = emu.add_account("6100", "Office Supplies")
        self.travel = emu.add_account("6200", "Travel")
        self.department = emu.add_department("Operations")
        self.klass = emu.add_class("Retail")
        self.location = emu.add_location("Boston")
        self.acme = emu.add_vendor("Acme Supplies", email="ap@acme.test")
        self.bluebird = emu.add_vendor("Bluebird Travel")
        self._serial = 0

    def number(self) -> str:
        self._serial += 1
        return f"INV-{self._serial:04d}"

    def lines(self, amount: str, *, split: bool = False) -> list[dict[str, Any]]:
        if not split:
            return [{"account": self.expense, "amount": Decimal(amount), "memo": "paper"}]
        half = (Decimal(amount) / 2).quantize(Decimal("0.01"))
        return [
            {
                "account": self.expense,
                "amount": half,
                "department": self.department,
                "class": self.klass,
                "location": self.location,
                "memo": "paper",
            },
            {"account": self.travel, "amount": Decimal(amount) - half, "memo": "train"},
        ]

    def bill(self, amount: str, *, split: bool = False, **fields: Any) -> int:
        fields.setdefault("tranid", self.number())
        return self.emu.add_bill(self.acme, self.lines(amount, split=split), **fields)
