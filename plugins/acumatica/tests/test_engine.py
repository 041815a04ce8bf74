"""The engine with the Acumatica emulator as source and the reference sink (BILL stand-in).

Written against :class:`support.SinkSide`: the end-to-end tests swap in the BILL plugin and its
emulator; what these assert (each open bill once, payments back once) holds for both.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from plugins.acumatica.tests.support import (
    ReferenceSink,
    RoundTrip,
    emulator,
    open_bills,
    requests_to,
)
from sqlmodel import select

from ml_connector import hookimpl
from ml_connector.description import PluginInfo
from ml_connector.emulation import FaultAction
from ml_connector.engine import RetryPolicy
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, RunStatus
from ml_connector.testing import ManualClock
from ml_connector_acumatica import PLUGIN_INFO, plugin
from ml_connector_acumatica.emulator import AcumaticaEmulator

UNMAPPED_SUBACCOUNT = "OPS-WH1"  # BILL gets no department for it


def retry_moving(clock: ManualClock) -> RetryPolicy:
    """Retries that wait on the shared manual clock (Retry-After honoured), never the wall."""

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return RetryPolicy(attempts=8, base_delay=0.0, max_delay=120.0, sleep=sleep)


def chart(emu: AcumaticaEmulator) -> tuple[dict[str, str], dict[str, str]]:
    """BILL's chart: every Acumatica account by number; a department per subaccount but one."""
    accounts = {a["AccountCD"]: a["Description"] for a in emu.books.ordered("Account")}
    departments = {
        s["SubaccountCD"]: s["Description"]
        for s in emu.books.ordered("Subaccount")
        if s["SubaccountCD"] != UNMAPPED_SUBACCOUNT
    }
    return accounts, departments


def uses_unmapped(emu: AcumaticaEmulator) -> set[str]:
    return {
        b["ReferenceNbr"]
        for b in emu.books.ordered("Bill")
        if any(d["Subaccount"] == UNMAPPED_SUBACCOUNT for d in b["Details"])
    }


def exceptions(trip: RoundTrip) -> dict[str, ExceptionItemRow]:
    with trip.store.session(read_only=True) as session:
        return {row.source_id: row for row in session.exec(select(ExceptionItemRow))}


@pytest.fixture
def trip(tmp_path: Path, clock: ManualClock):
    emu = emulator(clock, bills=20)
    sink = ReferenceSink(clock=clock)
    sink.prepare_chart(*chart(emu))
    trip = RoundTrip(tmp_path, emu, sink)
    yield trip
    trip.close()


def assert_each_once(trip: RoundTrip, expected: set[str]) -> None:
    assert not trip.sink.duplicates()
    for ref in expected:
        assert len(trip.sink.bills_for(ref)) == 1, ref
    for ref in open_bills(trip.emu) - expected:
        assert trip.sink.bills_for(ref) == [], ref


async def test_bills_go_once_and_payments_come_back_once(
    trip: RoundTrip, clock: ManualClock
) -> None:
    emu, retry = trip.emu, retry_moving(clock)
    unmapped = uses_unmapped(emu) & open_bills(emu)
    assert unmapped, "the seed must exercise an unmapped subaccount"
    summary = await trip.sync(retry)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    sent = open_bills(emu) - unmapped
    assert summary.counts["bills_created"] == len(sent)
    assert_each_once(trip, sent)
    # An unmapped subaccount sends its bill to the exception queue; the rest goes on.
    queued = exceptions(trip)
    assert set(queued) == unmapped
    item = queued[sorted(unmapped)[0]]
    assert item.field is not None
    assert item.field.endswith(".dimensions.subaccount")
    assert UNMAPPED_SUBACCOUNT in item.reason
    # A rerun without changes writes nothing.
    clock.advance(timedelta(minutes=5))
    again = await trip.sync(retry, lookback=timedelta(days=365))
    assert again.counts.get("bills_created", 0) == 0
    assert again.counts["bills_unchanged"] == len(sent)
    # A payment in BILL comes back as one released check.
    paid_ref = sorted(sent)[0]
    [bill_id] = trip.sink.bills_for(paid_ref)
    trip.sink.pay(bill_id)
    clock.advance(timedelta(minutes=1))
    third = await trip.sync(retry)
    assert third.counts["payments_recorded"] == 1
    [check] = emu.checks_for(paid_ref)
    assert check["Status"] == "Closed"
    assert emu.bill(paid_ref)["Status"] == "Closed"
    clock.advance(timedelta(minutes=1))
    await trip.sync(retry, lookback=timedelta(days=1))
    assert len(emu.checks_for(paid_ref)) == 1, "never a second check for one BILL payment"
    assert emu.live_sessions() == 0, "every run signs out"


