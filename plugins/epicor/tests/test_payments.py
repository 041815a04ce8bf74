"""Recording BILL payments through Payment Entry: the method sequence, once per payment."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from plugins.epicor.tests.helpers import Chart, context, emulator, read_all, window

from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    TransientError,
)
from ml_connector.models import Payable, PaymentPosting
from ml_connector_epicor import plugin
from ml_connector_epicor.client import payment_group_id
from ml_connector_epicor.emulator import EpicorEmulator

PAYMENT_CALLS = [
    "APChkGrps('EPIC06','{group}')",
    "GetNewAPChkGrp",
    "Update",
    "LockGroup",
    "CreateNewCheckHed",
    "OnChangeVendor",
    "OnChangeManualPrint",
    "OnChangeCheckDate",
    "GetNewAPTran",
    "OnChangeInvoiceNum",
    "OnChangeDocTranAmt",
    "Update",
    "GetNewParameters",
    "RunDirect",
]


async def _payables(emu: EpicorEmulator, *amounts: str) -> tuple[Chart, list[Payable]]:
    chart = Chart(emu)
    for amount in amounts:
        chart.invoice(amount)
    items, _ = await read_all(context(emu), window(emu))
    return chart, sorted(items, key=lambda p: p.total)


def _posting(payable: Payable, payment: str = "stp01ABCDEFGHIJ", amount: str | None = None
             ) -> PaymentPosting:  # fmt: skip
    return PaymentPosting(
        payment_sink_id=payment,
        payable=payable,
        amount=Decimal(amount) if amount else payable.total,
        paid_on=date(2025, 3, 5),
        reference=f"BILL {payment}",
    )


def _key(payable: Payable) -> tuple[int, str]:
    number, invoice = payable.source_id.split(":", 1)
    return int(number), invoice


async def test_a_payment_is_entered_through_the_documented_sequence_and_posted() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "250.00")
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.log.clear()
    result = await plugin.record_payment(ctx, _posting(payable))
    assert result.already_recorded is False
    calls = [r.path.rsplit("/", 1)[-1] for r in emu.log.records]
    assert calls[:2] == ["PaymentEntries", "Vendors"]  # looked up first
    group = payment_group_id("stp01ABCDEFGHIJ", *_key(payable))
    assert calls[2:] == [c.format(group=group) for c in PAYMENT_CALLS]
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["HeadNum"] == int(result.source_id)
    assert check["XRefCheckNum"] == "stp01ABCDEFGHIJ"
    assert check["Posted"] is tran["Posted"] is True
    assert (tran["InvoiceNum"], tran["DocTranAmt"]) == (payable.invoice_number, payable.total)
    head = emu.books.invoices[_key(payable)].head
    assert (head["DocInvoiceBal"], head["OpenPayable"]) == (Decimal("0.00"), False)
    assert group not in emu.books.groups  # posting removed the group


async def test_the_same_bill_payment_twice_is_one_payment() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "80.00")
    ctx = context(emu)
    first = await plugin.record_payment(ctx, _posting(payable))
    second = await plugin.record_payment(ctx, _posting(payable))
    again = await plugin.record_payment(context(emu), _posting(payable))  # another run
    assert (first.already_recorded, second.already_recorded, again.already_recorded) == (
        False, True, True,
    )  # fmt: skip
    assert first.source_id == second.source_id == again.source_id
    assert len(emu.books.payments_against(_key(payable))) == 1
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("0.00")


async def test_a_response_lost_after_update_is_not_entered_twice() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "120.00")
    ctx = context(emu)
    emu.faults.add(FaultAction(500, after_apply=True), method="POST",
                   path_contains="PaymentEntrySvc/Update")  # fmt: skip
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, _posting(payable))
    ((check, _),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is False  # saved, not yet posted
    retried = await plugin.record_payment(ctx, _posting(payable))  # the engine's retry
    assert retried.already_recorded is True
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is tran["Posted"] is True
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("0.00")


async def test_an_attempt_that_died_before_the_check_reuses_its_group() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "60.00")
    ctx = context(emu)
    emu.faults.add(FaultAction(503), method="POST", path_contains="CreateNewCheckHed")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, _posting(payable))
    assert len(emu.books.groups) == 1
    assert emu.books.checks == {}
    await plugin.record_payment(ctx, _posting(payable))
    assert len(emu.books.payments_against(_key(payable))) == 1
    assert emu.books.groups == {}


async def test_one_bill_payment_paying_two_invoices_is_recorded_against_each() -> None:
    emu = emulator()
    _, (small, large) = await _payables(emu, "10.00", "20.00")
    ctx = context(emu)
    one = await plugin.record_payment(ctx, _posting(small, "stp01SHARED"))
    two = await plugin.record_payment(ctx, _posting(large, "stp01SHARED"))
    assert one.source_id != two.source_id
    repeat = await plugin.record_payment(ctx, _posting(large, "stp01SHARED"))
    assert (repeat.source_id, repeat.already_recorded) == (two.source_id, True)
    assert len(emu.books.payments_against(_key(small))) == 1
    assert len(emu.books.payments_against(_key(large))) == 1


async def test_partial_payments_leave_the_rest_open_then_close_the_invoice() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "100.00")
    ctx = context(emu)
    await plugin.record_payment(ctx, _posting(payable, "stp01PART1", "40.00"))
    head = emu.books.invoices[_key(payable)].head
    assert (head["DocInvoiceBal"], head["OpenPayable"]) == (Decimal("60.00"), True)
    listed, _ = await read_all(ctx, window(emu))
    assert [p.source_id for p in listed] == [payable.source_id]
    assert listed[0] == payable.model_copy(update={"modified_at": listed[0].modified_at})
    await plugin.record_payment(ctx, _posting(payable, "stp01PART2", "60.00"))
    assert head["OpenPayable"] is False
    listed, _ = await read_all(ctx, window(emu))
    assert listed == []


async def test_unposted_payments_are_left_in_their_group_when_asked() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "70.00")
    ctx = context(emu, post_payments=False)
    first = await plugin.record_payment(ctx, _posting(payable))
    second = await plugin.record_payment(ctx, _posting(payable))
    ((check, _),) = emu.books.payments_against(_key(payable))
    assert (first.already_recorded, second.already_recorded) == (False, True)
    assert check["Posted"] is False
    assert check["GroupID"] in emu.books.groups


async def test_a_group_locked_by_someone_else_is_a_conflict() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    group = payment_group_id("stp01LOCKED", *_key(payable))
    emu.books.groups[group] = {"GroupID": group, "ActiveUserID": "jsmith", "BankAcctID": "BILLPAY",
                               "CheckDate": date(2025, 3, 5), "Company": "EPIC06"}  # fmt: skip
    with pytest.raises(ConflictError, match="locked by another user"):
        await plugin.record_payment(context(emu), _posting(payable, "stp01LOCKED"))
    assert emu.books.checks == {}


async def test_no_bank_account_configured_is_a_clear_error_before_any_write() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    ctx = context(emu, payment_bank_account=None)
    await plugin.authenticate(ctx)
    emu.log.clear()
    with pytest.raises(ConfigurationError, match="payment_bank_account"):
        await plugin.record_payment(ctx, _posting(payable))
    assert {r.method for r in emu.log.records} == {"GET"}


async def test_missing_rights_to_save_payments_are_reported() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    emu.deny(emu.USER, "Erp.BO.PaymentEntry.Update")
    with pytest.raises(AuthenticationError) as caught:
        await plugin.record_payment(context(emu), _posting(payable))
    assert caught.value.code == "access_denied"
    assert "Erp.BO.PaymentEntry.Update" in str(caught.value)
    assert emu.books.checks == {}


async def test_the_lookup_falls_back_to_getrows_when_odata_fails() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "45.00")
    ctx = context(emu)
    first = await plugin.record_payment(ctx, _posting(payable))
    emu.set_odata_500(1.0)
    second = await plugin.record_payment(context(emu), _posting(payable))
    assert (second.source_id, second.already_recorded) == (first.source_id, True)
    assert any(r.path.endswith("PaymentEntrySvc/GetRows") for r in emu.log.records)
