"""The licence's request limits as Acumatica applies them: delays and a queue, 429 at the end.

acumatica.md §4 (IDG "License Restrictions for API Users"): requests over the concurrency limit
wait in a queue; past half the per-minute budget each request is delayed by (time left in the
minute ÷ requests left); a request is declined only if the queue holds more than 20 or it waited
over ten minutes. Every wait here is on the manual clock (:class:`support.VirtualTime`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from plugins.acumatica.tests.support import BASE_URL, VirtualTime, context, emulator

from ml_connector.engine import RetryPolicy
from ml_connector.errors import ThrottledError
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin
from ml_connector_acumatica.client import QUEUE_WAIT, AcumaticaClient
from ml_connector_acumatica.emulator import Licence

V = "entity/Default/24.200.001"


def statuses(emu) -> list[int]:
    """The statuses of the API requests (the identity server's token requests left out)."""
    return [r.status for r in emu.log.records if "/entity/" in r.path]


async def never_sleep(_: float) -> None:
    raise AssertionError("no request is delayed below half the budget")


async def test_the_delay_is_the_idg_example() -> None:
    # The IDG's example: a budget of 50 a minute, 25 processed in the past minute, the first
    # at 02:40:20, the current request at 02:41:00: 20 s left / 25 requests left = 0.8 s.
    now = [0.0]
    licence = Licence(
        per_minute=50, minute=60.0, cores=16, queue_limit=20, queue_wait=600.0,
        clock=lambda: now[0], sleep=never_sleep,
    )  # fmt: skip
    for second in range(25):
        now[0] = float(second)
        assert licence.delay(now[0]) == 0.0, "below half the budget: no delay"
        async with licence.slot():
            pass
    assert licence.delay(40.0) == pytest.approx(0.8)
    assert licence.delay(60.0) == 0.0, "the first left the past minute: below half again"


async def test_past_half_the_budget_requests_are_delayed_and_succeed(clock: ManualClock) -> None:
    time = VirtualTime(clock, auto=True)
    emu = emulator(clock, requests_per_minute=10, sleep=time.sleep)
    ctx = context(emu)
    await plugin.authenticate(ctx)  # the identity server's token: not a queued API request
    client = ctx.state["acumatica.client"]
    start = clock()
    for _ in range(10):
        assert await client.list_page("Account", top=1)
    # Five go at once; then 60 s left / 5 requests left, 48 / 4, 36 / 3, 24 / 2, 12 / 1.
    assert time.slept == [12.0] * 5
    assert clock() - start == timedelta(seconds=60), "the budget spread over its minute"
    assert emu.licence.declined == []
    assert statuses(emu) == [200] * 10


async def test_the_21st_request_in_the_queue_is_declined_and_the_others_succeed(
    clock: ManualClock,
) -> None:
    time = VirtualTime(clock)
    emu = emulator(clock, requests_per_minute=2, sleep=time.sleep)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    client = ctx.state["acumatica.client"]
    await client.list_page("Account", top=1)  # half the budget: the next ones wait 60 s
    calls = [asyncio.create_task(client.list_page("Account", top=1)) for _ in range(21)]
    await time.until(lambda: len(emu.licence.declined) == 1, "one request declined")
    assert emu.licence.waiting == 20, "twenty wait in the queue, delayed"
    assert emu.licence.declined == ["queue full"]
    (declined,) = [c for c in calls if c.done()]
    with pytest.raises(ThrottledError) as caught:
        declined.result()
    assert caught.value.status == 429
    assert caught.value.retry_after == 60, "until the budget's minute has room again"
    assert "the API request queue is full" in caught.value.message
    await time.advance(60)
    waited = [c for c in calls if c is not declined]
    assert all(c.done() for c in waited)
    assert all(c.result() for c in waited), "delayed, then answered"
    assert statuses(emu).count(429) == 1


async def test_ten_minutes_in_the_queue_is_declined_with_429(clock: ManualClock) -> None:
    time = VirtualTime(clock)
    # One processing core, and a request that holds it for 15 minutes (a big export).
    emu = emulator(clock, max_concurrent=1, processing_seconds=900, sleep=time.sleep)
    async with httpx.AsyncClient(base_url=BASE_URL, transport=emu.transport()) as http:
        signed_in = await http.post(
            "entity/auth/login",
            json={"name": emu.config.username, "password": emu.config.password, "tenant": "Acme"},
        )
        assert signed_in.status_code == 204
        slow = asyncio.create_task(http.get(f"{V}/Bill"))
        await time.until(lambda: emu.licence.processing == 1, "the slow request has the core")
        queued = asyncio.create_task(http.get(f"{V}/Account"))
        await time.until(lambda: emu.licence.waiting == 1, "the next one waits in the queue")
        await time.advance(599)
        assert not queued.done(), "still waiting: the connection stays open"
        await time.advance(1)
        declined = await queued
        assert declined.status_code == 429
        assert declined.json() == {
            "message": "API request limit reached",
            "exceptionMessage": "The request was declined: the request waited in the API "
            "request queue for too long (license limits).",
        }
        assert declined.headers["Retry-After"] == "1"
        assert emu.licence.declined == ["waited too long"]
        await time.advance(300)
        assert (await slow).status_code == 200, "the slow one is answered, however slowly"


async def test_a_429_is_retried_after_its_retry_after(clock: ManualClock) -> None:
    """The client reports Retry-After; the engine's retry waits exactly that, then succeeds."""
    time = VirtualTime(clock)
    emu = emulator(clock, requests_per_minute=2, queue_limit=1, sleep=time.sleep)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    client: AcumaticaClient = ctx.state["acumatica.client"]
    await client.list_page("Account", top=1)
    first = asyncio.create_task(client.list_page("Account", top=1))  # delayed 60 s
    await time.until(lambda: emu.licence.waiting == 1, "the first waits in the queue")
    waits: list[float] = []

    async def retry_sleep(seconds: float) -> None:
        waits.append(seconds)
        await time.sleep(seconds)

    policy = RetryPolicy(attempts=3, base_delay=0.0, max_delay=120.0, sleep=retry_sleep)
    second = asyncio.create_task(policy.call(lambda: client.list_page("Account", top=1)))
    await time.until(lambda: bool(waits), "the second was declined: the queue holds one")
    assert waits == [60.0], "Retry-After, not a guess"
    await time.advance(60)  # the first is processed; the second is sent again, and delayed
    assert await first
    await time.advance(60)
    assert await second
    assert statuses(emu) == [200, 429, 200, 200]


async def test_the_client_waits_for_slow_answers_rather_than_timing_out(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    timeout = ctx.state["acumatica.client"].http.timeout
    # A queued request is answered within ten minutes (or declined then): a read timeout
    # shorter than that would turn slow answers into TransientErrors and retries, more load.
    assert QUEUE_WAIT == emu.config.queue_wait_seconds == 600
    assert timeout.read is not None
    assert timeout.read >= QUEUE_WAIT + 30
    await plugin.close_connection(ctx)


def test_the_plugin_keeps_three_requests_in_flight_per_instance() -> None:
    limits = plugin.describe_plugin().limits
    assert limits.max_in_flight == 3
    assert limits.scope_setting == "instance_url"
    assert limits.per_request, "each HTTP request holds a slot, however long its answer takes"
