"""Service Layer records to domain models: which A/P invoices move, and how they read.

The rules (README "What moves" says why each was decided so):

- **Ready to pay**: an A/P invoice in ``PurchaseInvoices`` that is not cancelled
  (``Cancelled`` tNO, ``CancelStatus`` csNo: a cancellation document, csCancellation, is its
  reversal), approved (``AuthorizationStatus`` dasWithout, dasApproved, or generated from an
  approved draft: dasGenerated, dasGeneratedbyAuthorizer), open (``DocumentStatus`` bost_Open and
  not paid in full) and not blocked for payment (``PaymentBlock`` tYES is B1's hold). Drafts
  (``Drafts``) and purchase orders (``PurchaseOrders``) are other entity sets, never read.
- **Ids**: ``source_id`` = ``DocEntry`` (the key), ``document_number`` = ``DocNum``,
  ``invoice_number`` = ``NumAtCard`` (the vendor's reference; an invoice without one is
  rejected naming it), the vendor = the business partner ``CardCode``.
- **Lines**: every ``DocumentLines`` row with its G/L ``AccountCode``, as the Service Layer
  returns it for service documents and item documents alike (for an item line that is the
  account B1's G/L account determination chose); a row without one is rejected naming it.
  ``CostingCode``..``CostingCode5`` are the line's distribution rules in dimensions 1..5, sent
  as the classifications ``settings.dimension_kinds`` names. ``VatSum`` is a line of its own on
  ``settings.tax_account``. Amounts are the foreign-currency ones (``RowTotalFC``,
  ``DocTotalFc``, ``VatSumFc``) for a document in a foreign currency, else the local ones.
- **Change time**: ``UpdateDate`` + ``UpdateTime`` in ``settings.server_timezone``; with only a
  date, the start of that day (the read then reaches up to a day before ``since``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ml_connector.models import (
    Account,
    AccountKind,
    Dimension,
    Payable,
    RejectedRecord,
    Vendor,
)
from pydantic import ValidationError

from ml_connector_sapb1.schemas import (
    BusinessPartner,
    ChartOfAccount,
    DistributionRule,
    Document,
    ProfitCenter,
    b1_date,
    b1_time,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from zoneinfo import ZoneInfo

    from ml_connector.models import ChangeWindow, DimensionKind

    from ml_connector_sapb1.schemas import Settings

__all__ = [
    "APPROVED",
    "Rejection",
    "Stamp",
    "account",
    "dimensions",
    "document_stamp",
    "in_window",
    "not_ready",
    "parse_document",
    "raw_stamp",
    "to_payable",
    "to_vendor",
]

#: Approval statuses of a document that may be paid: no approval needed, approved, or added
#: from an approved draft (sapb1.md §5 lists the members; which one a generated document carries
#: is UNCONFIRMED, so both "generated" members count as approved).
APPROVED = frozenset({"dasWithout", "dasApproved", "dasGenerated", "dasGeneratedbyAuthorizer"})
_ISO_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_ACCOUNT_KINDS = {
    "at_Expenses": AccountKind.EXPENSE,
    "at_Revenues": AccountKind.INCOME,
    "at_Other": AccountKind.OTHER,
}


class Rejection(Exception):
    """A record that cannot be a domain model: the field (as B1 names it) and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# --- Change times ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """When a document last changed: UTC, and whether the time of day was known."""

    at: datetime
    exact: bool


def _stamp(day: Any, clock: Any, zone: ZoneInfo) -> Stamp | None:
    if day is None:
        return None
    local = datetime.combine(day, clock or time(0), zone)
    return Stamp(local.astimezone(UTC), clock is not None)


def document_stamp(document: Document, zone: ZoneInfo) -> Stamp | None:
    """``UpdateDate`` + ``UpdateTime`` in the server's zone; ``None`` without ``UpdateDate``."""
    return _stamp(document.UpdateDate, document.UpdateTime, zone)


