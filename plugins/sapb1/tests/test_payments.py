"""BILL payments recorded back as outgoing payments, once each, whatever happens on the way."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import InvalidRecordError, TransientError
from ml_connector.models import Payable
from ml_connector.testing import ManualClock

from ml_connector_sapb1 import plugin
from ml_connector_sapb1._payments import TRANSFER_REFERENCE_MAX
from ml_connector_sapb1.emulator import BANK_ACCOUNT, SapB1Emulator
from ml_connector_sapb1.schemas import Credentials, Settings

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import sapb1_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.sapb1.tests import sapb1_testkit as kit  # type: ignore[import-not-found,no-redef]

PAYMENT = "stp01AbCdEfGhIjKlMnO"  # a BILL payment id: 20 characters


@pytest.fixture
def emu() -> SapB1Emulator:
    return kit.emulator(ManualClock(kit.START))


@pytest.fixture
def company(emu: SapB1Emulator) -> kit.Company:
    return kit.Company(emu)


async def _payables(
    emu: SapB1Emulator, version: str = "v1", **overrides: Any
) -> tuple[ConnectionContext[Settings, Credentials], dict[str, Payable], kit.Recording]:
    recording = kit.Recording(emu.transport())
    ctx = kit.context(emu, version, transport=recording, **overrides)
    await plugin.authenticate(ctx)
    read = await kit.read_all(ctx, kit.window(emu))
    return ctx, {p.source_id: p for p in read.items}, recording


def _posts(recording: kit.Recording) -> list[Any]:
    return [
        kit.json_body(r)
        for r in recording.requests
        if r.method == "POST" and r.url.path.endswith("/VendorPayments")
    ]


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_a_payment_is_a_bank_transfer_applied_to_the_invoice(
    emu: SapB1Emulator, company: kit.Company, version: str
) -> None:
    entry = company.invoice("100.00", vat_sum=Decimal("8.25"))
    ctx, payables, recording = await _payables(emu, version)
    payable = payables[str(entry)]
    assert await plugin.find_payment(ctx, kit.posting(payable, PAYMENT)) is None
    recorded = await plugin.record_payment(ctx, kit.posting(payable, PAYMENT))
    assert recorded.already_recorded is False
    (body,) = _posts(recording)
    assert body == {
        "DocType": "rSupplier",
        "CardCode": company.acme,
        "DocDate": "2026-03-02",
        "TransferAccount": BANK_ACCOUNT,
        "TransferSum": 108.25,
        "TransferDate": "2026-03-02",
        "TransferReference": PAYMENT,
        "Remarks": f"BILL payment {PAYMENT}: BILL {PAYMENT}",
        "JournalRemarks": f"BILL payment {PAYMENT}",
        "PaymentInvoices": [
            {"DocEntry": entry, "SumApplied": 108.25, "InvoiceType": "it_PurchaseInvoice"}
        ],
    }
    raw = next(r for r in recording.requests if r.url.path.endswith("/VendorPayments")
               and r.method == "POST").content  # fmt: skip
    assert b'"TransferSum":108.25' in raw  # the amount's own digits, never a float's
    (payment,) = emu.payments_for(entry)
    assert str(payment["DocEntry"]) == recorded.source_id
    assert emu.invoice(entry)["DocumentStatus"] == "bost_Close"
    found = await plugin.find_payment(ctx, kit.posting(payable, PAYMENT))
    assert found is not None
    assert (found.source_id, found.already_recorded) == (recorded.source_id, True)
    await plugin.close_connection(ctx)


async def test_record_payment_looks_before_it_writes(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    entry = company.invoice("40.00")
    ctx, payables, recording = await _payables(emu)
    posting = kit.posting(payables[str(entry)], PAYMENT, Decimal("10.00"))
    first = await plugin.record_payment(ctx, posting)
    again = await plugin.record_payment(ctx, posting)  # a core that did not look, say
    assert (again.source_id, again.already_recorded) == (first.source_id, True)
    assert len(_posts(recording)) == 1
    assert len(emu.payments_for(entry)) == 1
    lookups = [
        r for r in recording.requests if r.method == "GET" and "VendorPayments" in r.url.path
    ]
    assert lookups[0].url.params["$filter"] == f"TransferReference eq '{PAYMENT}'"
    await plugin.close_connection(ctx)


async def test_one_bill_payment_over_two_invoices_is_one_b1_payment_each(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    first, second = company.invoice("10.00"), company.invoice("20.00")
    ctx, payables, _ = await _payables(emu)
    one = kit.posting(payables[str(first)], PAYMENT)
    other = kit.posting(payables[str(second)], PAYMENT)
    await plugin.record_payment(ctx, one)
    assert await plugin.find_payment(ctx, other) is None  # same reference, other invoice
    await plugin.record_payment(ctx, other)
    assert len(emu.payments_for(first)) == len(emu.payments_for(second)) == 1
    await plugin.close_connection(ctx)


async def test_a_lost_answer_is_found_not_posted_again(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    entry = company.invoice("75.00")
    ctx, payables, recording = await _payables(emu)
    posting = kit.posting(payables[str(entry)], PAYMENT)
    # The payment is applied, and the answer lost on the way back (a crash, a proxy): the
    # client must not send the POST again on its own.
    emu.faults.add(
        FaultAction(502, after_apply=True), method="POST", path_contains="VendorPayments"
    )
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    assert len(_posts(recording)) == 1
    found = await plugin.find_payment(ctx, posting)  # what the engine does next
    assert found is not None
    assert found.already_recorded
    again = await plugin.record_payment(ctx, posting)
    assert again.source_id == found.source_id
    assert len(_posts(recording)) == 1
    assert len(emu.payments_for(entry)) == 1
    await plugin.close_connection(ctx)


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_a_session_that_expired_under_the_post_is_renewed_looked_up_and_sent_once(
    emu: SapB1Emulator, company: kit.Company, version: str
) -> None:
    entry = company.invoice("75.00")
    ctx, payables, recording = await _payables(emu, version)
    emu.faults.add(FaultAction(401, kind="session"), method="POST", path_contains="VendorPayments")
    recorded = await plugin.record_payment(ctx, kit.posting(payables[str(entry)], PAYMENT))
    assert len(_posts(recording)) == 2  # the refused one (401: not applied) and the one sent
    assert emu.logins == 2
    (payment,) = emu.payments_for(entry)
    assert str(payment["DocEntry"]) == recorded.source_id
    lookups = [
        r for r in recording.requests if r.method == "GET" and "VendorPayments" in r.url.path
    ]
    assert len(lookups) == 2  # looked again after the new login, before the resend
    await plugin.close_connection(ctx)


async def test_a_cancelled_payment_does_not_count(emu: SapB1Emulator, company: kit.Company) -> None:
    entry = company.invoice("30.00")
    ctx, payables, _ = await _payables(emu)
    posting = kit.posting(payables[str(entry)], PAYMENT, Decimal("10.00"))
    recorded = await plugin.record_payment(ctx, posting)
    emu.books.cancel_payment(int(recorded.source_id))  # a clerk cancels it in B1
    assert await plugin.find_payment(ctx, posting) is None
    await plugin.close_connection(ctx)


async def test_an_id_longer_than_transfer_reference_is_refused_before_anything_is_sent(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    entry = company.invoice("30.00")
    ctx, payables, recording = await _payables(emu)
    too_long = "stp" + "x" * (TRANSFER_REFERENCE_MAX - 2)
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(payables[str(entry)], too_long))
    assert caught.value.field == "TransferReference"
    assert "27" in caught.value.reason
    assert _posts(recording) == []
    assert await plugin.find_payment(ctx, kit.posting(payables[str(entry)], too_long)) is None
    await plugin.close_connection(ctx)


async def test_an_invoice_closed_cancelled_or_gone_in_b1_is_refused_naming_why(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    closed, cancelled = company.invoice("10.00"), company.invoice("11.00")
    ctx, payables, recording = await _payables(emu)
    emu.pay_invoice(closed, reference="CHK-9")  # paid by a clerk in B1 meanwhile
    emu.cancel_invoice(cancelled)
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(payables[str(closed)], PAYMENT))
    assert caught.value.field == "DocumentStatus"
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(payables[str(cancelled)], PAYMENT))
    assert caught.value.field == "Cancelled"
    gone = payables[str(closed)].model_copy(update={"source_id": "9999"})
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(gone, PAYMENT))
    assert caught.value.field == "DocEntry"
    assert _posts(recording) == []
    await plugin.close_connection(ctx)


async def test_a_foreign_currency_invoice_is_refused_not_guessed(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    entry = company.invoice("10.00")
    ctx, payables, recording = await _payables(emu)
    emu.books.invoices[entry].update(DocCurrency="EUR", DocTotalFc=Decimal("9.00"))
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(payables[str(entry)], PAYMENT))
    assert caught.value.field == "DocCurrency"
    assert _posts(recording) == []
    await plugin.close_connection(ctx)


async def test_payment_drafts_are_looked_at_where_served(
    emu: SapB1Emulator, company: kit.Company
) -> None:
    # The emulator serves no PaymentDrafts (404): the lookup goes on without them, and asks no
    # more after the first 404.
    entry = company.invoice("10.00")
    ctx, payables, recording = await _payables(emu)
    posting = kit.posting(payables[str(entry)], PAYMENT)
    assert await plugin.find_payment(ctx, posting) is None
    assert await plugin.find_payment(ctx, posting) is None
    drafts = [r for r in recording.requests if "PaymentDrafts" in r.url.path]
    assert len(drafts) == 1
    await plugin.close_connection(ctx)


def test_the_remarks_fit_their_columns() -> None:
    from ml_connector_sapb1._payments import JOURNAL_REMARKS_MAX, REMARKS_MAX, _remarks

    payable = Payable.model_validate(
        {
            "source_id": "1", "document_number": "1", "invoice_number": "A",
            "vendor": {"source_id": "V1", "name": "Acme"}, "invoice_date": date(2026, 3, 2),
            "due_date": date(2026, 3, 2), "total": "1", "modified_at": kit.START,
            "lines": [{"line_id": "0", "amount": "1", "account_id": "6100"}],
        }
    )  # fmt: skip
    posting = kit.posting(payable, "s" * TRANSFER_REFERENCE_MAX)
    long_reference = posting.model_copy(update={"reference": "r" * 400})
    remarks, journal = _remarks(long_reference)
    assert len(remarks) <= REMARKS_MAX
    assert len(journal) <= JOURNAL_REMARKS_MAX
    assert posting.payment_sink_id in remarks
    assert posting.payment_sink_id in journal
