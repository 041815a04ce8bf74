"""Webhook subscriptions, deliveries and their signatures (bill.md §6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from plugins.bill.tests.support import draft, make_context, make_emulator, vendor
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import InvalidRecordError, UpstreamError, WebhookVerificationError
from ml_connector.models import WebhookSubscription
from ml_connector.testing import ManualClock
from ml_connector_bill import plugin
from ml_connector_bill.client import BillClient
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import dumps, sign

URL = "https://connector.example/webhooks/acme"
EVENTS = ["payment.updated", "payment.failed"]


class Receiver:
    """A webhook receiver behind an httpx MockTransport: records, answers as told."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [200]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status)


def with_receiver(clock: ManualClock, receiver: Receiver, **extra: Any) -> BillEmulator:
    return make_emulator(clock, delivery_transport=httpx.MockTransport(receiver), **extra)


async def paid_bill(ctx: ConnectionContext, emulator: BillEmulator) -> str:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    bill = await plugin.create_bill(
        ctx, draft(vendor_id, "INV-W", account_id=emulator.account_id("6100"))
    )
    return emulator.pay([bill.sink_id])


async def subscribe(
    ctx: ConnectionContext, existing: WebhookSubscription | None = None
) -> WebhookSubscription:
    return await plugin.ensure_webhook_subscription(ctx, URL, EVENTS, existing)


def stored(sub: WebhookSubscription) -> WebhookSubscription:
    """The subscription as the core keeps it: without the key (that is in its vault)."""
    return sub.model_copy(update={"security_key": None})


# --- Subscriptions -------------------------------------------------------------------------------


