"""The reference sink plugin (BILL at the domain level), driven through a real PluginManager."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from core.tests.testing.helpers import ORG, T0, Side, draft, sink_ctx, vendor
from pydantic import SecretStr

from ml_connector.description import Capability, PluginInfo, Role
from ml_connector.errors import InvalidRecordError, NotFoundError, WebhookVerificationError
from ml_connector.models import (
    Account,
    AccountKind,
    Address,
    ChangeWindow,
    DimensionKind,
    PaymentStatus,
)
from ml_connector.testing import (
    SIGNATURE_HEADER,
    FakeSink,
    ManualClock,
    ReferenceSinkPlugin,
    SinkPayment,
    SinkPaymentApplication,
    sign,
)
from ml_connector.testing.reference_sink import PLUGIN_INFO

URL = "https://connector.example.com/webhooks/bill"


def test_description_declares_bills_limits_and_capabilities() -> None:
    info = PluginInfo.model_validate(PLUGIN_INFO)
    description = ReferenceSinkPlugin().describe_plugin()
    assert (description.system, description.role) == (info.system, Role.SINK)
    assert description.limits.max_in_flight == 3
    assert description.limits.scope_setting == "organization_id"
    assert description.limits.batch_size == 200
    assert description.capabilities == {
        Capability.BULK_CREATE_BILLS,
        Capability.CREATE_ACCOUNTS,
        Capability.WEBHOOKS,
    }
    assert "organization_id" in description.settings_model.model_fields


# --- Vendors -----------------------------------------------------------------------------------


async def test_vendors_are_created_found_by_name_and_updated(sink: FakeSink, bill: Side) -> None:
    created = await bill("upsert_vendor", vendor=vendor(1), existing_sink_id=None)
    assert created.created
    assert created.sink_id.startswith("009")

    found = await bill("find_vendor", vendor=vendor(1, name="  vendor 1   llc "))
    assert found is not None
    assert (found.sink_id, found.created) == (created.sink_id, False)
    assert await bill("find_vendor", vendor=vendor(2)) is None

    updated = await bill(
        "upsert_vendor", vendor=vendor(1, email="ap@v1.example"), existing_sink_id=created.sink_id
    )
    assert (updated.sink_id, updated.created) == (created.sink_id, False)
    assert sink.vendors[created.sink_id].email == "ap@v1.example"
    assert len(sink.vendors) == 1


async def test_a_vendor_without_address_is_refused_naming_the_field(bill: Side) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        await bill("upsert_vendor", vendor=vendor(7, address=None), existing_sink_id=None)
    assert (caught.value.record_type, caught.value.record_id) == ("vendor", "V7")
    assert caught.value.field == "address"
    with pytest.raises(InvalidRecordError) as caught:
        await bill(
            "upsert_vendor", vendor=vendor(7, address=Address(city="Austin")), existing_sink_id=None
        )
    assert caught.value.field == "address.line1"


async def test_duplicates_stay_visible(sink: FakeSink, bill: Side) -> None:
    # BILL accepts a second vendor of the same name: a careless engine shows up as a duplicate.
    await bill("upsert_vendor", vendor=vendor(1), existing_sink_id=None)
    await bill("upsert_vendor", vendor=vendor(1), existing_sink_id=None)
    assert [len(ids) for ids in sink.duplicate_vendors().values()] == [2]


# --- Bills -------------------------------------------------------------------------------------


async def test_bills_are_created_found_and_updated_while_unpaid(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    created = await bill("create_bill", draft=draft(sink, v.id))
    assert created.created
    assert created.sink_id.startswith("00n")
    assert not created.paid
    assert sink.bills[created.sink_id].lines[0].id.startswith("bli")

    found = await bill("find_bill", vendor_sink_id=v.id, invoice_number="INV-1")
    assert found is not None
    assert found.sink_id == created.sink_id
    assert not found.created
    assert await bill("find_bill", vendor_sink_id=v.id, invoice_number="INV-2") is None

    updated = await bill(
        "create_bill",
        draft=draft(sink, v.id, amounts=("70.00", "50.00"), existing_sink_id=created.sink_id),
    )
    assert (updated.sink_id, updated.created, updated.paid) == (created.sink_id, False, False)
    assert sink.bills[created.sink_id].amount == Decimal("120.00")
    assert len(sink.bills) == 1


async def test_a_paid_bill_is_left_alone(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    created = await bill("create_bill", draft=draft(sink, v.id))
    payment = sink.pay_bill(created.sink_id, Decimal("40.00"))  # partly paid is paid enough
    assert payment.id.startswith("stp")
    assert payment.status is PaymentStatus.PAID

    result = await bill(
        "create_bill",
        draft=draft(sink, v.id, amounts=("999.00",), existing_sink_id=created.sink_id),
    )

    assert result.paid
    assert not result.created
    assert sink.bills[created.sink_id].amount == Decimal("100.00")
    found = await bill("find_bill", vendor_sink_id=v.id, invoice_number="INV-1")
    assert found.paid


async def test_updating_a_bill_the_sink_no_longer_has(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    with pytest.raises(NotFoundError) as caught:
        await bill("create_bill", draft=draft(sink, v.id, existing_sink_id="00n404"))
    assert caught.value.code == "BDC_1205"


async def test_bulk_create_returns_results_in_order(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    results = await bill("create_bills", drafts=[draft(sink, v.id, n) for n in range(1, 6)])
    assert [sink.bills[r.sink_id].invoice_number for r in results] == [
        f"INV-{n}" for n in range(1, 6)
    ]
    assert all(r.created for r in results)


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        ("amount", "lines.1.amount"),
        ("vendor", "vendor_sink_id"),
        ("account", "lines.0.sink_account_id"),
        ("classification", "lines.0.classifications.department"),
        ("poison", "payable.invoice_number"),
    ],
)
async def test_bulk_create_is_all_or_nothing(
    sink: FakeSink, bill: Side, spoil: str, field: str
) -> None:
    v = sink.add_vendor(vendor(1))
    dept = sink.add_classification(DimensionKind.DEPARTMENT, "Sales")
    bad = {
        "amount": lambda: draft(sink, v.id, 3, amounts=("5.00", "0.00")),
        "vendor": lambda: draft(sink, "009unknown", 3),
        "account": lambda: draft(sink, v.id, 3, account_id="0ca-missing"),
        "classification": lambda: draft(
            sink, v.id, 3, classifications={DimensionKind.DEPARTMENT: "0de-missing"}
        ),
        "poison": lambda: draft(sink, v.id, 3),
    }[spoil]()
    if spoil == "poison":
        sink.poison("AP-0003", field="payable.invoice_number", reason="duplicate invoice")
    good = [
        draft(sink, v.id, n, classifications={DimensionKind.DEPARTMENT: dept.id}) for n in (1, 2, 4)
    ]

    with pytest.raises(InvalidRecordError) as caught:
        await bill("create_bills", drafts=[*good[:2], bad, good[2]])

    assert (caught.value.record_type, caught.value.record_id) == ("payable", "AP-0003")
    assert caught.value.field == field
    assert sink.bills == {}
    with pytest.raises(InvalidRecordError):
        await bill("create_bill", draft=bad)  # the single create refuses it the same way
    assert sink.bills == {}


async def test_create_account_copies_a_source_account(sink: FakeSink, bill: Side) -> None:
    created = await bill(
        "create_account", account=Account(id="7990", number="7990", name="Suspense Clearing")
    )
    assert created.id.startswith("0ca")
    assert created.number == "7990"
    assert sink.accounts[created.id].name == "Suspense Clearing"
    with pytest.raises(InvalidRecordError) as caught:
        await bill("create_account", account=Account(id="X", name="office supplies"))
    assert caught.value.field == "name"
    catalog = await bill("list_accounts")
    assert {a.id for a in catalog.accounts} == set(sink.accounts)


# --- Payments ----------------------------------------------------------------------------------


async def _paid_bills(sink: FakeSink, bill: Side, count: int) -> list[str]:
    v = sink.add_vendor(vendor(1))
    results = await bill("create_bills", drafts=[draft(sink, v.id, n) for n in range(count)])
    return [r.sink_id for r in results]


async def test_payments_are_listed_by_change_time_with_their_applications(
    sink: FakeSink,
) -> None:
    sink.clock = ManualClock(T0, tick=timedelta(seconds=1))
    side = Side(ReferenceSinkPlugin(), sink_ctx(page_size=2))
    await side("authenticate")
    bill_ids = await _paid_bills(sink, side, 5)
    paid = [sink.pay_bill(b) for b in bill_ids]
    window = ChangeWindow(since=T0, until=T0 + timedelta(hours=1))

    payments, token = [], None
    while True:
        page = await side("list_changed_payments", window=window, page_token=token)
        payments.extend(page.items)
        token = page.next_page_token
        if token is None:
            break

    assert [p.sink_id for p in payments] == [p.id for p in paid]
    assert payments[0].applications[0].bill_sink_id == bill_ids[0]
    assert payments[0].amount == Decimal("100.00")
    assert payments[0].status is PaymentStatus.PAID
    assert (await side("get_payment", sink_id=paid[2].id)).sink_id == paid[2].id
    assert await side("get_payment", sink_id="stp404") is None

    voided = sink.set_payment_status(paid[0].id, PaymentStatus.VOIDED)
    assert not sink.bills[bill_ids[0]].paid  # a voided payment no longer pays the bill
    page = await side(
        "list_changed_payments",
        window=ChangeWindow(since=voided.updated_at, until=T0 + timedelta(hours=1)),
        page_token=None,
    )
    assert [(p.sink_id, p.status) for p in page.items] == [(paid[0].id, PaymentStatus.VOIDED)]


async def test_a_malformed_payment_is_rejected(sink: FakeSink, bill: Side) -> None:
    (bill_id,) = await _paid_bills(sink, bill, 1)
    good = sink.pay_bill(bill_id, Decimal("10.00"))
    sink.put_payment(
        SinkPayment(
            id="stp-bad",
            vendor_id=good.vendor_id,
            amount=Decimal("50.00"),
            process_date=good.process_date,
            status=PaymentStatus.PAID,
            applications=[SinkPaymentApplication("blp-bad", bill_id, Decimal("20.00"))],
            created_at=good.updated_at,
            updated_at=good.updated_at,
        )
    )
    window = ChangeWindow(since=None, until=good.updated_at + timedelta(seconds=1))
    page = await bill("list_changed_payments", window=window, page_token=None)
    assert [p.sink_id for p in page.items] == [good.id]
    assert [(r.record_id, r.field) for r in page.rejected] == [("stp-bad", "applications")]
    with pytest.raises(InvalidRecordError):
        await bill("get_payment", sink_id="stp-bad")


# --- Webhooks ----------------------------------------------------------------------------------


async def test_subscription_created_repaired_and_rekeyed(sink: FakeSink, bill: Side) -> None:
    sub = await bill(
        "ensure_webhook_subscription",
        notification_url=URL,
        events=["payment.updated"],
        existing=None,
    )
    assert sub.enabled
    assert sub.security_key is not None
    assert sub.security_key.get_secret_value() == sink.subscriptions[sub.sink_id].security_key

    sink.disable_subscription(sub.sink_id)
    again = await bill(
        "ensure_webhook_subscription",
        notification_url=URL,
        events=["payment.updated"],
        existing=sub,
    )
    assert again.enabled
    assert again.security_key is None
    assert again.sink_id == sub.sink_id

    lost = await bill(  # the connector lost its record: BILL refuses a twin, so the key rotates
        "ensure_webhook_subscription",
        notification_url=URL,
        events=["payment.updated"],
        existing=None,
    )
    assert lost.sink_id == sub.sink_id
    assert lost.security_key is not None
    assert lost.security_key.get_secret_value() != sub.security_key.get_secret_value()
    assert len(sink.subscriptions) == 1


async def test_webhook_delivery_is_verified_then_parsed(sink: FakeSink, bill: Side) -> None:
    sub = await bill(
        "ensure_webhook_subscription",
        notification_url=URL,
        events=["payment.updated"],
        existing=None,
    )
    (bill_id,) = await _paid_bills(sink, bill, 1)
    payment = sink.pay_bill(bill_id)
    (delivery,) = sink.outbox
    assert delivery.url == URL

    headers = {k.upper(): v for k, v in delivery.headers.items()}  # lookups are case-insensitive
    batch = await bill(
        "parse_webhook", headers=headers, body=delivery.body, security_key=sub.security_key
    )

    (event,) = batch.events
    assert (event.event_type, event.entity_type, event.entity_id) == (
        "payment.updated",
        "payment",
        payment.id,
    )
    assert event.payload["billPayments"][0]["billId"] == bill_id
    assert batch.subscription_id == sub.sink_id


@pytest.mark.parametrize("tamper", ["forged", "truncated", "missing", "body", "key"])
async def test_webhook_with_a_wrong_signature_is_refused(bill: Side, tamper: str) -> None:
    body = json.dumps({"metadata": {"eventId": "e1"}}).encode()
    key = "the-key"
    signature = sign(body, key)
    headers = {
        "forged": {SIGNATURE_HEADER: sign(body, "another-key")},
        "truncated": {SIGNATURE_HEADER: signature[:-4]},
        "missing": {},
        "body": {SIGNATURE_HEADER: signature},
        "key": {SIGNATURE_HEADER: signature},
    }[tamper]
    sent = body + b" " if tamper == "body" else body
    secret = SecretStr("other" if tamper == "key" else key)
    with pytest.raises(WebhookVerificationError):
        await bill("parse_webhook", headers=headers, body=sent, security_key=secret)


def test_signature_matches_the_documented_test_vectors() -> None:
    # shared/api/bill.md §6: vectors computed with Python's hmac/base64.
    assert sign(b"The quick brown fox jumps over the lazy dog", "key") == (
        "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
    )
    body = (
        b'{"metadata":{"eventId":"{event_id}","subscriptionId":"{subscription_id}",'
        b'"organizationId":"{organization_id}","eventType":"bill.created","version":"1"},'
        b'"bill":{"id":"{bill_id}","vendorId":"{vendor_id}","invoice":{"invoiceNumber":"202401",'
        b'"invoiceDate":"2024-12-15T00:00:00.000Z"},"amount":228.99,'
        b'"createdTime":"2024-12-15T23:15:23.127+00:00","archived":false}}'
    )
    assert sign(body, "test-security-key") == "YsSjpHO01fhCwe2t3qdpC8zxKI/4GueJzW8InWgoK/0="


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b'{"bill":{}}', "metadata"),
        (b'{"metadata":{"eventId":"e","eventType":"bill.created","organizationId":"other"}}',
         "metadata.organizationId"),
        (b'{"metadata":{"eventId":"e","eventType":"bill.created","organizationId":"' + ORG.encode()
         + b'"}}', "bill"),
    ],
)  # fmt: skip
async def test_a_signed_but_unknown_body_is_an_invalid_record(
    bill: Side, body: bytes, field: str | None
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        await bill(
            "parse_webhook",
            headers={SIGNATURE_HEADER: sign(body, "k")},
            body=body,
            security_key=SecretStr("k"),
        )
    assert caught.value.field == field


async def test_classifications_are_bills_kinds_only(sink: FakeSink, bill: Side) -> None:
    dept = sink.add_classification(DimensionKind.DEPARTMENT, "Sales")
    assert dept.id.startswith("0de")
    with pytest.raises(ValueError, match="no subaccount"):
        sink.add_classification(DimensionKind.SUBACCOUNT, "East")
    catalog = await bill("list_accounts")
    assert catalog.dimensions == (dept,)
    assert catalog.accounts[0].kind is AccountKind.EXPENSE