async def test_an_edit_after_sending_updates_the_bill(trip: RoundTrip, clock: ManualClock) -> None:
    emu, retry = trip.emu, retry_moving(clock)
    await trip.sync(retry)
    ref = sorted(open_bills(emu) - uses_unmapped(emu))[0]
    clock.advance(timedelta(minutes=30))
    emu.edit_bill(ref, Description="corrected description")
    clock.advance(timedelta(seconds=1))
    summary = await trip.sync(retry)
    assert summary.counts["bills_updated"] == 1
    assert summary.counts["payables_read"] == 1, "only the change is read"
    assert len(trip.sink.bills_for(ref)) == 1


async def test_a_slow_licence_a_429_storm_and_expiring_sessions_lose_and_double_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    # Six requests a minute: past the third, every request is delayed (on the manual clock).
    emu = emulator(clock, bills=20, requests_per_minute=6)
    sink = ReferenceSink(clock=clock)
    sink.prepare_chart(*chart(emu))
    # Declined requests now and then, and the session ends twice mid-run (as an idle timeout
    # or a restart would end it).
    emu.faults.add(FaultAction(429, kind="throttled", retry_after=5), skip=4, times=3)
    emu.faults.add(FaultAction(401, kind="session"), path_contains="/Vendor/")
    emu.faults.add(FaultAction(401, kind="session"), path_contains="/Vendor/", skip=2)
    trip = RoundTrip(tmp_path, emu, sink, source_settings={"auth_mode": "cookie", "page_size": 5})
    try:
        summary = await trip.sync(retry_moving(clock))
        assert summary.status is RunStatus.SUCCEEDED, summary.error
        assert [r for r in emu.log.records if r.status == 429], "the storm happened"
        assert len(emu.licence.delays) > 10, "the licence delayed requests past half its budget"
        assert not emu.licence.declined, "and declined none: delays are not refusals"
        assert emu.logins >= 2, "the session was renewed mid-run"
        assert_each_once(trip, open_bills(emu) - uses_unmapped(emu))
    finally:
        trip.close()


class Crash(BaseException):
    """The process dies (in process: a BaseException the engine does not swallow)."""


class CrashAfterCreates:
    """Lets ``n`` bills be created in the sink, then dies right after the n-th."""

    def __init__(self, n: int) -> None:
        self.left = n

    @hookimpl(wrapper=True)
    def create_bill(self, ctx, draft):
        inner = yield

        async def run():
            result = await inner
            self.left -= 1
            if self.left == 0:
                raise Crash
            return result

        return run()


async def test_a_crash_mid_run_then_a_rerun_duplicates_nothing(
    trip: RoundTrip, clock: ManualClock
) -> None:
    retry = retry_moving(clock)
    trip.registry.add_extension(CrashAfterCreates(3), "crash")
    with pytest.raises(Crash):
        await trip.sync(retry, bulk=False)
    assert trip.emu.live_sessions() == 0, "even a dying run logs out"
    trip.registry = _without_crash(trip)
    summary = await trip.sync(retry, bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert_each_once(trip, open_bills(trip.emu) - uses_unmapped(trip.emu))


def _without_crash(trip: RoundTrip) -> Registry:
    registry = Registry(path=[])
    registry.add(plugin, PluginInfo.model_validate(PLUGIN_INFO))
    registry.add(trip.sink.plugin, trip.sink.info)
    return registry


async def test_subaccounts_left_out_send_every_open_bill(
    tmp_path: Path, clock: ManualClock
) -> None:
    emu = emulator(clock, bills=10)
    sink = ReferenceSink(clock=clock)
    sink.prepare_chart(chart(emu)[0], {})  # BILL has no departments at all
    trip = RoundTrip(tmp_path, emu, sink, source_settings={"subaccount_maps_to": "none"})
    try:
        summary = await trip.sync(retry_moving(clock))
        assert summary.counts["bills_created"] == len(open_bills(emu))
        assert requests_to(emu, "GET", "/Subaccount") == 0
    finally:
        trip.close()


async def test_amounts_survive_the_trip_exactly(trip: RoundTrip, clock: ManualClock) -> None:
    await trip.sync(retry_moving(clock))
    for ref in open_bills(trip.emu) - uses_unmapped(trip.emu):
        [bill_id] = trip.sink.bills_for(ref)
        bill = trip.sink.fake.bills[bill_id]
        assert bill.amount == trip.emu.bill(ref)["Amount"]
        assert sum((line.amount for line in bill.lines), Decimal(0)) == bill.amount
