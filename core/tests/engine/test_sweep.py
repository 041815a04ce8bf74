"""Open intents are decided before a run reads anything; payments and accounts look before writing.

Each test builds a state the engine could reach before this sweep existed and that broke its
promise (a duplicate, or a payment dropped as "not ours"), and counts in the fakes' own records.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from core.tests.engine.harness import World
from sqlmodel import select

from ml_connector.store import (
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    RecordLinkRow,
    RunStatus,
    WriteIntentRow,
)
from ml_connector.testing import FaultKind, SeedSpec

SPEC = SeedSpec(seed=5, vendors=3, payables=12, held_share=0.0)


def intents(world: World, status: IntentStatus = IntentStatus.OPEN) -> list[WriteIntentRow]:
    with world.store.session(read_only=True) as session:
        query = select(WriteIntentRow).where(WriteIntentRow.status == status.value)
        return list(session.exec(query))


def exceptions(world: World) -> dict[tuple[str, str], ExceptionItemRow]:
    with world.store.session(read_only=True) as session:
        return {(e.object_type, e.source_id): e for e in session.exec(select(ExceptionItemRow))}


def links(world: World, object_type: str) -> dict[str, str]:
    with world.store.session(read_only=True) as session:
        query = select(RecordLinkRow).where(RecordLinkRow.object_type == object_type)
        return {row.source_id: row.sink_id for row in session.exec(query)}


def lose_a_create_and_its_lookups(world: World, lookups: int) -> None:
    """The third bill create reaches the sink, its answer is lost, and so are the look-ups."""
    world.sink.faults.apply_then_fail("create_bill", on_call=3)
    world.sink.faults.fail("find_bill", FaultKind.TRANSIENT, on_call=1, times=lookups)


async def test_a_lost_create_whose_lookup_fails_is_not_created_again(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    lose_a_create_and_its_lookups(world, lookups=1000)

    first = await world.sync(bulk=False)

    assert first.status is RunStatus.SUCCEEDED, first.error
    world.assert_exactly_once(data)  # before the sweep, the retry created it a second time
    [undecided] = intents(world)
    queued = exceptions(world)[("bill", undecided.source_id)]
    assert "looking it up failed" in queued.reason
    assert first.counts["intents_undecided"] == 1

    world.sink.faults.clear()
    second = await world.sync(bulk=False)

    assert second.counts["intents_reconciled"] == 1
    assert intents(world) == []
    assert undecided.source_id in links(world, "bill")
    queued = exceptions(world)[("bill", undecided.source_id)]
    assert queued.status == ExceptionStatus.RESOLVED.value
    world.assert_exactly_once(data)


async def test_a_bill_whose_create_was_undecided_has_its_payment_recorded(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    lose_a_create_and_its_lookups(world, lookups=1000)
    await world.sync(bulk=False)
    [undecided] = intents(world)
    [bill] = world.sink.bill_for_payable(undecided.source_id)
    world.sink.pay_bill(bill.id, Decimal("10.00"))

    # Still undecided: the payment of the unlinked bill waits, it is not dropped as not ours.
    waiting = await world.sync(bulk=False)
    assert waiting.counts.get("payments_ignored", 0) == 0
    [queued] = [e for (kind, _), e in exceptions(world).items() if kind == "payment"]
    assert queued.status == ExceptionStatus.RETRYING.value
    assert world.erp.payments_for(undecided.source_id) == []

    world.sink.faults.clear()
    decided = await world.sync(bulk=False)

    assert decided.status is RunStatus.SUCCEEDED, decided.error
    assert [p.amount for p in world.erp.payments_for(undecided.source_id)] == [Decimal("10.00")]
    assert exceptions(world)[("payment", queued.source_id)].status == "resolved"
    world.assert_exactly_once(data)


async def test_a_create_that_spent_its_retries_is_linked_before_payments(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    # The look-ups inside the create's retries fail; the sweep before payments succeeds.
    lose_a_create_and_its_lookups(world, lookups=8)

    summary = await world.sync(bulk=False)

    assert summary.counts["intents_reconciled"] == 1
    assert intents(world) == []
    world.assert_exactly_once(data)


async def test_an_open_intent_of_a_bill_that_never_left_is_closed_and_the_bill_created(
    tmp_path: Path,
) -> None:
    world, data = World.create(tmp_path, SPEC)
    source_id = data.ready_ids[0]
    async with world.engine() as engine:  # killed after the intent's commit, before the send
        await engine.ledger.begin_intents("bill", [(source_id, "v1")])

    summary = await world.sync(bulk=False)

    assert summary.counts["intents_not_created"] == 1
    [closed] = intents(world, IntentStatus.FAILED)
    assert closed.source_id == source_id
    assert intents(world) == []
    world.assert_exactly_once(data)


async def test_payments_are_looked_up_before_they_are_posted(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    await world.sync()
    source_id = data.ready_ids[0]
    [bill] = world.sink.bill_for_payable(source_id)
    world.sink.pay_bill(bill.id, Decimal("5.00"))
    # Posted, answer lost every time: the reference ERP (like an ERP API) does not dedupe.
    world.erp.faults.apply_then_fail("record_payment", on_call=1, times=3)

    summary = await world.sync()

    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert [p.amount for p in world.erp.payments_for(source_id)] == [Decimal("5.00")]
    assert intents(world) == []


async def test_a_payment_posted_before_a_crash_is_found_by_the_sweep(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    await world.sync()
    source_id = data.ready_ids[0]
    [bill] = world.sink.bill_for_payable(source_id)
    world.sink.pay_bill(bill.id, Decimal("5.00"))
    world.erp.faults.apply_then_fail("record_payment", on_call=1)
    # The look before posting works; the look after the lost answer fails.
    world.erp.faults.fail("find_payment", FaultKind.TRANSIENT, on_call=2, times=1000)
    first = await world.sync()
    assert first.counts["payments_failed"] == 1
    [intent] = intents(world)

    world.erp.faults.clear()
    second = await world.sync()

    assert second.counts["intents_reconciled"] == 1
    assert [p.amount for p in world.erp.payments_for(source_id)] == [Decimal("5.00")]
    assert intents(world) == []
    assert exceptions(world)[("payment", intent.source_id)].status == "resolved"


async def test_a_lost_account_create_answer_links_the_account(tmp_path: Path) -> None:
    spec = SeedSpec(seed=5, vendors=3, payables=12, held_share=0.0, unmapped_account=True)
    world, data = World.create(tmp_path, spec)
    world.sink.faults.apply_then_fail("create_account", on_call=1)

    summary = await world.sync(create_missing_accounts=True)

    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts["accounts_created"] == 1
    names = [a.name for a in world.sink.accounts.values()]
    assert len(names) == len(set(names))
    assert data.unmapped_account_id in links(world, "account")
    world.assert_exactly_once(data, {*data.ready_ids, *data.unmapped_ids})  # theirs went too


async def test_an_interrupted_account_create_is_linked_not_repeated(tmp_path: Path) -> None:
    spec = SeedSpec(seed=5, vendors=3, payables=12, held_share=0.0, unmapped_account=True)
    world, data = World.create(tmp_path, spec)
    account = world.erp.accounts[data.unmapped_account_id]
    world.sink.create_account(account)  # the create reached the sink; the process died
    async with world.engine() as engine:
        await engine.ledger.begin_intents("account", [(account.id, "1")])

    summary = await world.sync(create_missing_accounts=True)

    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts.get("accounts_created", 0) == 0
    assert len([a for a in world.sink.accounts.values() if a.name == account.name]) == 1
    assert intents(world) == []
    world.assert_exactly_once(data, {*data.ready_ids, *data.unmapped_ids})
