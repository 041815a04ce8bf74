"""The emulator's VendorPayments: B1's validations, PaidToDate and closing, cancelling (§5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ml_connector.emulation import EmulatorOptions
from ml_connector.testing import ManualClock

from ml_connector_sapb1.emulator import (
    BANK_ACCOUNT,
    CASH_ACCOUNT,
    COMPANY_DB,
    USERNAME,
    SapB1Emulator,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HOST = "http://sapb1.test"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def emu(clock: ManualClock) -> SapB1Emulator:
    # A long idle timeout: these tests move the clock by hours between requests.
    emulator = SapB1Emulator(EmulatorOptions(clock=clock, extra={"session_timeout": 600}))
    emulator.add_supplier("V1", name="Acme Office Supply")
    emulator.add_supplier("V2", name="Bolt Freight")
    emulator.add_customer("C1", name="Norm Retail")
    emulator.add_account("6100", "Office Supplies")
    return emulator


@pytest.fixture
async def http(emu: SapB1Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=emu.transport(), base_url=HOST) as client:
        for root in ("/b1s/v1", "/b1s/v2"):
            body = {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": emu.password}
            assert (await client.post(f"{root}/Login", json=body)).status_code == 200
        yield client


def invoice(emu: SapB1Emulator, amount: str = "100.00", card_code: str = "V1", **kw: Any) -> int:
    line = {"AccountCode": "6100", "ItemDescription": "x", "LineTotal": Decimal(amount)}
    return emu.add_invoice(card_code, [line], **kw)


def payment(entry: int, amount: Any, card_code: str = "V1", **more: Any) -> dict[str, Any]:
    return {
        "CardCode": card_code,
        "DocDate": "2026-01-06",
        "TransferAccount": BANK_ACCOUNT,
        "TransferSum": amount,
        "TransferDate": "2026-01-06",
        "TransferReference": "BILL-PAY-1",
        "PaymentInvoices": [
            {"DocEntry": entry, "SumApplied": amount, "InvoiceType": "it_PurchaseInvoice"}
        ],
        **more,
    }


async def refused(http: httpx.AsyncClient, body: dict[str, Any], root: str = "/b1s/v1") -> Any:
    answer = await http.post(f"{root}/VendorPayments", json=body)
    assert answer.status_code == 400, answer.text
    return answer.json()["error"]


async def test_a_payment_raises_paid_to_date_and_closes_the_invoice_when_paid(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    entry = invoice(emu, "100.00")
    clock.advance(timedelta(hours=2, minutes=15))
    first = await http.post("/b1s/v1/VendorPayments", json=payment(entry, 40.25))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["odata.metadata"].endswith("$metadata#VendorPayments/@Element")
    assert first.headers["location"] == f"/b1s/v1/VendorPayments({body['DocEntry']})"
    assert (body["CardCode"], body["CardName"], body["DocType"]) == (
        "V1", "Acme Office Supply", "rSupplier",
    )  # fmt: skip
    assert (body["TransferReference"], body["DocDate"], body["Cancelled"]) == (
        "BILL-PAY-1", "2026-01-06", "tNO",
    )  # fmt: skip
    assert body["DocObjectCode"] == "bopot_OutgoingPayments"
    assert body["PaymentInvoices"][0]["InvoiceType"] == "it_PurchaseInvoice"
    assert "UpdateDate" not in body  # payments have no change stamp (§5)
    partly = emu.invoice(entry)
    assert (partly["PaidToDate"], partly["DocumentStatus"]) == (Decimal("40.25"), "bost_Open")
    assert (partly["UpdateDate"], partly["UpdateTime"]) == (date(2026, 1, 5), time(11, 15))
    clock.advance(timedelta(minutes=1))
    rest = await http.post("/b1s/v2/VendorPayments", json=payment(entry, "59.75"))
    assert rest.status_code == 201, rest.text
    assert rest.json()["DocDate"] == "2026-01-06T00:00:00Z"
    paid = emu.invoice(entry)
    assert (paid["PaidToDate"], paid["DocumentStatus"], paid["UpdateTime"]) == (
        Decimal("100.00"), "bost_Close", time(11, 16),
    )  # fmt: skip
    assert len(emu.payments_for(entry)) == 2
    closed = await refused(http, payment(entry, 1))
    assert (closed["code"], "closed" in closed["message"]["value"]) == (-5002, True)


async def test_no_idempotency_the_same_reference_twice_makes_two_payments(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    entry = invoice(emu, "100.00")
    for _ in range(2):
        answer = await http.post("/b1s/v1/VendorPayments", json=payment(entry, 10))
        assert answer.status_code == 201
    found = await http.get(
        "/b1s/v1/VendorPayments", params={"$filter": "TransferReference eq 'BILL-PAY-1'"}
    )
    assert len(found.json()["value"]) == 2
    assert emu.payments_carrying("BILL-PAY-1") == {("Acme Office Supply", ""): 2}
    by_card = await http.get(
        "/b1s/v2/VendorPayments", params={"$filter": "CardCode eq 'V1' and DocEntry gt 1"}
    )
    assert [p["DocEntry"] for p in by_card.json()["value"]] == [2]
    unknown = await http.get(
        "/b1s/v1/VendorPayments", params={"$filter": "UpdateDate ge '2026-01-01'"}
    )
    assert unknown.json()["error"]["code"] == -1000  # Payment has no UpdateDate (§5)


async def test_invoice_type_by_name_or_number_and_return_no_content(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    entry = invoice(emu)
    by_number = payment(entry, 10)
    by_number["PaymentInvoices"][0]["InvoiceType"] = 18
    assert (await http.post("/b1s/v1/VendorPayments", json=by_number)).status_code == 201
    by_text = payment(entry, 10)
    by_text["PaymentInvoices"][0]["InvoiceType"] = "18"
    quiet = await http.post(
        "/b1s/v1/VendorPayments", json=by_text, headers={"Prefer": "return-no-content"}
    )
    assert (quiet.status_code, quiet.headers["location"], quiet.content) == (
        204, "/b1s/v1/VendorPayments(2)", b"",
    )  # fmt: skip
    assert quiet.headers["preference-applied"] == "return-no-content"
    assert emu.invoice(entry)["PaidToDate"] == Decimal("20.00")


async def test_cash_and_mixed_means_of_payment(http: httpx.AsyncClient, emu: SapB1Emulator) -> None:
    entry = invoice(emu, "50.00")
    cash = payment(entry, 20, CashSum=20, CashAccount=CASH_ACCOUNT)
    del cash["TransferSum"], cash["TransferAccount"], cash["TransferDate"]
    assert (await http.post("/b1s/v1/VendorPayments", json=cash)).status_code == 201
    mixed = payment(entry, 30, TransferSum=10, CashSum=20, CashAccount=CASH_ACCOUNT)
    answer = await http.post("/b1s/v1/VendorPayments", json=mixed)
    assert answer.status_code == 201, answer.text
    assert emu.invoice(entry)["DocumentStatus"] == "bost_Close"


async def test_the_validations_b1_applies(http: httpx.AsyncClient, emu: SapB1Emulator) -> None:
    entry = invoice(emu, "100.00")
    other = invoice(emu, "100.00", card_code="V2")
    cancelled = invoice(emu, "10.00", cancelled=True)
    draft = emu.add_draft("V1", [{"AccountCode": "6100", "LineTotal": Decimal(5)}])
    no_type = payment(entry, 10)
    del no_type["PaymentInvoices"][0]["InvoiceType"]
    credit_note = payment(entry, 10)
    credit_note["PaymentInvoices"][0]["InvoiceType"] = "it_PurchaseCreditNote"
    twice = payment(entry, 120)
    twice["PaymentInvoices"] = [
        {"DocEntry": entry, "SumApplied": 60, "InvoiceType": "it_PurchaseInvoice"},
        {"DocEntry": entry, "SumApplied": 60, "InvoiceType": 18},
    ]
    cases: list[tuple[dict[str, Any], str]] = [
        (payment(entry, 10, card_code="C1"), "not a supplier"),
        (payment(entry, 10, card_code="NOPE"), "not a supplier"),
        (no_type, "it_Invoice is not a purchase invoice"),  # B1's default InvoiceType
        (credit_note, "it_PurchaseCreditNote is not a purchase invoice"),
        (payment(other, 10), f"no A/P invoice with DocEntry {other} for V1"),
        (payment(draft + 100, 10), f"no A/P invoice with DocEntry {draft + 100}"),
        (payment(cancelled, 10), f"document {cancelled} is cancelled"),
        (payment(entry, 0), "SumApplied must be positive"),
        (payment(entry, -5), "SumApplied must be positive"),
        (payment(entry, "100.01"), "exceeds its open balance 100.00"),
        (twice, "row 1: the amount applied to document 1 exceeds its open balance"),
        (payment(entry, 10, TransferSum=9), "means of payment (9.00) differ"),
        (payment(entry, 10, TransferAccount=None), "TransferAccount: G/L account None"),
        (payment(entry, 10, TransferAccount="9999"), "G/L account '9999' does not exist"),
        (payment(entry, 10, DocType="rCustomer"), "DocType rCustomer"),
        (payment(entry, 10, PaymentChecks=[{"CheckSum": 10}]), "PaymentChecks are not emulated"),
    ]
    for body, reason in cases:
        error = await refused(http, body)
        assert error["code"] == -5002, reason
        assert reason in error["message"]["value"]
    invalid = await refused(http, payment(entry, 10, Bogus="x"))
    assert invalid["code"] == -1000
    assert "Bogus" in invalid["message"]["value"]
    v2 = await refused(http, payment(entry, 10, card_code="C1"), root="/b1s/v2")
    assert v2["code"] == "-5002"
    assert isinstance(v2["message"], str)
    assert emu.invoice(entry)["PaidToDate"] == 0
    assert emu.books.payments == {}


async def test_cancel_gives_the_balance_back_once(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    entry = invoice(emu, "30.00")
    made = await http.post("/b1s/v1/VendorPayments", json=payment(entry, 30))
    number = made.json()["DocEntry"]
    assert emu.invoice(entry)["DocumentStatus"] == "bost_Close"
    clock.advance(timedelta(minutes=5))
    assert (await http.post(f"/b1s/v1/VendorPayments({number})/Cancel")).status_code == 204
    reopened = emu.invoice(entry)
    assert (reopened["PaidToDate"], reopened["DocumentStatus"], reopened["UpdateTime"]) == (
        Decimal("0.00"), "bost_Open", time(9, 5),
    )  # fmt: skip
    assert emu.payments_for(entry) == []
    assert len(emu.payments_for(entry, include_cancelled=True)) == 1
    again = await http.post(f"/b1s/v1/VendorPayments({number})/Cancel")
    assert again.json()["error"]["code"] == -5002
    missing = await http.post("/b1s/v1/VendorPayments(99)/Cancel")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, -2028)
    patch = await http.patch(f"/b1s/v1/VendorPayments({number})", json={"Remarks": "x"})
    assert patch.json()["error"]["code"] == -5006


async def test_pay_invoice_helper(emu: SapB1Emulator) -> None:
    entry = invoice(emu, "12.34")
    number = emu.pay_invoice(entry, reference="CHK-1")
    assert emu.payment(number)["TransferSum"] == Decimal("12.34")
    assert emu.invoice(entry)["DocumentStatus"] == "bost_Close"
    with pytest.raises(ValueError, match="closed"):
        emu.pay_invoice(entry, Decimal(1))
    with pytest.raises(ValueError, match="payments"):
        emu.cancel_invoice(entry)
