"""HTTP-level fault injection for emulators: deterministic, scripted by tests and the demo."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass

__all__ = ["FaultAction", "HttpFaults"]


@dataclass
class FaultAction:
    """What to do to one request.

    Attributes:
        status: The HTTP status to answer with.
        after_apply: Run the handler first (the write happens), then answer ``status`` instead of
            its response: a response lost on the way back.
        kind: A label the emulator turns into its system's error body (``"server"``,
            ``"throttled"``, ``"session"``).
        retry_after: Seconds for a Retry-After header, if any.
        hang: With ``after_apply``: after the write, hold the response until
            :meth:`HttpFaults.release` (a test kills the client meanwhile: the write happened, the
            client never heard of it).
    """

    status: int
    after_apply: bool = False
    kind: str = "server"
    retry_after: float | None = None
    hang: bool = False


@dataclass
class _Rule:
    action: FaultAction
    method: str | None
    path_contains: str | None
    skip: int
    times: int


class HttpFaults:
    """A queue of scripted faults plus optional seeded random 5xx bursts.

    Rules match by method and a path substring; the first matching rule decides, so rules act
    one after another. ``skip`` lets that many matching requests pass before the rule bites.
    Everything is counted, nothing depends on the wall clock.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[_Rule] = []
        self._rng = random.Random(seed)  # noqa: S311 - fault schedule, not cryptography
        self._random_rate = 0.0
        self._random_action = FaultAction(503)
        self.injected = 0
        #: Set while a ``hang`` fault holds a response (thread-safe: tests wait on it).
        self.hanging = threading.Event()
        self._released = threading.Event()

    def add(
        self,
        action: FaultAction,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        skip: int = 0,
        times: int = 1,
    ) -> None:
        """Apply ``action`` to ``times`` matching requests after ``skip`` matching ones pass."""
        self._rules.append(_Rule(action, method, path_contains, skip, times))

    def random(self, rate: float, action: FaultAction | None = None) -> None:
        """Fail a seeded-random share of all requests (0 turns it off)."""
        self._random_rate = rate
        self._random_action = action or FaultAction(503)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()
        self._random_rate = 0.0

    async def hold(self) -> None:
        """Hold a response until :meth:`release` (called by the emulator for ``hang``)."""
        self.hanging.set()
        # released from the test's thread, so a thread event, waited for off the event loop
        await asyncio.to_thread(self._released.wait)

    def release(self) -> None:
        """Let held responses go (they answer with the fault's status)."""
        self._released.set()

    def match(self, method: str, path: str) -> FaultAction | None:
        """The fault for this request, if any (consumes it)."""
        for rule in self._rules:
            if rule.method is not None and rule.method != method:
                continue
            if rule.path_contains is not None and rule.path_contains not in path:
                continue
            # The first matching rule owns the request: rules form a queue, in the order added.
            if rule.skip > 0:
                rule.skip -= 1
                return None
            rule.times -= 1
            if rule.times <= 0:
                self._rules.remove(rule)
            self.injected += 1
            return rule.action
        if self._random_rate and self._rng.random() < self._random_rate:
            self.injected += 1
            return self._random_action
        return None