def raw_stamp(raw: Mapping[str, Any], zone: ZoneInfo) -> Stamp | None:
    """The stamp of a record that did not parse as a document, if its stamps can be read."""
    try:
        return _stamp(b1_date(raw.get("UpdateDate")), b1_time(raw.get("UpdateTime")), zone)
    except ValueError:
        try:
            return _stamp(b1_date(raw.get("UpdateDate")), None, zone)
        except ValueError:
            return None


def in_window(stamp: Stamp, window: ChangeWindow) -> bool:
    """Whether a change belongs to ``[since, until)``.

    An exact stamp belongs where it lies. A date without a time belongs to every window that
    overlaps its day: the change happened some time that day, and a read must not lose it.
    """
    if stamp.exact:
        return (window.since is None or stamp.at >= window.since) and stamp.at < window.until
    day_end = stamp.at + timedelta(days=1)
    return (window.since is None or day_end > window.since) and stamp.at < window.until


# --- Readiness ---------------------------------------------------------------------------------


def not_ready(document: Document) -> str | None:
    """Why the document must not be paid through BILL, or ``None`` if it is ready.

    A value the Service Layer left out counts as the harmless default (not cancelled, open, no
    approval needed, no block); a value this plugin does not know leaves the document out.
    """
    if document.DocObjectCode not in (None, "oPurchaseInvoices"):
        return f"not an A/P invoice (DocObjectCode {document.DocObjectCode})"
    if document.Cancelled:
        return "cancelled"
    if document.CancelStatus not in (None, "csNo"):
        return f"cancelled or a cancellation (CancelStatus {document.CancelStatus})"
    if document.AuthorizationStatus not in (None, *APPROVED):
        return f"not approved (AuthorizationStatus {document.AuthorizationStatus})"
    if document.DocumentStatus not in (None, "bost_Open"):
        return f"closed (DocumentStatus {document.DocumentStatus})"
    total, paid = (
        (document.DocTotalFc, document.PaidToDateFC)
        if document.foreign
        else (document.DocTotal, document.PaidToDate)
    )
    if total is not None and paid is not None and total > 0 and paid >= total:
        return "paid in full"
    if document.PaymentBlock:
        return "blocked for payment (PaymentBlock)"
    return None


def status_word(document: Document) -> str:
    """The document's status as kept in the audit, e.g. ``bost_Open/dasWithout``."""
    parts = [document.DocumentStatus or "?", document.AuthorizationStatus or "?"]
    if document.Cancelled or document.CancelStatus not in (None, "csNo"):
        parts.append(f"cancel:{document.CancelStatus or 'tYES'}")
    if document.PaymentBlock:
        parts.append("payment-block")
    return "/".join(parts)


# --- Documents ---------------------------------------------------------------------------------


def _loc(exc: ValidationError) -> tuple[str | None, str]:
    error = exc.errors(include_url=False, include_input=False)[0]
    return ".".join(str(p) for p in error["loc"]) or None, str(error["msg"])


def parse_document(raw: Mapping[str, Any]) -> Document:
    """A ``PurchaseInvoices`` record as a :class:`Document`.

    Raises:
        Rejection: A value that is not what the type says, naming the property.
    """
    try:
        return Document.model_validate(raw)
    except ValidationError as exc:
        field, reason = _loc(exc)
        raise Rejection(field, reason) from None


def currency_of(code: str | None, settings: Settings, field: str) -> str:
    """The ISO 4217 code of a B1 currency code (B1 lets a company name currencies freely).

    Raises:
        Rejection: No code, or one that is not ISO and not in ``settings.currency_codes``.
    """
    if code is None:
        raise Rejection(field, "the document has no currency")
    if code in settings.currency_codes:
        return settings.currency_codes[code]
    if _ISO_CURRENCY.match(code):
        return code
    raise Rejection(
        field,
        f"B1 currency {code!r} is not an ISO 4217 code: map it in settings.currency_codes, "
        f'e.g. {{"{code}": "USD"}}',
    )


def line_dimensions(line: Any, settings: Settings) -> dict[DimensionKind, str]:
    """The line's distribution rules in the dimensions ``settings.dimension_kinds`` names."""
    found: dict[DimensionKind, str] = {}
    for number, kind in settings.dimension_kinds.items():
        code = line.costing_code(number)
        if code:
            found[kind] = code
    return found


