"""BILL bulk bill creation against single creates, at the same emulated latency.

The BILL plugin creates bills in the BILL emulator (in process, every request ``--latency-ms``
long, at most 3 in flight per organisation as BILL allows) twice: one ``POST /v3/bills`` per bill,
then ``POST /v3/bills/bulk`` with up to 200 bills per request. Both keep three requests in flight,
so single creates can reach at most ``3 / latency`` bills per second; bulk lifts that ceiling by the
batch size, until the emulator's own work per bill (validation, JSON) is what is left.

    uv run python bench/bill_bulk.py                      # 1,000 bills, 20 ms
    uv run python bench/bill_bulk.py --bills 2000 --latency-ms 50

Prints one JSON line on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.engine import run_async
from ml_connector.models import Address, BillDraft, BillDraftLine, Payable, PayableLine, Vendor
from ml_connector_bill import plugin
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import BULK_BILLS_LIMIT, MAX_IN_FLIGHT, BillCredentials, BillSettings

VENDORS = 10


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bills", type=int, default=1_000, help="bills created in each mode")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per-request latency")
    parser.add_argument("--batch", type=int, default=BULK_BILLS_LIMIT, help="bills per bulk call")
    return parser.parse_args()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _context(emulator: BillEmulator) -> ConnectionContext:
    return ConnectionContext(
        connection="bench",
        system="bill",
        role=Role.SINK,
        settings=BillSettings.model_validate(emulator.settings("http://bill.bench/connect")),
        credentials=BillCredentials.model_validate(emulator.credentials()),
        transport=emulator.transport(),
    )


def _drafts(vendor_ids: Sequence[str], account_id: str, count: int, tag: str) -> list[BillDraft]:
    drafts = []
    vendor = Vendor(source_id="V", name="Bench Vendor", address=Address(line1="1 Main St"))
    for i in range(count):
        amount = Decimal(1000 + i) / 100
        line = PayableLine(line_id="1", amount=amount, account_id="6100")
        payable = Payable(
            source_id=f"{tag}-{i}",
            document_number=f"{tag}-{i}",
            invoice_number=f"{tag}-INV-{i}",
            vendor=vendor,
            invoice_date=date(2025, 3, 1),
            due_date=date(2025, 3, 31),
            total=amount,
            lines=(line,),
            modified_at=datetime(2025, 3, 1, tzinfo=UTC),
        )
        drafts.append(
            BillDraft(
                payable=payable,
                vendor_sink_id=vendor_ids[i % len(vendor_ids)],
                lines=(
                    BillDraftLine(amount=amount, sink_account_id=account_id, source_line_id="1"),
                ),
            )
        )
    return drafts


async def _capped(calls: Sequence[Callable[[], Awaitable[Any]]]) -> float:
    """Run the calls with at most BILL's three in flight; seconds taken."""
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with slots:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    emulator = BillEmulator(EmulatorOptions(extra={"auto_deliver": False}))
    ctx = _context(emulator)
    await plugin.authenticate(ctx)
    vendor_ids = []
    for n in range(VENDORS):
        vendor = Vendor(
            source_id=f"V{n}",
            name=f"Bench Vendor {n}",
            address=Address(line1="1 Main St", city="Austin", state="TX", postal_code="78701"),
        )
        vendor_ids.append((await plugin.upsert_vendor(ctx, vendor, None)).sink_id)
    account_id = emulator.account_id("6100")
    emulator.latency = args.latency_ms / 1000
    results: dict[str, Any] = {}

    singles = _drafts(vendor_ids, account_id, args.bills, "S")
    _progress(f"single creates: {args.bills} bills, {args.latency_ms} ms, 3 in flight")
    before = len(emulator.log.records)
    seconds = await _capped(
        [lambda d=d: plugin.create_bill(ctx, d) for d in singles]  # type: ignore[misc]
    )
    results["single"] = {
        "seconds": round(seconds, 3),
        "bills_per_s": round(args.bills / seconds, 1),
        "requests": len(emulator.log.records) - before,
    }

    bulks = _drafts(vendor_ids, account_id, args.bills, "B")
    batches = [bulks[i : i + args.batch] for i in range(0, len(bulks), args.batch)]
    _progress(f"bulk creates: {args.bills} bills in {len(batches)} calls of up to {args.batch}")
    before = len(emulator.log.records)
    seconds = await _capped(
        [lambda b=b: plugin.create_bills(ctx, b) for b in batches]  # type: ignore[misc]
    )
    results["bulk"] = {
        "seconds": round(seconds, 3),
        "bills_per_s": round(args.bills / seconds, 1),
        "requests": len(emulator.log.records) - before,
    }
    await plugin.close_connection(ctx)

    created = sum(emulator.bills_by_key().values())
    if created != 2 * args.bills or emulator.gate.refused:
        raise SystemExit(f"bench invalid: {created} bills, {emulator.gate.refused} refused")
    return {
        "benchmark": "bill_bulk",
        "latency_ms": args.latency_ms,
        "bills": args.bills,
        "batch": args.batch,
        "in_flight": MAX_IN_FLIGHT,
        "single_cap_bills_per_s": round(MAX_IN_FLIGHT / (args.latency_ms / 1000), 1),
        **results,
        "speedup": round(results["bulk"]["bills_per_s"] / results["single"]["bills_per_s"], 1),
        "peak_in_flight": emulator.gate.peak,
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def main() -> None:
    """Run the benchmark and print its JSON line."""
    result = run_async(_measure(_arguments()))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
