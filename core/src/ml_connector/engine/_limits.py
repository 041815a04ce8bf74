"""Request limits the core enforces for the plugins: requests in flight and an hourly budget.

A plugin declares its system's limits (:class:`~ml_connector.description.ConcurrencyLimits`); the
core keeps one :class:`RequestLimiter` per system and scope (for BILL: per organisation), shared
by every connection in the process that talks to that scope. Every hook call that reaches the
system takes one slot for its duration (clients make their requests within one call one after
another, so calls in flight bound requests in flight), or, for a plugin whose limits are
``per_request``, every HTTP request its clients make (``ml_connector._slot_transport``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ml_connector.description import ConcurrencyLimits
from ml_connector.errors import BudgetExhaustedError

__all__ = ["LimiterPool", "RequestLimiter"]

_HOUR = 3600.0


class RequestLimiter:
    """Caps the calls in flight and, optionally, the calls started per rolling hour.

    Args:
        limits: The system's declared limits.
        clock: A monotonic clock in seconds (injectable for tests).
        system: The system's key, named in the error a spent budget raises.
    """

    def __init__(
        self,
        limits: ConcurrencyLimits,
        clock: Callable[[], float] = time.monotonic,
        system: str = "the system",
    ) -> None:
        self.limits = limits
        self.system = system
        self._slots = asyncio.Semaphore(limits.max_in_flight) if limits.max_in_flight else None
        self._started: deque[float] = deque()
        self._clock = clock
        self._budget_lock = asyncio.Lock()
        self.in_flight = 0
        self.waiting = 0  # calls waiting for a slot
        self.peak_in_flight = 0
        self.taken = 0  # slots taken so far: calls, or requests for a per-request plugin

    async def _spend_budget(self, max_wait: float | None) -> None:
        budget = self.limits.requests_per_hour
        if budget is None:
            return
        async with self._budget_lock:
            while True:
                now = self._clock()
                while self._started and now - self._started[0] >= _HOUR:
                    self._started.popleft()
                if len(self._started) < budget:
                    self._started.append(now)
                    return
                wait = _HOUR - (now - self._started[0])
                if max_wait is not None and wait > max_wait:
                    raise BudgetExhaustedError(
                        f"{self.system}'s budget of {budget} requests an hour is spent; the next "
                        f"request may go in {wait:.0f} s, longer than a run waits "
                        f"({max_wait:.0f} s): the run stops here and the next one resumes",
                        system=self.system,
                        retry_after=wait,
                    )
                await asyncio.sleep(wait)

    @asynccontextmanager
    async def slot(self, max_wait: float | None = None) -> AsyncIterator[None]:
        """Hold one slot for the duration of a call.

        Args:
            max_wait: The longest the hourly budget may make the call wait; beyond it the call
                raises :class:`~ml_connector.errors.BudgetExhaustedError` instead of waiting
                (``None``: wait as long as it takes).
        """
        await self._spend_budget(max_wait)
        if self._slots is None:
            self.taken += 1
            yield
            return
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.taken += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
        if self.waiting:
            await _hand_over()


async def _hand_over() -> None:
    """Let the call a released slot woke send its request before the releasing call goes on.

    A freed slot is idle until the woken call's request is on the wire, and the releasing call
    usually has work to do with its answer (parse it, write it down) that would run first. Two
    turns of the loop: one for the woken call to run up to its send, one for a transport that
    writes from a task of its own (aiohttp does, before Python 3.12's eager tasks).
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class LimiterPool:
    """One limiter per (system, scope), so two connections to one BILL organisation share it."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str], RequestLimiter] = {}

    def get(self, system: str, scope: str, limits: ConcurrencyLimits) -> RequestLimiter:
        """Return the limiter of ``system`` for ``scope``, creating it on first use."""
        key = (system, scope)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RequestLimiter(limits, system=system)
        return limiter