def to_payable(document: Document, vendor: Vendor, settings: Settings) -> Payable:
    """A document as a payable; tax becomes a line of its own, so the lines add up.

    Raises:
        Rejection: The document cannot be a bill as it is (naming the B1 property).
    """
    if not document.NumAtCard:
        raise Rejection(
            "NumAtCard",
            "the invoice has no vendor reference number (NumAtCard), which BILL needs as the "
            "invoice number",
        )
    stamp = document_stamp(document, settings.zone)
    if stamp is None:
        raise Rejection("UpdateDate", "the invoice has no UpdateDate (no change time)")
    currency = currency_of(document.DocCurrency, settings, "DocCurrency")
    foreign = document.foreign
    total = document.DocTotalFc if foreign else document.DocTotal
    if total is None:
        raise Rejection("DocTotal", "the invoice has no DocTotal")
    if not document.DocumentLines:
        raise Rejection("DocumentLines", "the invoice has no lines")
    items = document.DocType == "dDocument_Items"
    lines: list[dict[str, Any]] = []
    for index, line in enumerate(document.DocumentLines):
        amount = line.RowTotalFC if foreign else line.LineTotal
        if amount is None:
            name = "RowTotalFC" if foreign else "LineTotal"
            raise Rejection(f"DocumentLines.{index}.{name}", "the line has no amount")
        if not line.AccountCode:
            raise Rejection(
                f"DocumentLines.{index}.AccountCode",
                "the line has no G/L account (AccountCode)" + (" for its item" if items else ""),
            )
        lines.append(
            {
                "line_id": str(line.LineNum if line.LineNum is not None else index),
                "amount": amount,
                "description": line.ItemDescription or line.FreeText or line.ItemCode,
                "account_id": line.AccountCode,
                "dimensions": line_dimensions(line, settings),
                "quantity": line.Quantity if items else None,
                "unit_price": line.Price if items else None,
            }
        )
    tax = (document.VatSumFc if foreign else document.VatSum) or Decimal(0)
    line_sum = sum((line["amount"] for line in lines), Decimal(0))
    if tax:
        tax_field = "VatSumFc" if foreign else "VatSum"
        if settings.tax_account is None:
            raise Rejection(
                tax_field,
                f"the invoice carries tax {tax} {currency}, but the connection has no "
                "tax_account setting (the G/L account tax lines are coded to)",
            )
        lines.append(
            {
                "line_id": "tax",
                "amount": tax,
                "description": "Tax",
                "account_id": settings.tax_account,
            }
        )
    if line_sum + tax != total:
        total_field = "DocTotalFc" if foreign else "DocTotal"
        raise Rejection(
            total_field,
            f"{total_field} {total} is not the sum of the lines {line_sum} plus tax {tax}: a "
            "header discount, freight, rounding or withholding tax is not sent to BILL",
        )
    invoice_date = document.TaxDate or document.DocDate
    if invoice_date is None:
        raise Rejection("DocDate", "the invoice has no document date (TaxDate or DocDate)")
    try:
        return Payable.model_validate(
            {
                "source_id": str(document.DocEntry),
                "document_number": str(
                    document.DocNum if document.DocNum is not None else document.DocEntry
                ),
                "invoice_number": document.NumAtCard,
                "vendor": vendor,
                "invoice_date": invoice_date,
                "due_date": document.DocDueDate or invoice_date,
                "currency": currency,
                "total": total,
                "lines": lines,
                "description": document.Comments,
                "modified_at": stamp.at,
                "source_status": status_word(document),
            }
        )
    except ValidationError as exc:
        field, reason = _loc(exc)
        raise Rejection(field, reason) from None


def rejected(record_id: str | None, rejection: Rejection, stamp: Stamp | None) -> RejectedRecord:
    """A rejected payable for the page, with its change time when known."""
    return RejectedRecord(
        record_type="payable",
        record_id=record_id,
        field=rejection.field,
        reason=rejection.reason,
        modified_at=stamp.at if stamp is not None else None,
    )


