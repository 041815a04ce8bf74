"""Paging (bill.md §4) and payments with their bill applications (bill.md §5, §6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from plugins.bill.tests.support import START, draft, make_context, make_emulator, vendor

from ml_connector.context import ConnectionContext
from ml_connector.errors import InvalidRecordError, UpstreamError
from ml_connector.models import ChangeWindow, Payment, PaymentStatus
from ml_connector.testing import ManualClock
from ml_connector_bill import plugin
from ml_connector_bill.client import BillClient
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import BillCredentials, BillSettings

EVERYTHING = ChangeWindow(since=None, until=datetime(2030, 1, 1, tzinfo=UTC))


async def bills(
    ctx: ConnectionContext, emulator: BillEmulator, count: int, tag: str = "A"
) -> list[str]:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(tag), None)).sink_id
    account = emulator.account_id("6100")
    results = await plugin.create_bills(
        ctx, [draft(vendor_id, f"{tag}-{i}", account_id=account) for i in range(count)]
    )
    return [r.sink_id for r in results]


async def all_payments(
    ctx: ConnectionContext, window: ChangeWindow = EVERYTHING
) -> tuple[list[Payment], int, list[Any]]:
    items: list[Payment] = []
    rejected: list[Any] = []
    token, pages = None, 0
    while True:
        page = await plugin.list_changed_payments(ctx, window, token)
        items += page.items
        rejected += page.rejected
        pages += 1
        token = page.next_page_token
        if token is None:
            return items, pages, rejected


# --- Paging --------------------------------------------------------------------------------------


@pytest.mark.parametrize("last_page", ["omit", "null", "empty"])
async def test_paging_is_complete_however_the_last_page_ends(
    clock: ManualClock, last_page: str
) -> None:
    emulator = make_emulator(clock, last_page=last_page)
    ctx = make_context(emulator, page_size=3)
    ids = await bills(ctx, emulator, 10)
    for bill_id in ids:
        emulator.pay([bill_id])
    payments, pages, _ = await all_payments(ctx)
    assert len(payments) == 10
    assert len({p.sink_id for p in payments}) == 10
    assert pages == 4
    listed = [r for r in emulator.log.records if r.path.endswith("/v3/payments")]
    assert all(r.status == 200 for r in listed)
    await plugin.close_connection(ctx)


async def test_every_list_sends_max(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    client = BillClient.for_context(ctx)
    seen: list[httpx.Request] = []
    original = client._http.request

    async def spy(method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        seen.append(client._http.build_request(method, url, params=kwargs.get("params")))
        return await original(method, url, **kwargs)

    client._http.request = spy  # type: ignore[method-assign]
    await client.list_all("/v3/vendors")
    await client.aclose()
    lists = [r for r in seen if r.url.path.endswith("/v3/vendors")]
    assert lists
    assert lists[0].url.params["max"] == "100"  # never BILL's disputed default (§4)


async def test_max_outside_1_100_is_refused(emulator: BillEmulator) -> None:
    ctx = make_context(emulator)
    await plugin.authenticate(ctx)
    client: BillClient = ctx.state["bill.client"]
    for size in ("0", "101", "ten"):
        with pytest.raises(UpstreamError) as raised:
            await client.call("GET", "/v3/vendors", params={"max": size})
        assert raised.value.status == 400
    assert (await client.call("GET", "/v3/vendors", params={"max": "100"}))["results"] == []
    await plugin.close_connection(ctx)


def scripted_client(pages: list[dict[str, Any]]) -> BillClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v3/login"):
            return httpx.Response(200, json={"sessionId": "s"})
        token = request.url.params.get("page")
        index = 0 if token is None else int(token.removeprefix("t"))
        return httpx.Response(200, json=pages[index])

    settings = BillSettings.model_validate(
        {"organization_id": "008X", "environment": "custom", "base_url": "https://b.test/connect"}
    )
    credentials = BillCredentials.model_validate({"username": "u", "password": "p", "dev_key": "d"})
    http = httpx.AsyncClient(base_url=settings.api_url, transport=httpx.MockTransport(handler))
    return BillClient(http, settings, credentials)


async def test_an_empty_page_with_a_token_continues() -> None:
    client = scripted_client(
        [
            {"results": [{"id": "1"}], "nextPage": "t1"},
            {"results": [], "nextPage": "t2"},  # bill.md §4: empty but not the end
            {"results": [{"id": "2"}, {"id": "3"}]},
        ]
    )
    assert [r["id"] for r in await client.list_all("/v3/vendors")] == ["1", "2", "3"]


async def test_a_repeated_token_is_refused_rather_than_looped() -> None:
    client = scripted_client(
        [{"results": [{"id": "1"}], "nextPage": "t1"}, {"results": [], "nextPage": "t1"}]
    )
    with pytest.raises(UpstreamError, match="repeated a page token"):
        await client.list_all("/v3/vendors")


async def test_a_record_changed_while_paging_is_not_skipped(
    clock: ManualClock,
) -> None:
    emulator = make_emulator(clock)
    ctx = make_context(emulator, page_size=2)
    ids = await bills(ctx, emulator, 6)
    payments = [emulator.pay([b], single_status="SCHEDULED") for b in ids]
    first = await plugin.list_changed_payments(ctx, EVERYTHING, None)
    emulator.set_payment_status(payments[0], "SENT")  # moves to the end of updatedTime order
    emulator.set_payment_status(payments[5], "SENT")
    seen = {p.sink_id for p in first.items}
    token = first.next_page_token
    while token is not None:
        page = await plugin.list_changed_payments(ctx, EVERYTHING, token)
        seen |= {p.sink_id for p in page.items}
        token = page.next_page_token
    assert seen == set(payments)
    await plugin.close_connection(ctx)


# --- Payments ------------------------------------------------------------------------------------


async def test_a_payment_with_its_applications(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    first, second = await bills(ctx, emulator, 2)
    payment_id = emulator.pay(
        {first: None, second: Decimal("10.00")},
        process_date=datetime(2025, 3, 4).date(),
        transaction_number="TX-77",
    )
    payments, _, _ = await all_payments(ctx)
    (payment,) = payments
    assert payment.sink_id == payment_id
    assert payment.status is PaymentStatus.PAID
    assert payment.amount == Decimal("138.99")
    assert [(a.bill_sink_id, a.amount) for a in payment.applications] == [
        (first, Decimal("128.99")),
        (second, Decimal("10.00")),
    ]
    assert all(
        a.application_id and a.application_id.startswith("blp") for a in payment.applications
    )
    assert payment.process_date.isoformat() == "2025-03-04"
    assert payment.reference == "TX-77"
    assert await plugin.get_payment(ctx, payment_id) == payment
    assert await plugin.get_payment(ctx, "stp01NOSUCHPAYMENT00") is None


@pytest.mark.parametrize(
    ("single_status", "expected"),
    [
        ("SCHEDULED", PaymentStatus.SCHEDULED),
        ("FUNDING_STARTED", PaymentStatus.IN_PROCESS),
        ("PROCESSED", PaymentStatus.IN_PROCESS),
        ("DISBURSEMENT_ON_HOLD", PaymentStatus.IN_PROCESS),
        ("SENT", PaymentStatus.PAID),
        ("DELIVERED", PaymentStatus.PAID),
        ("CLEARED", PaymentStatus.PAID),
        ("FUNDS_ESCHEATED", PaymentStatus.PAID),
        ("DISBURSEMENT_FAILED_ACTION_NEEDED", PaymentStatus.FAILED),
        ("DISBURSEMENT_FAILED_VENDOR_BANK_REJECTED", PaymentStatus.FAILED),
        ("FUNDING_FAILED_ACTION_NEEDED", PaymentStatus.FAILED),
        ("FUNDING_FAILED_VOIDED", PaymentStatus.VOIDED),
        ("CANCELED", PaymentStatus.CANCELLED),
        ("VOIDED", PaymentStatus.VOIDED),
    ],
)
async def test_single_status_mapping(
    ctx: ConnectionContext, emulator: BillEmulator, single_status: str, expected: PaymentStatus
) -> None:
    (bill_id,) = await bills(ctx, emulator, 1)
    payment_id = emulator.pay([bill_id], single_status="SCHEDULED")
    emulator.set_payment_status(payment_id, single_status)
    payment = await plugin.get_payment(ctx, payment_id)
    assert payment is not None
    assert payment.status is expected


async def test_an_unknown_status_is_not_final(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    (bill_id,) = await bills(ctx, emulator, 1)
    payment_id = emulator.pay([bill_id])
    emulator.payments[payment_id]["singleStatus"] = "HELD_FOR_REVIEW"
    payment = await plugin.get_payment(ctx, payment_id)
    assert payment is not None
    assert payment.status is PaymentStatus.IN_PROCESS


async def test_the_window_is_half_open(clock: ManualClock) -> None:
    emulator = make_emulator(clock)
    ctx = make_context(emulator)
    ids = await bills(ctx, emulator, 3)
    made = [emulator.pay([b]) for b in ids]
    times = [datetime.fromisoformat(emulator.payments[p]["updatedTime"]) for p in made]
    middle = ChangeWindow(since=times[1], until=times[2])
    listed, _, _ = await all_payments(ctx, middle)
    assert [p.sink_id for p in listed] == [made[1]]
    later, _, _ = await all_payments(
        ctx, ChangeWindow(since=times[2], until=times[2] + timedelta(seconds=1))
    )
    assert [p.sink_id for p in later] == [made[2]]
    await plugin.close_connection(ctx)


async def test_without_an_updated_time_filter_every_payment_is_read(clock: ManualClock) -> None:
    # UNCONFIRMED (bill.md §6, §8): BILL may refuse updatedTime on payments.
    emulator = make_emulator(clock, payments_updated_filter=False)
    ctx = make_context(emulator, page_size=2)
    ids = await bills(ctx, emulator, 5)
    made = [emulator.pay([b]) for b in ids]
    since = datetime.fromisoformat(emulator.payments[made[2]]["updatedTime"])
    window = ChangeWindow(since=since, until=START + timedelta(days=1))
    listed, _, _ = await all_payments(ctx, window)
    assert [p.sink_id for p in listed] == made[2:]
    assert ctx.state["bill.payments_filter_by_updated_time"] is False
    assert any(r.status == 400 for r in emulator.log.records)
    # the next read goes straight to the fallback
    before = len(emulator.log.records)
    await all_payments(ctx, window)
    assert all(r.status == 200 for r in emulator.log.records[before:])
    await plugin.close_connection(ctx)


async def test_a_malformed_payment_is_rejected_not_fatal(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    good, bad = await bills(ctx, emulator, 2)
    ok_id = emulator.pay([good])
    bad_id = emulator.pay([bad])
    emulator.payments[bad_id]["amount"] = Decimal("1.00")  # applications no longer add up
    payments, _, rejected = await all_payments(ctx)
    assert [p.sink_id for p in payments] == [ok_id]
    assert [(r.record_id, r.field) for r in rejected] == [(bad_id, "billPayments")]
    with pytest.raises(InvalidRecordError):
        await plugin.get_payment(ctx, bad_id)


def test_numbers_and_dates_in_any_plausible_form() -> None:
    raw = {
        "id": "stp01X",
        "vendor": {"id": "00901V", "name": "Acme"},
        "billId": "00n01B",
        "amount": "228.99",
        "processDate": "2025-03-04T00:00:00.000Z",
        "singleStatus": "sent",
        "createdTime": "2025-03-01T09:00:00.000+0000",
    }
    payment = plugin.to_payment(raw)
    assert isinstance(payment, Payment)
    assert payment.amount == Decimal("228.99")
    assert payment.vendor_sink_id == "00901V"
    assert payment.status is PaymentStatus.PAID
    assert [(a.bill_sink_id, a.amount) for a in payment.applications] == [
        ("00n01B", Decimal("228.99"))
    ]
    assert payment.updated_at == datetime(2025, 3, 1, 9, tzinfo=UTC)
    missing = plugin.to_payment({"id": "stp01Y", "amount": 5, "billId": "00n1"})
    assert not isinstance(missing, Payment)
    assert missing.field in {"vendorId", "processDate", "updatedTime"}
