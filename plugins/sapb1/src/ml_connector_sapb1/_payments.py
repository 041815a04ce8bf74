"""BILL payments recorded back as B1 outgoing payments (``VendorPayments``), once each.

A BILL payment's application to one bill becomes one ``POST /VendorPayments`` (sapb1.md §5): a
bank transfer (``TransferAccount`` = ``settings.transfer_account``, ``TransferSum``,
``TransferDate``) applied to the invoice (``PaymentInvoices``: ``DocEntry``, ``SumApplied``,
``InvoiceType`` it_PurchaseInvoice), with the BILL payment id in ``TransferReference`` and a
sentence in ``Remarks`` and ``JournalRemarks``.

The Service Layer has no idempotency key and ``VendorPayments`` no change stamp, so the
posting is found again by its reference: a payment whose ``TransferReference`` is the BILL
payment id, not cancelled, with a ``PaymentInvoices`` row on the invoice's ``DocEntry`` (one
BILL payment may pay several bills: each is its own B1 payment, all with the same reference).
A payment draft awaiting approval (``PaymentDrafts``) with the same reference and row counts as
found too: posting again would pay twice once it is approved. A ``POST /VendorPayments`` is
never sent twice blindly: the engine looks first (``find_payment``), :func:`record` looks again,
and a session that expired under the ``POST`` (401: not applied) is renewed and looked up again
before the one resend.

``TransferReference`` is ``OVPM.TrsfrRef``, ``nvarchar(27)`` in a public DDL of a B1 company
database (UNCONFIRMED for every version: the Service Layer's ``$metadata`` has no length
facets). BILL payment ids are 20 characters (``stp`` + 17); a longer id is refused before
anything is sent, never cut (a cut id could not be found again). ``Remarks`` is ``OVPM.Comments``
(254) and ``JournalRemarks`` ``OVPM.JrnlMemo`` (50), from the same DDL; the texts are built to
fit them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_connector.errors import (
    AuthenticationError,
    InvalidRecordError,
    NotFoundError,
    SessionExpiredError,
    UpstreamError,
)
from ml_connector.models import RecordedPayment
from pydantic import ValidationError

from ml_connector_sapb1._documents import Rejection, parse_document
from ml_connector_sapb1.client import odata_string
from ml_connector_sapb1.schemas import SYSTEM, Payment

if TYPE_CHECKING:
    from ml_connector.models import PaymentPosting

    from ml_connector_sapb1.client import SapB1Client
    from ml_connector_sapb1.schemas import Settings

__all__ = [
    "JOURNAL_REMARKS_MAX",
    "REMARKS_MAX",
    "TRANSFER_REFERENCE_MAX",
    "find",
    "record",
]

#: ``OVPM.TrsfrRef`` (UNCONFIRMED, see the module docstring).
TRANSFER_REFERENCE_MAX = 27
#: ``OVPM.Comments``, what ``Remarks`` holds.
REMARKS_MAX = 254
#: ``OVPM.JrnlMemo``, what ``JournalRemarks`` holds.
JOURNAL_REMARKS_MAX = 50

PAYMENTS = "VendorPayments"
DRAFTS = "PaymentDrafts"


def _doc_entry(posting: PaymentPosting) -> int | None:
    source_id = posting.payable.source_id
    return int(source_id) if source_id.isdigit() else None


def _fold(text: str) -> str:
    # B1's SQL collation compares without case; so does this check of what the filter found.
    return text.strip().casefold()


def _applies(payment: Payment, reference: str, doc_entry: int) -> bool:
    """Whether ``payment`` is the posting of ``reference`` on invoice ``doc_entry``.

    What the server filtered on is checked again; a property left out of the answer is not held
    against the payment (a duplicate payment is worse than a posting a person sees twice).
    """
    if payment.TransferReference is not None and _fold(payment.TransferReference) != _fold(
        reference
    ):
        return False
    if payment.Cancelled:
        return False
    if payment.DocObjectCode not in (None, "bopot_OutgoingPayments"):
        return False
    return any(
        row.DocEntry == doc_entry and row.InvoiceType in (None, "it_PurchaseInvoice")
        for row in payment.PaymentInvoices
    )


async def find(client: SapB1Client, posting: PaymentPosting) -> RecordedPayment | None:
    """The B1 payment (or payment draft) carrying this posting, or ``None``; reads only.

    Raises:
        UpstreamError: The lookup failed, or a payment with the reference cannot be read (so
            it cannot be told apart: better an error than a second payment).
    """
    doc_entry = _doc_entry(posting)
    reference = posting.payment_sink_id
    if doc_entry is None or len(reference) > TRANSFER_REFERENCE_MAX:
        return None  # not a B1 invoice, or an id B1 could never have stored
    options = {
        "$filter": f"TransferReference eq {odata_string(reference)}",
        "$orderby": "DocEntry",
    }
    for entity_set in (PAYMENTS, DRAFTS):
        if entity_set == DRAFTS and not client.serves_payment_drafts:
            continue
        try:
            rows = await client.collect(entity_set, options)
        except NotFoundError:
            if entity_set == PAYMENTS:
                raise
            # UNCONFIRMED which servers serve PaymentDrafts (sapb1.md §5): none here.
            client.serves_payment_drafts = False
            continue
        for raw in rows:
            try:
                payment = Payment.model_validate(raw)
            except ValidationError as exc:
                raise UpstreamError(
                    f"{entity_set}: a payment with TransferReference {reference!r} cannot be "
                    f"read ({exc.errors()[0]['msg']})",
                    system=SYSTEM,
                ) from None
            if _applies(payment, reference, doc_entry):
                source_id = (
                    str(payment.DocEntry)
                    if entity_set == PAYMENTS
                    else f"{DRAFTS}({payment.DocEntry})"
                )
                return RecordedPayment(source_id=source_id, already_recorded=True)
    return None


def _remarks(posting: PaymentPosting) -> tuple[str, str]:
    short = f"BILL payment {posting.payment_sink_id}"
    long = f"{short}: {posting.reference}"
    return (long if len(long) <= REMARKS_MAX else short), short


async def record(
    client: SapB1Client, settings: Settings, posting: PaymentPosting
) -> RecordedPayment:
    """Post the BILL payment against its A/P invoice as a B1 outgoing payment, once.

    Raises:
        InvalidRecordError: B1 refused the payment (``-5002`` …), or it cannot be posted as it
            is (an id too long for ``TransferReference``, an invoice that is gone, cancelled,
            closed, or in a foreign currency).
        UpstreamError: Any other failure.
    """
    reference = posting.payment_sink_id
    what = ("payment", reference)
    if len(reference) > TRANSFER_REFERENCE_MAX:
        raise InvalidRecordError(
            *what,
            "TransferReference",
            f"the BILL payment id is {len(reference)} characters, B1's TransferReference "
            f"holds {TRANSFER_REFERENCE_MAX}: cut, it could not be found again, so nothing is "
            "posted",
            system=SYSTEM,
        )
    doc_entry = _doc_entry(posting)
    if doc_entry is None:
        raise InvalidRecordError(
            *what,
            "payable.source_id",
            f"{posting.payable.source_id!r} is not a B1 DocEntry",
            system=SYSTEM,
        )
    found = await find(client, posting)
    if found is not None:
        return found
    raw = await client.get_entity("PurchaseInvoices", doc_entry, record=what)
    if raw is None:
        raise InvalidRecordError(
            *what, "DocEntry", f"A/P invoice {doc_entry} does not exist in B1", system=SYSTEM
        )
    try:
        invoice = parse_document(raw)
    except Rejection as rejection:
        raise InvalidRecordError(
            *what, rejection.field, f"A/P invoice {doc_entry}: {rejection.reason}", system=SYSTEM
        ) from None
    if invoice.Cancelled or invoice.CancelStatus not in (None, "csNo"):
        raise InvalidRecordError(
            *what, "Cancelled", f"A/P invoice {doc_entry} is cancelled in B1", system=SYSTEM
        )
    if invoice.DocumentStatus not in (None, "bost_Open"):
        raise InvalidRecordError(
            *what,
            "DocumentStatus",
            f"A/P invoice {doc_entry} is closed in B1 (paid there already?): nothing posted",
            system=SYSTEM,
        )
    if invoice.foreign:
        raise InvalidRecordError(
            *what,
            "DocCurrency",
            f"A/P invoice {doc_entry} is in {invoice.DocCurrency}, a foreign currency: "
            "recording foreign-currency payments is not supported (how the Service Layer "
            "reads SumApplied then is unconfirmed); record it in B1",
            system=SYSTEM,
        )
    remarks, journal = _remarks(posting)
    body = {
        "DocType": "rSupplier",
        "CardCode": invoice.CardCode or posting.payable.vendor.source_id,
        "DocDate": posting.paid_on,
        "TransferAccount": settings.transfer_account,
        "TransferSum": posting.amount,
        "TransferDate": posting.paid_on,
        "TransferReference": reference,
        "Remarks": remarks,
        "JournalRemarks": journal,
        "PaymentInvoices": [
            {"DocEntry": doc_entry, "SumApplied": posting.amount,
             "InvoiceType": "it_PurchaseInvoice"}
        ],
    }  # fmt: skip
    try:
        created = await client.create(PAYMENTS, body, record=what)
    except SessionExpiredError:
        # 401: the POST was refused unapplied and the client signed in again. Look once more
        # (another process may have posted meanwhile), then send it once.
        found = await find(client, posting)
        if found is not None:
            return found
        try:
            created = await client.create(PAYMENTS, body, record=what)
        except SessionExpiredError as exc:
            raise AuthenticationError(
                f"payment {reference}: 401 again right after a new login", system=SYSTEM,
                status=exc.status,
            ) from None  # fmt: skip
    entry = created.get("DocEntry")
    if not isinstance(entry, int):
        raise UpstreamError(
            f"payment {reference}: B1 answered the POST without a DocEntry", system=SYSTEM
        )
    return RecordedPayment(source_id=str(entry))
