"""Webhook bodies no sender can make expensive (issue 15).

The signature is checked over the raw bytes before anything parses the body; the fallback that
re-serialises a body (what BILL signs is UNCONFIRMED, bill.md §6) parses it only within bounds.
So an unsigned body is refused in well under a millisecond or two whatever it holds, and a signed
one the plugin cannot use is an InvalidRecordError naming its event id, never another exception.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.errors import InvalidRecordError, WebhookVerificationError
from ml_connector_bill import plugin
from ml_connector_bill.schemas import sign

KEY = "delivery-signing-key"
FORGED = {"x-bill-sha-signature": base64.b64encode(bytes(32)).decode()}
SLOW = 0.05  # seconds; the old verifier spent 15 s on the 17-byte body below

HOSTILE = {
    "huge exponent": b'{"a":1e999999999}',
    "tiny exponent": b'{"a":-1e-999999999}',
    "long integer": b'{"a":' + b"9" * 100_000 + b"}",
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "unclosed": b"[" * 500_000,
    "lone surrogate": b'"\\ud800"',
    "lone low surrogate": b'{"metadata":{"eventId":"\\udc00"}}',
    "not utf-8": b'{"metadata":{"eventId":"\xff\xfe"}}',
    "escaped deep": json.dumps("[" * 10_000 + "]" * 10_000).encode(),
    "escaped huge": json.dumps('{"a":1e999999999}').encode(),
    "nan": b'{"a":NaN}',
}


def signed(body: bytes) -> dict[str, str]:
    return {"x-bill-sha-signature": sign(body, KEY)}


async def parse(ctx: ConnectionContext, headers: dict[str, str], body: bytes) -> Any:
    return await plugin.parse_webhook(ctx, headers, body, SecretStr(KEY))


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_an_unsigned_hostile_body_is_refused_at_once(
    ctx: ConnectionContext, name: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(WebhookVerificationError):
        await parse(ctx, FORGED, HOSTILE[name])
    assert time.perf_counter() - started < SLOW


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_signed_hostile_body_is_an_invalid_record(
    ctx: ConnectionContext, name: str
) -> None:
    body = HOSTILE[name]
    started = time.perf_counter()
    with pytest.raises(InvalidRecordError) as caught:
        await parse(ctx, signed(body), body)
    assert time.perf_counter() - started < SLOW
    assert caught.value.record_type == "webhook"
    assert "cannot be read" in caught.value.reason or caught.value.field == "metadata"


async def test_a_body_over_the_cap_is_refused_even_when_signed(ctx: ConnectionContext) -> None:
    body = b" " * plugin.MAX_WEBHOOK_BODY + b"{}"
    with pytest.raises(WebhookVerificationError, match="larger than"):
        await parse(ctx, signed(body), body)


async def test_a_header_that_cannot_be_a_digest_is_refused_before_the_body(
    ctx: ConnectionContext,
) -> None:
    for header in ("AAAA", "x" * 10_000, "\udcff" * 44, "é" * 44):
        with pytest.raises(WebhookVerificationError, match="not a base64"):
            await parse(ctx, {"x-bill-sha-signature": header}, b"[" * 1_000_000)


def event(**metadata: Any) -> dict[str, Any]:
    meta = {
        "eventId": "evt1",
        "subscriptionId": "sub1",
        "organizationId": "00801EMULATEDORG001",
        "eventType": "payment.updated",
        "version": "1",
    } | metadata
    return {"metadata": {k: v for k, v in meta.items() if v is not None}, "payment": {"id": "stp1"}}


@pytest.mark.parametrize(
    ("payload", "event_id", "field"),
    [
        (event(organizationId="00801SOMEONEELSE"), "evt1", "metadata.organizationId"),
        (event(eventType="invoice.created"), "evt1", "metadata.eventType"),
        (event(eventType="risk-verification.updated"), "evt1", "metadata.eventType"),
        (event() | {"payment": {"amount": 1}}, "evt1", "payment"),
        (event() | {"payment": {"id": ""}}, "evt1", "payment"),
        (event(eventId=None), None, "metadata.eventId"),
        (event(eventId="x" * 300), None, "metadata.eventId"),
        (event(eventId=["a"]), None, "metadata.eventId"),
        (event(eventType=7), "evt1", "metadata.eventType"),
        ([], None, None),
    ],
)
async def test_signed_events_it_cannot_use_name_their_event_and_field(
    ctx: ConnectionContext, payload: Any, event_id: str | None, field: str | None
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    with pytest.raises(InvalidRecordError) as caught:
        await parse(ctx, signed(body), body)
    assert (caught.value.record_id, caught.value.field) == (event_id, field)


async def test_bodies_within_the_limits_still_verify_in_every_form(ctx: ConnectionContext) -> None:
    payload = event() | {
        "payment": {"id": "stp1", "amount": 1e99, "name": "Mu\u0308ller \U0001f600"}
    }
    minified = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    deep = json.dumps(payload | {"extra": json.loads("[" * 29 + "]" * 29)}).encode()
    pretty = json.dumps(payload, indent=2).encode()  # re-indented and ASCII-escaped
    for body, signed_over in ((minified, minified), (pretty, minified), (deep, deep)):
        batch = await parse(ctx, signed(signed_over), body)
        assert batch.events[0].entity_id == "stp1"


def test_loads_untrusted_limits() -> None:
    from ml_connector_bill.schemas import UNTRUSTED_MAX_DEPTH, loads_untrusted

    depth = UNTRUSTED_MAX_DEPTH
    assert loads_untrusted(b"[" * depth + b"]" * depth) is not None
    assert loads_untrusted(b'[{"a":' * (depth // 2) + b"1" + b"}]" * (depth // 2)) is not None
    assert loads_untrusted(b'["' + b"[" * 1_000 + b'"]') == ["[" * 1_000]  # inside a string
    assert loads_untrusted(b'["\\"[[[[", "\\\\"]') == ['"[[[[', "\\"]
    assert loads_untrusted(b'{"a":230.00}')["a"].as_tuple().exponent == -2  # exact
    assert loads_untrusted(b"1" * 40) == int("1" * 40)
    assert loads_untrusted(b"[1e99,-1E-99]", exact=False) == [1e99, -1e-99]
    assert loads_untrusted(b'"\\ud83d\\ude00"') == "\U0001f600"  # a pair is fine
    assert loads_untrusted(b'"\\\\ud800"') == "\\ud800"  # an escaped backslash, no surrogate
    for refused in (
        b"[" * (depth + 1) + b"]" * (depth + 1),
        b"[" * depth + b"{}" + b"]" * depth,
        b"]",
        b"1" * 41,
        b"1e100",
        b"1E+0099",
        b"NaN",
        b"-Infinity",
        b'"\\ud800"',
        b'"\\udc00x"',
        b'"\xc3"',
        b"\xef\xbb\xbf{}",  # a BOM is not JSON either
    ):
        with pytest.raises(ValueError, match=r"^it "):
            loads_untrusted(refused)
