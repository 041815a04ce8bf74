"""The domain models: the one language every plugin speaks.

A source plugin turns its ERP's records into these models; a sink plugin turns them into its own
wire format. Plugins never exchange their wire formats with each other or with the core.

Rules that hold for every model:

- Money is :class:`~decimal.Decimal` (floats are refused, strings and ints accepted) and finite.
- Times are timezone-aware and normalised to UTC; a naive datetime is refused.
- Every record carries the id it has in the system it came from (``source_id`` for ERP records,
  ``sink_id`` for BILL records), so any record can be traced back.
- Invalid data raises :class:`pydantic.ValidationError`, whose errors name the field.

.. versionadded:: 1.0
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

__all__ = [
    "Account",
    "AccountCatalog",
    "AccountKind",
    "AccountMapping",
    "Address",
    "AuthResult",
    "BillDraft",
    "BillDraftLine",
    "BillResult",
    "ChangeWindow",
    "ConnectionCheck",
    "Dimension",
    "DimensionKind",
    "DomainModel",
    "MappingMethod",
    "Money",
    "Payable",
    "PayableLine",
    "PayablePage",
    "Payment",
    "PaymentApplication",
    "PaymentPage",
    "PaymentPosting",
    "PaymentStatus",
    "RecordedPayment",
    "RejectedRecord",
    "UtcDatetime",
    "Vendor",
    "VendorResult",
    "WebhookBatch",
    "WebhookEvent",
    "WebhookSubscription",
]


def _refuse_float(value: Any) -> Any:
    # A float has already lost the cents (0.1 + 0.2); make the plugin send str or Decimal.
    if isinstance(value, float):
        raise ValueError("money must be a Decimal, int or numeric string, not a float")
    return value


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("money must be a finite number")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Money = Annotated[Decimal, BeforeValidator(_refuse_float), AfterValidator(_finite)]
"""A finite Decimal amount; floats are refused."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are refused."""

NonEmptyStr = Annotated[str, Field(min_length=1)]


class DomainModel(BaseModel):
    """Base of every domain model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


# --- Accounts and dimensions -------------------------------------------------------------------


class AccountKind(StrEnum):
    """The broad class of a GL account."""

    EXPENSE = "expense"
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    OTHER = "other"


class DimensionKind(StrEnum):
    """A kind of segment or classification that qualifies a GL account on a bill line."""

    SUBACCOUNT = "subaccount"
    DEPARTMENT = "department"
    LOCATION = "location"
    CLASS = "class"
    JOB = "job"
    ITEM = "item"
    EMPLOYEE = "employee"


class Account(DomainModel):
    """A GL account (ERP) or chart-of-accounts entry (BILL).

    Attributes:
        id: The account's id in its own system (ERP account code or BILL ``0ca…`` id).
        number: The account number as accountants write it, if the system has one.
        name: The account's name.
        kind: Expense, asset, …
        active: Inactive accounts are never chosen by the matcher.
        parent_id: The parent account's id, for systems with account hierarchies.
    """

    id: NonEmptyStr
    number: str | None = None
    name: NonEmptyStr
    kind: AccountKind = AccountKind.EXPENSE
    active: bool = True
    parent_id: str | None = None


class Dimension(DomainModel):
    """A subaccount, department, location, class, job or item value.

    Attributes:
        id: The value's id in its own system.
        kind: Which dimension it belongs to.
        code: The short code users type, if any.
        name: The display name.
        active: Inactive values are never chosen by the matcher.
    """

    id: NonEmptyStr
    kind: DimensionKind
    code: str | None = None
    name: NonEmptyStr
    active: bool = True


class AccountCatalog(DomainModel):
    """Everything one side offers for coding a bill line."""

    accounts: tuple[Account, ...] = ()
    dimensions: tuple[Dimension, ...] = ()


class MappingMethod(StrEnum):
    """How a mapping was decided."""

    NUMBER = "number"
    NAME = "name"
    MANUAL = "manual"
    PLUGIN = "plugin"
    CREATED = "created"


class AccountMapping(DomainModel):
    """One source account or dimension value mapped to its sink counterpart.

    Attributes:
        source_kind: ``"account"`` or a :class:`DimensionKind` value.
        source_id: The id on the source side.
        sink_kind: ``"account"`` or a :class:`DimensionKind` value on the sink side.
        sink_id: The id on the sink side.
        method: How the pair was found.
    """

    source_kind: NonEmptyStr
    source_id: NonEmptyStr
    sink_kind: NonEmptyStr
    sink_id: NonEmptyStr
    method: MappingMethod


# --- Vendors -----------------------------------------------------------------------------------


class Address(DomainModel):
    """A postal address; ``country`` is ISO 3166-1 alpha-2."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"


