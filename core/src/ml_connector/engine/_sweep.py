"""The startup sweep: every write a crash or spent retries left undecided is decided first.

An open intent means a create was sent (or about to be) and its answer never recorded: the other
system may hold the record or not. Before a run reads anything new, each one is looked up on the
side it was written to:

- found: the link is recorded (and the record's queued exception resolved), so the record is
  never created again and what pays it is recognised as this connection's;
- not found: nothing was created; the intent is closed as ``failed`` and the record is created
  when it comes again, through its stream (a killed run never moved the cursor past it) or the
  exception queue (where spent retries put it);
- the look-up itself fails, or there is nothing to look it up by: the intent stays open, is
  counted as ``intents_undecided`` and listed by ``ml-connector state show``, and the next run
  tries again.

Accounts are decided in the accounts stage, against the sink's chart it lists anyway.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ml_connector.engine._context import task_group
from ml_connector.engine._ledger import AuditRecord, correlation_id_of
from ml_connector.errors import AuthenticationError, BudgetExhaustedError, ConnectorError
from ml_connector.models import PaymentPosting, Vendor
from ml_connector.store import ObjectType

if TYPE_CHECKING:
    from ml_connector.engine._context import RunContext
    from ml_connector.store import WriteIntentRow

__all__ = ["IntentSweep"]

log = logging.getLogger("ml_connector.engine")

_VENDOR = ObjectType.VENDOR.value
_BILL = ObjectType.BILL.value
_PAYMENT = ObjectType.PAYMENT.value

# Vendors first: a bill's look-up needs its vendor's sink id.
_ORDER = (_VENDOR, _BILL, _PAYMENT)

# Look-ups at once: after a crash there are at most a few dozen, and they share the sink's slots
# with nothing else yet.
_AT_ONCE = 8


@dataclass(frozen=True)
class _Undecidable:
    reason: str
    correlation_id: str | None = None


@dataclass(frozen=True)
class _Found:
    sink_id: str


class IntentSweep:
    """Decides the connection's open intents of vendors, bills and payments."""

    def __init__(self, run: RunContext) -> None:
        self._run = run

    async def sweep(self, object_types: tuple[str, ...] = _ORDER) -> int:
        """Decide every open intent of these object types.

        Returns:
            How many stay open (undecided).

        Raises:
            AuthenticationError: A side refused the credentials (the run fails).
            BudgetExhaustedError: A side's hourly budget is spent.
        """
        undecided = 0
        for object_type in object_types:
            # One decision per record: a record retried with changed content has an intent
            # per version, and one look-up answers them all.
            intents = {i.source_id: i for i in self._run.ledger.open_intents(object_type)}
            if not intents:
                continue
            limit = asyncio.Semaphore(_AT_ONCE)
            async with task_group() as group:
                tasks = [
                    group.create_task(self._decide(intent, limit)) for intent in intents.values()
                ]
            undecided += sum(1 for t in tasks if not t.result())
        return undecided

    async def _decide(self, intent: WriteIntentRow, limit: asyncio.Semaphore) -> bool:
        run, ledger = self._run, self._run.ledger
        kind, source_id = intent.object_type, intent.source_id
        async with limit:
            try:
                outcome = await self._find(intent)
            except (AuthenticationError, BudgetExhaustedError):
                raise
            except (ConnectorError, ValidationError) as exc:
                outcome = _Undecidable(f"the look-up failed: {exc}", correlation_id_of(exc))
        if isinstance(outcome, _Undecidable):
            log.warning("%s %s: open write intent left undecided: %s", kind, source_id, outcome)
            ledger.audit(
                AuditRecord(
                    kind,
                    "intent_undecided",
                    "open",
                    source_id,
                    error=outcome.reason,
                    correlation_id=outcome.correlation_id,
                )
            )
            run.count("intents_undecided")
            return False
        if outcome is None:
            other = "ERP" if kind == _PAYMENT else "sink"
            ledger.close_not_created(
                kind, source_id, f"not in the {other} after the interruption; nothing was created"
            )
            run.count("intents_not_created")
            return True
        ledger.complete(
            kind,
            source_id,
            outcome.sink_id,
            # Unknown content: the next sight of the record compares and updates if needed.
            "",
            AuditRecord(kind, "reconciled", "ok", source_id, outcome.sink_id),
        )
        run.count("intents_reconciled")
        return True

    async def _find(self, intent: WriteIntentRow) -> _Found | _Undecidable | None:
        lookup = intent.lookup or {}
        if intent.object_type == _VENDOR:
            return await self._find_vendor(lookup)
        if intent.object_type == _BILL:
            return await self._find_bill(intent.source_id, lookup)
        if intent.object_type == _PAYMENT:
            return await self._find_payment(lookup)
        return _Undecidable(f"{intent.object_type} intents are decided elsewhere")

    async def _find_vendor(self, lookup: dict[str, Any]) -> _Found | _Undecidable | None:
        run = self._run
        if "vendor" not in lookup:
            return _Undecidable("the intent predates look-up data; a bill of the vendor decides it")
        vendor = Vendor.model_validate(lookup["vendor"])
        found = await run.sink_read(lambda: run.sink.find_vendor(vendor))
        return None if found is None else _Found(found.sink_id)

    async def _find_bill(
        self, source_id: str, lookup: dict[str, Any]
    ) -> _Found | _Undecidable | None:
        run = self._run
        vendor_sink_id, invoice = lookup.get("vendor_sink_id"), lookup.get("invoice_number")
        if vendor_sink_id is None or invoice is None:
            # An intent written before intents kept look-up data: ask the source.
            payable = await run.source_read(lambda: run.source.get_payable(source_id))
            if payable is None:
                return _Undecidable("the source no longer has the payable to look it up by")
            vendor = run.ledger.link(_VENDOR, payable.vendor.source_id)
            if vendor is None:
                return None  # vendors are swept first: with none in the sink, no bill is either
            vendor_sink_id, invoice = vendor.sink_id, payable.invoice_number
        vid, number = str(vendor_sink_id), str(invoice)
        found = await run.sink_read(lambda: run.sink.find_bill(vid, number))
        return None if found is None else _Found(found.sink_id)

    async def _find_payment(self, lookup: dict[str, Any]) -> _Found | _Undecidable | None:
        run = self._run
        payable_id = lookup.get("payable_id")
        if payable_id is None:
            return _Undecidable("the intent predates look-up data; the payment stream decides it")
        payable = await run.source_read(lambda: run.source.get_payable(str(payable_id)))
        if payable is None:
            return _Undecidable(f"the source no longer has bill {payable_id}")
        fields = {k: v for k, v in lookup.items() if k != "payable_id"}
        posting = PaymentPosting.model_validate({**fields, "payable": payable})
        # A source without find_payment answers None: its record_payment looks before it
        # writes (contract < 1.2), so the payment stream re-drives the posting safely.
        found = await run.source_read(lambda: run.source.find_payment(posting))
        if found is not None and not found.finished:
            # Posted but not released: record_payment finishes it (it looks before it writes).
            found = await run.source_read(lambda: run.source.record_payment(posting))
        return None if found is None else _Found(found.source_id)
