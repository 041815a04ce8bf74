"""The fake sink: BILL at the domain level (shared/api/bill.md §4-7).

What it reproduces: BILL's id prefixes (vendors ``009``, bills ``00n``, lines ``bli``, payments
``stp``, bill payments ``blp``, accounts ``0ca``, classifications ``0de``/``cls``/…); vendors need
an address; duplicate vendor names and duplicate invoice numbers are accepted (so a duplicate the
engine causes stays visible); bulk bill creation is all or nothing, at most 200; a paid bill is not
changed; at most 10 webhook subscriptions, no two alike; three calls in flight per organization
(``BDC_1322`` beyond); an expired session answers ``BDC_1109``.
"""

from __future__ import annotations

import secrets
from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import TypeAdapter

from ml_connector.errors import InvalidRecordError, NotFoundError, UpstreamError
from ml_connector.models import (
    Account,
    AccountKind,
    BillDraft,
    ChangeWindow,
    Dimension,
    DimensionKind,
    PaymentStatus,
    Vendor,
)
from ml_connector.testing._faults import Faults
from ml_connector.testing._paging import ChangeIndex, Key
from ml_connector.testing._records import (
    SinkBill,
    SinkBillLine,
    SinkPayment,
    SinkPaymentApplication,
    SinkSubscription,
    SinkVendor,
    WebhookDelivery,
)
from ml_connector.testing._sink_rules import SYSTEM, check_draft, check_vendor, refuse_draft
from ml_connector.testing._state import FakeSystem
from ml_connector.testing._webhooks import SIGNATURE_HEADER, event_body, payment_json, sign

__all__ = ["FakeSink"]

BATCH_LIMIT = 200
MAX_IN_FLIGHT = 3
MAX_SUBSCRIPTIONS = 10
# BILL's classification id prefixes (bill.md §1); BILL has no subaccounts.
CLASSIFICATION_PREFIXES = {
    DimensionKind.CLASS: "cls",
    DimensionKind.DEPARTMENT: "0de",
    DimensionKind.LOCATION: "loc",
    DimensionKind.JOB: "job",
    DimensionKind.EMPLOYEE: "emp",
    DimensionKind.ITEM: "0ii",
}
# Payments in these statuses count against the bills they apply to.
COUNTED = frozenset({PaymentStatus.SCHEDULED, PaymentStatus.IN_PROCESS, PaymentStatus.PAID})


def normalise_name(name: str) -> str:
    """Fold case and spaces, as a name match does."""
    return " ".join(name.casefold().split())


@dataclass(frozen=True, slots=True)
class _Poison:
    field: str | None
    reason: str


