"""End-to-end throughput: a full sync from a source emulator to the BILL emulator, then a rerun.

The ERP is seeded with ``--bills`` approved bills (plus bills that must not move), BILL with the
chart of accounts minus the deliberately unmapped account. Every request takes ``--latency-ms`` on
both sides and the BILL emulator admits at most 3 requests in flight, BILL's cap, so single creates
can reach at most ``3 / latency`` bills per second: ``ratio_to_cap`` says how close the sync comes.
A connection is created in a temporary SQLite state and ``SyncEngine.run()`` is timed; a second
run with no changes follows, and it must make no BILL writes.

``--emulators process`` (the default) serves both emulators over real HTTP on loopback from a
child process: in production they are remote servers, so their CPU is not the connector's, and
``cpu_s`` is the engine process's alone. ``--emulators inprocess`` runs them on the engine's event
loop through httpx's ASGI transport, where the emulators' CPU counts against the engine.

``bill_create_round_trip_ms`` is how long one create holds one of BILL's slots: the latency plus
both HTTP stacks and the time the engine's event loop takes to read the answer.
``create_slot_busy_share`` is the share of BILL's 3 slots the creates kept busy, and
``ceiling_ratio_to_cap`` the ratio a client with every slot always busy and every create as fast
as the fastest one would reach.

BILL's hourly budget (20,000 requests, ``--bill-requests-per-hour``) stops a single-create sync
above about 19,900 bills.

    uv run python bench/e2e_throughput.py --source acumatica              # 2,000 bills, 20 ms
    uv run python bench/e2e_throughput.py --source epicor --bills 10000 --bulk

Prints one JSON line on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import contextvars
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulated import (
    BILL_IN_FLIGHT,
    BILL_REQUESTS_PER_HOUR,
    SINK,
    Running,
    Seeding,
    State,
    data_writes,
    reads,
    session_calls,
    start_emulators,
    state,
    sync,
    writes_by_route,
)
from _world import emit, machine, progress

from ml_connector.engine import RequestLimiter, run_async
from ml_connector.store import Store

_CREATES: list[float] = []
_CREATING: contextvars.ContextVar[bool] = contextvars.ContextVar("creating", default=False)


def _time_bill_creates() -> None:
    """Note how long each single bill create holds one of BILL's slots.

    The BILL plugin's requests hold the slot (``per_request``) from before the request leaves
    until its answer is read: the latency, both HTTP stacks and the time the engine's event loop
    takes to read the answer. That is the slots' real turnover.
    """
    send, slot = httpx.AsyncClient.send, RequestLimiter.slot

    async def marked(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        creating = request.method == "POST" and request.url.path.endswith("/v3/bills")
        token = _CREATING.set(creating)
        try:
            return await send(self, request, **kwargs)
        finally:
            _CREATING.reset(token)

    @asynccontextmanager
    async def timed(self: RequestLimiter, max_wait: float | None = None) -> AsyncIterator[None]:
        async with slot(self, max_wait):
            started = time.perf_counter()
            try:
                yield
            finally:
                if _CREATING.get():
                    _CREATES.append(time.perf_counter() - started)

    httpx.AsyncClient.send = marked  # type: ignore[method-assign]
    RequestLimiter.slot = timed  # type: ignore[method-assign]


def _round_trips(seconds: float, latency: float) -> dict[str, Any]:
    if not _CREATES:
        return {}
    trips = sorted(_CREATES)
    return {
        "bill_create_round_trip_ms": {
            "min": round(trips[0] * 1000, 2),
            "p50": round(trips[len(trips) // 2] * 1000, 2),
            "mean": round(sum(trips) / len(trips) * 1000, 2),
        },
        # The share of BILL's slots the creates kept busy, and the ratio a client would reach
        # with every slot always busy and every create as fast as the fastest one.
        "create_slot_busy_share": round(sum(trips) / (BILL_IN_FLIGHT * seconds), 3),
        "ceiling_ratio_to_cap": round(latency / trips[0], 3) if latency else None,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="acumatica", help="source emulator, e.g. sapb1")
    parser.add_argument("--bills", type=int, default=2_000, help="approved bills seeded")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per-request latency")
    parser.add_argument("--bulk", action="store_true", help="let the engine create bills in bulk")
    parser.add_argument(
        "--emulators",
        choices=("process", "inprocess"),
        default="process",
        help="process: real HTTP to a child process (default); "
        "inprocess: ASGI on the engine's loop, the emulators' CPU counts against the engine",
    )
    parser.add_argument(
        "--bill-requests-per-hour",
        type=int,
        default=BILL_REQUESTS_PER_HOUR,
        help="BILL's hourly request budget, emulator and engine (the real one is 20,000)",
    )
    parser.add_argument(
        "--time-store", action="store_true", help="time the state store's transactions"
    )
    parser.add_argument("--state-dir", help="folder for the SQLite state (default: a temp dir)")
    parser.add_argument("--no-rerun", action="store_true", help="skip the unchanged rerun")
    return parser.parse_args()


_STORE = {"sessions": 0, "writes": 0, "seconds": 0.0, "write_seconds": 0.0}


def _timed(original: Callable[..., Any]) -> Callable[..., Any]:
    @contextmanager
    def timed(self: Store, *args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            with original(self, *args, **kwargs) as session:
                yield session
        finally:
            spent = time.perf_counter() - started
            _STORE["sessions"] += 1
            _STORE["seconds"] += spent
            if not kwargs.get("read_only", False):
                _STORE["writes"] += 1
                _STORE["write_seconds"] += spent

    return timed


def _time_store() -> None:
    """Add up the time the event loop spends in state transactions.

    Wraps ``Store.session`` and ``Store.transaction``. The intents' ``Store.transaction_async``
    is not counted: its commit runs in a worker thread, not on the loop.
    """
    for name in ("session", "transaction"):
        setattr(Store, name, _timed(getattr(Store, name)))


def _reset_store_figures() -> None:
    _STORE.update(sessions=0, writes=0, seconds=0.0, write_seconds=0.0)


def _store_figures(args: argparse.Namespace, created: int) -> dict[str, Any]:
    if not args.time_store:
        return {}
    return {
        "store_sessions": _STORE["sessions"],
        "store_write_sessions": _STORE["writes"],
        "store_write_seconds": round(float(_STORE["write_seconds"]), 3),
        "store_seconds": round(float(_STORE["seconds"]), 3),
        "store_ms_per_bill": round(1000 * float(_STORE["seconds"]) / max(created, 1), 3),
    }


async def _first_run(args: argparse.Namespace, emulators: Running, made: State) -> dict[str, Any]:
    latency = args.latency_ms / 1000
    emulators.reset()
    progress(f"first run: {args.latency_ms} ms, bulk={args.bulk}")
    _CREATES.clear()
    summary, seconds, cpu = await sync(
        made,
        emulators.transports,
        args.bulk,
        _reset_store_figures,
        bill_requests_per_hour=args.bill_requests_per_hour,
    )
    if summary.status != "succeeded":
        raise SystemExit(f"first run {summary.status}: {summary.error}")
    routes = emulators.routes()
    bill, erp = routes["bill"], routes["erp"]
    created = summary.counts.get("bills_created", 0)
    cap = BILL_IN_FLIGHT / latency if latency else None
    bill_writes = writes_by_route(bill)
    return {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_bill": round(1000 * cpu / max(created, 1), 3),
        "emulators_cpu_s": emulators.emulator_cpu(),
        "bills_created": created,
        **_store_figures(args, created),
        "bills_per_s": round(created / seconds, 1),
        "cap_bills_per_s": round(cap, 1) if cap else None,
        "ratio_to_cap": round(created / seconds / cap, 3) if cap else None,
        **_round_trips(seconds, latency),
        "bill_write_calls": data_writes(bill),
        "bill_bill_creates": sum(n for r, n in bill_writes.items() if "/bills" in r),
        "bill_vendor_creates": sum(n for r, n in bill_writes.items() if "/vendors" in r),
        "bill_session_calls": session_calls(bill),
        "bill_writes_by_route": bill_writes,
        "bill_read_calls": reads(bill),
        "erp_requests": sum(erp.values()),
        "error_statuses": emulators.errors(),
        "counts": dict(sorted(summary.counts.items())),
    }


async def _rerun(args: argparse.Namespace, emulators: Running, made: State) -> dict[str, Any]:
    emulators.reset()
    progress("rerun with no changes")
    summary, seconds, cpu = await sync(
        made, emulators.transports, args.bulk, bill_requests_per_hour=args.bill_requests_per_hour
    )
    routes = emulators.routes()
    bill, erp = routes["bill"], routes["erp"]
    return {
        "status": str(summary.status),
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "bill_write_calls": data_writes(bill),
        "bill_session_calls": session_calls(bill),
        "bill_read_calls": reads(bill),
        "erp_read_calls": reads(erp),
        "erp_writes_by_route": writes_by_route(erp),
        "erp_time_floor_s": round(reads(erp) * args.latency_ms / 1000, 3),
        "counts": dict(sorted(summary.counts.items())),
    }


async def _measure(args: argparse.Namespace, emulators: Running) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "e2e_throughput",
        "source": args.source,
        "bills": args.bills,
        "mode": "bulk" if args.bulk else "single",
        "emulators": emulators.where,
        "latency_ms": args.latency_ms,
        "bill_requests_per_hour": args.bill_requests_per_hour,
    }
    with state(emulators.sides, args.state_dir) as made:
        result.update(await _first_run(args, emulators, made))
        result.update(emulators.check())
        if not args.no_rerun:
            result["rerun"] = await _rerun(args, emulators, made)
            result.update({f"after_rerun_{k}": v for k, v in emulators.check().items()})
    result["machine"] = machine()
    return result


def main() -> None:
    """Run the benchmark and print its JSON line."""
    args = _arguments()
    if args.time_store:
        _time_store()
    _time_bill_creates()
    extra = {SINK: {"requests_per_hour": args.bill_requests_per_hour}}
    seeding = Seeding(args.source, args.bills, args.latency_ms / 1000, extra)
    progress(f"seeding {args.source} with {args.bills} bills ({args.emulators})")
    with start_emulators(seeding, in_process=args.emulators == "inprocess") as emulators:
        emit(run_async(_measure(args, emulators)))


if __name__ == "__main__":
    main()