async def test_create_returns_the_key_once(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    sub = await subscribe(ctx)
    assert sub.security_key is not None
    assert sub.security_key.get_secret_value() == emulator.security_key(sub.sink_id)
    assert (sub.enabled, sub.events, sub.notification_url) == (True, tuple(sorted(EVENTS)), URL)
    again = await subscribe(ctx, stored(sub))
    assert (again.sink_id, again.security_key) == (sub.sink_id, None)
    assert len(emulator.subscriptions) == 1
    create = [r for r in emulator.log.records if r.method == "POST" and "subscriptions" in r.path]
    assert [r.status for r in create] == [200]  # the webhook API answers creates with 200
    client: BillClient = ctx.state["bill.client"]
    listed = await client.call("GET", "/v3/subscriptions", events=True)
    fetched = await client.call("GET", f"/v3/subscriptions/{sub.sink_id}", events=True)
    assert "securityKey" not in json.dumps(listed) + json.dumps(fetched, default=str)


async def test_a_disabled_subscription_is_re_enabled(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    sub = await subscribe(ctx)
    emulator.disable_subscription(sub.sink_id)
    again = await subscribe(ctx, stored(sub).model_copy(update={"enabled": False}))
    assert again.enabled
    assert again.security_key is None
    assert emulator.subscriptions[sub.sink_id]["status"] == {"enabled": True}
    patches = [r for r in emulator.log.records if r.method == "PATCH"]
    assert len(patches) == 1


async def test_changed_events_are_updated(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    sub = await subscribe(ctx)
    more = await plugin.ensure_webhook_subscription(
        ctx, URL, [*EVENTS, "bill.updated"], stored(sub)
    )
    assert more.sink_id == sub.sink_id
    assert "bill.updated" in more.events
    assert len(emulator.subscriptions) == 1


async def test_a_deleted_subscription_is_created_again(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    sub = await subscribe(ctx)
    client: BillClient = ctx.state["bill.client"]
    await client.delete_subscription(sub.sink_id)
    await client.delete_subscription(sub.sink_id)  # gone already: fine
    again = await subscribe(ctx, stored(sub))
    assert again.sink_id != sub.sink_id
    assert again.security_key is not None


async def test_a_subscription_without_a_known_key_gets_a_new_key(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    first = await subscribe(ctx)
    # the core lost its row: BILL refuses a duplicate, and shows a key only once
    adopted = await subscribe(ctx, None)
    assert adopted.sink_id == first.sink_id
    assert adopted.security_key is not None
    assert adopted.security_key.get_secret_value() == emulator.security_key(first.sink_id)
    assert adopted.security_key != first.security_key
    assert len(emulator.subscriptions) == 1


async def test_rotation_falls_back_to_the_hyphenated_path(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    sub = await subscribe(ctx)
    emulator.faults.add(FaultAction(404, kind="no_such_api"), path_contains="/security_key")
    client: BillClient = ctx.state["bill.client"]
    key = await client.rotate_security_key(sub.sink_id, str(uuid.uuid4()))
    assert key.get_secret_value() == emulator.security_key(sub.sink_id)
    assert any(r.path.endswith("/security-key") for r in emulator.log.records)


async def test_a_lost_create_answer_is_replayed_with_the_same_key(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    emulator.faults.add(
        FaultAction(502, after_apply=True), method="POST", path_contains="/v3/subscriptions"
    )
    with pytest.raises(UpstreamError):
        await subscribe(ctx)
    assert len(emulator.subscriptions) == 1  # applied, but the answer (and key) was lost
    again = await subscribe(ctx)  # as the engine's retry would
    assert again.security_key is not None
    assert again.security_key.get_secret_value() == emulator.security_key(again.sink_id)
    assert len(emulator.subscriptions) == 1
    rotations = [r for r in emulator.log.records if "security" in r.path]
    assert rotations == []  # BILL replayed the first answer, key included


async def test_idempotency_key_rules(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    await plugin.authenticate(ctx)
    client: BillClient = ctx.state["bill.client"]
    body = {"name": "x", "status": {"enabled": True}, "events": [{"type": "bill.created",
            "version": "1"}], "notificationUrl": URL}  # fmt: skip
    for key in ("", "not-a-uuid", str(uuid.uuid1())):
        headers = {"X-Idempotent-Key": key} if key else {}
        with pytest.raises(UpstreamError) as raised:
            await client.call("POST", "/v3/subscriptions", events=True, body=body, headers=headers)
        assert raised.value.status == 400
    key = str(uuid.uuid4())
    held = emulator.hold("idempotent")
    first = asyncio.create_task(client.create_subscription(body, key))
    await held.reached.wait()
    with pytest.raises(UpstreamError) as raised:  # the same key while the first is in flight
        await client.create_subscription(body, key)
    assert raised.value.status == 429
    emulator.release()
    created = await first
    replayed = await client.create_subscription(body, key)
    assert replayed.id == created.id
    assert replayed.securityKey == created.securityKey
    assert len(emulator.subscriptions) == 1


async def test_subscription_limits(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    for i in range(10):
        await plugin.ensure_webhook_subscription(ctx, f"{URL}/{i}", EVENTS, None)
    with pytest.raises(UpstreamError) as raised:
        await plugin.ensure_webhook_subscription(ctx, f"{URL}/10", EVENTS, None)
    assert raised.value.status == 400
    client: BillClient = ctx.state["bill.client"]
    duplicate = {"name": "d", "status": {"enabled": True}, "events": [{"type": e} for e in EVENTS],
                 "notificationUrl": f"{URL}/3"}  # fmt: skip
    del emulator.subscriptions[next(iter(emulator.subscriptions))]
    with pytest.raises(UpstreamError) as raised:
        await client.create_subscription(duplicate, str(uuid.uuid4()))
    assert "exists" in str(raised.value)
    with pytest.raises(UpstreamError):  # HTTPS only
        await plugin.ensure_webhook_subscription(ctx, "http://example.com/hook", EVENTS, None)


async def test_the_webhook_api_wants_its_headers(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    http = httpx.AsyncClient(transport=emulator.transport(), base_url="http://e")
    missing = await http.get("/connect-events/v3/subscriptions")
    wrong = await http.get(
        "/connect-events/v3/subscriptions",
        headers={"devKey": emulator.config.dev_key, "sessionId": "nope"},
    )
    unknown = await http.get("/connect/v3/nowhere")
    await http.aclose()
    assert missing.status_code == 400
    assert wrong.status_code == 401
    assert wrong.json() == [
        {
            "timestamp": wrong.json()[0]["timestamp"],
            "code": "BDC_1109",
            "severity": "ERROR",
            "category": "DOWNSTREAM",
            "message": "Session is invalid.  Please log in.",
        }
    ]
    assert (unknown.status_code, unknown.json()[0]["code"]) == (404, "BDC_1121")


# --- Deliveries ----------------------------------------------------------------------------------


async def test_a_delivery_is_signed_and_verifies(clock: ManualClock) -> None:
    receiver = Receiver()
    emulator = with_receiver(clock, receiver)
    ctx = make_context(emulator)
    sub = await subscribe(ctx)
    payment_id = await paid_bill(ctx, emulator)
    assert await emulator.deliver_pending() == 1
    (request,) = receiver.requests
    assert str(request.url) == URL
    body = request.content
    assert body == dumps(json.loads(body, parse_float=str))  # minified JSON as sent
    assert sub.security_key is not None
    batch = await plugin.parse_webhook(ctx, dict(request.headers), body, sub.security_key)
    (event,) = batch.events
    assert (event.event_type, event.entity_type, event.entity_id) == (
        "payment.updated",
        "payment",
        payment_id,
    )
    assert batch.subscription_id == sub.sink_id
    assert event.payload["status"] == "SENT"
    await plugin.close_connection(ctx)


async def test_failed_deliveries_retry_then_disable_then_recover(clock: ManualClock) -> None:
    receiver = Receiver(500, 503, 404, 500, 500, 200)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    emulator = with_receiver(clock, receiver, delivery_backoff_scale=1.0, delivery_sleep=no_wait)
    ctx = make_context(emulator)
    sub = await subscribe(ctx)
    await paid_bill(ctx, emulator)
    assert await emulator.deliver_pending() == 0
    assert waits == [2.0, 4.0, 8.0, 16.0]  # bill.md §6
    assert [a.attempt for a in emulator.attempts] == [1, 2, 3, 4, 5]
    assert emulator.subscriptions[sub.sink_id]["status"] == {"enabled": False}
    again = await subscribe(ctx, stored(sub).model_copy(update={"enabled": False}))
    assert again.enabled
    emulator.set_payment_status(next(iter(emulator.payments)), "CLEARED")
    assert await emulator.deliver_pending() == 1
    await plugin.close_connection(ctx)


async def test_nothing_is_sent_while_disabled(clock: ManualClock) -> None:
    receiver = Receiver()
    emulator = with_receiver(clock, receiver)
    ctx = make_context(emulator)
    sub = await subscribe(ctx)
    emulator.disable_subscription(sub.sink_id)
    await paid_bill(ctx, emulator)
    assert await emulator.deliver_pending() == 0
    assert receiver.requests == []
    await plugin.close_connection(ctx)


async def test_duplicates_and_out_of_order_in_test_mode(clock: ManualClock) -> None:
    receiver = Receiver()
    emulator = with_receiver(clock, receiver, duplicate_deliveries=True, shuffle_deliveries=True)
    ctx = make_context(emulator)
    await subscribe(ctx)
    await paid_bill(ctx, emulator)
    assert await emulator.deliver_pending() == 2
    ids = [json.loads(r.content)["metadata"]["eventId"] for r in receiver.requests]
    assert len(ids) == 2
    assert len(set(ids)) == 1  # the same event twice: receivers dedupe on eventId
    await plugin.close_connection(ctx)


async def test_background_delivery(clock: ManualClock) -> None:
    receiver = Receiver()
    emulator = with_receiver(clock, receiver, auto_deliver=True)
    ctx = make_context(emulator)
    await subscribe(ctx)
    await paid_bill(ctx, emulator)
    await emulator.drain()
    assert len(receiver.requests) == 1
    await plugin.close_connection(ctx)


# --- Signatures ----------------------------------------------------------------------------------


def test_signing_matches_the_published_vectors() -> None:
    fox = b"The quick brown fox jumps over the lazy dog"
    assert sign(fox, "key") == "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
    body = (
        b'{"metadata":{"eventId":"{event_id}","subscriptionId":"{subscription_id}",'
        b'"organizationId":"{organization_id}","eventType":"bill.created","version":"1"},'
        b'"bill":{"id":"{bill_id}","vendorId":"{vendor_id}","invoice":{"invoiceNumber":"202401",'
        b'"invoiceDate":"2024-12-15T00:00:00.000Z"},"amount":228.99,'
        b'"createdTime":"2024-12-15T23:15:23.127+00:00","archived":false}}'
    )
    assert sign(body, "test-security-key") == "YsSjpHO01fhCwe2t3qdpC8zxKI/4GueJzW8InWgoK/0="


KEY = "delivery-signing-key"


def signed(payload: Any, *, key: str = KEY) -> tuple[dict[str, str], bytes]:
    body = dumps(payload)
    return {"X-Bill-Sha-Signature": sign(body, key)}, body


def event(event_type: str = "payment.updated", organization: str | None = None) -> dict[str, Any]:
    entity = event_type.split(".")[0]
    return {
        "metadata": {
            "eventId": "evt1",
            "subscriptionId": "sub1",
            "organizationId": organization or "00801EMULATEDORG001",
            "eventType": event_type,
            "version": "1",
        },
        entity: {"id": f"{entity}-1", "amount": Decimal("230.00"), "name": "Müller GmbH"},
    }


async def test_forged_truncated_and_tampered_deliveries_are_refused(
    ctx: ConnectionContext,
) -> None:
    headers, body = signed(event())
    key = SecretStr(KEY)
    assert (await plugin.parse_webhook(ctx, headers, body, key)).events
    attempts = [
        ({"x-bill-sha-signature": sign(body, "someone-else")}, body),  # forged signature
        (headers, body[:-5]),  # truncated body
        (headers, body.replace(b"230.00", b"23.00")),  # amount changed
        ({"x-bill-sha-signature": headers["X-Bill-Sha-Signature"][:-4]}, body),  # cut signature
        ({}, body),  # no signature
        ({"x-bill-sha-signature": ""}, body),
    ]
    for bad_headers, bad_body in attempts:
        with pytest.raises(WebhookVerificationError):
            await plugin.parse_webhook(ctx, bad_headers, bad_body, key)


async def test_a_re_serialised_body_verifies_against_the_minified_signature(
    ctx: ConnectionContext,
) -> None:
    # bill.md §6: what BILL signs is UNCONFIRMED; a signature over the minified JSON must
    # verify a body that arrives pretty-printed, with its numbers and non-ASCII text intact.
    headers, minified = signed(event())
    pretty = json.dumps(json.loads(minified, parse_float=str), indent=2).replace(
        '"230.00"', "230.00"
    )
    assert pretty.encode() != minified
    batch = await plugin.parse_webhook(ctx, headers, pretty.encode(), SecretStr(KEY))
    assert batch.events[0].entity_id == "payment-1"
    ascii_escaped = json.dumps(json.loads(minified), separators=(",", ":")).encode()
    ascii_headers = {"x-bill-sha-signature": sign(ascii_escaped, KEY)}
    assert (await plugin.parse_webhook(ctx, ascii_headers, minified, SecretStr(KEY))).events
    # a payload sent as a JSON string (bill.md §6, "JSON-escaped")
    escaped = json.dumps(minified.decode()).encode()
    as_string = {"x-bill-sha-signature": sign(escaped, KEY)}
    assert (await plugin.parse_webhook(ctx, as_string, escaped, SecretStr(KEY))).events


async def test_signed_bodies_that_are_not_our_events_are_refused(ctx: ConnectionContext) -> None:
    refused = (
        event(organization="00801SOMEONEELSE"),
        event("invoice.created"),
        {"metadata": {"eventType": "payment.updated"}},
        ["not", "an", "event"],
    )
    for payload in refused:
        headers, body = signed(payload)
        with pytest.raises(InvalidRecordError):
            await plugin.parse_webhook(ctx, headers, body, SecretStr(KEY))
    headers = {"x-bill-sha-signature": sign(b"not json", KEY)}
    with pytest.raises(InvalidRecordError):
        await plugin.parse_webhook(ctx, headers, b"not json", SecretStr(KEY))


async def test_vendor_and_bill_events_parse(ctx: ConnectionContext) -> None:
    for kind in ("vendor.updated", "bill.created"):
        headers, body = signed(event(kind))
        (parsed,) = (await plugin.parse_webhook(ctx, headers, body, SecretStr(KEY))).events
        assert (parsed.event_type, parsed.entity_type) == (kind, kind.split(".")[0])
