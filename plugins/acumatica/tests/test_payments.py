"""Recording BILL payments: a check applied to the bill, released, never twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from plugins.acumatica.tests.support import context, emulator

from ml_connector.emulation import FaultAction
from ml_connector.errors import TransientError
from ml_connector.models import PaymentPosting
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin
from ml_connector_acumatica.emulator import AcumaticaEmulator


async def posting_for(
    emu: AcumaticaEmulator, ctx, payment_id: str, amount: Decimal | None = None
) -> PaymentPosting:
    ref = emu.add_bill(
        "HILLTOPLAW",
        [("64000", "ADM-000", Decimal("900.00"), "Contract review"),
         ("64000", "ADM-000", Decimal("350.00"), "Filing")],
    )  # fmt: skip
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    return PaymentPosting(
        payment_sink_id=payment_id,
        payable=payable,
        amount=payable.total if amount is None else amount,
        paid_on=emu.now().date(),
        reference="ACH 000123",
    )


@pytest.mark.parametrize("polls", [0, 1])
async def test_payment_becomes_a_released_check_applied_to_the_bill(
    clock: ManualClock, polls: int
) -> None:
    emu = emulator(clock, action_polls=polls)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01PAYONE")
    recorded = await plugin.record_payment(ctx, posting)
    assert recorded.already_recorded is False
    [check] = emu.checks_for(posting.payable.source_id)
    assert check["ReferenceNbr"] == recorded.source_id
    assert (check["Type"], check["Status"], check["PaymentRef"]) == (
        "Payment",
        "Closed",
        "stp01PAYONE",
    )
    assert check["PaymentAmount"] == Decimal("1250.00")
    assert "ACH 000123" in check["Description"]
    assert (check["PaymentMethod"], check["CashAccount"]) == ("CHECK", "10200")  # vendor's
    bill = emu.bill(posting.payable.source_id)
    assert (bill["Status"], bill["Balance"]) == ("Closed", Decimal("0.00"))
    assert bill["Applications"][-1]["ReferenceNbr"] == recorded.source_id


async def test_the_same_payment_twice_is_one_check(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01TWICE")
    first = await plugin.record_payment(ctx, posting)
    second = await plugin.record_payment(ctx, posting)
    assert (first.already_recorded, second.already_recorded) == (False, True)
    assert second.source_id == first.source_id
    assert len(emu.checks_for(posting.payable.source_id)) == 1


async def test_partial_payments_add_up_and_close_the_bill(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    first = await posting_for(emu, ctx, "stp01PART1", Decimal("1000.00"))
    await plugin.record_payment(ctx, first)
    bill = emu.bill(first.payable.source_id)
    assert (bill["Status"], bill["Balance"]) == ("Open", Decimal("250.00"))
    rest = first.model_copy(update={"payment_sink_id": "stp01PART2", "amount": Decimal("250.00")})
    await plugin.record_payment(ctx, rest)
    assert (bill["Status"], bill["Balance"]) == ("Closed", Decimal("0.00"))
    assert len(emu.checks_for(first.payable.source_id)) == 2


async def test_one_bill_payment_for_two_bills_is_found_per_bill(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    one = await posting_for(emu, ctx, "stp01SHARED")
    two = await posting_for(emu, ctx, "stp01SHARED")
    a = await plugin.record_payment(ctx, one)
    b = await plugin.record_payment(ctx, two)
    assert a.source_id != b.source_id
    assert (await plugin.record_payment(ctx, two)).source_id == b.source_id


async def test_lost_answer_to_the_create_is_finished_on_retry(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01LOSTPUT")
    emu.faults.add(FaultAction(500, after_apply=True), method="PUT", path_contains="/Check")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    [check] = emu.checks_for(posting.payable.source_id)
    assert check["Status"] == "Balanced", "created, never released"
    again = await plugin.record_payment(ctx, posting)
    assert again.source_id == check["ReferenceNbr"]
    assert check["Status"] == "Closed"
    assert len(emu.checks_for(posting.payable.source_id)) == 1


async def test_lost_answer_to_the_release_is_recorded_on_retry(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01LOSTREL")
    emu.faults.add(FaultAction(503, after_apply=True), method="POST", path_contains="ReleaseCheck")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    # The release runs on in Acumatica and holds the session for a moment: the next call may
    # find it busy (transient, the engine retries), then finds the released check.
    with pytest.raises(TransientError, match="not been completed"):
        await plugin.record_payment(ctx, posting)
    again = await plugin.record_payment(ctx, posting)
    assert again.already_recorded is True
    assert [c["Status"] for c in emu.checks_for(posting.payable.source_id)] == ["Closed"]


async def test_a_check_left_on_hold_is_taken_off_hold_and_released(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01HELD")
    client = ctx.state["acumatica.client"]
    await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "HILLTOPLAW", "PaymentRef": "stp01HELD",
         "PaymentAmount": posting.amount, "Hold": True,
         "Details": [{"DocType": "Bill", "ReferenceNbr": posting.payable.source_id,
                      "AmountPaid": posting.amount}]},
    )  # fmt: skip
    recorded = await plugin.record_payment(ctx, posting)
    assert recorded.already_recorded is False
    assert [c["Status"] for c in emu.checks_for(posting.payable.source_id)] == ["Closed"]


async def test_payment_settings_override_the_vendor_defaults(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, payment_method="BILLCOM", cash_account="10250")
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01SETTINGS")
    await plugin.record_payment(ctx, posting)
    [check] = emu.checks_for(posting.payable.source_id)
    assert (check["PaymentMethod"], check["CashAccount"]) == ("BILLCOM", "10250")
