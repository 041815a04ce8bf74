import asyncio

import pytest

from ml_connector.description import ConcurrencyLimits
from ml_connector.engine import LimiterPool, RequestLimiter, SyncOptions
from ml_connector.engine._context import RunContext
from ml_connector.errors import BudgetExhaustedError
from ml_connector.testing import loop_turns


async def test_in_flight_calls_never_exceed_the_limit_and_slots_stay_busy() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=3))
    release = asyncio.Event()
    entered = 0

    async def call() -> None:
        nonlocal entered
        async with limiter.slot():
            entered += 1
            await release.wait()

    tasks = [asyncio.create_task(call()) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert limiter.in_flight == 3
    assert entered == 3
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.peak_in_flight == 3
    assert entered == 10


async def test_a_freed_slot_sends_the_next_request_before_the_freeing_call_goes_on() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=1))
    events: list[str] = []
    answered = asyncio.Event()

    async def note(event: str) -> None:
        events.append(event)

    async def call(name: str) -> None:
        async with limiter.slot():
            # Written from a task of its own, as aiohttp writes a request on Python 3.11.
            await asyncio.create_task(note(f"{name}'s request written"))
            await answered.wait()
        events.append(f"{name} handles its answer")

    calls = [asyncio.create_task(call(name)) for name in ("first", "second")]
    for _ in range(3):  # the first call takes the slot and writes; the second waits for it
        await asyncio.sleep(0)
    assert limiter.waiting == 1
    answered.set()
    await asyncio.gather(*calls)

    assert events == [
        "first's request written",
        "second's request written",
        "first handles its answer",
        "second handles its answer",
    ]
    assert limiter.waiting == 0


async def test_a_freed_slot_nobody_waits_for_costs_no_turn_of_the_loop() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=1))
    async with loop_turns() as turns:
        async with limiter.slot():
            pass
        assert turns() == 0


class FakeClock:
    """A clock that only ``asyncio.sleep`` (and the test) moves; it notes every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(asyncio, "sleep", fake.sleep)
    return fake


async def test_hourly_budget_waits_for_the_oldest_call_to_age_out(clock: FakeClock) -> None:
    limiter = RequestLimiter(ConcurrencyLimits(requests_per_hour=2), clock=clock)
    for _ in range(2):
        async with limiter.slot():
            clock.now += 10
    async with limiter.slot():
        pass
    assert clock.slept == [3600 - 20]


async def test_a_budget_wait_longer_than_a_run_waits_raises_instead(clock: FakeClock) -> None:
    limiter = RequestLimiter(ConcurrencyLimits(requests_per_hour=1), clock=clock, system="bill")
    async with limiter.slot(max_wait=60):
        clock.now += 3500
    with pytest.raises(BudgetExhaustedError, match="bill's budget of 1 requests an hour") as caught:
        async with limiter.slot(max_wait=60):  # the next request may go in 100 s
            pytest.fail("the slot was given")
    assert caught.value.retry_after == pytest.approx(100)
    assert clock.slept == []
    clock.now += 50
    async with limiter.slot(max_wait=60):  # 50 s: within what a run waits
        pass
    assert clock.slept == [pytest.approx(50)]


def test_the_pool_shares_one_limiter_per_system_and_scope() -> None:
    pool = LimiterPool()
    limits = ConcurrencyLimits(max_in_flight=3)
    assert pool.get("bill", "org1", limits) is pool.get("bill", "org1", limits)
    assert pool.get("bill", "org1", limits) is not pool.get("bill", "org2", limits)
    assert pool.get("bill", "org1", limits) is not pool.get("acumatica", "org1", limits)


def test_each_event_loop_shares_its_own_limiters() -> None:
    # asyncio primitives belong to the loop that first waits on them: a process that runs
    # several loops one after another (the demo, the CLI) must not reuse them across loops
    from ml_connector.engine._engine import _shared_pool

    async def pool() -> LimiterPool:
        return _shared_pool()

    async def shared_within_one_loop() -> bool:
        return _shared_pool() is _shared_pool()

    assert asyncio.run(pool()) is not asyncio.run(pool())
    assert asyncio.run(shared_within_one_loop())


async def test_a_per_request_plugins_hook_calls_hold_no_slot() -> None:
    """Its clients hold one per request instead; a slot per call too would deadlock them."""
    per_call = RequestLimiter(ConcurrencyLimits(max_in_flight=1))
    per_request = RequestLimiter(ConcurrencyLimits(max_in_flight=1, per_request=True))
    # read and write use only the options and the limiter they are given
    run = RunContext(None, None, None, SyncOptions(), per_call, per_request)  # type: ignore[arg-type]
    seen: list[int] = []

    async def call() -> str:
        seen.append(per_call.in_flight + per_request.in_flight)
        return "00n1"

    async def find() -> None:
        return None

    assert await run.read(per_call, call) == "00n1"
    assert await run.write(per_call, call, find) == "00n1"
    assert await run.read(per_request, call) == "00n1"
    assert await run.write(per_request, call, find) == "00n1"
    assert seen == [1, 1, 0, 0]
    assert (per_call.taken, per_request.taken) == (2, 0)
