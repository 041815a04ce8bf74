"""BILL payments back: a ``vendorPayment`` upserted by external id, applied to the bill.

``PUT /services/rest/record/v1/vendorPayment/eid:<external id>`` creates the payment the first
time and updates the same record on a replay (netsuite.md §5 "Upsert by external id", CONFIRMED
for records in general, UNCONFIRMED for vendorPayment in particular), so a retried write never
pays twice. The external id carries the BILL payment id and the bill id; external ids may hold
letters, digits, ``_`` and ``-`` only (a ``|`` is a multi-select delimiter), and no length is
documented, so an id that does not fit (or is long) is replaced by a digest of itself.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any

from ml_connector.errors import NotFoundError, UpstreamError
from ml_connector.models import RecordedPayment

from ml_connector_netsuite import _bills
from ml_connector_netsuite.client import REST
from ml_connector_netsuite.schemas import SYSTEM

if TYPE_CHECKING:
    from ml_connector.models import PaymentPosting

    from ml_connector_netsuite.client import NetSuiteClient
    from ml_connector_netsuite.schemas import Settings

__all__ = ["MAX_EXTERNAL_ID", "external_id", "find", "payment_body", "record"]

log = logging.getLogger(__name__)

PREFIX = "mlc"
MAX_EXTERNAL_ID = 64
"""Longest external id this plugin writes (NetSuite documents none; a conservative cap)."""
_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def external_id(payment_sink_id: str, bill_id: str) -> str:
    """``mlc-<BILL payment id>-<bill id>``, or ``mlc-h<digest>-<bill id>`` if that cannot be.

    The same pair always gives the same id; different BILL payments give different ids.
    """
    plain = f"{PREFIX}-{payment_sink_id}-{bill_id}"
    if _SAFE.match(payment_sink_id) and len(plain) <= MAX_EXTERNAL_ID:
        return plain
    digest = hashlib.sha256(payment_sink_id.encode()).hexdigest()[:32]
    return f"{PREFIX}-h{digest}-{bill_id}"


def _path(eid: str) -> str:
    return f"{REST}/record/v1/vendorPayment/eid:{eid}"


def payment_body(
    posting: PaymentPosting, settings: Settings, eid: str, subsidiary: str | None
) -> dict[str, Any]:
    """The vendorPayment record: vendor, date, accounts, subsidiary, one applied bill."""
    bill_id = posting.payable.source_id
    body: dict[str, Any] = {
        "externalId": eid,
        "entity": {"id": posting.payable.vendor.source_id},
        "tranDate": posting.paid_on.isoformat(),
        "memo": f"BILL payment {posting.reference}"[:999],
        "apply": {"items": [{"doc": {"id": bill_id}, "apply": True, "amount": posting.amount}]},
    }
    if subsidiary is not None:
        body["subsidiary"] = {"id": subsidiary}
    if settings.ap_account_id is not None:
        body["apAcct"] = {"id": settings.ap_account_id}
    if settings.bank_account_id is not None:
        body["account"] = {"id": settings.bank_account_id}
    return body


def _applied_to(record: dict[str, Any], bill_id: str) -> bool | None:
    """Whether the payment applies to the bill; ``None`` if the record shows no apply list."""
    apply = record.get("apply")
    items = apply.get("items") if isinstance(apply, dict) else None
    if not isinstance(items, list):
        return None
    for item in items:
        if not isinstance(item, dict):
            continue
        doc = item.get("doc")
        doc_id = doc.get("id") if isinstance(doc, dict) else doc
        if str(doc_id) == bill_id and item.get("apply", True) not in (False, "F", "false"):
            return True
    return False


def _voided(record: dict[str, Any]) -> bool:
    if record.get("voided") in (True, "T", "true"):
        return True
    status = record.get("status")
    letter = status.get("id") if isinstance(status, dict) else status
    return str(letter or "").rsplit(":", 1)[-1].upper() == "V"


async def find(client: NetSuiteClient, posting: PaymentPosting) -> RecordedPayment | None:
    """The vendorPayment with this posting's external id, applied to its bill; reads only.

    ``GET vendorPayment/eid:<x>`` first; if NetSuite refuses an ``eid:`` read (anything but a
    404), SuiteQL on ``transaction.externalid`` instead. A voided payment does not count.
    """
    bill_id = posting.payable.source_id
    eid = external_id(posting.payment_sink_id, bill_id)
    try:
        record = await client.get_record(
            f"vendorPayment/eid:{eid}", params={"expandSubResources": "true"}
        )
    except UpstreamError as exc:  # not InvalidRecordError: no record is named on a read
        if exc.status not in (400, 405):
            raise
        return await _find_by_query(client, eid)
    if record is None or _voided(record):
        return None
    applied = _applied_to(record, bill_id)
    if applied is False:
        log.warning(
            "%s: vendorPayment %s carries %s but is not applied to bill %s",
            SYSTEM,
            record.get("id"),
            eid,
            bill_id,
        )
        return None
    payment_id = _bills.text(record, "id")
    if payment_id is None:
        return await _find_by_query(client, eid)
    return RecordedPayment(source_id=payment_id, already_recorded=True)


async def _find_by_query(client: NetSuiteClient, eid: str) -> RecordedPayment | None:
    query = (
        "SELECT t.id, t.status, t.voided FROM transaction t "  # noqa: S608 - eid is [A-Za-z0-9_-]
        f"WHERE t.type = 'VendPymt' AND t.externalid = '{eid}' ORDER BY t.id"
    )
    page = await client.suiteql(query, limit=10)
    for row in page.items:
        if not _bills.flag(row, "voided") and (_bills.text(row, "status") or "") != "V":
            payment_id = _bills.text(row, "id")
            if payment_id is not None:
                return RecordedPayment(source_id=payment_id, already_recorded=True)
    return None


async def record(
    client: NetSuiteClient, settings: Settings, posting: PaymentPosting
) -> RecordedPayment:
    """Upsert the vendorPayment (``PUT …/eid:<x>``), then read its internal id back.

    Raises:
        InvalidRecordError: NetSuite refused the payment (naming the field it named).
    """
    bill_id = posting.payable.source_id
    eid = external_id(posting.payment_sink_id, bill_id)
    subsidiary = settings.subsidiary_id or await _bill_subsidiary(client, bill_id)
    body = payment_body(posting, settings, eid, subsidiary)
    response = await client.request(
        "PUT", _path(eid), json_body=body, record=("vendorPayment", eid)
    )
    location = response.headers.get("Location", "")
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    if tail.isdigit():
        return RecordedPayment(source_id=tail)
    found = await find(client, posting)
    if found is None:
        raise UpstreamError(
            f"NetSuite accepted vendorPayment {eid} but it cannot be read back", system=SYSTEM
        )
    return RecordedPayment(source_id=found.source_id)


async def _bill_subsidiary(client: NetSuiteClient, bill_id: str) -> str | None:
    """The bill's subsidiary (OneWorld), for the payment; ``None`` if there is none."""
    try:
        page = await client.suiteql(_bills.one_query(bill_id), limit=1)
    except NotFoundError:
        return None
    return _bills.text(page.items[0], "subsidiary") if page.items else None
