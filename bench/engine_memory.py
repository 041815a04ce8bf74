"""Peak RSS of a sync at zero latency, for growing numbers of payables: is the engine streaming?

Each measurement is a fresh child process, so peaks never mix. For every N, two children run:

- ``seed``: seeds the fakes and stores the connection, then exits. The fake ERP holds every
  payable in memory, as a real ERP server holds its data; this is the baseline.
- ``sync``: the same, then one full sync (at zero latency).

``engine_rss_kib`` is the difference of their peaks (``ru_maxrss``, KiB on Linux). It still counts
what the fake *sink* keeps of every bill created (the "BILL server" filling up), which grows with
N whatever the engine does; the sync child measures that store object by object (``sys.getsizeof``
over the sink's records and indexes) and ``engine_net_rss_kib`` takes it out. ``flat`` compares
``engine_rss_kib`` at the largest N with 1.5 x its value at the smallest; ``flat_net`` does the
same for ``engine_net_rss_kib``.

    uv run python bench/engine_memory.py                         # N = 10,000 and 100,000
    uv run python bench/engine_memory.py --sizes 2000 20000 --jobs 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from _world import World, emit, machine, progress

from ml_connector.engine import run_async
from ml_connector.models import ChangeWindow
from ml_connector.testing import FakeErp, FakeSink, SeedSpec, reset_fakes

FLAT_FACTOR = 1.5


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000], help="payables per child"
    )
    parser.add_argument("--vendors", type=int, default=50, help="vendors seeded")
    parser.add_argument("--page-size", type=int, default=100, help="payables per ERP page")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="children run at once"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-bulk", dest="bulk", action="store_false", help="single creates")
    mode.add_argument(
        "--bulk", dest="bulk", action="store_true", help="bulk creates (default, as the CLI)"
    )
    parser.set_defaults(bulk=True)
    parser.add_argument("--child", choices=("seed", "sync"), help=argparse.SUPPRESS)
    parser.add_argument("--payables", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


# --- In the child ----------------------------------------------------------------------------


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _current_rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _allocated(size: int) -> int:
    """What the allocator spends on an object of ``size`` bytes.

    CPython's small-object allocator hands out 16-byte size classes up to 512 bytes; larger
    blocks come from malloc, which adds a chunk header (about 16 bytes with alignment).
    """
    rounded = -(-size // 16) * 16
    return rounded if size <= 512 else rounded + 16


def _walk(root: object, seen: set[int]) -> int:
    """Bytes held by ``root`` and everything it reaches that is not in ``seen`` yet."""
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += _allocated(sys.getsizeof(obj))
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in fields(obj))
    return total


def deep_size(root: object, exclude: object = None) -> int:
    """Bytes held by ``root`` and what it reaches, leaving out what ``exclude`` reaches."""
    seen: set[int] = set()
    _walk(exclude, seen)
    return _walk(root, seen)


def _sink_store_kib(sink: FakeSink, erp: FakeErp) -> int:
    """What the fake sink alone keeps of what a sync created (bills, vendors, their indexes).

    Strings and dates a bill shares with the ERP's payables were there before the sync: they
    are left out.
    """
    held = (sink.bills, sink._invoices, sink.vendors, sink._vendor_names)
    return deep_size(held, exclude=(erp.payables, erp.vendors)) // 1024


async def _child(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    spec = SeedSpec(seed=args.seed, vendors=args.vendors, payables=args.payables)
    started = time.perf_counter()
    world = World.create(folder, spec, page_size=args.page_size, keep_data=False)
    # The fake ERP sorts its change index on the first read; do it here, in both children, so
    # the server's own index is part of the baseline.
    world.erp.changed_payables(ChangeWindow(since=None, until=spec.start + spec.span), None, 1)
    result: dict[str, Any] = {
        "seed_s": round(time.perf_counter() - started, 2),
        "rss_kib_after_seed": _current_rss_kib(),
        "peak_rss_kib_after_seed": _peak_rss_kib(),
    }
    try:
        if args.child == "sync":
            started, cpu = time.perf_counter(), time.process_time()
            summary = await world.sync(bulk=args.bulk)
            result |= {
                "status": summary.status.value,
                "bills_created": summary.counts.get("bills_created", 0),
                "sync_wall_s": round(time.perf_counter() - started, 2),
                "sync_cpu_s": round(time.process_time() - cpu, 2),
                "rss_kib_after_sync": _current_rss_kib(),
            }
        # Read the peak before measuring the sink: walking it allocates.
        result["peak_rss_kib"] = _peak_rss_kib()
        if args.child == "sync":
            result["sink_store_kib"] = _sink_store_kib(world.sink, world.erp)
    finally:
        world.close()
    return result


def _run_child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        try:
            result = run_async(_child(args, Path(tmp)))
        finally:
            reset_fakes()
    emit(result)


# --- In the parent ---------------------------------------------------------------------------


def _spawn(args: argparse.Namespace, kind: str, payables: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--payables",
        str(payables),
        "--vendors",
        str(args.vendors),
        "--page-size",
        str(args.page_size),
        "--seed",
        str(args.seed),
        "--bulk" if args.bulk else "--no-bulk",
    ]
    progress(f"child {kind} N={payables} started")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} N={payables} failed:\n{done.stderr}")
    progress(f"child {kind} N={payables} done")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(set(args.sizes))
    # Longest first, so the slow child does not start last.
    jobs = sorted(
        ((kind, n) for n in sizes for kind in ("sync", "seed")),
        key=lambda job: (-job[1], job[0] != "sync"),
    )
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(_spawn, args, *job) for job in jobs}
        results = {job: future.result() for job, future in futures.items()}
    runs = []
    for n in sizes:
        seed, sync = results[("seed", n)], results[("sync", n)]
        engine = sync["peak_rss_kib"] - seed["peak_rss_kib"]
        runs.append(
            {
                "payables": n,
                "bills_created": sync["bills_created"],
                "status": sync["status"],
                "rss_kib_seed_only": seed["peak_rss_kib"],
                "rss_kib_with_sync": sync["peak_rss_kib"],
                "engine_rss_kib": engine,
                "sink_store_kib": sync["sink_store_kib"],
                "engine_net_rss_kib": engine - sync["sink_store_kib"],
                "rss_kib_after_seed": sync["rss_kib_after_seed"],
                "rss_kib_after_sync": sync["rss_kib_after_sync"],
                "seed_s": sync["seed_s"],
                "sync_wall_s": sync["sync_wall_s"],
                "sync_cpu_s": sync["sync_cpu_s"],
            }
        )
    small, large = runs[0], runs[-1]

    def flat(key: str) -> bool:
        return bool(large[key] <= FLAT_FACTOR * max(small[key], 1))

    return {
        "benchmark": "engine_memory",
        "mode": "bulk" if args.bulk else "single",
        "vendors": args.vendors,
        "page_size": args.page_size,
        "runs": runs,
        "flat": flat("engine_rss_kib"),
        "flat_net": flat("engine_net_rss_kib"),
        "machine": machine(),
    }


def main() -> None:
    """Run the children (or be one), print the JSON line."""
    args = _arguments()
    if args.child is not None:
        _run_child(args)
        return
    emit(_measure(args))


if __name__ == "__main__":
    main()
