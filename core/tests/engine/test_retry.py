import random

import pytest

from ml_connector.engine import RetryPolicy
from ml_connector.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    InvalidRecordError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(sleeps: Sleeps, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(
        attempts=attempts, base_delay=1.0, max_delay=8.0, sleep=sleeps, rng=random.Random(7)
    )


def failing(errors: list[Exception], result: str = "ok"):
    calls = []

    async def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


async def test_throttling_and_transient_errors_are_retried_with_full_jitter() -> None:
    sleeps = Sleeps()
    call, calls = failing([TransientError("503"), TransientError("503"), TransientError("503")])
    assert await policy(sleeps).call(call) == "ok"
    assert len(calls) == 4
    # attempt n waits within [0, min(8, 1 * 2**(n-1)))
    for n, wait in enumerate(sleeps.waits, start=1):
        assert 0 <= wait < min(8.0, 2 ** (n - 1))


async def test_retry_after_is_honoured() -> None:
    sleeps = Sleeps()
    call, _ = failing([ThrottledError("slow", retry_after=3.5), ThrottledError("x", retry_after=8)])
    assert await policy(sleeps).call(call) == "ok"
    assert sleeps.waits == [3.5, 8.0]


async def test_a_wait_longer_than_a_run_waits_stops_the_run() -> None:
    sleeps = Sleeps()
    call, calls = failing([ThrottledError("hourly budget", retry_after=3000, code="BDC_1144")])
    with pytest.raises(BudgetExhaustedError, match="asked to wait 3000 s") as info:
        await policy(sleeps).call(call)
    assert (len(calls), sleeps.waits, info.value.code) == (1, [], "BDC_1144")


async def test_attempts_are_bounded_then_the_error_propagates() -> None:
    sleeps = Sleeps()
    call, calls = failing([TransientError(str(i)) for i in range(10)])
    with pytest.raises(TransientError, match="3"):
        await policy(sleeps, attempts=4).call(call)
    assert len(calls) == 4


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad password"),
        SessionExpiredError("expired"),
        InvalidRecordError("payable", "1", "total", "bad"),
    ],
)
async def test_errors_that_retrying_cannot_fix_are_not_retried(error: Exception) -> None:
    sleeps = Sleeps()
    call, calls = failing([error])
    with pytest.raises(type(error)):
        await policy(sleeps).call(call)
    assert len(calls) == 1
    assert sleeps.waits == []