class Vendor(DomainModel):
    """A vendor (supplier) as the ERP knows it.

    Attributes:
        source_id: The vendor's id in the ERP.
        name: The vendor's name (BILL's ``name``).
        email: Where remittance advice goes, if known.
        phone: A phone number, if known.
        address: The remit-to address.
        currency: ISO 4217 code of the vendor's currency.
        active: Inactive vendors are not created in the sink.
    """

    source_id: NonEmptyStr
    name: NonEmptyStr
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    active: bool = True


# --- Payables (ERP bills) ----------------------------------------------------------------------


class PayableLine(DomainModel):
    """One line of an ERP bill, coded to a source GL account and its dimensions.

    Attributes:
        line_id: The line's id or number within its bill.
        amount: The line total; tax and freight are lines of their own.
        description: Free text for the line.
        account_id: The source GL account the line is coded to.
        dimensions: Source dimension values by kind (e.g. the subaccount).
        quantity: Informational quantity.
        unit_price: Informational unit price.
    """

    line_id: NonEmptyStr
    amount: Money
    description: str | None = None
    account_id: NonEmptyStr
    dimensions: dict[DimensionKind, NonEmptyStr] = Field(default_factory=dict)
    quantity: Money | None = None
    unit_price: Money | None = None


class Payable(DomainModel):
    """An approved (released, posted) ERP bill, ready to be paid through the sink.

    Attributes:
        source_id: The bill's id in the ERP (unique within the connection).
        document_number: The ERP's own reference (shown to clerks).
        invoice_number: The vendor's invoice number (with the vendor, the bill's natural key).
        vendor: The vendor the bill is owed to.
        invoice_date: The vendor's invoice date.
        due_date: When the bill is due.
        currency: ISO 4217 code.
        total: The bill total; must equal the sum of the lines.
        lines: At least one line.
        description: Free text for the bill.
        modified_at: When the ERP last changed the bill (UTC); drives change detection.
        source_status: The ERP's status word, kept for audit.
    """

    source_id: NonEmptyStr
    document_number: NonEmptyStr
    invoice_number: NonEmptyStr
    vendor: Vendor
    invoice_date: date
    due_date: date
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    total: Money
    lines: Annotated[tuple[PayableLine, ...], Field(min_length=1)]
    description: str | None = None
    modified_at: UtcDatetime
    source_status: str | None = None

    @model_validator(mode="after")
    def _total_matches_lines(self) -> Payable:
        line_sum = sum((line.amount for line in self.lines), Decimal(0))
        if line_sum != self.total:
            raise ValueError(f"total {self.total} does not equal the sum of the lines {line_sum}")
        return self


class RejectedRecord(DomainModel):
    """A record a plugin read but could not turn into a domain model.

    Returned beside the good records of a page so one bad record stops nothing else; the engine
    puts it in the exception queue.

    Attributes:
        record_type: ``"payable"``, ``"vendor"``, ``"payment"``, …
        record_id: Its id in its system, if it could be read.
        field: The offending field as a dotted path.
        reason: What is wrong.
        modified_at: The record's change time, if known (lets the engine move past it).
    """

    record_type: NonEmptyStr
    record_id: str | None
    field: str | None
    reason: NonEmptyStr
    modified_at: UtcDatetime | None = None


class ChangeWindow(DomainModel):
    """The half-open interval ``[since, until)`` of change times a read covers.

    ``since`` is ``None`` on a first sync (read everything eligible).
    """

    since: UtcDatetime | None
    until: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> ChangeWindow:
        if self.since is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class PayablePage(DomainModel):
    """One page of changed payables.

    Attributes:
        items: The payables on this page, valid domain models.
        rejected: Records on this page that could not be read as payables.
        next_page_token: Opaque token for the next page, ``None`` on the last page.
    """

    items: tuple[Payable, ...] = ()
    rejected: tuple[RejectedRecord, ...] = ()
    next_page_token: str | None = None


# --- Sink side: vendors and bills --------------------------------------------------------------


class VendorResult(DomainModel):
    """The outcome of :func:`~ml_connector.hookspecs.upsert_vendor`."""

    sink_id: NonEmptyStr
    created: bool


class BillDraftLine(DomainModel):
    """A bill line with its accounts already mapped to the sink's ids.

    Attributes:
        amount: The line amount.
        description: Line text.
        sink_account_id: The sink's chart-of-accounts id.
        classifications: Sink classification ids by dimension kind.
        source_line_id: The ERP line it came from.
    """

    amount: Money
    description: str | None = None
    sink_account_id: NonEmptyStr
    classifications: dict[DimensionKind, NonEmptyStr] = Field(default_factory=dict)
    source_line_id: NonEmptyStr


class BillDraft(DomainModel):
    """What the engine asks a sink to create or update: a payable, mapped.

    Attributes:
        payable: The payable as read from the source.
        vendor_sink_id: The vendor's id in the sink.
        lines: The payable's lines with sink account ids.
        existing_sink_id: The sink id of the bill this connection created earlier, if any: the
            sink updates that bill instead of creating one.
    """

    payable: Payable
    vendor_sink_id: NonEmptyStr
    lines: Annotated[tuple[BillDraftLine, ...], Field(min_length=1)]
    existing_sink_id: str | None = None


