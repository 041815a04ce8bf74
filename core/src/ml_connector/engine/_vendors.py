"""Vendors: created or updated in the sink once per run, however many bills need them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ml_connector.engine._fingerprint import fingerprint
from ml_connector.engine._ledger import AuditRecord
from ml_connector.engine._lookups import vendor_lookup
from ml_connector.store import ObjectType

if TYPE_CHECKING:
    from ml_connector.engine._context import RunContext
    from ml_connector.models import Vendor, VendorResult

__all__ = ["VendorSync"]

_VENDOR = ObjectType.VENDOR.value


class VendorSync:
    """Ensures vendors exist in the sink, single-flight per vendor.

    The first payable that needs a vendor starts the work; every other payable of that vendor,
    even one already in flight, waits for the same task, so a vendor is never created twice.
    """

    def __init__(self, run: RunContext) -> None:
        self._run = run
        self._tasks: dict[str, asyncio.Task[str]] = {}

    async def ensure(self, vendor: Vendor) -> str:
        """The vendor's sink id, creating or updating the vendor if needed.

        Raises:
            InvalidRecordError: The sink refused the vendor.
            UpstreamError: The sink failed.
        """
        task = self._tasks.get(vendor.source_id)
        if task is None:
            task = asyncio.create_task(self._ensure(vendor))
            self._tasks[vendor.source_id] = task
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel vendor work still going: it must not outlive the run that started it.

        A run that fails (credentials refused, say) leaves these tasks behind otherwise, and a
        create they finish after the run ended is one the next run's sweep could not see.
        """
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _ensure(self, vendor: Vendor) -> str:
        run, sink, ledger = self._run, self._run.sink, self._run.ledger
        version = fingerprint(vendor)
        link = ledger.link(_VENDOR, vendor.source_id)
        if link is None and ledger.open_intent(_VENDOR, vendor.source_id) is not None:
            # An earlier create may have happened before the process died: look first.
            found = await run.sink_read(lambda: sink.find_vendor(vendor))
            if found is not None:
                self._complete(vendor, found, "", "reconciled")
                link = ledger.link(_VENDOR, vendor.source_id)
        if link is not None and link.fingerprint == version:
            return link.sink_id
        if link is not None:
            existing = link.sink_id
            result = await run.sink_read(lambda: sink.upsert_vendor(vendor, existing))
            self._complete(vendor, result, version, "updated")
            run.count("vendors_updated")
            return result.sink_id
        await ledger.begin_intents(
            _VENDOR, [(vendor.source_id, version)], {vendor.source_id: vendor_lookup(vendor)}
        )
        result = await run.write(
            run.sink_limiter,
            lambda: sink.upsert_vendor(vendor, None),
            lambda: sink.find_vendor(vendor),
        )
        self._complete(vendor, result, version, "created" if result.created else "linked")
        run.count("vendors_created" if result.created else "vendors_linked")
        return result.sink_id

    def _complete(self, vendor: Vendor, result: VendorResult, version: str, action: str) -> None:
        self._run.ledger.complete(
            _VENDOR,
            vendor.source_id,
            result.sink_id,
            version,
            AuditRecord(
                object_type=_VENDOR,
                action=action,
                outcome="ok",
                source_id=vendor.source_id,
                sink_id=result.sink_id,
                payload_digest=version or None,
            ),
        )
