"""What every step of a run shares: the two sides, the ledger, the retry policy, the tallies."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from ml_connector.engine._retry import RetryPolicy
from ml_connector.errors import (
    ConnectorError,
    ThrottledError,
    TransientError,
    UndecidedWriteError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ml_connector.drivers import SinkDriver, SourceDriver
    from ml_connector.engine._ledger import Ledger
    from ml_connector.engine._limits import RequestLimiter

__all__ = [
    "RunContext",
    "RunObserver",
    "SingleFlight",
    "SyncOptions",
    "as_record_error",
    "task_group",
]

log = logging.getLogger("ml_connector.engine")

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RunObserver(Protocol):
    """Receives progress as a run goes; the CLI draws it, tests count it.

    An observer may also have ``wait(what: str, waited: float, limit: float) -> None``, called
    each time a plugin reports that it waits (:meth:`ConnectionContext.report_wait`: what for,
    seconds so far, seconds at most). It is optional, so it is not part of this protocol: the
    engine looks it up with ``getattr``.
    """

    def stage(self, name: str) -> None:
        """A new stage started: ``accounts``, ``payables``, ``payments``."""

    def count(self, key: str, n: int = 1) -> None:
        """A tally went up, e.g. ``bills_created``."""


class _NoObserver:
    def stage(self, name: str) -> None:
        pass

    def count(self, key: str, n: int = 1) -> None:
        pass


@dataclass(frozen=True)
class SyncOptions:
    """How a run behaves.

    Attributes:
        lookback: How far before the stored cursor each read starts, to absorb clock skew
            between the systems and late commits; records seen again cost no write.
        workers: Records processed at once; 0 means four times the sink's in-flight limit.
        retry: Backoff for throttling and transient errors.
        bulk: Create new bills in bulk when the sink can.
        create_missing_accounts: Create sink accounts for unmapped source accounts.
        now: The clock (tests pin it).
    """

    lookback: timedelta = timedelta(minutes=10)
    workers: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bulk: bool = True
    create_missing_accounts: bool = False
    now: Callable[[], datetime] = _utcnow


@dataclass
class RunContext:
    """The shared state of one run."""

    source: SourceDriver
    sink: SinkDriver
    ledger: Ledger
    options: SyncOptions
    sink_limiter: RequestLimiter
    source_limiter: RequestLimiter
    observer: RunObserver = field(default_factory=_NoObserver)
    counts: Counter[str] = field(default_factory=Counter)

    def count(self, key: str, n: int = 1) -> None:
        """Add to a tally and tell the observer."""
        self.counts[key] += n
        self.observer.count(key, n)

    async def read(self, limiter: RequestLimiter, call: Callable[[], Awaitable[T]]) -> T:
        """A read: retried on throttling and transient errors, one limiter slot per attempt."""

        async def attempt() -> T:
            async with self._call_slot(limiter):
                return await call()

        return await self.options.retry.call(attempt)

    async def write(
        self,
        limiter: RequestLimiter,
        create: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]],
    ) -> T:
        """A create that must not happen twice.

        Throttling means the system refused the request, so it is retried as it is. A transient
        error may hide a create that did happen (the response was lost), so before trying again
        the record is looked up with ``find``, and found records are returned instead, unless
        the plugin says the record is not finished (``RecordedPayment.finished``): then the
        create is tried again, and the plugin finishes what it finds.

        Raises:
            UndecidedWriteError: The look-up failed too: trying the create again could make a
                duplicate, so the record waits, its intent open, for the next run's sweep.
        """

        async def attempt() -> T:
            try:
                async with self._call_slot(limiter):
                    return await create()
            except TransientError as lost:
                try:
                    found = await self.read(limiter, find)
                except (ThrottledError, TransientError) as exc:
                    raise UndecidedWriteError(
                        f"the create may have happened ({lost}) and looking it up failed ({exc})"
                    ) from exc
                # A record found but not finished (a payment saved and not yet posted) is not
                # done: trying again lets the plugin finish it, never create a second one.
                if found is not None and getattr(found, "finished", True):
                    return found
                raise

        return await self.options.retry.call(attempt)

    def _call_slot(self, limiter: RequestLimiter) -> AbstractAsyncContextManager[None]:
        """The slot a hook call holds: none where the plugin's requests hold their own."""
        if limiter.limits.per_request:
            return nullcontext()
        return limiter.slot(self.options.retry.max_delay)

    async def sink_read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A read from the sink."""
        return await self.read(self.sink_limiter, call)

    async def source_read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A read from the source."""
        return await self.read(self.source_limiter, call)


class SingleFlight:
    """Runs one task per key at a time; later callers for the same key wait for it first."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[None]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key`` for the block, after whoever holds it now."""
        while (busy := self._running.get(key)) is not None:
            await asyncio.shield(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = done
        try:
            yield
        finally:
            del self._running[key]
            done.set_result(None)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_leaf(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


@asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An ``asyncio.TaskGroup`` that fails with the first error itself, not an ExceptionGroup.

    Workers handle their record's errors; what escapes one (credentials rejected, a bug) ends
    the run, and the engine reports it like any other error of the run.
    """
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise _first_leaf(errors) from None


def as_record_error(exc: Exception, record: str) -> ConnectorError:
    """A plugin's unexpected error on one record, as an error that queues only that record.

    A bug that a single odd record triggers in a plugin must not stop the other records; the
    traceback goes to the log for whoever fixes the plugin.
    """
    log.error("unexpected error on %s", record, exc_info=exc)
    return ConnectorError(f"unexpected {type(exc).__name__} in a plugin: {exc}")
