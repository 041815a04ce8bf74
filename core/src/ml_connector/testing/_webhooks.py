"""BILL-style webhook signing: HMAC-SHA256 over the raw body, base64, in ``x-bill-sha-signature``.

Facts from shared/api/bill.md §6 ("Signature"): the key is the subscription's ``securityKey`` as
UTF-8, the digest is base64-encoded, and the emulator signs exactly the minified JSON it sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ml_connector.errors import WebhookVerificationError

if TYPE_CHECKING:
    from ml_connector.testing._records import SinkPayment, SinkVendor

__all__ = [
    "SIGNATURE_HEADER",
    "entity_key",
    "event_body",
    "minified_json",
    "payment_json",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "x-bill-sha-signature"
"""The header carrying a delivery's signature."""


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

    The header is looked up case-insensitively. Nothing in ``body`` is read before this passes.

    Raises:
        WebhookVerificationError: The header is missing or the signature does not match.
    """
    provided = next(
        (value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER), None
    )
    if provided is None:
        raise WebhookVerificationError(f"the delivery has no {SIGNATURE_HEADER} header")
    expected = sign(body, security_key).encode()
    if not hmac.compare_digest(expected, provided.strip().encode()):
        raise WebhookVerificationError("the webhook signature does not match the body")


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
