"""The fake ERP: vendors, a GL chart with dimensions, AP bills with statuses, posted payments.

Its records are the ERP's own ("wire") shapes, looser than the domain models on purpose: a test can
plant a bill whose line has no account or whose total does not match its lines, and the reference
plugin must report it as a rejected record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import TypeAdapter

from ml_connector.errors import InvalidRecordError
from ml_connector.models import Account, ChangeWindow, Dimension, Vendor
from ml_connector.testing._paging import ChangeIndex, Key
from ml_connector.testing._records import ErpPayable, ErpPayment, ErpStatus
from ml_connector.testing._state import FakeSystem

__all__ = ["FakeErp"]

SYSTEM = "reference_erp"


class FakeErp(FakeSystem):
    """The reference ERP's "server": state, paging, payment posting, and test helpers.

    Get one with :meth:`FakeErp.in_memory` (key = the plugin setting ``instance``) or
    :meth:`FakeErp.open` (a SQLite file, the plugin setting ``state_path``).

    Attributes:
        vendors: Vendors by id.
        accounts: GL accounts by id.
        dimensions: Dimension values by id.
        payables: AP documents by source id.
        payments: Posted payments by ERP payment id.
    """

    system = SYSTEM
    write_hooks: ClassVar[frozenset[str]] = frozenset({"record_payment"})
    codecs: ClassVar[dict[str, TypeAdapter[Any]]] = {
        "vendor": TypeAdapter(Vendor),
        "account": TypeAdapter(Account),
        "dimension": TypeAdapter(Dimension),
        "payable": TypeAdapter(ErpPayable),
        "payment": TypeAdapter(ErpPayment),
    }

    def __init__(self, key: str, **kwargs: Any) -> None:
        self.vendors: dict[str, Vendor] = {}
        self.accounts: dict[str, Account] = {}
        self.dimensions: dict[str, Dimension] = {}
        self.payables: dict[str, ErpPayable] = {}
        self.payments: dict[str, ErpPayment] = {}
        self._changes = ChangeIndex()
        # (sink payment, payable) -> the first ERP payment carrying it
        self._posted: dict[tuple[str, str], str] = {}
        self._paid: dict[str, Decimal] = {}  # payable -> amount paid
        super().__init__(key, **kwargs)

    @property
    def instance(self) -> str:
        """The ERP instance (tenant) name."""
        return self.key

    # --- Seeding and test helpers --------------------------------------------------------------

    def add_vendors(self, vendors: Iterable[Vendor]) -> None:
        """Add or replace vendors (one transaction)."""
        with self.writing():
            for vendor in vendors:
                self.vendors[vendor.source_id] = vendor
                self._stage("vendor", vendor.source_id, vendor)

    def add_accounts(self, accounts: Iterable[Account]) -> None:
        """Add or replace GL accounts (one transaction)."""
        with self.writing():
            for account in accounts:
                self.accounts[account.id] = account
                self._stage("account", account.id, account)

    def add_dimensions(self, dimensions: Iterable[Dimension]) -> None:
        """Add or replace dimension values (one transaction)."""
        with self.writing():
            for dimension in dimensions:
                self.dimensions[dimension.id] = dimension
                self._stage("dimension", dimension.id, dimension)

    def put_payables(self, payables: Iterable[ErpPayable]) -> None:
        """Add or replace AP documents as given, ``modified_at`` included (one transaction).

        Nothing is validated but the change time (it must be timezone-aware): this is how a
        test plants a malformed record.
        """
        with self.writing():
            for payable in payables:
                if payable.modified_at.tzinfo is None:
                    raise ValueError(f"{payable.source_id}: modified_at must be timezone-aware")
                self._put_payable(payable)

    def update_payable(self, source_id: str, **changes: Any) -> ErpPayable:
        """Change fields of a payable as a clerk would; ``modified_at`` becomes the clock's now.

        Args:
            source_id: The payable to change.
            **changes: Field values, e.g. ``status=ErpStatus.ON_HOLD`` or ``lines=[...]``.

        Returns:
            The changed payable.
        """
        changes.setdefault("modified_at", self.clock())
        updated = replace(self.payables[source_id], **changes)
        with self.writing():
            self._put_payable(updated)
        return updated

    def open_balance(self, source_id: str) -> Decimal:
        """What is still owed on a payable."""
        return self.payables[source_id].total - self._paid.get(source_id, Decimal(0))

    def payments_for(self, source_id: str) -> list[ErpPayment]:
        """The payments posted against a payable, oldest first."""
        return [p for p in self.payments.values() if p.payable_id == source_id]

    # --- Served operations (called by the plugin inside ``serve``) ------------------------------

    def changed_payables(
        self, window: ChangeWindow, after: Key | None, limit: int
    ) -> tuple[list[ErpPayable], Key | None]:
        """One page of approved payables changed in the window, after a key."""
        payables = self.payables

        def approved(source_id: str) -> bool:
            return payables[source_id].status is ErpStatus.APPROVED

        ids, last = self._changes.scan(window, after, limit, approved)
        return [payables[i] for i in ids], last

    def post_payment(
        self,
        *,
        sink_payment_id: str,
        payable_id: str,
        amount: Decimal,
        paid_on: date,
        reference: str,
    ) -> ErpPayment:
        """Post a payment against a bill, as an ERP's API does: every call posts one more.

        Like the ERPs it stands for, it keeps no idempotency key: whoever posts must look
        first (:meth:`find_payment`), so a test of the engine's exactly-once guard can fail.

        Returns:
            The new ERP payment.

        Raises:
            InvalidRecordError: The bill is missing or not open, or the amount is not positive
                or exceeds the open balance.
        """
        payable = self.payables.get(payable_id)
        if payable is None:
            raise self._refuse(sink_payment_id, "payable.source_id", f"no bill {payable_id}")
        if payable.status is not ErpStatus.APPROVED:
            raise self._refuse(
                sink_payment_id,
                "payable.source_id",
                f"bill {payable_id} is {payable.status.value}, not open for payment",
            )
        balance = self.open_balance(payable_id)
        if amount <= 0:
            raise self._refuse(sink_payment_id, "amount", "a payment must be positive")
        if amount > balance:
            raise self._refuse(
                sink_payment_id,
                "amount",
                f"{amount} exceeds the open balance {balance} of bill {payable_id}",
            )
        now = self.clock()
        payment = ErpPayment(
            id=self._next_id("PMT-", 6),
            payable_id=payable_id,
            amount=amount,
            paid_on=paid_on,
            sink_payment_id=sink_payment_id,
            reference=reference,
            recorded_at=now,
        )
        self._add_payment(payment)
        self._stage("payment", payment.id, payment)
        status = ErpStatus.CLOSED if amount == balance else payable.status
        self._put_payable(replace(payable, status=status, modified_at=now))
        return payment

    def find_payment(self, sink_payment_id: str, payable_id: str) -> ErpPayment | None:
        """The first payment that carries this sink payment id and pays this bill."""
        found = self._posted.get((sink_payment_id, payable_id))
        return None if found is None else self.payments[found]

    # --- Internals -----------------------------------------------------------------------------

    def _refuse(self, sink_payment_id: str, field_name: str, reason: str) -> InvalidRecordError:
        return InvalidRecordError("payment", sink_payment_id, field_name, reason, system=SYSTEM)

    def _put_payable(self, payable: ErpPayable) -> None:
        self.payables[payable.source_id] = payable
        self._changes.put(payable.source_id, payable.modified_at)
        self._stage("payable", payable.source_id, payable)

    def _add_payment(self, payment: ErpPayment) -> None:
        self.payments[payment.id] = payment
        self._posted.setdefault((payment.sink_payment_id, payment.payable_id), payment.id)
        self._paid[payment.payable_id] = self._paid.get(payment.payable_id, Decimal(0)) + (
            payment.amount
        )

    def _restore(self, kind: str, record: Any) -> None:
        if kind == "vendor":
            self.vendors[record.source_id] = record
        elif kind == "account":
            self.accounts[record.id] = record
        elif kind == "dimension":
            self.dimensions[record.id] = record
        elif kind == "payable":
            self._put_payable(record)
        elif kind == "payment":
            self._add_payment(record)
