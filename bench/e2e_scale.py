"""End-to-end scale: peak RSS and CPU per record of a full sync at zero latency.

Each bill count runs in its own child process, twice: once only seeding the emulators and creating
the connection (the baseline: the emulators hold every record in memory, as a real server would),
once also running the sync. The engine's share of peak RSS is the difference. CPU is the child's
user+system time during ``SyncEngine.run()``; it includes the in-process emulators and plugins, so
it is an upper bound of the engine's own CPU.

    uv run python bench/e2e_scale.py                           # 10,000 and 100,000 bills
    uv run python bench/e2e_scale.py --source epicor --bills 10000 30000

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_throughput import NAME, SINK, _check, make_emulators

from ml_connector.connections import SideInput, create_connection, open_connection
from ml_connector.engine import LimiterPool, SyncEngine, SyncOptions
from ml_connector.registry import Registry
from ml_connector.store import open_store
from ml_connector.vault import Vault


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="acumatica", help="source emulator (acumatica|epicor)")
    parser.add_argument("--bills", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--bulk", action="store_true", help="let the engine create bills in bulk")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--child", choices=("seed", "sync"), help=argparse.SUPPRESS)
    return parser.parse_args()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _child(source: str, bills: int, mode: str, bulk: bool) -> dict[str, Any]:
    erp, bill = make_emulators(source, bills, 0.0)
    folder = Path(tempfile.mkdtemp(prefix="ml-connector-scale-"))
    try:
        vault = Vault.from_key_file(folder / "master.key")
        store = open_store(str(folder / "state.db"))
        registry = Registry()
        create_connection(
            store,
            vault,
            registry,
            NAME,
            SideInput(
                source, erp.settings("http://erp.emulator" + erp.base_path), erp.credentials()
            ),
            SideInput(
                SINK, bill.settings("http://bill.emulator" + bill.base_path), bill.credentials()
            ),
        )
        result: dict[str, Any] = {"rss_after_seed_mb": round(_rss_mb(), 1)}
        if mode == "sync":
            transports = {source: erp.transport(), SINK: bill.transport()}
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
                cpu, wall = _cpu(), time.perf_counter()
                summary = await engine.run()
                result["cpu_s"] = round(_cpu() - cpu, 3)
                result["seconds"] = round(time.perf_counter() - wall, 3)
            finally:
                await connection.close()
            check = _check(erp, bill)
            result["status"] = str(summary.status)
            result["bills_created"] = summary.counts.get("bills_created", 0)
            result["payables_read"] = summary.counts.get("payables_read", 0)
            result["duplicates"] = check["duplicates"]
            result["missing"] = check["missing"]
        store.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    return result


def _spawn(args: argparse.Namespace, bills: int, mode: str) -> dict[str, Any] | None:
    """One child's JSON line, or None if it failed or ran past ``--timeout``."""
    command = [sys.executable, __file__, "--source", args.source, "--bills", str(bills)]
    command += ["--child", mode] + (["--bulk"] if args.bulk else [])
    try:
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=args.timeout
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _progress(f"{bills} bills, {mode}: failed ({exc.__class__.__name__})")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for bills in args.bills:
        _progress(f"{bills} bills: seed-only baseline")
        seed = _spawn(args, bills, "seed")
        _progress(f"{bills} bills: sync")
        sync = _spawn(args, bills, "sync")
        if seed is None or sync is None:
            rows.append({"bills": bills, "status": "did not finish"})
            continue
        records = max(sync["payables_read"], 1)
        rows.append(
            {
                "bills": bills,
                "baseline_peak_rss_mb": seed["peak_rss_mb"],
                "sync_peak_rss_mb": sync["peak_rss_mb"],
                "engine_rss_mb": round(sync["peak_rss_mb"] - seed["peak_rss_mb"], 1),
                "seconds": sync["seconds"],
                "cpu_s": sync["cpu_s"],
                "cpu_ms_per_record": round(1000 * sync["cpu_s"] / records, 3),
                "bills_created": sync["bills_created"],
                "duplicates": sync["duplicates"],
                "missing": sync["missing"],
                "status": sync["status"],
            }
        )
        _progress(json.dumps(rows[-1]))
    done = [r for r in rows if "engine_rss_mb" in r]
    flat = None
    if len(done) >= 2:
        flat = done[-1]["engine_rss_mb"] <= 1.5 * max(done[0]["engine_rss_mb"], 1.0)
    return {
        "benchmark": "e2e_scale",
        "source": args.source,
        "bulk": args.bulk,
        "latency_ms": 0,
        "runs": rows,
        "flat": flat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
        },
    }


def main() -> None:
    """Run the benchmark (or one child) and print its JSON line."""
    args = _arguments()
    if args.child:
        result = asyncio.run(_child(args.source, args.bills[0], args.child, args.bulk))
    else:
        result = _measure(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
