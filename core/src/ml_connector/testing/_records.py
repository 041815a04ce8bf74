"""The fake systems' own records: their "wire" shapes, looser than the domain models on purpose.

A test can build these directly to plant what a real system might hold, a malformed bill
included. Treat records a fake returns as read-only: change them through the fake's methods,
which stamp change times, keep the indexes right and persist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from ml_connector.models import Address, DimensionKind, PaymentStatus

__all__ = [
    "ErpLine",
    "ErpPayable",
    "ErpPayment",
    "ErpStatus",
    "SinkBill",
    "SinkBillLine",
    "SinkPayment",
    "SinkPaymentApplication",
    "SinkSubscription",
    "SinkVendor",
    "WebhookDelivery",
]

# --- ERP -----------------------------------------------------------------------------------------


class ErpStatus(StrEnum):
    """An AP document's status in the fake ERP. Only ``approved`` documents are ready to pay."""

    APPROVED = "approved"
    ON_HOLD = "on_hold"
    DRAFT = "draft"
    PURCHASE_ORDER = "purchase_order"
    #: Fully paid (set by ``record_payment`` when the open balance reaches zero).
    CLOSED = "closed"


@dataclass(slots=True)
class ErpLine:
    """A bill line as the ERP stores it; ``account_id`` may be missing (a malformed record)."""

    line_id: str
    amount: Decimal
    account_id: str | None
    description: str | None = None
    dimensions: dict[DimensionKind, str] = field(default_factory=dict)
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


@dataclass(slots=True)
class ErpPayable:
    """An AP document (bill or purchase order) as the ERP stores it.

    Treat instances as read-only: change a payable through :meth:`FakeErp.update_payable`, which
    stamps a new ``modified_at`` and persists the change.
    """

    source_id: str
    document_number: str
    invoice_number: str
    vendor_id: str
    invoice_date: date
    due_date: date
    total: Decimal
    lines: list[ErpLine]
    modified_at: datetime
    status: ErpStatus = ErpStatus.APPROVED
    currency: str = "USD"
    description: str | None = None


@dataclass(slots=True)
class ErpPayment:
    """A payment posted in the ERP against one bill, carrying the sink payment's id."""

    id: str
    payable_id: str
    amount: Decimal
    paid_on: date
    sink_payment_id: str
    reference: str
    recorded_at: datetime


# --- Sink (BILL) ---------------------------------------------------------------------------------


@dataclass(slots=True)
class SinkVendor:
    """A vendor in the fake sink."""

    id: str
    name: str
    address: Address | None
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    phone: str | None = None
    currency: str = "USD"


@dataclass(slots=True)
class SinkBillLine:
    """A bill line in the fake sink."""

    id: str
    amount: Decimal
    account_id: str
    classifications: dict[DimensionKind, str] = field(default_factory=dict)
    description: str | None = None
    source_line_id: str | None = None


@dataclass(slots=True)
class SinkBill:
    """A bill in the fake sink; ``source_id`` is the ERP payable it came from (kept as a memo)."""

    id: str
    vendor_id: str
    invoice_number: str
    invoice_date: date
    due_date: date
    lines: list[SinkBillLine]
    created_at: datetime
    updated_at: datetime
    source_id: str | None = None
    description: str | None = None
    currency: str = "USD"
    paid_amount: Decimal = Decimal(0)

    @property
    def amount(self) -> Decimal:
        """The bill total: the sum of its lines (BILL computes it)."""
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def paid(self) -> bool:
        """Whether any payment applies to the bill (paid or partly paid)."""
        return self.paid_amount > 0


@dataclass(slots=True)
class SinkPaymentApplication:
    """The part of a payment applied to one bill (BILL's ``billPayments[]``)."""

    id: str
    bill_id: str
    amount: Decimal


@dataclass(slots=True)
class SinkPayment:
    """A payment in the fake sink."""

    id: str
    vendor_id: str
    amount: Decimal
    process_date: date
    status: PaymentStatus
    applications: list[SinkPaymentApplication]
    created_at: datetime
    updated_at: datetime
    transaction_number: str | None = None


@dataclass(slots=True)
class SinkSubscription:
    """A webhook subscription in the fake sink."""

    id: str
    notification_url: str
    events: list[str]
    enabled: bool
    security_key: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One signed webhook delivery the fake sink would POST to ``url``."""

    subscription_id: str
    url: str
    event_id: str
    headers: dict[str, str]
    body: bytes
