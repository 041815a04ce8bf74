"""Counting the event loop's turns, to show that long work lets the loop run."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["loop_turns"]


@asynccontextmanager
async def loop_turns() -> AsyncIterator[Callable[[], int]]:
    """Count the event loop's turns while the block runs.

    A task takes one step per turn of the loop; the block gets a function that tells how many
    it took so far. Read at each record of a page a plugin converts, it shows whether the
    conversion lets the loop run (the answers that free BILL's slots) or holds it throughout::

        async with loop_turns() as turns:
            seen = []  # turns() noted at each record, e.g. by a wrapped converter
            await plugin.list_changed_payables(ctx, window, None)
        assert len(set(seen)) > 1

    Yields:
        A function returning the turns counted so far.
    """
    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    try:
        yield lambda: turns
    finally:
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter
