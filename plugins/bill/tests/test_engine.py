"""The whole round trip: reference ERP -> SyncEngine -> BILL plugin -> BILL emulator, and back.

Bills are created exactly once, payments made in BILL are recorded once against their ERP bills,
and that holds with responses lost after a create was applied, bursts of 5xx, the session ending
mid-run, and a bulk batch BILL refuses. Retries never wait (the harness's fast policy), and the
BILL emulator's own cap proves the engine never had a fourth request in flight.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from plugins.bill.tests.support import make_emulator
from sqlmodel import select

from ml_connector.connections import SideInput, create_connection
from ml_connector.description import PluginInfo
from ml_connector.emulation import FaultAction
from ml_connector.engine import (
    LimiterPool,
    RetryPolicy,
    RunSummary,
    SyncEngine,
    SyncOptions,
    WebhookReceiver,
    ensure_subscription,
    open_engine,
)
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, RunStatus, Store, open_store
from ml_connector.testing import (
    FakeErp,
    SeedData,
    SeedSpec,
    generate_data,
    reference_erp,
    reset_fakes,
    seed_erp,
)
from ml_connector.vault import Vault
from ml_connector_bill import PLUGIN_INFO
from ml_connector_bill import plugin as bill_plugin
from ml_connector_bill.emulator import BillEmulator

NAME = "acme"
ERP = "acme-erp"
URL = "https://connector.example/webhooks/acme"
SPEC = SeedSpec(seed=5, vendors=6, payables=90, unmapped_account=True, malformed=2)
WRITES_EXCLUDED = ("/login", "/logout")  # the request log names routes /connect/{id}/login


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


#: Retries without waiting: tests must not depend on the wall clock.
FAST_RETRY = RetryPolicy(attempts=10, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


@pytest.fixture(autouse=True)
def _fresh_fakes() -> Any:
    reset_fakes()
    yield
    reset_fakes()


def registry() -> Registry:
    found = Registry(path=[])
    found.add(reference_erp.PLUGIN, PluginInfo.model_validate(reference_erp.PLUGIN_INFO))
    found.add(
        bill_plugin,
        PluginInfo.model_validate(PLUGIN_INFO),
        distribution="ml-connector-bill",
        version="0.1.0",
    )
    return found


@dataclass
class World:
    """The reference ERP, the BILL emulator, the store and the connection between them."""

    erp: FakeErp
    bill: BillEmulator
    store: Store
    registry: Registry
    data: SeedData

    @classmethod
    def create(cls, folder: Path, spec: SeedSpec = SPEC, **bill_options: Any) -> World:
        erp = FakeErp.in_memory(ERP)
        data = generate_data(spec)
        seed_erp(erp, data)
        bill = make_emulator(**bill_options)  # the real clock: the engine's windows use it too
        world = cls(erp, bill, open_store(str(folder / "state.db")), registry(), data)
        create_connection(
            world.store,
            Vault.from_environment(),
            world.registry,
            NAME,
            SideInput(
                "reference_erp",
                {"instance": ERP, "page_size": 25},
                {"username": "ap-bot", "password": "erp-pw"},
            ),
            SideInput(
                "bill", bill.settings("http://bill.emulator.test/connect"), bill.credentials()
            ),
        )
        return world

    def engine(self, **options: Any) -> AbstractAsyncContextManager[SyncEngine]:
        options.setdefault("retry", FAST_RETRY)
        return open_engine(
            self.store,
            Vault.from_environment(),
            self.registry,
            NAME,
            options=SyncOptions(**options),
            transports={"bill": self.bill.transport()},
            limiters=LimiterPool(),
        )

    async def sync(self, **options: Any) -> RunSummary:
        async with self.engine(**options) as engine:
            return await engine.run()

    # --- What the systems hold -----------------------------------------------------------------

    def expected(self) -> set[tuple[str, str]]:
        names = {v.source_id: v.name for v in self.data.vendors}
        return {
            (names[self.data.payable(i).vendor_id], self.data.payable(i).invoice_number)
            for i in self.data.ready_ids
        }

    def assert_exactly_once(self, expected: set[tuple[str, str]] | None = None) -> None:
        expected = self.expected() if expected is None else expected
        in_bill = self.bill.bills_by_key()
        assert {k for k, n in in_bill.items() if n > 1} == set(), "duplicate bills"
        assert set(in_bill) == expected
        names = [v["name"] for v in self.bill.vendors.values()]
        assert len(names) == len(set(names)), "duplicate vendors"
        assert self.bill.gate.refused == 0, "the engine let a fourth request reach BILL"
        assert self.bill.gate.peak <= 3

    def bill_id(self, source_id: str) -> str:
        payable = self.data.payable(source_id)
        names = {v.source_id: v.name for v in self.data.vendors}
        (bill,) = [
            b
            for b in self.bill.bills.values()
            if b["invoice"]["invoiceNumber"] == payable.invoice_number
            and b["vendorName"] == names[payable.vendor_id]
        ]
        return str(bill["id"])

    def exceptions(self) -> dict[str, ExceptionItemRow]:
        with self.store.session(read_only=True) as session:
            rows = session.exec(select(ExceptionItemRow))
            return {row.source_id: row for row in rows if row.status == "open"}

    def writes(self) -> int:
        return self.bill.log.writes(exclude=WRITES_EXCLUDED)


async def test_round_trip_bills_in_payments_back(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    first = await world.sync()
    assert first.status is RunStatus.SUCCEEDED, first.error
    world.assert_exactly_once()
    assert first.counts["bills_created"] == len(world.data.ready_ids)
    # new bills went in bulk (BILL's documented 200 per call), not one request each
    bulk = [r for r in world.bill.log.records if r.path.endswith("/v3/bills/bulk")]
    assert bulk
    assert not [
        r for r in world.bill.log.records if r.path.endswith("/v3/bills") and r.method == "POST"
    ]
    # the deliberate problems are queued with the field named, and stop nothing else
    queued = world.exceptions()
    assert set(world.data.unmapped_ids) <= set(queued)
    assert set(world.data.malformed_ids) <= set(queued)

    paid = world.data.ready_ids[:6]
    for source_id in paid:
        world.bill.pay([world.bill_id(source_id)])  # SENT: the money has left
    scheduled = world.data.ready_ids[6]
    world.bill.pay([world.bill_id(scheduled)], single_status="SCHEDULED")
    second = await world.sync()
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.counts["payments_recorded"] == len(paid)
    for source_id in paid:
        (posted,) = world.erp.payments_for(source_id)
        assert posted.sink_payment_id.startswith("stp")
    assert world.erp.payments_for(scheduled) == []

    # the scheduled payment is sent later: recorded on the next run, once
    (payment_id,) = [
        p["id"] for p in world.bill.payments.values() if p["singleStatus"] == "SCHEDULED"
    ]
    world.bill.set_payment_status(payment_id, "SENT")
    before = world.writes()
    third = await world.sync()
    assert third.counts["payments_recorded"] == 1
    assert len(world.erp.payments_for(scheduled)) == 1
    assert world.writes() == before, "an unchanged rerun wrote to BILL"
    fourth = await world.sync()
    assert fourth.counts.get("payments_recorded", 0) == 0
    world.assert_exactly_once()


async def test_faults_leave_no_duplicate(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    faults = world.bill.faults
    # a bulk create applied, its answer lost; then a vendor create the same way
    faults.add(FaultAction(502, after_apply=True), method="POST", path_contains="/v3/bills/bulk")
    faults.add(
        FaultAction(504, after_apply=True), method="POST", path_contains="/v3/vendors", skip=1
    )
    # a burst of 5xx on reads, and throttling
    faults.add(FaultAction(503), method="GET", path_contains="/v3/classifications", times=3)
    faults.add(FaultAction(429, kind="throttled"), method="POST", path_contains="/v3/bills")
    faults.random(0.05, FaultAction(503))  # seeded: the same schedule every run
    # BILL ends the session mid-run
    world.bill.expire_sessions_after(40)
    first = await world.sync()
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert faults.injected > 5
    world.assert_exactly_once()
    logins = [r for r in world.bill.log.records if r.path.endswith("/v3/login")]
    assert len(logins) >= 2  # signed in again after the expiry
    assert any(r.status == 401 for r in world.bill.log.records)

    for source_id in world.data.ready_ids[:8]:
        world.bill.pay([world.bill_id(source_id)])
    world.bill.expire_sessions_after(3)
    faults.add(FaultAction(502, after_apply=True), method="GET", path_contains="/v3/payments")
    second = await world.sync()
    assert second.status is RunStatus.SUCCEEDED, second.error
    for source_id in world.data.ready_ids[:8]:
        assert len(world.erp.payments_for(source_id)) == 1
    faults.random(0)
    third = await world.sync()
    assert third.counts.get("payments_recorded", 0) == 0
    assert third.counts.get("bills_created", 0) == 0
    world.assert_exactly_once()


async def test_a_refused_bill_is_isolated_from_its_bulk_batch(tmp_path: Path) -> None:
    world = World.create(tmp_path, SeedSpec(seed=9, vendors=4, payables=60))
    bad = world.data.ready_ids[17]
    world.bill.refuse_invoice(world.data.payable(bad).invoice_number, reason="duplicate in BILL")
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts["bills_failed"] == 1
    queued = world.exceptions()
    assert queued[bad].field == "invoice.invoiceNumber"
    assert "duplicate in BILL" in queued[bad].reason
    expected = world.expected() - {
        (
            next(
                v.name
                for v in world.data.vendors
                if v.source_id == world.data.payable(bad).vendor_id
            ),
            world.data.payable(bad).invoice_number,
        )
    }
    world.assert_exactly_once(expected)


async def test_single_creates_too(tmp_path: Path) -> None:
    world = World.create(tmp_path, SeedSpec(seed=4, vendors=3, payables=25))
    lost = FaultAction(502, after_apply=True)
    world.bill.faults.add(lost, method="POST", path_contains="/v3/bills", times=2)
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once()
    assert not [r for r in world.bill.log.records if r.path.endswith("/bulk")]


async def test_each_bill_request_holds_a_slot_not_each_hook_call(tmp_path: Path) -> None:
    """BILL counts requests: a sign-in and the chart of accounts are several per hook call."""
    world = World.create(tmp_path, SeedSpec(seed=4, vendors=3, payables=25))
    async with world.engine(bulk=False) as engine:
        assert engine.run_context.sink.ctx.request_slot is not None
        limiter = engine.run_context.sink_limiter
        summary = await engine.run()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    served = len(world.bill.log.records)  # the sign-in, the catalog's pages, the logout on close
    assert limiter.taken == served
    world.assert_exactly_once()


async def test_a_webhook_delivery_records_the_payment_once(tmp_path: Path) -> None:
    world = World.create(tmp_path, SeedSpec(seed=2, vendors=3, payables=20))
    vault = Vault.from_environment()
    await world.sync()
    outcomes: list[Any] = []
    async with world.engine() as engine:
        row = await ensure_subscription(world.store, vault, engine, URL)
        assert row.security_key is not None  # BILL's key, stored encrypted at once
        assert vault.decrypt(row.security_key).decode() == world.bill.security_key(row.sink_id)
        receiver = WebhookReceiver(world.store, vault, engine)

        async def deliver(request: httpx.Request) -> httpx.Response:
            outcomes.append(await receiver.receive(dict(request.headers), request.content))
            return httpx.Response(200)

        world.bill.config.delivery_transport = httpx.MockTransport(deliver)
        paid = world.data.ready_ids[0]
        world.bill.pay([world.bill_id(paid)])
        assert await world.bill.deliver_pending() == 1
    assert [o.payments_recorded for o in outcomes] == [1]
    assert len(world.erp.payments_for(paid)) == 1
    summary = await world.sync()  # polling, the baseline, does not record it again
    assert summary.counts.get("payments_recorded", 0) == 0
    assert len(world.erp.payments_for(paid)) == 1