class BillResult(DomainModel):
    """The outcome of creating, updating or finding a bill in the sink.

    Attributes:
        sink_id: The bill's id in the sink.
        created: True if this call created the bill.
        paid: True if the sink reports the bill as (partly) paid, so it must not be changed.
    """

    sink_id: NonEmptyStr
    created: bool = False
    paid: bool = False


# --- Payments ----------------------------------------------------------------------------------


class PaymentStatus(StrEnum):
    """Where a sink payment stands, in the connector's words."""

    SCHEDULED = "scheduled"
    IN_PROCESS = "in_process"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    VOIDED = "voided"


class PaymentApplication(DomainModel):
    """The part of a payment applied to one bill.

    Attributes:
        bill_sink_id: The bill paid.
        amount: The amount applied to it.
        application_id: The sink's id of this application, if it has one (BILL ``blp…``).
    """

    bill_sink_id: NonEmptyStr
    amount: Money
    application_id: str | None = None


class Payment(DomainModel):
    """A payment made in the sink.

    Attributes:
        sink_id: The payment's id in the sink (BILL ``stp…``).
        vendor_sink_id: The vendor paid.
        amount: The payment total.
        process_date: The date the sink processes the payment.
        status: Where the payment stands.
        applications: How the amount is spread over bills.
        reference: The sink's transaction number or other reference, if any.
        updated_at: When the sink last changed the payment.
    """

    sink_id: NonEmptyStr
    vendor_sink_id: NonEmptyStr
    amount: Money
    process_date: date
    status: PaymentStatus
    applications: tuple[PaymentApplication, ...] = ()
    reference: str | None = None
    updated_at: UtcDatetime


class PaymentPage(DomainModel):
    """One page of changed sink payments."""

    items: tuple[Payment, ...] = ()
    rejected: tuple[RejectedRecord, ...] = ()
    next_page_token: str | None = None


class PaymentPosting(DomainModel):
    """A payment application to post against the originating ERP bill.

    Attributes:
        payment_sink_id: The sink payment's id; the source stores it on the ERP payment so a
            second posting of the same payment is found and not repeated.
        payable: The payable the payment pays, as last read from the source.
        amount: The amount applied to that payable.
        paid_on: The payment's process date.
        reference: A human-readable reference for the ERP payment document.
    """

    payment_sink_id: NonEmptyStr
    payable: Payable
    amount: Money
    paid_on: date
    reference: NonEmptyStr


class RecordedPayment(DomainModel):
    """The outcome of :func:`~ml_connector.hookspecs.record_payment`.

    Attributes:
        source_id: The ERP payment document that carries the posting.
        already_recorded: True if the posting existed before this call (nothing was written).
        finished: False when ``find_payment`` found the ERP document but the ERP has not
            finished it (a check not released, a payment group not posted): the engine then
            calls ``record_payment``, which must finish it without posting again.

    .. versionchanged:: 1.2
        ``finished``.
    """

    source_id: NonEmptyStr
    already_recorded: bool = False
    finished: bool = True


# --- Auth, ping, webhooks ----------------------------------------------------------------------


class AuthResult(DomainModel):
    """The outcome of :func:`~ml_connector.hookspecs.authenticate`.

    Attributes:
        principal: Who we are signed in as (user, client id, organisation), never a secret.
        expires_at: When the session or token expires if nothing is done, if known.
    """

    principal: str | None = None
    expires_at: UtcDatetime | None = None


class ConnectionCheck(DomainModel):
    """The outcome of :func:`~ml_connector.hookspecs.check_connection`."""

    ok: bool
    detail: str


class WebhookEvent(DomainModel):
    """One verified event from a sink webhook delivery.

    Attributes:
        event_id: The sink's unique event id (deliveries are deduplicated on it).
        event_type: E.g. ``"payment.updated"``.
        entity_type: ``"vendor"``, ``"bill"`` or ``"payment"``.
        entity_id: The sink id of the entity the event is about.
        payload: The entity as the event carries it (re-read from the API before acting).
    """

    event_id: NonEmptyStr
    event_type: NonEmptyStr
    entity_type: NonEmptyStr
    entity_id: NonEmptyStr
    payload: dict[str, Any] = Field(default_factory=dict)


class WebhookBatch(DomainModel):
    """The verified events of one webhook delivery."""

    subscription_id: str | None = None
    events: tuple[WebhookEvent, ...] = ()


class WebhookSubscription(DomainModel):
    """A webhook subscription in the sink.

    Attributes:
        sink_id: The subscription's id.
        notification_url: Where the sink delivers events.
        events: The event types subscribed to.
        enabled: False when the sink disabled it (e.g. after failed deliveries).
        security_key: The signing key; only present right after creation or rotation.
    """

    sink_id: NonEmptyStr
    notification_url: NonEmptyStr
    events: tuple[str, ...]
    enabled: bool
    security_key: SecretStr | None = None
