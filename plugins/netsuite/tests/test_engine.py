"""The engine with this plugin over the NetSuite emulator and the BILL plugin over BILL's.

One stored connection, the real plugins on both sides, in process. What must hold: every
approved, open vendor bill of the connection's subsidiary reaches BILL once (the one on the
account BILL lacks waits in the exception queue), tokens that expire mid-run are renewed, and
each BILL payment comes back as one vendorPayment, also when the answer to the ``PUT`` is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ml_connector.connections import SideInput, create_connection
from ml_connector.emulation import EmulatorOptions, FaultAction, load_emulator
from ml_connector.engine import LimiterPool, RetryPolicy, RunSummary, SyncOptions, open_engine
from ml_connector.models import AccountMapping, DimensionKind, MappingMethod
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, RunStatus, Store, open_store, upsert_mappings
from ml_connector.testing import ManualClock
from ml_connector.vault import Vault
from sqlmodel import select

from ml_connector_netsuite.emulator import NetSuiteEmulator

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import netsuite_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.netsuite.tests import netsuite_testkit as kit  # type: ignore[import-not-found,no-redef]

pytest.importorskip("ml_connector_bill", reason="the engine test pairs this plugin with BILL's")

NAME = "acme"
SOURCE, SINK = "netsuite", "bill"


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


#: Retries without waiting: tests never depend on the wall clock.
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


@dataclass
class World:
    """The NetSuite emulator, BILL's, a state store and the connection between them."""

    erp: NetSuiteEmulator
    bill: Any  # ml_connector_bill.emulator.BillEmulator (a DemoSink)
    store: Store
    vault: Vault
    registry: Registry
    clock: ManualClock

    @classmethod
    def create(cls, folder: Path) -> World:
        clock = ManualClock(kit.START, tick=timedelta(milliseconds=1))
        options = EmulatorOptions(seed=11, clock=clock)
        erp = kit.emulator(clock)
        erp.seed_demo(30, 11)
        bill: Any = load_emulator(SINK)(options)
        unmapped = erp.unmapped_account()
        bill.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
        store = open_store(str(folder / "state.db"))
        vault = Vault.from_key_file(folder / "master.key")
        registry = Registry()
        connection = create_connection(
            store,
            vault,
            registry,
            NAME,
            SideInput(SOURCE, erp.settings(kit.HOST), erp.credentials()),
            SideInput(SINK, bill.settings("http://bill.emulator" + bill.base_path),
                      bill.credentials()),
        )  # fmt: skip
        _map_segments(store, connection.id, erp, bill)
        return cls(erp, bill, store, vault, registry, clock)

    async def sync(self, **options: Any) -> RunSummary:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("now", self.clock)
        async with open_engine(
            self.store,
            self.vault,
            self.registry,
            NAME,
            options=SyncOptions(**options),
            transports={SOURCE: self.erp.transport(), SINK: self.bill.transport()},
            limiters=LimiterPool(),
        ) as engine:
            return await engine.run()

    def exceptions(self) -> list[ExceptionItemRow]:
        with self.store.session(read_only=True) as session:
            rows = session.exec(select(ExceptionItemRow).where(ExceptionItemRow.status == "open"))
            return list(rows)

    def assert_each_bill_once(self) -> None:
        in_bill = self.bill.bills_by_key()
        eligible = self.erp.eligible_bills()
        assert {k: n for k, n in in_bill.items() if n > 1} == {}, "duplicates in BILL"
        assert eligible - set(in_bill) == set(), "approved bills missing in BILL"
        assert set(in_bill) - eligible == set(), "records in BILL that must not have moved"
        totals = self.erp.bill_totals()
        assert {k: self.bill.bill_totals()[k] for k in eligible} == totals

    def close(self) -> None:
        self.store.dispose()


def _map_segments(store: Store, connection_id: Any, erp: NetSuiteEmulator, bill: Any) -> None:
    """Map every NetSuite segment value to a BILL classification, as `mapping set` does."""
    targets = {
        DimensionKind.DEPARTMENT: "departments",
        DimensionKind.CLASS: "accounting-classes",
        DimensionKind.LOCATION: "locations",
    }
    segments = {
        DimensionKind.DEPARTMENT: erp.books.departments,
        DimensionKind.CLASS: erp.books.classes,
        DimensionKind.LOCATION: erp.books.locations,
    }
    mappings = []
    for kind, values in segments.items():
        sink_id = next(iter(bill.classifications[targets[kind]]))
        mappings += [
            AccountMapping(
                source_kind=kind.value,
                source_id=str(value),
                sink_kind=kind.value,
                sink_id=sink_id,
                method=MappingMethod.MANUAL,
            )
            for value in values
        ]
    with store.session() as session:
        upsert_mappings(session, connection_id, mappings)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    created = World.create(tmp_path)
    yield created
    created.close()


async def test_bills_move_once_and_payments_come_back_once(world: World) -> None:
    erp, bill = world.erp, world.bill
    first = await world.sync()
    assert first.status is RunStatus.SUCCEEDED, first.error
    world.assert_each_bill_once()
    assert first.counts["bills_created"] == len(erp.eligible_bills()) > 0
    moved = bill.bills_by_key()
    queued = world.exceptions()  # the bills on the account BILL's chart lacks
    assert queued, "the bill on the unmapped account must wait in the exception queue"
    assert all(q.field is not None and q.field.endswith("account_id") for q in queued)

    paid = bill.pay_bills(5)
    second = await world.sync()
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.counts.get("payments_recorded") == 5, second.counts
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)

    third = await world.sync()  # nothing new: nothing posted again, nothing moves
    assert third.status is RunStatus.SUCCEEDED, third.error
    assert third.counts.get("payments_recorded", 0) == 0
    assert erp.payments_posted() == posted
    # (bills paid from BILL are status B, Paid In Full, now: no longer "eligible" in NetSuite)
    assert bill.bills_by_key() == moved


async def test_a_token_expiring_mid_run_is_renewed(world: World) -> None:
    erp = world.erp
    # NetSuite refuses the token while the first lines are read (INVALID_LOGIN, 401)
    erp.faults.add(FaultAction(401, kind="session"), path_contains="/query/", skip=1, times=1)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_each_bill_once()
    assert erp.faults.injected == 1


async def test_a_lost_answer_to_a_payment_put_is_recorded_once(world: World) -> None:
    erp, bill = world.erp, world.bill
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = bill.pay_bills(3)
    # NetSuite applies each payment, and the answer is lost on the way back (twice).
    erp.faults.add(
        FaultAction(502, after_apply=True), method="PUT", path_contains="vendorPayment", times=2
    )
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert erp.faults.injected == 2
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)
    again = await world.sync()
    assert again.counts.get("payments_recorded", 0) == 0
    assert erp.payments_posted() == posted


async def test_concurrency_errors_are_retried(world: World) -> None:
    erp = world.erp
    erp.faults.add(FaultAction(429, kind="throttled"), path_contains="/query/", times=2)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_each_bill_once()
    assert erp.faults.injected == 2
