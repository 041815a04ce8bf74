"""BILL payments back: vendorPayment upserted by external id, applied to the bill, once."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import InvalidRecordError, TransientError
from ml_connector.models import PaymentPosting

from ml_connector_netsuite import plugin
from ml_connector_netsuite._payments import MAX_EXTERNAL_ID, external_id
from ml_connector_netsuite.emulator import NetSuiteEmulator
from ml_connector_netsuite.schemas import Credentials, Settings

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import netsuite_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.netsuite.tests import netsuite_testkit as kit  # type: ignore[import-not-found,no-redef]

SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def test_the_external_id_carries_the_payment_and_the_bill() -> None:
    assert external_id("stp01ABCDEF", "123") == "mlc-stp01ABCDEF-123"
    # NetSuite external ids: letters, digits, _ and - (a | is a multi-select delimiter)
    odd = external_id("pay|01 / x", "123")
    assert SAFE.match(odd)
    assert odd.endswith("-123")
    assert odd == external_id("pay|01 / x", "123")  # the same pair, the same id
    assert odd != external_id("pay|01 / y", "123")
    long = external_id("p" * 200, "123")
    assert len(long) <= MAX_EXTERNAL_ID
    assert SAFE.match(long)


async def _posting(
    emu: NetSuiteEmulator, amount: str = "40.00"
) -> tuple[ConnectionContext[Settings, Credentials], PaymentPosting]:
    company = kit.Company(emu)
    bill_id = company.bill("100.00", split=True)
    ctx = kit.context(emu)
    await plugin.authenticate(ctx)
    payable = await plugin.get_payable(ctx, str(bill_id))
    assert payable is not None
    posting = PaymentPosting(
        payment_sink_id="stp01PAYMENT1",
        payable=payable,
        amount=Decimal(amount),
        paid_on=date(2026, 1, 9),
        reference="CHK-1001",
    )
    return ctx, posting


async def test_a_payment_is_applied_to_its_bill_and_a_replay_updates_it() -> None:
    emu = kit.emulator()
    ctx, posting = await _posting(emu)
    bill_id = int(posting.payable.source_id)
    assert await plugin.find_payment(ctx, posting) is None
    recorded = await plugin.record_payment(ctx, posting)
    (payment,) = emu.payments_for(bill_id)
    assert str(payment["id"]) == recorded.source_id
    assert payment["externalid"] == f"mlc-stp01PAYMENT1-{bill_id}"
    assert payment["amount"] == Decimal("40.00")
    settings = kit.settings(emu)
    assert str(payment["apacct"]) == settings.ap_account_id
    assert str(payment["account"]) == settings.bank_account_id
    assert str(payment["subsidiary"]) == settings.subsidiary_id
    assert payment["trandate"] == date(2026, 1, 9)

    found = await plugin.find_payment(ctx, posting)
    assert found is not None
    assert found.source_id == recorded.source_id
    assert found.already_recorded

    again = await plugin.record_payment(ctx, posting)  # a replay: the same record, updated
    assert again.source_id == recorded.source_id
    assert len(emu.payments_for(bill_id)) == 1


async def test_another_bill_payment_is_another_record() -> None:
    emu = kit.emulator()
    ctx, posting = await _posting(emu)
    await plugin.record_payment(ctx, posting)
    second = posting.model_copy(update={"payment_sink_id": "stp01PAYMENT2"})
    assert await plugin.find_payment(ctx, second) is None
    await plugin.record_payment(ctx, second)
    assert len(emu.payments_for(int(posting.payable.source_id))) == 2


async def test_a_lost_answer_then_a_retry_pays_once() -> None:
    emu = kit.emulator()
    ctx, posting = await _posting(emu)
    emu.faults.add(FaultAction(502, after_apply=True), method="PUT", path_contains="vendorPayment")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    found = await plugin.find_payment(ctx, posting)
    assert found is not None  # the write happened: the core stops here
    await plugin.record_payment(ctx, posting)  # and even a blind retry updates, not duplicates
    assert len(emu.payments_for(int(posting.payable.source_id))) == 1


async def test_a_refused_payment_names_the_field() -> None:
    emu = kit.emulator()
    ctx, posting = await _posting(emu)
    await plugin.close_connection(ctx)
    ctx = kit.context(emu, bank_account_id=None)
    await plugin.authenticate(ctx)
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, posting)
    assert caught.value.field == "account"
    assert emu.payments_for(int(posting.payable.source_id)) == []


async def test_without_a_subsidiary_setting_the_bills_subsidiary_is_used() -> None:
    emu = kit.emulator()
    company = kit.Company(emu)
    bill_id = company.bill("30.00", subsidiary=2)
    emu.books.vendors[company.acme].subsidiaries.add(2)
    ctx = kit.context(emu, subsidiary_id=None)
    await plugin.authenticate(ctx)
    payable = await plugin.get_payable(ctx, str(bill_id))
    assert payable is not None
    posting = PaymentPosting(
        payment_sink_id="stp01X",
        payable=payable,
        amount=Decimal("30.00"),
        paid_on=date(2026, 1, 9),
        reference="CHK-1",
    )
    await plugin.record_payment(ctx, posting)
    (payment,) = emu.payments_for(bill_id)
    assert payment["subsidiary"] == 2


async def test_find_falls_back_to_suiteql_when_an_eid_read_is_refused() -> None:
    emu = kit.emulator()
    ctx, posting = await _posting(emu)
    recorded = await plugin.record_payment(ctx, posting)
    emu.faults.add(FaultAction(400, kind="invalid_parameter"), method="GET", path_contains="eid:")
    found = await plugin.find_payment(ctx, posting)
    assert found is not None
    assert found.source_id == recorded.source_id
