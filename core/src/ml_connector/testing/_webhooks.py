"""BILL-style webhook signing: HMAC-SHA256 over the raw body, base64, in ``x-bill-sha-signature``.

Facts from shared/api/bill.md §6 ("Signature"): the key is the subscription's ``securityKey`` as
UTF-8, the digest is base64-encoded, and the emulator signs exactly the minified JSON it sends.
The reference sink signs the raw bytes it sends, so its verifier needs no canonical fallback: the
signature is checked over the raw body (size-capped) before anything parses it, and a verified
body is parsed by :func:`parse_untrusted`, whose cost stays linear in the body's size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.errors import WebhookVerificationError

if TYPE_CHECKING:
    from ml_connector.testing._records import SinkPayment, SinkVendor

__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "SIGNATURE_HEADER",
    "entity_key",
    "event_body",
    "minified_json",
    "parse_untrusted",
    "payment_json",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "x-bill-sha-signature"
"""The header carrying a delivery's signature."""

MAX_BODY = 1 << 20
"""The largest delivery verified, in bytes; a larger one is refused unread."""

MAX_DEPTH = 32
"""The deepest nesting a delivery may have (an event nests four levels)."""

_MAX_DIGITS = 40  # digits in a row in a number; exponents have at most two
_DIGEST_LENGTH = 44  # base64 of a 32-byte HMAC-SHA256, with its padding
# Byte scans (all C code) that bound what json.loads is given: see parse_untrusted.
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_NUMBER = (b"0" * (_MAX_DIGITS + 1), b"e000", b"e+000", b"e-000")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def entity_key(event_type: str) -> str:
    """The payload key of an event's entity: ``"bank-account.created"`` -> ``"bankAccount"``.

    bill.md §6: the entity key matches the event type's prefix, camel-cased.
    """
    head, *rest = event_type.split(".", 1)[0].split("-")
    return head + "".join(part.capitalize() for part in rest)


def minified_json(payload: Mapping[str, Any]) -> bytes:
    """Serialise a payload the way BILL sends it: minified JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, security_key: str) -> str:
    """The signature of ``body`` under ``security_key``: base64 of its HMAC-SHA256."""
    digest = hmac.new(security_key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_signature(headers: Mapping[str, str], body: bytes, security_key: str) -> None:
    """Check a delivery's signature over the raw body, in constant time.

    The header is looked up case-insensitively. Nothing in ``body`` is read before this passes; a
    body over :data:`MAX_BODY` is refused without being hashed.

    Raises:
        WebhookVerificationError: The header is missing or the signature does not match.
    """
    provided = next(
        (value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER), None
    )
    if provided is None:
        raise WebhookVerificationError(f"the delivery has no {SIGNATURE_HEADER} header")
    # "backslashreplace": a header value is whatever the sender wrote; comparing must not raise.
    given = provided.strip().encode("utf-8", "backslashreplace")
    if len(given) != _DIGEST_LENGTH:
        raise WebhookVerificationError("the webhook signature is not a base64 HMAC-SHA256")
    if len(body) > MAX_BODY:
        raise WebhookVerificationError(f"the delivery is larger than {MAX_BODY} bytes")
    expected = sign(body, security_key).encode()
    if not hmac.compare_digest(expected, given):
        raise WebhookVerificationError("the webhook signature does not match the body")


def _outside_strings(raw: bytes) -> bytes:
    r"""The bytes of a JSON text outside its strings (exact for valid JSON).

    ``\\`` pairs go first (an odd run of backslashes escapes the next character), then escaped
    quotes: every quote left opens or closes a string.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def _too_costly(raw: bytes) -> str | None:
    outside = _outside_strings(raw)
    nesting = outside.translate(_AS_BRACKETS, _NOT_BRACKETS)
    # One replace removes every innermost pair (and none its removals join): one level a pass.
    too_deep = b"[" * (MAX_DEPTH + 1)
    for _ in range(MAX_DEPTH):
        if too_deep in nesting:
            break
        shorter = nesting.replace(b"[]", b"")
        if shorter == nesting:
            break
        nesting = shorter
    if nesting:
        return f"it is nested more than {MAX_DEPTH} levels deep, or its brackets do not match"
    shape = outside.translate(_NUMBER_SHAPE)
    if any(run in shape for run in _LONG_NUMBER):
        return f"it has a number of more than {_MAX_DIGITS} digits or a 3-digit exponent"
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_untrusted(raw: bytes) -> Any:
    r"""Parse a JSON body in time and stack linear in its size.

    Byte scans come first: at most :data:`MAX_DEPTH` levels of nesting, no number of more than 40
    digits or with a 3-digit exponent (``1e999999999`` costs nothing as a float, but a billion
    digits as a Decimal written out). Then strict UTF-8, no ``NaN``/``Infinity``, and no lone
    surrogate (``"\ud800"``), which no store or UTF-8 text can carry on.

    Raises:
        ValueError: Not JSON, or outside the limits; the message says which, without the text.
    """
    problem = _too_costly(raw)
    if problem is not None:
        raise ValueError(problem)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # pragma: no cover - the depth scan refuses these first
        raise ValueError("it is nested too deeply") from None
    except ValueError:
        raise ValueError("it is not JSON") from None
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("it has a lone surrogate escape") from None
    return value


def event_body(
    event_id: str,
    subscription_id: str,
    organization_id: str,
    event_type: str,
    entity: Mapping[str, Any],
) -> bytes:
    """The body of a one-event delivery, as in bill.md §6 (``metadata`` plus the entity)."""
    return minified_json(
        {
            "metadata": {
                "eventId": event_id,
                "subscriptionId": subscription_id,
                "organizationId": organization_id,
                "eventType": event_type,
                "version": "1",
            },
            entity_key(event_type): dict(entity),
        }
    )


def payment_json(payment: SinkPayment, vendors: Mapping[str, SinkVendor]) -> dict[str, Any]:
    """A payment as BILL's ``payment.updated`` event carries it (amounts as exact strings)."""
    vendor = vendors.get(payment.vendor_id)
    return {
        "id": payment.id,
        "vendor": {"id": payment.vendor_id, "name": vendor.name if vendor else None},
        "billIds": [a.bill_id for a in payment.applications],
        "billPayments": [
            {"id": a.id, "billId": a.bill_id, "amount": str(a.amount)} for a in payment.applications
        ],
        "amount": str(payment.amount),
        "processDate": payment.process_date.isoformat(),
        "status": payment.status.value.upper(),
        "transactionNumber": payment.transaction_number,
        "createdTime": payment.created_at.isoformat(),
        "updatedTime": payment.updated_at.isoformat(),
    }