class FakeSink(FakeSystem):
    """The reference sink's "server": BILL's records and rules, and test helpers.

    Get one with :meth:`FakeSink.in_memory` (key = the plugin setting ``organization_id``) or
    :meth:`FakeSink.open` (a SQLite file, the plugin setting ``state_path``). Its
    ``faults.max_in_flight`` is 3, as BILL's per-organization cap.

    Attributes:
        vendors: Vendors by sink id.
        bills: Bills by sink id.
        payments: Payments by sink id.
        accounts: Chart-of-accounts entries by sink id.
        classifications: Classification values (departments, classes, …) by sink id.
        subscriptions: Webhook subscriptions by id.
        outbox: Signed deliveries of ``payment.updated`` events, newest last (not persisted).

    ``write_hooks`` (counted by :meth:`write_calls`) leaves out ``ensure_webhook_subscription``:
    the engine may call it on every run to check and repair the subscription.
    """

    system = SYSTEM
    write_hooks: ClassVar[frozenset[str]] = frozenset(
        {"upsert_vendor", "create_bill", "create_bills", "create_account"}
    )
    codecs: ClassVar[dict[str, TypeAdapter[Any]]] = {
        "vendor": TypeAdapter(SinkVendor),
        "bill": TypeAdapter(SinkBill),
        "payment": TypeAdapter(SinkPayment),
        "account": TypeAdapter(Account),
        "classification": TypeAdapter(Dimension),
        "subscription": TypeAdapter(SinkSubscription),
    }

    def __init__(self, key: str, **kwargs: Any) -> None:
        self.vendors: dict[str, SinkVendor] = {}
        self.bills: dict[str, SinkBill] = {}
        self.payments: dict[str, SinkPayment] = {}
        self.accounts: dict[str, Account] = {}
        self.classifications: dict[str, Dimension] = {}
        self.subscriptions: dict[str, SinkSubscription] = {}
        self.outbox: list[WebhookDelivery] = []
        self._vendor_names: dict[str, list[str]] = {}
        self._invoices: dict[tuple[str, str], list[str]] = {}
        self._payment_changes = ChangeIndex()
        self._poison: dict[str, _Poison] = {}
        super().__init__(key, **kwargs)

    def _make_faults(self) -> Faults:
        return Faults(
            SYSTEM, max_in_flight=MAX_IN_FLIGHT, throttle_code="BDC_1322", session_code="BDC_1109"
        )

    @property
    def organization_id(self) -> str:
        """The BILL organization this sink is."""
        return self.key

    # --- Seeding and test helpers --------------------------------------------------------------

    def add_account(
        self,
        name: str,
        number: str | None = None,
        kind: AccountKind = AccountKind.EXPENSE,
        *,
        active: bool = True,
    ) -> Account:
        """Add a chart-of-accounts entry as an accountant would in BILL."""
        with self.writing():
            account = Account(
                id=self._next_id("0ca"), number=number, name=name, kind=kind, active=active
            )
            self._put_account(account)
        return account

    def add_classification(
        self, kind: DimensionKind, name: str, code: str | None = None, *, active: bool = True
    ) -> Dimension:
        """Add a classification value (department, class, location, job, employee, item).

        Raises:
            ValueError: BILL has no classification of that kind (e.g. subaccount).
        """
        prefix = CLASSIFICATION_PREFIXES.get(kind)
        if prefix is None:
            raise ValueError(f"BILL has no {kind.value} classification")
        with self.writing():
            value = Dimension(
                id=self._next_id(prefix), kind=kind, code=code, name=name, active=active
            )
            self.classifications[value.id] = value
            self._stage("classification", value.id, value)
        return value

    def add_vendor(self, vendor: Vendor) -> SinkVendor:
        """Create a vendor directly in the sink (one that existed before the connector)."""
        with self.writing():
            return self.create_vendor(vendor)

    def poison(
        self, payable_source_id: str, *, field: str | None = None, reason: str = "refused"
    ) -> None:
        """Make the sink refuse any bill drafted from this payable (single or bulk create)."""
        self._poison[payable_source_id] = _Poison(field, reason)

    def unpoison(self, payable_source_id: str) -> None:
        """Accept bills from this payable again."""
        self._poison.pop(payable_source_id, None)

    def pay_bill(
        self,
        bill_id: str,
        amount: Decimal | None = None,
        *,
        status: PaymentStatus = PaymentStatus.PAID,
        process_date: date | None = None,
        transaction_number: str | None = None,
    ) -> SinkPayment:
        """Pay one bill in the sink, as a BILL user would; ``amount`` defaults to what is owed."""
        return self.pay_bills(
            {bill_id: amount},
            status=status,
            process_date=process_date,
            transaction_number=transaction_number,
        )

    def pay_bills(
        self,
        amounts: Mapping[str, Decimal | None],
        *,
        status: PaymentStatus = PaymentStatus.PAID,
        process_date: date | None = None,
        transaction_number: str | None = None,
    ) -> SinkPayment:
        """Pay several bills of one vendor with one payment (one application per bill).

        Args:
            amounts: Bill id to amount; ``None`` pays what is still owed on the bill.
            status: The payment's status.
            process_date: The payment's date (default: the clock's today).
            transaction_number: BILL's ``transactionNumber``.

        Raises:
            ValueError: No bills, bills of different vendors, or an amount that is not positive
                or exceeds what is owed.
        """
        bills = [self.bills[bill_id] for bill_id in amounts]
        if not bills or len({b.vendor_id for b in bills}) != 1:
            raise ValueError("a payment pays one or more bills of a single vendor")
        now = self.clock()
        with self.writing():
            applications = []
            for bill in bills:
                owed = bill.amount - bill.paid_amount
                amount = amounts[bill.id]
                amount = owed if amount is None else amount
                if not 0 < amount <= owed:
                    raise ValueError(f"cannot pay {amount} on bill {bill.id}, which owes {owed}")
                applications.append(SinkPaymentApplication(self._next_id("blp"), bill.id, amount))
            payment = SinkPayment(
                id=self._next_id("stp"),
                vendor_id=bills[0].vendor_id,
                amount=sum((a.amount for a in applications), Decimal(0)),
                process_date=process_date or now.date(),
                status=status,
                applications=applications,
                created_at=now,
                updated_at=now,
                transaction_number=transaction_number,
            )
            self._put_payment(payment)
        return payment

    def set_payment_status(self, payment_id: str, status: PaymentStatus) -> SinkPayment:
        """Move a payment to another status (e.g. voided), as BILL's processing would."""
        old = self.payments[payment_id]
        with self.writing():
            payment = replace(old, status=status, updated_at=self.clock())
            self._put_payment(payment)
        return payment

    def put_payment(self, payment: SinkPayment) -> None:
        """Store a payment exactly as given, unchecked: how a test plants a malformed one."""
        with self.writing():
            self._put_payment(payment)

    def disable_subscription(self, subscription_id: str) -> None:
        """Disable a subscription, as BILL does after failed deliveries."""
        sub = self.subscriptions[subscription_id]
        with self.writing():
            sub.enabled = False
            sub.updated_at = self.clock()
            self._stage("subscription", sub.id, sub)

    def bills_for(self, vendor_id: str, invoice_number: str) -> list[SinkBill]:
        """Every bill with that vendor and invoice number (more than one is a duplicate)."""
        return [self.bills[i] for i in self._invoices.get((vendor_id, invoice_number), [])]

    def bill_for_payable(self, source_id: str) -> list[SinkBill]:
        """Every bill created from that ERP payable (by its memo); O(n), for assertions."""
        return [b for b in self.bills.values() if b.source_id == source_id]

    def duplicate_bills(self) -> dict[tuple[str, str], list[str]]:
        """Bill ids sharing a (vendor id, invoice number), by that pair."""
        return {k: list(v) for k, v in self._invoices.items() if len(v) > 1}

    def duplicate_vendors(self) -> dict[str, list[str]]:
        """Vendor ids sharing a (normalised) name, by that name."""
        return {k: list(v) for k, v in self._vendor_names.items() if len(v) > 1}

    def webhook_delivery(
        self, subscription_id: str, event_type: str, entity: Mapping[str, Any]
    ) -> WebhookDelivery:
        """Build a signed delivery of one event, as BILL would send it (minified JSON body).

        Args:
            subscription_id: The subscription whose key signs it.
            event_type: E.g. ``"payment.updated"``; its prefix names the entity key.
            entity: The entity's JSON object (must carry ``"id"``).
        """
        sub = self.subscriptions[subscription_id]
        event_id = self._next_id("evt", 12)
        body = event_body(event_id, sub.id, self.organization_id, event_type, entity)
        headers = {
            SIGNATURE_HEADER: sign(body, sub.security_key),
            "content-type": "application/json",
        }
        return WebhookDelivery(sub.id, sub.notification_url, event_id, headers, body)

    # --- Served operations: vendors ------------------------------------------------------------

    def find_vendors(self, name: str) -> list[SinkVendor]:
        """Vendors with that name (case and spaces folded), oldest first."""
        return [self.vendors[i] for i in self._vendor_names.get(normalise_name(name), [])]

    def create_vendor(self, vendor: Vendor) -> SinkVendor:
        """Create a vendor (BILL allows duplicate names).

        Raises:
            InvalidRecordError: The name is too long or the address incomplete.
        """
        check_vendor(vendor)
        now = self.clock()
        created = SinkVendor(
            id=self._next_id("009"),
            name=vendor.name,
            address=vendor.address,
            created_at=now,
            updated_at=now,
            email=vendor.email,
            phone=vendor.phone,
            currency=vendor.currency,
        )
        self._put_vendor(created)
        return created

    def update_vendor(self, vendor_id: str, vendor: Vendor) -> SinkVendor | None:
        """Update a vendor's data; ``None`` if there is no such vendor."""
        old = self.vendors.get(vendor_id)
        if old is None:
            return None
        check_vendor(vendor)
        self._vendor_names[normalise_name(old.name)].remove(vendor_id)
        updated = SinkVendor(
            id=old.id,
            name=vendor.name,
            address=vendor.address,
            created_at=old.created_at,
            updated_at=self.clock(),
            email=vendor.email,
            phone=vendor.phone,
            currency=vendor.currency,
        )
        self._put_vendor(updated)
        return updated

    # --- Served operations: bills and accounts -------------------------------------------------

    def create_bills(self, drafts: Sequence[BillDraft]) -> list[SinkBill]:
        """Create bills, all or nothing.

        Raises:
            InvalidRecordError: A draft is invalid (naming its payable and field); nothing is
                created.
            UpstreamError: More than 200 drafts.
        """
        if len(drafts) > BATCH_LIMIT:
            raise UpstreamError(
                f"a bulk create takes at most {BATCH_LIMIT} bills", system=SYSTEM, status=400
            )
        for draft in drafts:
            if draft.existing_sink_id is not None:
                raise refuse_draft(draft, "existing_sink_id", "a create cannot update a bill")
            self._check_draft(draft)
        created = []
        for draft in drafts:
            now = self.clock()
            bill = SinkBill(
                id=self._next_id("00n"),
                vendor_id=draft.vendor_sink_id,
                invoice_number=draft.payable.invoice_number,
                invoice_date=draft.payable.invoice_date,
                due_date=draft.payable.due_date,
                lines=self._lines(draft),
                created_at=now,
                updated_at=now,
                source_id=draft.payable.source_id,
                description=draft.payable.description,
                currency=draft.payable.currency,
            )
            self._put_bill(bill)
            created.append(bill)
        return created

    def update_bill(self, bill_id: str, draft: BillDraft) -> tuple[SinkBill, bool]:
        """Replace an unpaid bill's data; leave a (partly) paid bill alone.

        Returns:
            The bill, and whether it was left alone because it is paid.

        Raises:
            NotFoundError: No such bill (BDC_1205).
            InvalidRecordError: The draft is invalid.
        """
        old = self.bills.get(bill_id)
        if old is None:
            raise NotFoundError(
                f"bill {bill_id} not found", system=SYSTEM, status=404, code="BDC_1205"
            )
        if old.paid:
            return old, True
        self._check_draft(draft)
        self._invoices[(old.vendor_id, old.invoice_number)].remove(bill_id)
        bill = SinkBill(
            id=old.id,
            vendor_id=draft.vendor_sink_id,
            invoice_number=draft.payable.invoice_number,
            invoice_date=draft.payable.invoice_date,
            due_date=draft.payable.due_date,
            lines=self._lines(draft),
            created_at=old.created_at,
            updated_at=self.clock(),
            source_id=draft.payable.source_id,
            description=draft.payable.description,
            currency=draft.payable.currency,
        )
        self._put_bill(bill)
        return bill, False

    def create_account(self, account: Account) -> Account:
        """Create a chart-of-accounts entry copied from a source account.

        Raises:
            InvalidRecordError: An active account already has that name.
        """
        wanted = normalise_name(account.name)
        if any(normalise_name(a.name) == wanted for a in self.accounts.values() if a.active):
            raise InvalidRecordError(
                "account", account.id, "name", "an account with this name exists", system=SYSTEM
            )
        created = Account(
            id=self._next_id("0ca"), number=account.number, name=account.name, kind=account.kind
        )
        self._put_account(created)
        return created

    # --- Served operations: payments and subscriptions -----------------------------------------

    def changed_payments(
        self, window: ChangeWindow, after: Key | None, limit: int
    ) -> tuple[list[SinkPayment], Key | None]:
        """One page of payments (any status) changed in the window, after a key."""
        ids, last = self._payment_changes.scan(window, after, limit, lambda _: True)
        return [self.payments[i] for i in ids], last

    def ensure_subscription(
        self, url: str, events: Sequence[str], existing_id: str | None
    ) -> tuple[SinkSubscription, bool]:
        """Create, repair or re-key a subscription.

        Returns:
            The subscription, and whether its security key is new (created or rotated).

        Raises:
            UpstreamError: A non-HTTPS URL, no events, or 10 subscriptions already (HTTP 400).
        """
        if not url.startswith("https://") or not events:
            raise UpstreamError(
                "notificationUrl must be HTTPS and events must not be empty",
                system=SYSTEM,
                status=400,
            )
        now = self.clock()
        sub = self.subscriptions.get(existing_id) if existing_id else None
        if sub is not None:
            if (sub.notification_url, sub.events, sub.enabled) != (url, list(events), True):
                sub.notification_url, sub.events, sub.enabled = url, list(events), True
                sub.updated_at = now
                self._stage("subscription", sub.id, sub)
            return sub, False
        twin = next(
            (
                s
                for s in self.subscriptions.values()
                if s.notification_url == url and set(s.events) == set(events)
            ),
            None,
        )
        if twin is not None:  # BILL refuses a duplicate: rotate the twin's key instead
            twin.security_key, twin.enabled, twin.updated_at = _new_key(), True, now
            self._stage("subscription", twin.id, twin)
            return twin, True
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise UpstreamError(
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per organization",
                system=SYSTEM,
                status=400,
            )
        sub = SinkSubscription(
            id=self._next_id("sub", 12),
            notification_url=url,
            events=list(events),
            enabled=True,
            security_key=_new_key(),
            created_at=now,
            updated_at=now,
        )
        self.subscriptions[sub.id] = sub
        self._stage("subscription", sub.id, sub)
        return sub, True

    # --- Internals -----------------------------------------------------------------------------

    def _check_draft(self, draft: BillDraft) -> None:
        poison = self._poison.get(draft.payable.source_id)
        if poison is not None:
            raise refuse_draft(draft, poison.field, poison.reason)
        check_draft(
            draft,
            vendor_ids=self.vendors,
            accounts=self.accounts,
            classifications=self.classifications,
        )

    def _lines(self, draft: BillDraft) -> list[SinkBillLine]:
        return [
            SinkBillLine(
                id=self._next_id("bli"),
                amount=line.amount,
                account_id=line.sink_account_id,
                classifications=dict(line.classifications),
                description=line.description,
                source_line_id=line.source_line_id,
            )
            for line in draft.lines
        ]

    def _put_vendor(self, vendor: SinkVendor) -> None:
        self.vendors[vendor.id] = vendor
        # Ids grow with creation, so sorted ids keep "oldest first".
        insort(self._vendor_names.setdefault(normalise_name(vendor.name), []), vendor.id)
        self._stage("vendor", vendor.id, vendor)

    def _put_bill(self, bill: SinkBill) -> None:
        self.bills[bill.id] = bill
        insort(self._invoices.setdefault((bill.vendor_id, bill.invoice_number), []), bill.id)
        self._stage("bill", bill.id, bill)

    def _put_account(self, account: Account) -> None:
        self.accounts[account.id] = account
        self._stage("account", account.id, account)

    def _put_payment(self, payment: SinkPayment) -> None:
        old = self.payments.get(payment.id)
        self._settle(old, -1)
        self._settle(payment, +1)
        self.payments[payment.id] = payment
        self._payment_changes.put(payment.id, payment.updated_at)
        self._stage("payment", payment.id, payment)
        for sub in self.subscriptions.values():
            if sub.enabled and "payment.updated" in sub.events:
                self.outbox.append(
                    self.webhook_delivery(
                        sub.id, "payment.updated", payment_json(payment, self.vendors)
                    )
                )

    def _settle(self, payment: SinkPayment | None, sign_: int) -> None:
        """Count (or uncount) a payment against the bills it applies to."""
        if payment is None or payment.status not in COUNTED:
            return
        for application in payment.applications:
            bill = self.bills.get(application.bill_id)
            if bill is not None:
                bill.paid_amount += sign_ * application.amount
                bill.updated_at = payment.updated_at
                self._stage("bill", bill.id, bill)

    def _restore(self, kind: str, record: Any) -> None:
        if kind == "vendor":
            self._put_vendor(record)
        elif kind == "bill":
            self._put_bill(record)
        elif kind == "payment":
            # Bills are persisted with their paid amount already: index the payment only.
            self.payments[record.id] = record
            self._payment_changes.put(record.id, record.updated_at)
        elif kind == "account":
            self._put_account(record)
        elif kind == "classification":
            self.classifications[record.id] = record
        elif kind == "subscription":
            self.subscriptions[record.id] = record


def _new_key() -> str:
    return secrets.token_urlsafe(32)
