"""Each ERP emulator paired with the BILL emulator through the real plugins and the engine.

The emulators run in process (httpx's ASGI transport) for most tests, or on loopback (real HTTP)
for the crash test, whose child process must reach them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select

from ml_connector.connections import SideInput, create_connection
from ml_connector.emulation import (
    DemoSink,
    DemoSource,
    Emulator,
    EmulatorOptions,
    available_emulators,
    load_emulator,
)
from ml_connector.engine import (
    LimiterPool,
    RetryPolicy,
    RunSummary,
    SyncEngine,
    SyncOptions,
    open_engine,
)
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, Store, open_store
from ml_connector.vault import Vault

SINK = "bill"
NAME = "e2e"
SOURCES = sorted(set(available_emulators()) - {SINK})


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


FAST_RETRY = RetryPolicy(attempts=10, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


@dataclass
class Pair:
    """A source emulator, the BILL emulator, the state and the connection between them."""

    source: str
    erp: Any  # an Emulator that is a DemoSource
    bill: Any  # an Emulator that is a DemoSink
    store: Store
    registry: Registry
    transports: Mapping[str, httpx.AsyncBaseTransport] | None

    @classmethod
    def create(
        cls,
        folder: Path,
        source: str,
        bills: int = 30,
        urls: tuple[str, str] | None = None,
        emulators: tuple[Emulator, Emulator] | None = None,
    ) -> Pair:
        """Seed both emulators and add the connection (through ``urls`` when served)."""
        erp, bill = emulators or make_emulators(source, bills)
        store = open_store(str(folder / "state.db"))
        registry = Registry()
        erp_url, bill_url = urls or ("http://erp.emulator", "http://bill.emulator")
        create_connection(
            store,
            Vault.from_environment(),
            registry,
            NAME,
            SideInput(source, erp.settings(erp_url + erp.base_path), erp.credentials()),
            SideInput(SINK, bill.settings(bill_url + bill.base_path), bill.credentials()),
        )
        transports = None if urls else {source: erp.transport(), SINK: bill.transport()}
        return cls(source, erp, bill, store, registry, transports)

    def engine(self, **options: Any) -> AbstractAsyncContextManager[SyncEngine]:
        """The connection's engine with fast retries."""
        options.setdefault("retry", FAST_RETRY)
        return open_engine(
            self.store,
            Vault.from_environment(),
            self.registry,
            NAME,
            options=SyncOptions(**options),
            transports=self.transports,
            limiters=LimiterPool(),
        )

    async def sync(self, **options: Any) -> RunSummary:
        """One run."""
        async with self.engine(**options) as engine:
            return await engine.run()

    def exceptions(self) -> list[ExceptionItemRow]:
        """Open entries of the exception queue."""
        with self.store.session(read_only=True) as session:
            query = select(ExceptionItemRow).where(ExceptionItemRow.status == "open")
            return list(session.exec(query))

    def assert_exactly_once(self) -> None:
        """Every eligible ERP bill is one BILL bill with the ERP's amount; nothing else moved."""
        in_bill = self.bill.bills_by_key()
        eligible = self.erp.eligible_bills()
        assert {k: n for k, n in in_bill.items() if n > 1} == {}, "duplicates in BILL"
        assert eligible - set(in_bill) == set(), "eligible bills missing in BILL"
        assert set(in_bill) - eligible == set(), "bills in BILL that must not have moved"
        erp_totals, bill_totals = self.erp.bill_totals(), self.bill.bill_totals()
        assert {k: bill_totals[k] for k in eligible} == {k: erp_totals[k] for k in eligible}


def make_emulators(source: str, bills: int, latency: float = 0.0) -> tuple[Emulator, Emulator]:
    """Seeded emulators: the ERP's bills, and BILL's chart with all but the unmapped account."""
    options = EmulatorOptions(latency=latency, seed=11)
    erp = load_emulator(source)(options)
    bill = load_emulator(SINK)(options)
    assert isinstance(erp, DemoSource)
    assert isinstance(bill, DemoSink)
    erp.seed_demo(bills, 11)
    unmapped = erp.unmapped_account()
    bill.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
    return erp, bill
