"""Payments back: each paid sink payment is recorded against the ERP bill it pays, once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ml_connector.engine._context import as_record_error, task_group
from ml_connector.engine._fingerprint import fingerprint
from ml_connector.engine._ledger import AuditRecord, correlation_id_of
from ml_connector.engine._lookups import payment_lookup
from ml_connector.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    ConnectorError,
    InvalidRecordError,
)
from ml_connector.models import (
    ChangeWindow,
    Payment,
    PaymentApplication,
    PaymentPosting,
    PaymentStatus,
)
from ml_connector.store import ObjectType

if TYPE_CHECKING:
    from ml_connector.engine._context import RunContext
    from ml_connector.models import RecordedPayment

__all__ = ["PaymentSync", "payment_id_of", "posting_key"]

_BILL = ObjectType.BILL.value
_PAYMENT = ObjectType.PAYMENT.value
STREAM = "payments"

#: Statuses that undo a payment the ERP may already have recorded.
_UNDONE = frozenset({PaymentStatus.FAILED, PaymentStatus.VOIDED, PaymentStatus.CANCELLED})


class _WaitsForBill(InvalidRecordError):
    """A payment of a bill that may be one of this connection's undecided creates."""


def posting_key(payment_sink_id: str, bill_sink_id: str) -> str:
    """The id of one payment application: a payment may pay several bills."""
    return f"{payment_sink_id}:{bill_sink_id}"


def payment_id_of(key: str) -> str:
    """The sink payment id of a :func:`posting_key` (or of a bare payment id)."""
    return key.split(":", 1)[0]


