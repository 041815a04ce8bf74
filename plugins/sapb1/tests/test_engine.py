"""The engine with this plugin over the SAP B1 emulator and the BILL plugin over BILL's.

One stored connection, the real plugins on both sides, in process. What must hold: every
approved invoice reaches BILL once (the one on the account BILL lacks waits in the exception
queue), sessions that expire mid-run are renewed, and each BILL payment comes back as one B1
outgoing payment, also when the answer to the ``POST`` is lost.
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
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, RunStatus, Store, open_store
from ml_connector.testing import ManualClock
from ml_connector.vault import Vault
from sqlmodel import select

from ml_connector_sapb1.emulator import BANK_ACCOUNT, SapB1Emulator

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import sapb1_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.sapb1.tests import sapb1_testkit as kit  # type: ignore[import-not-found,no-redef]

pytest.importorskip("ml_connector_bill", reason="the engine test pairs this plugin with BILL's")

NAME = "acme"
SOURCE, SINK = "sapb1", "bill"


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


#: Retries without waiting: tests never depend on the wall clock.
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


@dataclass
class World:
    """The B1 emulator, BILL's, a state store and the connection between them."""

    erp: SapB1Emulator
    bill: Any  # ml_connector_bill.emulator.BillEmulator (a DemoSink)
    store: Store
    vault: Vault
    registry: Registry
    clock: ManualClock

    @classmethod
    def create(cls, folder: Path, version: str = "v1") -> World:
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
        source_settings = erp.settings(kit.root(version))  # its bank and tax accounts too
        assert source_settings["transfer_account"] == BANK_ACCOUNT
        create_connection(
            store,
            vault,
            registry,
            NAME,
            SideInput(SOURCE, source_settings, erp.credentials()),
            SideInput(SINK, bill.settings("http://bill.emulator" + bill.base_path),
                      bill.credentials()),
        )  # fmt: skip
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
        assert eligible - set(in_bill) == set(), "approved invoices missing in BILL"
        assert set(in_bill) - eligible == set(), "records in BILL that must not have moved"
        totals = self.erp.bill_totals()
        assert {k: self.bill.bill_totals()[k] for k in eligible} == totals

    def close(self) -> None:
        self.store.dispose()


@pytest.fixture(params=kit.VERSIONS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    created = World.create(tmp_path, request.param)
    yield created
    created.close()


async def test_bills_move_once_and_payments_come_back_once(world: World) -> None:
    erp, bill = world.erp, world.bill
    first = await world.sync()
    assert first.status is RunStatus.SUCCEEDED, first.error
    world.assert_each_bill_once()
    assert first.counts["bills_created"] == len(erp.eligible_bills()) == 30
    (queued,) = world.exceptions()  # the invoice on the account BILL's chart lacks
    assert queued.field is not None
    assert queued.field.endswith("account_id")
    assert erp.unmapped_account() in queued.reason
    assert erp.logins == 1
    assert len(erp.sessions) == 0  # logged out at the end of the run: no seat kept

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
    world.assert_each_bill_once()


async def test_a_session_expiring_mid_run_is_renewed(world: World) -> None:
    erp = world.erp
    # the Service Layer reports the session expired while the first page's vendors are read
    erp.faults.add(FaultAction(401, kind="session"), path_contains="BusinessPartners", times=1)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_each_bill_once()
    assert erp.logins == 2


async def test_a_lost_answer_to_a_payment_post_is_recorded_once(world: World) -> None:
    erp, bill = world.erp, world.bill
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = bill.pay_bills(3)
    # B1 applies each payment, and the answer is lost on the way back (twice).
    erp.faults.add(
        FaultAction(502, after_apply=True), method="POST", path_contains="VendorPayments", times=2
    )
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert erp.faults.injected == 2
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)
    assert sum(posted.values()) == 3 + _paid_in_b1(erp)
    again = await world.sync()
    assert again.counts.get("payments_recorded", 0) == 0
    assert erp.payments_posted() == posted


async def test_sessions_expire_on_both_sides_mid_payment_run(world: World) -> None:
    erp, bill = world.erp, world.bill
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = bill.pay_bills(2)
    erp.faults.add(FaultAction(401, kind="session"), method="POST", path_contains="VendorPayments")
    bill.faults.add(FaultAction(401, kind="session"), skip=2)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert erp.faults.injected == bill.faults.injected == 1
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)


def _paid_in_b1(erp: SapB1Emulator) -> int:
    """Payments the demo made in B1 itself (its paid invoices, which never move)."""
    eligible = erp.eligible_bills()
    return sum(n for key, n in erp.payments_posted().items() if key not in eligible)
