"""Latency, scripted failures and a concurrency cap for a fake system, set at runtime by tests.

Every request a reference plugin makes to its fake system passes through one :class:`Faults`
object (``fake.faults``), in this order::

    arrive   count the call; refuse it with ThrottledError if the cap is reached
    wait     sleep the configured latency (the call stays in flight meanwhile)
    before   scripted failures: raise before anything is done
    apply    the fake performs the operation and persists it
    after    "apply then fail" (raise TransientError: the response was lost) or
             "apply then die" (SIGKILL this process: the write is on disk, the caller never knows)

Everything is deterministic: scripted failures are tied to call numbers, random failures come from
a seeded generator; nothing depends on wall-clock luck.

Call numbers count *admitted* calls of one hook (calls the cap refused are not numbered), and a
rule's ``on_call`` counts from the moment the rule is added: ``on_call=1`` is the next call.

Every error raised carries a correlation id, as a real system's request id would:
``"<system>:<hook>:<n>"``, ``n`` counting the calls of the hook received (:attr:`Faults.calls`).
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import NoReturn

from ml_connector.errors import (
    AuthenticationError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
    UpstreamError,
)

__all__ = ["FaultKind", "Faults"]


class FaultKind(StrEnum):
    """The failures a test can script."""

    THROTTLED = "throttled"
    TRANSIENT = "transient"
    SESSION_EXPIRED = "session_expired"
    AUTHENTICATION = "authentication"


class _Phase(Enum):
    BEFORE = "before"
    APPLY_THEN_FAIL = "apply_then_fail"
    APPLY_THEN_DIE = "apply_then_die"


@dataclass
class _Rule:
    phase: _Phase
    kind: FaultKind
    first: int  # the first admitted call number the rule fires on
    last: int  # the last one, inclusive
    retry_after: float | None


@dataclass
class _RandomFailures:
    rng: random.Random
    rate: float
    kinds: tuple[FaultKind, ...]
    hooks: frozenset[str] | None


def _die() -> NoReturn:
    # SIGKILL sent to oneself is delivered before kill() returns; _exit is a belt for the braces.
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover


class Faults:
    """Runtime fault configuration and call statistics of one fake system.

    Args:
        system: The system key used in the errors raised (``"reference_sink"``).
        max_in_flight: Calls allowed in flight at once; ``None`` for no cap.
        throttle_code: The system's error code for a refused call (BILL: ``"BDC_1322"``).
        session_code: The system's error code for an expired session (BILL: ``"BDC_1109"``).

    Attributes:
        latency: Seconds every call spends in flight (default 0).
        max_in_flight: The cap; a call that would make ``max_in_flight + 1`` calls in flight is
            refused with :class:`~ml_connector.errors.ThrottledError`.
        calls: Calls received per hook, including refused and failed ones.
        applied: Calls per hook whose operation was performed (and persisted), even if the
            response was then lost.
        in_flight: Calls in flight now.
        peak_in_flight: The most calls ever in flight at once, counting the refused arrival: a
            value above ``max_in_flight`` means the caller exceeded the cap.
        cap_refusals: How many calls the cap refused.
    """

    def __init__(
        self,
        system: str,
        *,
        max_in_flight: int | None = None,
        throttle_code: str | None = None,
        session_code: str | None = None,
    ) -> None:
        self.system = system
        self.throttle_code = throttle_code
        self.session_code = session_code
        self.latency = 0.0
        self.max_in_flight = max_in_flight
        self.calls: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.cap_refusals = 0
        self._hook_latency: dict[str, float] = {}
        self._admitted: Counter[str] = Counter()
        self._rules: dict[str, list[_Rule]] = {}
        self._random: _RandomFailures | None = None

    # --- Configuring ---------------------------------------------------------------------------

    def set_latency(self, seconds: float, *, hook: str | None = None) -> None:
        """Make every call (or only ``hook``'s calls) spend ``seconds`` in flight."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        if hook is None:
            self.latency = seconds
        else:
            self._hook_latency[hook] = seconds

    def fail(
        self,
        hook: str,
        kind: FaultKind | str,
        *,
        on_call: int = 1,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Make ``hook`` raise before doing anything, on chosen calls.

        Args:
            hook: The hook name, e.g. ``"create_bill"`` (``"authenticate"`` for logins).
            kind: Which error to raise.
            on_call: The first failing call, counted from now (1 = the next call).
            times: How many consecutive calls fail from there.
            retry_after: For ``throttled``: the seconds the error asks the caller to wait.
        """
        self._add(hook, _Phase.BEFORE, FaultKind(kind), on_call, times, retry_after)

    def apply_then_fail(self, hook: str, *, on_call: int = 1, times: int = 1) -> None:
        """Perform and persist ``hook``'s operation, then raise TransientError (response lost)."""
        self._add(hook, _Phase.APPLY_THEN_FAIL, FaultKind.TRANSIENT, on_call, times, None)

    def apply_then_die(self, hook: str, *, on_call: int = 1) -> None:
        """Perform and persist ``hook``'s operation, then SIGKILL the current process."""
        self._add(hook, _Phase.APPLY_THEN_DIE, FaultKind.TRANSIENT, on_call, 1, None)

    def random_failures(
        self,
        rate: float,
        *,
        seed: int = 0,
        kinds: Iterable[FaultKind | str] = (FaultKind.THROTTLED, FaultKind.TRANSIENT),
        hooks: Iterable[str] | None = None,
    ) -> None:
        """Fail a share of calls before they do anything, from a seeded generator.

        The same seed and the same sequence of calls give the same failures.

        Args:
            rate: The probability that a call fails, between 0 and 1 (0 switches it off).
            seed: The generator's seed.
            kinds: The errors to choose from.
            hooks: Only these hooks fail (default: every hook except ``authenticate``).
        """
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        chosen = tuple(FaultKind(k) for k in kinds)
        if rate and not chosen:
            raise ValueError("random failures need at least one kind")
        self._random = (
            _RandomFailures(
                random.Random(seed),  # noqa: S311 - deterministic test faults, not crypto
                rate,
                chosen,
                None if hooks is None else frozenset(hooks),
            )
            if rate
            else None
        )

    def clear(self) -> None:
        """Remove every scripted and random failure and all latency; keep the counters."""
        self.latency = 0.0
        self._hook_latency.clear()
        self._rules.clear()
        self._random = None

    def reset_counters(self) -> None:
        """Zero ``calls``, ``applied``, ``peak_in_flight`` and ``cap_refusals``."""
        self.calls.clear()
        self.applied.clear()
        self.peak_in_flight = self.in_flight
        self.cap_refusals = 0

    def pending(self, hook: str | None = None) -> int:
        """How many scripted rules (for ``hook``, or for all hooks) have calls left to fail."""
        hooks = [hook] if hook is not None else list(self._rules)
        return sum(
            1 for h in hooks for rule in self._rules.get(h, []) if rule.last > self._admitted[h]
        )

    def total_calls(self, hooks: Iterable[str]) -> int:
        """The number of calls received by all of ``hooks``."""
        return sum(self.calls[h] for h in hooks)

    # --- Used by the fake system on every call -------------------------------------------------

    def admit(self, hook: str) -> int:
        """Count a call and let it in, or refuse it when the cap is reached.

        Returns:
            The call's number among the hook's admitted calls.

        Raises:
            ThrottledError: ``max_in_flight`` calls are in flight already.
        """
        self.calls[hook] += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight + 1)
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            self.cap_refusals += 1
            raise ThrottledError(
                "Max number of concurrent requests per organization reached.",
                system=self.system,
                status=429,
                code=self.throttle_code,
                correlation_id=self.correlation_id(hook),
            )
        self.in_flight += 1
        self._admitted[hook] += 1
        return self._admitted[hook]

    def release(self) -> None:
        """Mark an admitted call as finished."""
        self.in_flight -= 1

    def delay(self, hook: str) -> float:
        """The latency of one call of ``hook``, in seconds."""
        return self._hook_latency.get(hook, self.latency)

    def before(self, hook: str, call: int) -> None:
        """Raise the failure scripted (or drawn) for this call, if any."""
        rule = self._match(hook, call, _Phase.BEFORE)
        if rule is not None:
            raise self.error(rule.kind, hook, retry_after=rule.retry_after)
        chance = self._random
        if chance is None:
            return
        eligible = hook in chance.hooks if chance.hooks is not None else hook != "authenticate"
        if eligible and chance.rng.random() < chance.rate:
            raise self.error(chance.rng.choice(chance.kinds), hook)

    def after(self, hook: str, call: int) -> None:
        """After the operation was applied: lose the response, or kill the process."""
        if self._match(hook, call, _Phase.APPLY_THEN_DIE) is not None:
            _die()
        if self._match(hook, call, _Phase.APPLY_THEN_FAIL) is not None:
            raise TransientError(
                f"injected fault: {hook} was applied but its response was lost",
                system=self.system,
                status=502,
                correlation_id=self.correlation_id(hook),
            )

    def error(
        self, kind: FaultKind, hook: str, *, retry_after: float | None = None
    ) -> UpstreamError:
        """Build the error a scripted failure of ``kind`` raises."""
        message = f"injected fault: {kind.value} on {hook}"
        correlation_id = self.correlation_id(hook)
        if kind is FaultKind.THROTTLED:
            return ThrottledError(
                message,
                retry_after=retry_after,
                system=self.system,
                status=429,
                code=self.throttle_code,
                correlation_id=correlation_id,
            )
        if kind is FaultKind.TRANSIENT:
            return TransientError(
                message, system=self.system, status=503, correlation_id=correlation_id
            )
        if kind is FaultKind.SESSION_EXPIRED:
            return SessionExpiredError(
                message,
                system=self.system,
                status=401,
                code=self.session_code,
                correlation_id=correlation_id,
            )
        return AuthenticationError(
            message, system=self.system, status=401, correlation_id=correlation_id
        )

    def correlation_id(self, hook: str) -> str:
        """The request id the fake gives the current call of ``hook`` (its latest received)."""
        return f"{self.system}:{hook}:{self.calls[hook]}"

    # --- Internals -----------------------------------------------------------------------------

    def _add(
        self,
        hook: str,
        phase: _Phase,
        kind: FaultKind,
        on_call: int,
        times: int,
        retry_after: float | None,
    ) -> None:
        if on_call < 1 or times < 1:
            raise ValueError("on_call and times must be at least 1")
        first = self._admitted[hook] + on_call
        self._rules.setdefault(hook, []).append(
            _Rule(phase, kind, first, first + times - 1, retry_after)
        )

    def _match(self, hook: str, call: int, phase: _Phase) -> _Rule | None:
        rules = self._rules.get(hook)
        if not rules:
            return None
        return next(
            (r for r in rules if r.phase is phase and r.first <= call <= r.last),
            None,
        )
