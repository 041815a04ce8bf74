"""End-to-end throughput: a full sync from a source emulator to the BILL emulator, then a rerun.

Both emulators run in process (httpx's ASGI transport; every request takes ``--latency-ms``, and
the BILL emulator admits at most 3 requests in flight, BILL's cap). The ERP is seeded with
``--bills`` approved bills (plus bills that must not move), BILL with the chart of accounts minus
the deliberately unmapped account; a connection is created in a temporary SQLite state and
``SyncEngine.run()`` is timed. A second run with no changes follows: it must make no BILL writes.

    uv run python bench/e2e_throughput.py --source acumatica              # 2,000 bills, 20 ms
    uv run python bench/e2e_throughput.py --source epicor --bills 10000 --bulk

Prints one JSON line on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_connector.connections import SideInput, create_connection, open_connection
from ml_connector.emulation import (
    DemoSink,
    DemoSource,
    Emulator,
    EmulatorOptions,
    RequestLog,
    load_emulator,
)
from ml_connector.engine import LimiterPool, RunSummary, SyncEngine, SyncOptions
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.vault import Vault

SINK = "bill"
NAME = "bench"
SEED = 11
BILL_IN_FLIGHT = 3
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SESSION = ("/login", "/logout")  # session POSTs: not data writes


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="acumatica", help="source emulator (acumatica|epicor)")
    parser.add_argument("--bills", type=int, default=2_000, help="approved bills seeded")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per-request latency")
    parser.add_argument("--bulk", action="store_true", help="let the engine create bills in bulk")
    parser.add_argument(
        "--time-store", action="store_true", help="time the state store's transactions"
    )
    parser.add_argument("--state-dir", help="folder for the SQLite state (default: a temp dir)")
    parser.add_argument("--no-rerun", action="store_true", help="skip the unchanged rerun")
    return parser.parse_args()


_LAST_CPU = [0.0]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_STORE = {"sessions": 0, "writes": 0, "seconds": 0.0, "write_seconds": 0.0}


def _time_store() -> None:
    """Wrap Store.session to add up the time the event loop spends in state transactions."""
    original = Store.session

    @contextmanager
    def timed(self: Store, *, read_only: bool = False) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            with original(self, read_only=read_only) as session:
                yield session
        finally:
            spent = time.perf_counter() - started
            _STORE["sessions"] += 1
            _STORE["seconds"] += spent
            if not read_only:
                _STORE["writes"] += 1
                _STORE["write_seconds"] += spent

    Store.session = timed  # type: ignore[method-assign]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _routes(log: RequestLog) -> Counter[tuple[str, str]]:
    return Counter(log.by_route)


def _writes(routes: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{m} {r}": n for (m, r), n in sorted(routes.items()) if m in _WRITES and n}


def _data_writes(routes: Counter[tuple[str, str]]) -> int:
    return sum(
        n for (m, r), n in routes.items() if m in _WRITES and not any(x in r for x in _SESSION)
    )


def _session_calls(routes: Counter[tuple[str, str]]) -> int:
    return sum(n for (_, r), n in routes.items() if any(x in r for x in _SESSION))


def _reads(routes: Counter[tuple[str, str]]) -> int:
    return sum(n for (m, _), n in routes.items() if m not in _WRITES)


def make_emulators(source: str, bills: int, latency: float) -> tuple[Emulator, Emulator]:
    """Seeded emulators: the ERP's bills, and BILL's chart with all but the unmapped account."""
    options = EmulatorOptions(latency=latency, seed=SEED)
    erp = load_emulator(source)(options)
    bill = load_emulator(SINK)(options)
    if not isinstance(erp, DemoSource) or not isinstance(bill, DemoSink):
        raise SystemExit(f"{source} or {SINK} cannot be seeded for the demo")
    erp.seed_demo(bills, SEED)
    unmapped = erp.unmapped_account()
    bill.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
    return erp, bill


async def _run(
    store: Store, vault: Vault, registry: Registry, erp: Emulator, bill: Emulator, bulk: bool
) -> tuple[RunSummary, float]:
    transports = {erp.system: erp.transport(), SINK: bill.transport()}
    connection = open_connection(store, vault, registry, NAME, transports)
    try:
        engine = SyncEngine(
            store,
            connection.id,
            connection.source,
            connection.sink,
            SyncOptions(bulk=bulk),
            limiters=LimiterPool(),
        )
        cpu = _cpu()
        _STORE.update(sessions=0, writes=0, seconds=0.0, write_seconds=0.0)
        started = time.perf_counter()
        summary = await engine.run()
        seconds = time.perf_counter() - started
        _LAST_CPU[0] = _cpu() - cpu
    finally:
        await connection.close()
    return summary, seconds


def _store_figures(args: argparse.Namespace, created: int) -> dict[str, Any]:
    if not args.time_store:
        return {}
    per_bill = 1000 * float(_STORE["seconds"]) / max(created, 1)
    return {
        "store_sessions": _STORE["sessions"],
        "store_write_sessions": _STORE["writes"],
        "store_write_seconds": round(float(_STORE["write_seconds"]), 3),
        "store_seconds": round(float(_STORE["seconds"]), 3),
        "store_ms_per_bill": round(per_bill, 3),
    }


def _check(erp: Any, bill: Any) -> dict[str, int]:
    in_bill: dict[Any, int] = bill.bills_by_key()
    eligible: set[Any] = erp.eligible_bills()
    return {
        "eligible": len(eligible),
        "duplicates": sum(1 for n in in_bill.values() if n > 1),
        "missing": len(eligible - set(in_bill)),
        "unexpected": len(set(in_bill) - eligible),
    }


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    latency = args.latency_ms / 1000
    _progress(f"seeding {args.source} with {args.bills} bills")
    erp, bill = make_emulators(args.source, args.bills, latency)
    folder = Path(tempfile.mkdtemp(prefix="ml-connector-e2e-", dir=args.state_dir))
    try:
        vault = Vault.from_key_file(folder / "master.key")
        store = open_store(str(folder / "state.db"))
        registry = Registry()
        base = ("http://erp.emulator", "http://bill.emulator")
        create_connection(
            store,
            vault,
            registry,
            NAME,
            SideInput(args.source, erp.settings(base[0] + erp.base_path), erp.credentials()),
            SideInput(SINK, bill.settings(base[1] + bill.base_path), bill.credentials()),
        )
        erp.log.clear()
        bill.log.clear()
        _progress(f"first run: {args.latency_ms} ms, bulk={args.bulk}")
        first, seconds = await _run(store, vault, registry, erp, bill, args.bulk)
        if first.status != "succeeded":
            raise SystemExit(f"first run {first.status}: {first.error}")
        bill_routes, erp_routes = _routes(bill.log), _routes(erp.log)
        created = first.counts.get("bills_created", 0)
        cap = BILL_IN_FLIGHT / latency if latency else None
        bill_writes = _writes(bill_routes)
        result: dict[str, Any] = {
            "benchmark": "e2e_throughput",
            "source": args.source,
            "bills": args.bills,
            "latency_ms": args.latency_ms,
            "bulk": args.bulk,
            "seconds": round(seconds, 3),
            "cpu_s": round(_LAST_CPU[0], 3),
            "bills_created": created,
            **_store_figures(args, created),
            "bills_per_s": round(created / seconds, 1),
            "cap_bills_per_s": round(cap, 1) if cap else None,
            "ratio_to_cap": round(created / seconds / cap, 3) if cap else None,
            "bill_write_calls": _data_writes(bill_routes),
            "bill_bill_creates": sum(n for r, n in bill_writes.items() if "/bills" in r),
            "bill_vendor_creates": sum(n for r, n in bill_writes.items() if "/vendors" in r),
            "bill_session_calls": _session_calls(bill_routes),
            "bill_writes_by_route": bill_writes,
            "bill_read_calls": _reads(bill_routes),
            "erp_requests": sum(erp_routes.values()),
            "counts": dict(sorted(first.counts.items())),
        }
        result.update(_check(erp, bill))
        if not args.no_rerun:
            bill.log.clear()
            erp.log.clear()
            _progress("rerun with no changes")
            second, rerun_seconds = await _run(store, vault, registry, erp, bill, args.bulk)
            bill_routes, erp_routes = _routes(bill.log), _routes(erp.log)
            result["rerun"] = {
                "status": str(second.status),
                "seconds": round(rerun_seconds, 3),
                "cpu_s": round(_LAST_CPU[0], 3),
                "bill_write_calls": _data_writes(bill_routes),
                "bill_session_calls": _session_calls(bill_routes),
                "bill_read_calls": _reads(bill_routes),
                "erp_read_calls": _reads(erp_routes),
                "erp_writes_by_route": _writes(erp_routes),
                "erp_time_floor_s": round(_reads(erp_routes) * latency, 3),
                "counts": dict(sorted(second.counts.items())),
            }
            result.update({f"after_rerun_{k}": v for k, v in _check(erp, bill).items()})
        store.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    return result


def main() -> None:
    """Run the benchmark and print its JSON line."""
    args = _arguments()
    if args.time_store:
        _time_store()
    print(json.dumps(asyncio.run(_measure(args))), flush=True)


if __name__ == "__main__":
    main()
