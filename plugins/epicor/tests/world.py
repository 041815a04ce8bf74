"""An Epicor emulator, the engine and a sink, as one connection sees them.

The sink side is behind :class:`SinkSide`, the same operations ``ml-connector demo`` asks of a
sink emulator (:class:`ml_connector.emulation.DemoSink`: seed a chart, count bills by key, pay
bills) plus how to register and reach its plugin. :class:`ReferenceSink` serves it with the core's
reference sink today; the end-to-end tests swap in the BILL plugin and its emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from plugins.epicor.tests.helpers import BASE_URL

from ml_connector.connections import SideInput, create_connection
from ml_connector.description import PluginInfo
from ml_connector.engine import (
    LimiterPool,
    RetryPolicy,
    RunSummary,
    SyncEngine,
    SyncOptions,
    open_engine,
)
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.testing import FakeSink, reference_sink
from ml_connector.vault import Vault
from ml_connector_epicor import PLUGIN_INFO, plugin
from ml_connector_epicor.emulator import EpicorEmulator

NAME = "acme"
BillKey = tuple[str, str]


async def _no_sleep(_: float) -> None:
    return None


#: Retries without waiting: tests must not depend on the wall clock.
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


class SinkSide(Protocol):
    """What a round trip needs from the sink."""

    system: str

    def register(self, registry: Registry) -> None:
        """Add the sink's plugin to the registry (an installed one needs nothing)."""

    def side(self) -> SideInput:
        """The sink's settings and credentials for the connection."""

    def transport(self) -> httpx.AsyncBaseTransport | None:
        """How the connection reaches the sink (``None``: no HTTP)."""

    def seed_chart(self, accounts: dict[str, str]) -> None:
        """Create chart-of-accounts entries, number to name."""

    def bills_by_key(self) -> dict[BillKey, int]:
        """Bills per (vendor name, invoice number); more than one is a duplicate."""

    def pay_bills(self, count: int) -> list[BillKey]:
        """Pay ``count`` unpaid bills in full, as a clerk would."""


class ReferenceSink:
    """The core's reference sink (BILL at the domain level, no HTTP)."""

    system = "reference_sink"

    def __init__(
        self, organization: str = "00801ACME", clock: Callable[[], datetime] | None = None
    ) -> None:
        self.fake = FakeSink.in_memory(organization)
        if clock is not None:
            self.fake.clock = clock

    def register(self, registry: Registry) -> None:
        info = PluginInfo.model_validate(reference_sink.PLUGIN_INFO)
        registry.add(reference_sink.PLUGIN, info)

    def side(self) -> SideInput:
        return SideInput(
            self.system,
            {"organization_id": self.fake.organization_id},
            {"username": "ap@acme.example", "password": "bill-pw", "dev_key": "dev"},
        )

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def seed_chart(self, accounts: dict[str, str]) -> None:
        for number, name in accounts.items():
            self.fake.add_account(name, number)

    def _key(self, bill_id: str) -> BillKey:
        bill = self.fake.bills[bill_id]
        return self.fake.vendors[bill.vendor_id].name, bill.invoice_number

    def bills_by_key(self) -> dict[BillKey, int]:
        counts: dict[BillKey, int] = {}
        for bill_id in self.fake.bills:
            key = self._key(bill_id)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def pay_bills(self, count: int) -> list[BillKey]:
        unpaid = sorted(b for b, bill in self.fake.bills.items() if not bill.paid)[:count]
        for bill_id in unpaid:
            self.fake.pay_bill(bill_id)
        return [self._key(b) for b in unpaid]


@dataclass
class World:
    """The Epicor emulator, a sink, the state store and the connection between them.

    The engine reads the emulator's clock, so change windows and the emulator's change dates
    agree (give the sink the same clock).
    """

    erp: EpicorEmulator
    sink: SinkSide
    store: Store
    vault: Vault
    registry: Registry

    @classmethod
    def create(
        cls,
        folder: Path,
        erp: EpicorEmulator,
        sink: SinkSide,
        *,
        settings: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> World:
        """Seed the sink's chart from the ERP's accounts and add the connection."""
        registry = Registry(path=[])
        registry.add(plugin, PluginInfo.model_validate(PLUGIN_INFO))
        sink.register(registry)
        unmapped = erp.unmapped_account()
        sink.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
        vault = Vault.from_key_file(folder / "master.key")
        store = open_store(str(folder / "state.db"))
        create_connection(
            store,
            vault,
            registry,
            NAME,
            SideInput(
                "epicor",
                erp.settings(BASE_URL) | (settings or {}),
                credentials if credentials is not None else erp.credentials(),
            ),
            sink.side(),
        )
        return cls(erp, sink, store, vault, registry)

    def engine(self, **options: Any) -> AbstractAsyncContextManager[SyncEngine]:
        """The connection's engine: fast retries, a private limiter pool, in-process transports."""
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("now", self.erp.now)
        transports: dict[str, httpx.AsyncBaseTransport] = {"epicor": self.erp.transport()}
        sink_transport = self.sink.transport()
        if sink_transport is not None:
            transports[self.sink.system] = sink_transport
        return open_engine(
            self.store,
            self.vault,
            self.registry,
            NAME,
            options=SyncOptions(**options),
            transports=transports,
            limiters=LimiterPool(),
        )

    async def sync(self, **options: Any) -> RunSummary:
        """One run of the connection."""
        async with self.engine(**options) as engine:
            return await engine.run()

    def close(self) -> None:
        """Release the state store."""
        self.store.dispose()
