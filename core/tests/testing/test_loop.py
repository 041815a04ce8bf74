"""``loop_turns``: counting the event loop's turns around work that should let it run."""

from __future__ import annotations

import asyncio

from ml_connector.testing import loop_turns


async def test_turns_are_counted_while_the_block_awaits_and_not_while_it_holds_the_loop() -> None:
    async with loop_turns() as turns:
        before = turns()
        sum(range(100_000))  # work that never yields
        assert turns() == before
        for _ in range(5):
            await asyncio.sleep(0)
        assert turns() >= before + 5


async def test_the_counter_stops_with_the_block() -> None:
    tasks = asyncio.all_tasks()
    async with loop_turns() as turns:
        await asyncio.sleep(0)
    counted = turns()
    await asyncio.sleep(0)
    assert turns() == counted
    assert asyncio.all_tasks() == tasks
