"""Engine throughput against BILL's cap: bills per second at a per-call latency, 3 in flight.

The fake sink spends ``--latency-ms`` on every call and refuses a fourth call in flight (and
counts the refusals), as BILL does per organisation. At most three calls each ``L`` long are in
flight, so the sink can take at most ``3 / L`` calls per second: with one sink write per new bill
(single creates), that is also the most bills per second any client can reach. The ratio of the
measured rate to that cap says how close the engine gets. In bulk mode one call carries many
bills, so ``ratio_to_cap`` may exceed 1 and ``calls_ratio_to_cap`` is the figure to read.
``cpu_busy`` (process CPU / wall) near 1 means the event loop, not the cap, is the bottleneck.
``timer_ms`` is what one ``asyncio.sleep(L)`` really takes on this machine, and
``ceiling_ratio_to_cap`` the best ``ratio_to_cap`` a client with no idle slot could reach here
(bills / sink calls x L / timer_ms, single creates): vendor creates and the timer's overshoot
are not the engine's.

The default is 5,000 payables (about 4,200 bills): few enough to run in 40 seconds, enough that
the run's one-time work (the 50 vendor creates, which take BILL's slots but are not bills, the
account catalogs, the first page) does not decide the figure. ``--payables 2000`` shows it.

    uv run python bench/engine_throughput.py                       # 5,000 payables, 20 ms, single
    uv run python bench/engine_throughput.py --bulk                # bulk: one call per page
    uv run python bench/engine_throughput.py --payables 500 --latency-ms 50 --erp-latency-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _world import SINK_WRITES, StageClock, World, emit, machine, progress

from ml_connector.engine import run_async
from ml_connector.testing import SeedSpec, reset_fakes

CAP_IN_FLIGHT = 3


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payables", type=int, default=5_000, help="payables seeded (all kinds)")
    parser.add_argument("--vendors", type=int, default=50, help="vendors seeded")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per-call sink latency")
    parser.add_argument(
        "--erp-latency-ms", type=float, default=None, help="per-call ERP latency (default: same)"
    )
    parser.add_argument("--page-size", type=int, default=100, help="payables per ERP page")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-bulk", dest="bulk", action="store_false", help="single creates")
    mode.add_argument("--bulk", dest="bulk", action="store_true", help="bulk creates")
    parser.set_defaults(bulk=False)
    return parser.parse_args()


async def _timer_ms(seconds: float, samples: int = 50) -> float:
    """How long ``asyncio.sleep(seconds)`` (the fake's latency) really takes here, in ms."""
    if not seconds:
        return 0.0
    started = time.perf_counter()
    for _ in range(samples):
        await asyncio.sleep(seconds)
    return (time.perf_counter() - started) / samples * 1000


async def _measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    latency = args.latency_ms / 1000
    erp_latency = latency if args.erp_latency_ms is None else args.erp_latency_ms / 1000
    spec = SeedSpec(seed=args.seed, vendors=args.vendors, payables=args.payables)
    progress(f"seeding {args.payables} payables, {args.vendors} vendors")
    world = World.create(folder, spec, page_size=args.page_size)
    try:
        assert world.data is not None
        ready = len(world.data.ready_ids)
        world.set_latency(latency, erp_latency)
        timer_ms = await _timer_ms(latency)
        world.reset_counters()
        clock = StageClock()
        progress(f"syncing ({'bulk' if args.bulk else 'single'} creates, {args.latency_ms} ms)")
        started, cpu = time.perf_counter(), time.process_time()
        summary = await world.sync(bulk=args.bulk, observer=clock)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        world.close()
    faults = world.sink.faults
    counts = summary.counts
    bills = counts.get("bills_created", 0)
    sink_calls = faults.total_calls(faults.calls) - faults.cap_refusals
    cap_calls_per_s = CAP_IN_FLIGHT / latency if latency else None
    bills_per_s = bills / wall

    def ratio(rate: float) -> float | None:
        return round(rate / cap_calls_per_s, 4) if cap_calls_per_s else None

    payables_s = clock.span("payables", "payments")
    # A client that never leaves a slot idle still pays for the other sink calls (vendors, the
    # account list) and for the timer's own overshoot of the latency.
    single = not args.bulk and timer_ms and sink_calls
    ceiling = bills / sink_calls * latency * 1000 / timer_ms if single else None
    return {
        "benchmark": "engine_throughput",
        "mode": "bulk" if args.bulk else "single",
        "payables": args.payables,
        "ready_payables": ready,
        "vendors": args.vendors,
        "page_size": args.page_size,
        "latency_ms": args.latency_ms,
        "erp_latency_ms": erp_latency * 1000,
        "status": summary.status.value,
        "bills_created": bills,
        "bills_failed": counts.get("bills_failed", 0),
        "vendors_created": counts.get("vendors_created", 0),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_busy": round(cpu / wall, 3),
        "payables_stage_s": None if payables_s is None else round(payables_s, 3),
        "stage_starts_s": {k: round(t - started, 3) for k, t in clock.started.items()},
        "bills_per_s": round(bills_per_s, 2),
        "cap_bills_per_s": None if cap_calls_per_s is None else round(cap_calls_per_s, 2),
        "ratio_to_cap": ratio(bills_per_s),
        "timer_ms": round(timer_ms, 3),
        "ceiling_ratio_to_cap": None if ceiling is None else round(ceiling, 4),
        "sink_calls": sink_calls,
        "sink_write_calls": faults.total_calls(SINK_WRITES),
        "sink_calls_by_hook": dict(sorted(faults.calls.items())),
        "sink_calls_per_s": round(sink_calls / wall, 2),
        "calls_ratio_to_cap": ratio(sink_calls / wall),
        "cap_refusals": faults.cap_refusals,
        "peak_in_flight": faults.peak_in_flight,
        "cap_held": faults.peak_in_flight <= CAP_IN_FLIGHT and faults.cap_refusals == 0,
        "erp_calls": world.erp.faults.total_calls(world.erp.faults.calls),
        "machine": machine(),
    }


def main() -> None:
    """Seed, sync once with latency, print the JSON line."""
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        try:
            result = run_async(_measure(args, Path(tmp)))
        finally:
            reset_fakes()
    emit(result)


if __name__ == "__main__":
    main()
