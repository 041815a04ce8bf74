"""Retries with exponential backoff and full jitter, honouring Retry-After.

Only errors that say so are retried (:attr:`ConnectorError.retryable`: throttling, transient server
and network errors). Session expiry is not retried here: the plugin's client re-logs in once by
itself. After the last attempt the error propagates and the record goes to the exception queue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ml_connector.errors import (
    BudgetExhaustedError,
    ConnectorError,
    SessionExpiredError,
    ThrottledError,
)

__all__ = ["RetryPolicy"]

T = TypeVar("T")


def _is_retryable(exc: BaseException, max_delay: float) -> bool:
    if isinstance(exc, ThrottledError) and (exc.retry_after or 0) > max_delay:
        return False  # a wait this long is the run's to take, not each record's
    return (
        isinstance(exc, ConnectorError)
        and exc.retryable
        and not isinstance(exc, SessionExpiredError)
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        attempts: Total attempts, the first included.
        base_delay: The first backoff ceiling in seconds; attempt n waits a random time in
            ``[0, min(max_delay, base_delay * 2**n))`` ("full jitter").
        max_delay: The longest wait between two attempts, also for a system's Retry-After.
        sleep: The sleep function (tests pass one that does not wait).
        rng: The random source for the jitter.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)  # jitter, not cryptography

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (state.attempt_number - 1))
        return self.rng.uniform(0, ceiling)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Call ``fn`` until it succeeds, fails for good, or the attempts run out.

        Raises:
            BudgetExhaustedError: The system asked to wait longer than ``max_delay`` (e.g. BILL's
                hourly budget, BDC_1144): the run should stop, not every record fail.
        """
        try:
            return await self._call(fn)
        except BudgetExhaustedError:
            raise
        except ThrottledError as exc:
            if exc.retry_after is None or exc.retry_after <= self.max_delay:
                raise
            raise BudgetExhaustedError(
                f"{exc.message}; asked to wait {exc.retry_after:.0f} s, longer than a run waits "
                f"({self.max_delay:.0f} s): the run stops here and the next one resumes",
                system=exc.system,
                status=exc.status,
                code=exc.code,
                retry_after=exc.retry_after,
            ) from exc

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: _is_retryable(exc, self.max_delay)),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover
