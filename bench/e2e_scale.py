"""End-to-end scale: the engine's peak RSS and CPU per record in a full sync at zero latency.

For each bill count a fresh measuring process (so peaks do not carry over) starts the seeded
emulators in a child process of its own (``_emulated``: over real HTTP on loopback, their memory
and CPU are the remote systems', not the connector's), creates the connection, and runs
``SyncEngine.run()`` with single creates. It reads its own RSS right before the run, resets the
kernel's high-water mark (``/proc/self/clear_refs``), and reads ``VmHWM`` after the run:
``engine_rss_mb`` is the peak during the run minus the RSS before it, and must stay flat as the
count grows. ``cpu_ms_per_record`` is the measuring process's user+system CPU per payable read.

BILL's real budget of 20,000 requests an hour stops a single-create sync above about 19,900 bills
(the engine stops the run rather than wait the hour), so the budget is raised, in the BILL
emulator and in the engine's limiter alike (``--bill-requests-per-hour``; each line says what it
was).

    uv run python bench/e2e_scale.py                           # 10,000 and 100,000 bills
    uv run python bench/e2e_scale.py --source epicor --bills 10000 30000

Prints one JSON line per bill count on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulated import SINK, Seeding, start_emulators, state, sync
from _world import emit, machine, progress

from ml_connector.engine import run_async

FLAT = 1.5  # the largest count's engine RSS may be at most this times the smallest's


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="acumatica", help="source emulator (acumatica|epicor)")
    parser.add_argument("--bills", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--bulk", action="store_true", help="let the engine create bills in bulk")
    parser.add_argument(
        "--bill-requests-per-hour",
        type=int,
        default=10_000_000,
        help="BILL's hourly request budget, emulator and engine (the real one is 20,000)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per count")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False if the kernel would not."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One count, measured in this process against emulators in a child process."""
    bills = args.bills[0]
    extra = {SINK: {"requests_per_hour": args.bill_requests_per_hour}}
    with start_emulators(Seeding(args.source, bills, 0.0, extra)) as emulators:
        with state(emulators.sides) as made:
            before = _status_mb("VmRSS")
            reset = _reset_peak()
            run = sync(made, None, args.bulk, bill_requests_per_hour=args.bill_requests_per_hour)
            summary, seconds, cpu = run_async(run)
            peak = _status_mb("VmHWM")
        check = emulators.check()
    records = max(summary.counts.get("payables_read", 0), 1)
    return {
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_reset": reset,
        "engine_rss_mb": round(peak - before, 1),
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_record": round(1000 * cpu / records, 3),
        "payables_read": summary.counts.get("payables_read", 0),
        "bills_created": summary.counts.get("bills_created", 0),
        "duplicates": check["duplicates"],
        "missing": check["missing"],
        "status": str(summary.status),
        "error": summary.error,
    }


def _spawn(args: argparse.Namespace, bills: int) -> dict[str, Any]:
    """One count's figures from a fresh process, or why there are none."""
    command = [sys.executable, __file__, "--child", "--source", args.source, "--bills", str(bills)]
    command += ["--bill-requests-per-hour", str(args.bill_requests_per_hour)]
    command += ["--bulk"] if args.bulk else []
    try:
        done = subprocess.run(
            command, check=True, stdout=subprocess.PIPE, text=True, timeout=args.timeout
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return {"status": f"did not finish ({exc.__class__.__name__})"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Measure each count in its own process and print its JSON line."""
    args = _arguments()
    if args.child:
        print(json.dumps(_child(args)), flush=True)
        return
    first: float | None = None
    for bills in args.bills:
        progress(f"{bills} bills")
        row = _spawn(args, bills)
        rss = row.get("engine_rss_mb")
        if first is None and rss is not None:
            first = rss
        emit(
            {
                "benchmark": "e2e_scale",
                "source": args.source,
                "bills": bills,
                "mode": "bulk" if args.bulk else "single",
                "emulators": "process",
                "latency_ms": 0,
                "bill_requests_per_hour": args.bill_requests_per_hour,
                **row,
                "flat": None if rss is None or first is None else rss <= FLAT * max(first, 1.0),
                "machine": machine(),
            }
        )


if __name__ == "__main__":
    main()
