"""What the SAP B1 tests share: an emulator on a manual clock, contexts, a small company, reads.

Imported as ``sapb1_testkit`` under this plugin's own pytest configuration (``uv run pytest
plugins/sapb1``: import mode prepend puts this folder on ``sys.path``), and as
``plugins.sapb1.tests.sapb1_testkit`` under the repository's (``uv run pytest``: rootdir the
repository, import mode importlib), as the ``try`` at the top of each test module does. A
``tests/__init__.py`` would not do: under importlib mode this folder would become the package
``tests`` and hide the repository's own ``tests`` package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.models import ChangeWindow, Payable, PaymentPosting, RejectedRecord
from ml_connector.testing import ManualClock

from ml_connector_sapb1 import plugin
from ml_connector_sapb1.emulator import TAX_ACCOUNT as TAX_ACCOUNT  # the tests' too
from ml_connector_sapb1.emulator import SapB1Emulator
from ml_connector_sapb1.schemas import Credentials, Settings

HOST = "http://b1.test:50000"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
VERSIONS = ("v1", "v2")


def root(version: str = "v1") -> str:
    """The service root of a version on the emulator's host."""
    return f"{HOST}/b1s/{version}"


def emulator(clock: ManualClock | None = None, **extra: Any) -> SapB1Emulator:
    """An empty company on a manual clock."""
    return SapB1Emulator(EmulatorOptions(clock=clock or ManualClock(START), extra=extra))


def settings(emu: SapB1Emulator, version: str = "v1", **overrides: Any) -> Settings:
    """The emulator's own settings (its bank and tax accounts included), with overrides."""
    return Settings.model_validate({**emu.settings(root(version)), **overrides})


class MemoryKeeper:
    """A ``SessionKeeper`` in memory, as the core's is in the state store."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None
        self.saves = 0
        self.clears = 0

    def load(self) -> dict[str, Any] | None:
        return None if self.data is None else dict(self.data)

    def save(self, data: dict[str, Any]) -> None:
        self.data = dict(data)
        self.saves += 1

    def clear(self) -> None:
        self.data = None
        self.clears += 1


def context(
    emu: SapB1Emulator,
    version: str = "v1",
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    keeper: MemoryKeeper | None = None,
    credentials: dict[str, Any] | None = None,
    **overrides: Any,
) -> ConnectionContext[Settings, Credentials]:
    """A source context whose HTTP goes to the emulator in process."""
    return ConnectionContext(
        connection="acme-b1",
        system="sapb1",
        role=Role.SOURCE,
        settings=settings(emu, version, **overrides),
        credentials=Credentials.model_validate(credentials or emu.credentials()),
        transport=transport or emu.transport(),
        saved_session=keeper,
    )


def json_body(request: httpx.Request) -> Any:
    """A request's JSON body."""
    return json.loads(request.content)


class Recording(httpx.AsyncBaseTransport):
    """Keeps every request (headers, body) on its way to the inner transport."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method is None or r.method == method]


def window(emu: SapB1Emulator, since: datetime | None = None) -> ChangeWindow:
    """From ``since`` to a second after the emulator's now."""
    return ChangeWindow(since=since, until=emu.now() + timedelta(seconds=1))


@dataclass
class Read:
    """Every page of one window."""

    items: list[Payable] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    pages: int = 0

    @property
    def ids(self) -> list[str]:
        return [p.source_id for p in self.items]

    def rejection(self, source_id: str) -> RejectedRecord:
        return next(r for r in self.rejected if r.record_id == source_id)


async def read_all(
    ctx: ConnectionContext[Settings, Credentials], win: ChangeWindow, limit: int = 200
) -> Read:
    """``list_changed_payables`` page after page until the last."""
    read = Read()
    token: str | None = None
    while read.pages < limit:
        page = await plugin.list_changed_payables(ctx, win, token)
        read.pages += 1
        read.items += page.items
        read.rejected += page.rejected
        token = page.next_page_token
        if token is None:
            return read
    raise AssertionError(f"still paging after {limit} pages")


class Company:
    """A small company on the emulator: a chart, suppliers, dimensions, invoices."""

    def __init__(self, emu: SapB1Emulator) -> None:
        self.emu = emu
        emu.add_account("6000", "Operating Expenses", ActiveAccount="tNO")
        emu.add_account("6100", "Office Supplies", AccountType="at_Expenses")
        emu.add_account("6200", "Rent", AccountType="at_Expenses")
        emu.add_account("1400", "Inventory", AccountType="at_Other")
        emu.add_account("6950", "Old Expenses", active=False, AccountType="at_Expenses")
        emu.add_profit_center("ADMIN", "Administration", 1)
        emu.add_profit_center("SALES", "Sales", 1)
        emu.add_profit_center("EAST", "Eastern Region", 2)
        self.acme = emu.add_supplier(
            "V10000", name="Acme Office Supply", EmailAddress="ap@acme.example",
            Phone1="206-555-0101", City="Seattle", Country="US",
            BPAddresses=[{"AddressName": "Bill to", "AddressType": "bo_BillTo",
                          "Street": "101 Main St", "City": "Seattle", "State": "WA",
                          "ZipCode": "98101", "Country": "US"}],
        )  # fmt: skip
        self.bluebird = emu.add_supplier("V20000", name="Bluebird Logistics", Country="US")
        self.customer = emu.add_customer("C20000", name="Norm Thompson Retail")
        self._serial = 1000

    def number(self) -> str:
        self._serial += 1
        return f"INV-{self._serial}"

    def invoice(
        self,
        amount: str = "100.00",
        *,
        vendor: str | None = None,
        account: str = "6100",
        **kwargs: Any,
    ) -> int:
        """An approved service invoice of one line (its DocEntry)."""
        kwargs.setdefault("num_at_card", self.number())
        line = {"AccountCode": account, "ItemDescription": "Copy paper",
                "LineTotal": Decimal(amount)}  # fmt: skip
        line.update(kwargs.pop("line", {}))
        return self.emu.add_invoice(vendor or self.acme, [line], **kwargs)

    def item_invoice(self, price: str = "12.50", quantity: int = 4, **kwargs: Any) -> int:
        """An approved item invoice of one line."""
        kwargs.setdefault("num_at_card", self.number())
        line = {"ItemCode": "A00001", "ItemDescription": "Pallet wrap", "Quantity": quantity,
                "Price": Decimal(price)}  # fmt: skip
        line.update(kwargs.pop("line", {}))
        return self.emu.add_invoice(self.acme, [line], doc_type="dDocument_Items", **kwargs)


def posting(payable: Payable, payment_id: str, amount: Decimal | None = None) -> PaymentPosting:
    """A BILL payment's application to ``payable`` (in full unless ``amount``)."""
    return PaymentPosting(
        payment_sink_id=payment_id,
        payable=payable,
        amount=payable.total if amount is None else amount,
        paid_on=date(2026, 3, 2),
        reference=f"BILL {payment_id}",
    )
