"""Server-side limits: calls in flight per key, and requests per rolling window."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ConcurrencyGate", "RateWindow"]


class ConcurrencyGate:
    """Counts requests in flight per key (e.g. a BILL organisation) and refuses the excess.

    Attributes:
        limit: Requests allowed in flight per key.
        peak: The most requests ever in flight for one key, counting refused arrivals, so a
            value above ``limit`` shows a client that broke the limit.
        refused: How many requests were refused.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.peak = 0
        self.refused = 0
        self._in_flight: Counter[str] = Counter()

    def try_enter(self, key: str) -> bool:
        """Admit one more request for ``key``, or refuse it (then do not call :meth:`leave`)."""
        arriving = self._in_flight[key] + 1
        self.peak = max(self.peak, arriving)
        if arriving > self.limit:
            self.refused += 1
            return False
        self._in_flight[key] = arriving
        return True

    def leave(self, key: str) -> None:
        """One admitted request for ``key`` finished."""
        self._in_flight[key] -= 1


class RateWindow:
    """Requests allowed per key within a rolling window (an hour, a minute)."""

    def __init__(
        self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count a request for ``key``; ``False`` when the window is full (not counted)."""
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may send again."""
        hits = self._hits.get(key)
        if not hits or len(hits) < self.limit:
            return 0.0
        return max(0.0, self.window - (self.clock() - hits[0]))
