"""The event loop a run goes on: uvloop where it is installed, asyncio's own otherwise.

A run's throughput against BILL's three slots is set by how late its event loop answers a
response that frees a slot, and uvloop's loop (libuv, in C) does a turn in less time than
asyncio's: 0.87 -> 0.90 of the cap on the engine benchmark (BENCHMARKS.md). uvloop does not
exist on Windows, where asyncio's loop runs the same code.

For the same reason a run sets the objects alive when it starts (modules, plugins, the store's
engine: hundreds of thousands) aside from the cyclic garbage collector until it ends. Otherwise
every full collection walks them all in one stop of the loop: 180 ms on the benchmark machine,
four times per 2,000 bills.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOP_VARIABLE", "event_loop_factory", "run_async"]

T = TypeVar("T")

LOOP_VARIABLE = "ML_CONNECTOR_LOOP"
"""Set to ``asyncio`` to run on asyncio's own loop even where uvloop is installed."""


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Uvloop's ``new_event_loop``, or ``None`` for asyncio's default loop."""
    if os.environ.get(LOOP_VARIABLE, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # Windows, or a platform without a uvloop wheel
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, as ``asyncio.run`` does."""
    # Frozen objects are still freed when their last reference goes; only cycles among them
    # wait for the unfreeze, when the collector sees them again.
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(main)
    finally:
        gc.unfreeze()
