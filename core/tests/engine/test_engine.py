"""The engine against the reference ERP and sink: what a run writes, and never writes twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from core.tests.engine.harness import ORG, World
from sqlmodel import select

from ml_connector import hookimpl
from ml_connector.description import ConcurrencyLimits
from ml_connector.engine import LimiterPool
from ml_connector.models import BillDraft, PaymentStatus
from ml_connector.store import ConnectionBusyError, ExceptionItemRow, RunStatus
from ml_connector.testing import ErpStatus, FaultKind, SeedSpec

SINK_WRITES = ("upsert_vendor", "create_bill", "create_bills", "create_account")


def exceptions(world: World) -> dict[str, ExceptionItemRow]:
    with world.store.session(read_only=True) as session:
        return {row.source_id: row for row in session.exec(select(ExceptionItemRow))}


@pytest.fixture
def spec() -> SeedSpec:
    return SeedSpec(seed=3, vendors=8, payables=120, unmapped_account=True, malformed=3)


async def test_first_sync_creates_each_ready_bill_once(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    assert summary.counts["bills_created"] == len(data.ready_ids)
    vendors_used = {data.payable(i).vendor_id for i in data.ready_ids}
    assert summary.counts["vendors_created"] == len(vendors_used) == len(world.sink.vendors)
    # held documents (on hold, drafts, purchase orders) never reach the sink
    assert not set(data.held_ids) & set(world.bills_by_payable())
    # the unmapped account and the malformed records are queued, naming the field
    queued = exceptions(world)
    assert set(data.unmapped_ids) | set(data.malformed_ids) <= set(queued)
    unmapped = queued[data.unmapped_ids[0]]
    assert unmapped.field == "lines.0.account_id"
    assert f"GL account {data.unmapped_account_id} is not mapped" in unmapped.reason
    # BILL's cap held: never more than three calls in flight
    assert world.sink.faults.peak_in_flight <= 3


async def test_a_rerun_without_changes_writes_nothing(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    world.sink.faults.reset_counters()
    world.erp.faults.reset_counters()
    summary = await world.sync(lookback=timedelta(days=3650))
    assert summary.status is RunStatus.SUCCEEDED
    assert world.sink.faults.total_calls(SINK_WRITES) == 0
    assert summary.counts["bills_unchanged"] == len(data.ready_ids)
    world.assert_exactly_once(data)


async def test_changes_update_unpaid_bills_and_leave_paid_ones(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    changed, paid = data.ready_ids[0], data.ready_ids[1]
    paid_bill = world.sink.bill_for_payable(paid)[0]
    world.sink.pay_bill(paid_bill.id)
    for source_id in (changed, paid):
        record = world.erp.payables[source_id]
        world.erp.update_payable(source_id, description=f"{record.description} (edited)")
    summary = await world.sync()
    assert summary.counts["bills_updated"] == 1
    assert summary.counts["bills_paid_unchanged"] == 1
    assert "(edited)" in (world.sink.bill_for_payable(changed)[0].description or "")
    assert "(edited)" not in (world.sink.bill_for_payable(paid)[0].description or "")
    world.assert_exactly_once(data)


async def test_a_fixed_record_leaves_the_exception_queue(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    broken = data.unmapped_ids[0]
    record = world.erp.payables[broken]
    good_account = data.payable(data.ready_ids[0]).lines[0].account_id
    lines = [replace(record.lines[0], account_id=good_account), *record.lines[1:]]
    world.erp.update_payable(broken, lines=lines)
    await world.sync()
    assert exceptions(world)[broken].status == "resolved"
    assert len(world.sink.bill_for_payable(broken)) == 1


async def test_payments_are_recorded_back_exactly_once(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    paid = data.ready_ids[:5]
    for source_id in paid:
        world.sink.pay_bill(world.sink.bill_for_payable(source_id)[0].id)
    scheduled = world.sink.bill_for_payable(data.ready_ids[5])[0]
    world.sink.pay_bill(scheduled.id, status=PaymentStatus.SCHEDULED)
    summary = await world.sync()
    assert summary.counts["payments_recorded"] == 5
    for source_id in paid:
        assert len(world.erp.payments_for(source_id)) == 1
        assert world.erp.open_balance(source_id) == Decimal(0)
    assert world.erp.payments_for(data.ready_ids[5]) == []
    again = await world.sync(lookback=timedelta(days=3650))
    assert again.counts.get("payments_recorded", 0) == 0
    assert all(len(world.erp.payments_for(s)) == 1 for s in paid)


async def test_lost_responses_and_storms_never_duplicate(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    faults = world.sink.faults
    faults.apply_then_fail("create_bill", on_call=3, times=4)
    faults.apply_then_fail("upsert_vendor", on_call=2)
    faults.fail("create_bill", FaultKind.THROTTLED, on_call=10, times=5, retry_after=0.0)
    faults.fail("create_bill", FaultKind.TRANSIENT, on_call=30, times=3)
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    assert world.sink.faults.peak_in_flight <= 3


async def test_bulk_creates_isolate_a_refused_bill(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    poisoned = data.ready_ids[7]
    world.sink.poison(poisoned, field="dueDate", reason="due date before invoice date")
    summary = await world.sync(bulk=True)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert world.sink.faults.calls["create_bills"] > 0
    world.assert_exactly_once(data, set(data.ready_ids) - {poisoned})
    queued = exceptions(world)[poisoned]
    assert queued.field == "dueDate"
    assert "due date before invoice date" in queued.reason


async def test_an_interrupted_run_resumes_without_duplicates(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    world.sink.faults.fail("create_bill", FaultKind.AUTHENTICATION, on_call=40)
    failed = await world.sync(bulk=False)
    assert failed.status is RunStatus.FAILED
    assert "reference_sink" in (failed.error or "")
    world.sink.faults.clear()
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)


async def test_held_then_approved_bills_arrive(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    released = data.held_ids[0]
    world.erp.update_payable(released, status=ErpStatus.APPROVED)
    await world.sync()
    assert len(world.sink.bill_for_payable(released)) == 1


async def test_exceptions_sent_back_for_retry_are_redriven(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    target = data.ready_ids[2]
    world.sink.poison(target, field="amount", reason="temporarily refused")
    await world.sync(bulk=False)
    assert exceptions(world)[target].status == "open"
    world.sink.unpoison(target)
    await world.sync(bulk=False)  # the cursor moved on: an open entry is not re-read
    assert world.bills_by_payable().get(target) is None
    with world.store.session() as session:
        item = exceptions(world)[target]
        item.status = "retrying"
        session.add(item)
    summary = await world.sync(bulk=False)
    assert summary.counts["exceptions_retried"] == 1
    assert exceptions(world)[target].status == "resolved"
    world.assert_exactly_once(data)


class BuggyExtension:
    """An extension whose create_bill crashes on one record and declines the others."""

    def __init__(self, target: str) -> None:
        self.target = target

    @hookimpl(tryfirst=True)
    def create_bill(self, ctx: object, draft: BillDraft) -> None:
        if draft.payable.source_id == self.target:
            raise KeyError("vendorTerms")


async def test_a_plugin_bug_on_one_record_stops_nothing_else(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    target = data.ready_ids[4]
    world.registry.add_extension(BuggyExtension(target), "buggy")
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED
    world.assert_exactly_once(data, set(data.ready_ids) - {target})
    assert "unexpected KeyError in a plugin: 'vendorTerms'" in exceptions(world)[target].reason


async def test_session_expiry_mid_run_costs_one_login(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    world.sink.faults.fail("create_bill", FaultKind.SESSION_EXPIRED, on_call=5)
    world.erp.faults.fail("list_changed_payables", FaultKind.SESSION_EXPIRED, on_call=2)
    summary = await world.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    assert world.sink.faults.calls["authenticate"] == 2  # the first login and one re-login
    assert world.erp.faults.calls["authenticate"] == 2


async def test_one_run_per_connection_at_a_time(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    connection_id = world.store.get_connection("acme").id
    assert connection_id is not None
    busy = pytest.raises(ConnectionBusyError, match="being synced by another process")
    with world.store.connection_lock(connection_id, "acme"), busy:  # as another process would
        await world.sync()
    assert world.sink.bills == {}
    summary = await world.sync()  # released: the next run goes ahead
    assert summary.status is RunStatus.SUCCEEDED
    world.assert_exactly_once(data)


async def test_a_resave_without_changes_costs_no_write(tmp_path: Path, spec: SeedSpec) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    world.sink.faults.reset_counters()
    resaved = data.ready_ids[3]
    world.erp.update_payable(resaved)  # only its change time moves, as an ERP re-save does
    summary = await world.sync()
    assert summary.counts["payables_read"] >= 1
    assert summary.counts.get("bills_updated", 0) == 0
    assert world.sink.faults.total_calls(SINK_WRITES) == 0


async def test_missing_accounts_are_created_when_the_connection_allows(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    with world.store.session() as session:
        row = world.store.get_connection("acme")
        row.options = {"create_missing_accounts": True}
        session.add(row)
    summary = await world.sync()
    assert summary.counts["accounts_created"] >= 1
    created = [a for a in world.sink.accounts.values() if a.number == data.unmapped_account_id]
    assert len(created) == 1
    # the bills that were exceptions for want of that account now exist, once
    world.assert_exactly_once(data, set(data.ready_ids) | set(data.unmapped_ids))
    again = await world.sync()
    assert again.counts.get("accounts_created", 0) == 0
    assert (
        len([a for a in world.sink.accounts.values() if a.number == data.unmapped_account_id]) == 1
    )


async def test_an_exhausted_budget_stops_the_run_not_every_record(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    world.sink.faults.fail("create_bill", FaultKind.THROTTLED, on_call=5, retry_after=3000.0)
    stopped = await world.sync(bulk=False)
    assert stopped.status is RunStatus.FAILED
    assert "asked to wait 3000 s" in (stopped.error or "")
    assert not [e for e in exceptions(world).values() if "wait" in e.reason]
    world.sink.faults.clear()
    resumed = await world.sync(bulk=False)  # the cursor stayed: nothing is skipped
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    world.assert_exactly_once(data)


async def test_a_spent_hourly_budget_stops_the_run_instead_of_waiting_the_hour(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    # The sink's own hourly budget, as the engine enforces it: 40 calls, then an hour's wait.
    pool = LimiterPool()
    pool.get("reference_sink", ORG, ConcurrencyLimits(max_in_flight=3, requests_per_hour=40))

    stopped = await world.sync(pool, bulk=False)

    assert stopped.status is RunStatus.FAILED
    assert "reference_sink's budget of 40 requests an hour is spent" in (stopped.error or "")
    assert not [e for e in exceptions(world).values() if "budget" in e.reason]
    resumed = await world.sync(bulk=False)  # a new hour: the cursor stayed, nothing is skipped
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    world.assert_exactly_once(data)


async def test_a_recorded_payment_the_sink_then_voids_is_flagged(
    tmp_path: Path, spec: SeedSpec
) -> None:
    world, data = World.create(tmp_path, spec)
    await world.sync()
    paid = data.ready_ids[0]
    payment = world.sink.pay_bill(world.sink.bill_for_payable(paid)[0].id)
    await world.sync()
    assert len(world.erp.payments_for(paid)) == 1
    world.sink.set_payment_status(payment.id, PaymentStatus.VOIDED)
    summary = await world.sync()
    assert summary.counts["payments_undone"] == 1
    (flagged,) = [e for e in exceptions(world).values() if e.object_type == "payment"]
    assert flagged.field == "status"
    assert "reverse it there" in flagged.reason
    assert len(world.erp.payments_for(paid)) == 1  # nothing written by the connector


class DoublingExtension:
    """Wraps the source's listing so every page carries its first payable twice."""

    @hookimpl(wrapper=True)
    def list_changed_payables(self, ctx: object, window: object, page_token: object):  # type: ignore[no-untyped-def]
        inner = yield

        async def doubled():  # type: ignore[no-untyped-def]
            page = await inner
            if not page.items:
                return page
            return page.model_copy(update={"items": (*page.items, page.items[0])})

        return doubled()


@pytest.mark.parametrize("bulk", [True, False])
async def test_a_payable_twice_on_one_page_is_created_once(
    tmp_path: Path, spec: SeedSpec, bulk: bool
) -> None:
    world, data = World.create(tmp_path, spec)
    world.registry.add_extension(DoublingExtension(), "doubling")
    summary = await world.sync(bulk=bulk)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
