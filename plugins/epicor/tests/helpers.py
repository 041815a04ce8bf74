"""Building blocks of the Epicor tests: an emulator on a manual clock, contexts and clients."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.models import ChangeWindow, Payable, PayablePage
from ml_connector.testing import ManualClock
from ml_connector_epicor import plugin
from ml_connector_epicor.client import EpicorClient
from ml_connector_epicor.emulator import EpicorEmulator
from ml_connector_epicor.schemas import EpicorCredentials, EpicorSettings

BASE_URL = "https://erp.acme.example"
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
SECRETS = (
    EpicorEmulator.API_KEY,
    EpicorEmulator.PASSWORD,
    EpicorEmulator.CLIENT_SECRET,
)


def manual_clock() -> ManualClock:
    """A clock that moves a millisecond at each reading, so writes get distinct change times."""
    return ManualClock(START, tick=timedelta(milliseconds=1))


def emulator(clock: ManualClock | None = None, **extra: Any) -> EpicorEmulator:
    """An emulator without seeded invoices unless ``invoices=N`` is given."""
    extra.setdefault("invoices", 0)
    return EpicorEmulator(EmulatorOptions(seed=7, clock=clock or manual_clock(), extra=extra))


def settings(emu: EpicorEmulator, **overrides: Any) -> EpicorSettings:
    """The emulator's settings (TokenResource auth), with overrides."""
    return EpicorSettings.model_validate(emu.settings(BASE_URL) | overrides)


def context(
    emu: EpicorEmulator,
    *,
    credentials: dict[str, Any] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> ConnectionContext:
    """A source context pointed at the emulator in process."""
    return ConnectionContext(
        connection="acme-epicor",
        system="epicor",
        role=Role.SOURCE,
        settings=settings(emu, **overrides),
        credentials=EpicorCredentials.model_validate(credentials or emu.credentials()),
        transport=transport or emu.transport(),
    )


def client(ctx: ConnectionContext, **kwargs: Any) -> EpicorClient:
    """A client built the way the plugin builds it (``ctx.http_client``), with options."""
    assert isinstance(ctx.settings, EpicorSettings)
    assert isinstance(ctx.credentials, EpicorCredentials)
    http = ctx.http_client(ctx.settings.server_url + "/")
    return EpicorClient(ctx.settings, ctx.credentials, http, **kwargs)


def window(emu: EpicorEmulator, since: datetime | None = None) -> ChangeWindow:
    """From ``since`` to a second after the emulator's now."""
    return ChangeWindow(since=since, until=emu.now() + timedelta(seconds=1))


async def read_all(
    ctx: ConnectionContext, win: ChangeWindow, limit: int = 500
) -> tuple[list[Payable], list[PayablePage]]:
    """Every page of ``list_changed_payables`` for the window."""
    pages: list[PayablePage] = []
    token: str | None = None
    while len(pages) < limit:
        page = await plugin.list_changed_payables(ctx, win, token)
        pages.append(page)
        token = page.next_page_token
        if token is None:
            break
    return [p for page in pages for p in page.items], pages


class Recording(httpx.AsyncBaseTransport):
    """Keeps every request the client sends (headers included) on its way to the emulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def v2(self) -> list[httpx.Request]:
        return [r for r in self.requests if "/api/v2/" in r.url.path]


class Chart:
    """A small company: vendors and GL accounts to write invoices against."""

    def __init__(self, emu: EpicorEmulator) -> None:
        books = emu.books
        self.books = books
        self.office = books.add_account("6100", "10", "Office Supplies - Administration")
        self.repairs = books.add_account("6200", "20", "Repairs and Maintenance - Production")
        self.freight = books.add_account("6400", "20", "Freight In - Production")
        self.tax = books.add_account("6900", "00", "Sales and Use Tax")
        self.acme = books.add_vendor(
            "ACMEFAST", "Acme Fasteners Inc", Address1="415 Bolt St", City="Cleveland",
            State="OH", ZIP="44114", Country="USA", EMailAddress="ar@acme.example",
        )  # fmt: skip
        self.maple = books.add_vendor(
            "MAPLETL", "Maple Leaf Tooling Ltd", Address1="21 King St W", City="Toronto",
            State="ON", ZIP="M5H 1A1", Country="Canada", CurrencyCode="CAD",
        )  # fmt: skip
        self._serial = 1000

    def invoice(
        self, amount: str = "100.00", *, vendor: int | None = None, **columns: Any
    ) -> tuple[int, str]:
        """A posted, open invoice of one line on office supplies."""
        self._serial += 1
        return self.books.add_invoice(
            vendor or self.acme,
            f"INV-{self._serial}",
            [(Decimal(amount), self.office, "Copy paper")],
            invoice_date=date(2025, 2, 20),
            **columns,
        )

    @staticmethod
    def source_id(key: tuple[int, str]) -> str:
        """The plugin's id of an invoice key."""
        return f"{key[0]}:{key[1]}"