# --- Vendors -----------------------------------------------------------------------------------


def _address(partner: BusinessPartner) -> dict[str, Any] | None:
    rows = [a for a in partner.BPAddresses if a.AddressType == "bo_BillTo"] or partner.BPAddresses
    row = rows[0] if rows else None
    line1 = row.Street if row else partner.Address
    city = row.City if row else partner.City
    zip_code = row.ZipCode if row else partner.ZipCode
    country = (row.Country if row else None) or partner.Country
    state = row.State if row else None
    if not any((line1, city, zip_code, state)):
        return None
    address: dict[str, Any] = {
        "line1": line1,
        "line2": row.Block if row else None,
        "city": city,
        "state": state,
        "postal_code": zip_code,
    }
    if country:
        if not _COUNTRY.match(country):
            raise Rejection(
                "BusinessPartners.Country",
                f"business partner {partner.CardCode}: country {country!r} is not an ISO "
                "3166 two-letter code",
            )
        address["country"] = country.upper()
    return address


def to_vendor(partner: BusinessPartner, settings: Settings, document_currency: str) -> Vendor:
    """A supplier business partner as a vendor.

    Raises:
        Rejection: Not a supplier, no name, or an address BILL cannot take (naming the field).
    """
    if partner.CardType not in (None, "cSupplier"):
        raise Rejection(
            "CardCode",
            f"business partner {partner.CardCode} is not a supplier (CardType {partner.CardType})",
        )
    if not partner.CardName:
        raise Rejection(
            "BusinessPartners.CardName", f"business partner {partner.CardCode} has no name"
        )
    currency = document_currency
    if partner.Currency:
        mapped = settings.currency_codes.get(partner.Currency, partner.Currency)
        if _ISO_CURRENCY.match(mapped):  # "##" is B1's "all currencies"
            currency = mapped
    email = partner.EmailAddress
    if email:
        email = re.split(r"[;,]", email)[0].strip() or None
    try:
        return Vendor.model_validate(
            {
                "source_id": partner.CardCode,
                "name": partner.CardName,
                "email": email,
                "phone": partner.Phone1,
                "address": _address(partner),
                "currency": currency,
                "active": partner.Valid is not False and partner.Frozen is not True,
            }
        )
    except ValidationError as exc:
        field, reason = _loc(exc)
        raise Rejection(f"BusinessPartners.{field}", reason) from None


# --- Accounts and dimensions -------------------------------------------------------------------


def account(wire: ChartOfAccount) -> Account:
    """A G/L account: id ``Code`` (what lines carry), number ``FormatCode`` (what people see).

    ``ActiveAccount`` tNO is a title account (not postable) and ``FrozenFor`` tYES a frozen one:
    both are reported inactive.
    """
    return Account(
        id=wire.Code,
        number=wire.FormatCode or wire.Code,
        name=wire.Name or wire.Code,
        kind=_ACCOUNT_KINDS.get(wire.AccountType or "", AccountKind.OTHER),
        active=wire.ActiveAccount is not False and wire.FrozenFor is not True,
        parent_id=wire.FatherAccountKey,
    )


def dimensions(
    centers: Iterable[ProfitCenter], rules: Iterable[DistributionRule], settings: Settings
) -> list[Dimension]:
    """The profit centers and distribution rules of the dimensions that are sent.

    A line's ``CostingCode`` holds a distribution rule; a profit center's own ("direct") rule
    has the center's code, so each code is listed once, the profit center first.
    """
    found: dict[tuple[DimensionKind, str], Dimension] = {}
    entries = [(c.CenterCode, c.CenterName, c.InWhichDimension, c.Active) for c in centers] + [
        (r.FactorCode, r.FactorDescription, r.InWhichDimension, r.Active) for r in rules
    ]
    for code, name, number, active in entries:
        kind = settings.dimension_kinds.get(number) if number is not None else None
        if kind is None or not code.strip():
            continue
        found.setdefault(
            (kind, code),
            Dimension(id=code, kind=kind, code=code, name=name or code, active=active is not False),
        )
    return list(found.values())