class PaymentSync:
    """Reads changed sink payments and records the paid ones in the source.

    For payments, the link's ``source_id`` is the sink payment application (:func:`posting_key`)
    and its ``sink_id`` the ERP payment document: the payment flows the other way.
    """

    def __init__(self, run: RunContext) -> None:
        self._run = run
        self._workers = asyncio.Semaphore(run.options.workers or 8)
        #: Bill intents of this connection still undecided after the sweep: while any are,
        #: a payment of an unlinked bill is queued, not ignored.
        self.undecided_bills = 0

    async def sync(self, window: ChangeWindow) -> None:
        """Record every paid payment changed in ``window``."""
        run, token = self._run, None
        while True:
            page = await run.sink_read(
                lambda t=token: run.sink.list_changed_payments(window, t)  # type: ignore[misc]
            )
            for rejected in page.rejected:
                run.count("payments_rejected")
                run.ledger.add_exception(
                    _PAYMENT,
                    rejected.record_id or "(unknown)",
                    rejected.field,
                    rejected.reason,
                    None,
                )
            async with task_group() as group:
                for payment in page.items:
                    group.create_task(self.sync_one(payment))
            run.ledger.flush()
            token = page.next_page_token
            if token is None:
                return

    async def sync_one(self, payment: Payment) -> None:
        """Record one payment's applications (replay and exception retries use it too)."""
        run = self._run
        run.count("payments_read")
        if payment.status in _UNDONE:
            self._flag_undone(payment)
            return
        if payment.status is not PaymentStatus.PAID:
            run.ledger.audit(
                AuditRecord(_PAYMENT, "skipped_not_paid", payment.status.value, payment.sink_id)
            )
            return
        for application in payment.applications:
            async with self._workers:
                try:
                    await self._record(payment, application)
                except (AuthenticationError, BudgetExhaustedError):
                    raise
                except Exception as exc:  # one record's failure stops nothing else
                    key = posting_key(payment.sink_id, application.bill_sink_id)
                    correlation_id = correlation_id_of(exc)
                    if not isinstance(exc, ConnectorError):
                        exc = as_record_error(exc, f"payment {key}")
                    field = exc.field if isinstance(exc, InvalidRecordError) else None
                    reason = exc.reason if isinstance(exc, InvalidRecordError) else str(exc)
                    run.ledger.add_exception(
                        _PAYMENT,
                        key,
                        field,
                        reason,
                        fingerprint(payment),
                        retry=isinstance(exc, _WaitsForBill),
                        correlation_id=correlation_id,
                    )
                    run.count("payments_failed")

    def _flag_undone(self, payment: Payment) -> None:
        """A payment recorded in the ERP that the sink now reports failed, voided or cancelled.

        The contract has no hook to reverse an ERP payment, so a person must: the posting goes
        to the exception queue with what to do, and nothing is written.
        """
        ledger = self._run.ledger
        for application in payment.applications:
            key = posting_key(payment.sink_id, application.bill_sink_id)
            link = ledger.link(_PAYMENT, key)
            if link is None:
                continue
            ledger.add_exception(
                _PAYMENT,
                key,
                "status",
                f"the sink now reports payment {payment.sink_id} {payment.status.value}, but it "
                f"was recorded in the ERP as {link.sink_id}: reverse it there",
                fingerprint(payment),
            )
            self._run.count("payments_undone")

    async def _record(self, payment: Payment, application: PaymentApplication) -> None:
        run, ledger = self._run, self._run.ledger
        key = posting_key(payment.sink_id, application.bill_sink_id)
        if ledger.link(_PAYMENT, key) is not None:
            run.count("payments_already_recorded")
            return
        if ledger.ignored_digest(_PAYMENT, key) == fingerprint(payment):
            ledger.audit(AuditRecord(_PAYMENT, "skipped_ignored", "ok", key))
            run.count("payments_ignored_by_operator")
            return
        bill = ledger.link_by_sink_id(_BILL, application.bill_sink_id)
        if bill is None and self.undecided_bills:
            # One of this connection's bill creates is undecided (its look-up failed): this
            # could be that bill, so the payment waits instead of being dropped as not ours.
            raise _WaitsForBill(
                "payment",
                key,
                "bill",
                f"pays sink bill {application.bill_sink_id}, which is not linked while "
                f"{self.undecided_bills} bill create(s) of this connection are undecided "
                "(see `ml-connector state show`); tried again at every run until they are",
            )
        if bill is None:
            ledger.audit(
                AuditRecord(
                    _PAYMENT,
                    "ignored",
                    "not_ours",
                    key,
                    application.bill_sink_id,
                    error="pays a bill this connection did not create",
                )
            )
            run.count("payments_ignored")
            return
        source_id = bill.source_id
        payable = await run.source_read(lambda: run.source.get_payable(source_id))
        if payable is None:
            raise InvalidRecordError(
                "payment", key, "bill", f"the originating ERP bill {source_id} no longer exists"
            )
        posting = PaymentPosting(
            payment_sink_id=payment.sink_id,
            payable=payable,
            amount=application.amount,
            paid_on=payment.process_date,
            reference=payment.reference or payment.sink_id,
        )
        version = fingerprint(application)
        # No ERP offers an idempotency key: look first, so a posting a lost answer or a crash
        # hid is found instead of posted again.
        found = await run.source_read(lambda: run.source.find_payment(posting))
        if found is not None and found.finished:
            self._complete(key, found, version, "already_recorded")
            run.count("payments_already_in_erp")
            return
        await ledger.begin_intents(_PAYMENT, [(key, version)], {key: payment_lookup(posting)})
        result = await run.write(
            run.source_limiter,
            lambda: run.source.record_payment(posting),
            lambda: run.source.find_payment(posting),
        )
        self._complete(
            key, result, version, "already_recorded" if result.already_recorded else "ok"
        )
        run.count("payments_recorded")

    def _complete(self, key: str, result: RecordedPayment, version: str, outcome: str) -> None:
        self._run.ledger.complete(
            _PAYMENT,
            key,
            result.source_id,
            version,
            AuditRecord(
                _PAYMENT, "payment_recorded", outcome, key, result.source_id, payload_digest=version
            ),
        )
