"""Engine CPU per record at zero latency: a first sync, then an unchanged rerun.

With no latency the run is bound by the process itself, so ``time.process_time`` around a run is
the cost of one record through the engine, the reference plugins and the fakes (the fakes' share
is small: dict lookups and dataclass builds), the state store's SQL included. The rerun reads
every payable again (a lookback wider than the data) and skips each on its fingerprint: the cost
of a re-read with nothing to write.

    uv run python bench/engine_cpu.py                      # 5,000 payables, single creates
    uv run python bench/engine_cpu.py --bulk --payables 20000
    uv run python bench/engine_cpu.py --profile 25         # top 25 functions to stderr
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _world import World, emit, machine, progress

from ml_connector.engine import RunSummary, run_async
from ml_connector.testing import SeedSpec, reset_fakes


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payables", type=int, default=5_000, help="payables seeded (all kinds)")
    parser.add_argument("--vendors", type=int, default=50, help="vendors seeded")
    parser.add_argument("--page-size", type=int, default=100, help="payables per ERP page")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the top N functions to stderr"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-bulk", dest="bulk", action="store_false", help="single creates")
    mode.add_argument("--bulk", dest="bulk", action="store_true", help="bulk creates")
    parser.set_defaults(bulk=False)
    return parser.parse_args()


async def _timed(
    world: World, profiler: cProfile.Profile | None, **options: Any
) -> tuple[RunSummary, float, float]:
    """One run; returns its summary, CPU seconds and wall seconds."""
    if profiler is not None:
        profiler.enable()
    cpu, wall = time.process_time(), time.perf_counter()
    summary = await world.sync(**options)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        profiler.disable()
    return summary, cpu, wall


def _per_record(seconds: float, records: int) -> float | None:
    return round(seconds / records * 1e6, 1) if records else None


async def _measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    spec = SeedSpec(seed=args.seed, vendors=args.vendors, payables=args.payables)
    progress(f"seeding {args.payables} payables, {args.vendors} vendors")
    world = World.create(folder, spec, page_size=args.page_size)
    profiler = cProfile.Profile() if args.profile else None
    try:
        progress("first sync")
        first, first_cpu, first_wall = await _timed(world, profiler, bulk=args.bulk)
        progress("unchanged rerun")
        world.reset_counters()
        again, again_cpu, again_wall = await _timed(
            world, profiler, bulk=args.bulk, lookback=timedelta(days=3650)
        )
    finally:
        world.close()
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
        progress(out.getvalue())
    created = first.counts.get("bills_created", 0)
    read = first.counts.get("payables_read", 0)
    unchanged = again.counts.get("bills_unchanged", 0)
    return {
        "benchmark": "engine_cpu",
        "mode": "bulk" if args.bulk else "single",
        "payables": args.payables,
        "vendors": args.vendors,
        "page_size": args.page_size,
        "first_status": first.status.value,
        "payables_read": read,
        "bills_created": created,
        "first_cpu_s": round(first_cpu, 3),
        "first_wall_s": round(first_wall, 3),
        "cpu_us_per_bill_created": _per_record(first_cpu, created),
        "wall_us_per_bill_created": _per_record(first_wall, created),
        "rerun_status": again.status.value,
        "rerun_payables_read": again.counts.get("payables_read", 0),
        "rerun_bills_unchanged": unchanged,
        "rerun_sink_write_calls": world.sink.write_calls(),
        "rerun_cpu_s": round(again_cpu, 3),
        "rerun_wall_s": round(again_wall, 3),
        "cpu_us_per_unchanged": _per_record(again_cpu, unchanged),
        "wall_us_per_unchanged": _per_record(again_wall, unchanged),
        "profiled": bool(profiler),
        "machine": machine(),
    }


def main() -> None:
    """Seed, sync twice at zero latency, print the JSON line."""
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        try:
            result = run_async(_measure(args, Path(tmp)))
        finally:
            reset_fakes()
    emit(result)


if __name__ == "__main__":
    main()
