"""What the Acumatica tests share: contexts on the emulator, reads, and the sink side of a run.

The engine round trip is written against :class:`SinkSide`, so the end-to-end tests at the root
can swap the reference sink for the BILL plugin and its emulator by writing one more SinkSide.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ml_connector.connections import SideInput, create_connection, open_connection
from ml_connector.context import ConnectionContext
from ml_connector.description import PluginInfo, Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.engine import LimiterPool, RetryPolicy, RunSummary, SyncEngine, SyncOptions
from ml_connector.models import DimensionKind, Payable, RejectedRecord
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.testing import FakeSink, ManualClock, reference_sink
from ml_connector.vault import Vault
from ml_connector_acumatica import PLUGIN_INFO, plugin
from ml_connector_acumatica.emulator import INSTANCE_PATH, AcumaticaEmulator
from ml_connector_acumatica.schemas import AcumaticaCredentials, AcumaticaSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from ml_connector.models import ChangeWindow

BASE_URL = "http://acumatica.test" + INSTANCE_PATH
START = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


async def no_sleep(_: float) -> None:
    """A sleep that does not wait: tests never depend on the wall clock."""


def emulator(clock: ManualClock | None = None, **extra: Any) -> AcumaticaEmulator:
    """An emulator on a manual clock, without the request budget unless asked for.

    With a budget and no ``sleep``, the licence's delays move the clock instead of waiting.
    """
    clock = clock or ManualClock(START)
    extra.setdefault("requests_per_minute", None)
    if extra["requests_per_minute"] is not None or extra.get("processing_seconds"):
        extra.setdefault("sleep", VirtualTime(clock, auto=True).sleep)
    return AcumaticaEmulator(EmulatorOptions(clock=clock, extra=extra))


@dataclass(order=True)
class _Timer:
    deadline: datetime
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class VirtualTime:
    """Sleeps on a :class:`ManualClock`: what the emulator waits, the test decides, instantly.

    ``auto``: every sleep moves the clock to its end and returns (for one request at a time).
    Otherwise sleeps wait until :meth:`advance` moves the clock past their end, one at a time in
    order of their ends, letting the event loop run in between: concurrent waits end in the
    order their times say, whatever the wall clock does.

    Attributes:
        slept: Every sleep asked for, in seconds, in order.
    """

    #: Event-loop turns given to woken tasks before the next timer fires or a check is made:
    #: in-process HTTP does no I/O, so a request runs in a bounded number of turns.
    TURNS = 200

    def __init__(self, clock: ManualClock, *, auto: bool = False) -> None:
        self.clock = clock
        self.auto = auto
        self.slept: list[float] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        deadline = self.clock() + timedelta(seconds=max(0.0, seconds))
        if self.auto:
            self.clock.set(max(self.clock(), deadline))
            await asyncio.sleep(0)
            return
        timer = _Timer(deadline, next(self._seq), asyncio.get_running_loop().create_future())
        self._timers.append(timer)
        try:
            await timer.future
        finally:
            if timer in self._timers:
                self._timers.remove(timer)

    async def settle(self) -> None:
        """Let every task that can run, run."""
        for _ in range(self.TURNS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, waking each sleep whose end comes, in order."""
        end = self.clock() + timedelta(seconds=seconds)
        await self.settle()
        while due := sorted(t for t in self._timers if t.deadline <= end):
            first = due[0]
            self._timers.remove(first)
            self.clock.set(max(self.clock(), first.deadline))
            if not first.future.done():
                first.future.set_result(None)
            await self.settle()
        self.clock.set(max(self.clock(), end))
        await self.settle()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Run the event loop until ``condition`` holds (never by waiting on the wall clock)."""
        for _ in range(50 * self.TURNS):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError(f"never happened: {what}")


def settings(emu: AcumaticaEmulator, **overrides: Any) -> AcumaticaSettings:
    """The emulator's own connection settings, with overrides."""
    return AcumaticaSettings(**{**emu.settings(BASE_URL), **overrides})


def credentials(emu: AcumaticaEmulator, **overrides: Any) -> AcumaticaCredentials:
    """The emulator's own credentials, with overrides."""
    return AcumaticaCredentials(**{**emu.credentials(), **overrides})


def context(
    emu: AcumaticaEmulator,
    *,
    creds: AcumaticaCredentials | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> ConnectionContext:
    """A source-side context whose HTTP goes to the emulator in process."""
    return ConnectionContext(
        connection="acme",
        system="acumatica",
        role=Role.SOURCE,
        settings=settings(emu, **overrides),
        credentials=creds or credentials(emu),
        transport=transport or emu.transport(),
    )


async def read_all(
    ctx: ConnectionContext, window: ChangeWindow
) -> tuple[list[Payable], list[RejectedRecord], int]:
    """Every page of a window: payables, rejected records, number of pages."""
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    token, pages = None, 0
    while True:
        page = await plugin.list_changed_payables(ctx, window, token)
        items += page.items
        rejected += page.rejected
        pages += 1
        token = page.next_page_token
        if token is None:
            return items, rejected, pages


def open_bills(emu: AcumaticaEmulator) -> set[str]:
    """Reference numbers of the bills that must be sent: type Bill, status Open."""
    return {
        b["ReferenceNbr"]
        for b in emu.books.ordered("Bill")
        if b["Type"] == "Bill" and b["Status"] == "Open"
    }


def requests_to(emu: AcumaticaEmulator, method: str, fragment: str) -> int:
    """How many requests the emulator served with that method and a path containing fragment."""
    return sum(1 for r in emu.log.records if r.method == method and fragment in r.path)


# --- The sink side of an engine run ------------------------------------------------------------


class SinkSide(Protocol):
    """What the round trip needs from a sink; the reference sink now, BILL's emulator later."""

    system: str
    plugin: object
    info: PluginInfo
    settings: dict[str, Any]
    credentials: dict[str, Any]
    transport: httpx.AsyncBaseTransport | None

    def prepare_chart(self, accounts: dict[str, str], departments: dict[str, str]) -> None:
        """Create chart entries (number -> name) and departments (code -> name)."""

    def bills_for(self, source_id: str) -> list[str]:
        """The sink ids of the bills made from an ERP payable."""

    def duplicates(self) -> bool:
        """Whether any bill or vendor exists twice."""

    def pay(self, bill_id: str, amount: Decimal | None = None) -> str:
        """Pay a bill as a clerk would; the payment's id."""


@dataclass
class ReferenceSink:
    """The core's domain-level BILL stand-in."""

    org: str = "00801ACME"
    system: str = "reference_sink"
    plugin: object = reference_sink.PLUGIN
    info: PluginInfo = field(
        default_factory=lambda: PluginInfo.model_validate(reference_sink.PLUGIN_INFO)
    )
    transport: httpx.AsyncBaseTransport | None = None
    clock: ManualClock | None = None

    def __post_init__(self) -> None:
        self.fake = FakeSink.in_memory(self.org)
        if self.clock is not None:
            self.fake.clock = self.clock  # one clock for both systems and the engine
        self.settings = {"organization_id": self.org}
        self.credentials = {"username": "ap@acme.example", "password": "bill-pw", "dev_key": "k"}

    def prepare_chart(self, accounts: dict[str, str], departments: dict[str, str]) -> None:
        for number, name in accounts.items():
            self.fake.add_account(name, number)
        for code, name in departments.items():
            self.fake.add_classification(DimensionKind.DEPARTMENT, name, code)

    def bills_for(self, source_id: str) -> list[str]:
        return [b.id for b in self.fake.bill_for_payable(source_id)]

    def duplicates(self) -> bool:
        return bool(self.fake.duplicate_bills() or self.fake.duplicate_vendors())

    def pay(self, bill_id: str, amount: Decimal | None = None) -> str:
        return self.fake.pay_bill(bill_id, amount).id


@dataclass
class RoundTrip:
    """The Acumatica emulator and a sink, joined by a stored connection and the engine."""

    folder: Path
    emu: AcumaticaEmulator
    sink: SinkSide
    source_settings: dict[str, Any] = field(default_factory=dict)
    name: str = "acme"

    def __post_init__(self) -> None:
        self.store: Store = open_store(str(self.folder / "state.db"))
        self.registry = Registry(path=[])
        self.registry.add(plugin, PluginInfo.model_validate(PLUGIN_INFO))
        self.registry.add(self.sink.plugin, self.sink.info)
        create_connection(
            self.store,
            Vault.from_environment(),
            self.registry,
            self.name,
            SideInput(
                "acumatica",
                {**self.emu.settings(BASE_URL), **self.source_settings},
                self.emu.credentials(),
            ),
            SideInput(self.sink.system, self.sink.settings, self.sink.credentials),
        )

    async def sync(self, retry: RetryPolicy, **options: Any) -> RunSummary:
        """One run with the given retry policy and a private limiter pool."""
        transports = {"acumatica": self.emu.transport()}
        if self.sink.transport is not None:
            transports[self.sink.system] = self.sink.transport
        connection = open_connection(
            self.store, Vault.from_environment(), self.registry, self.name, transports
        )
        try:
            engine = SyncEngine(
                self.store,
                connection.id,
                connection.source,
                connection.sink,
                SyncOptions(retry=retry, now=self.emu.now, **options),
                limiters=LimiterPool(),
            )
            return await engine.run()
        finally:
            await connection.close()

    def close(self) -> None:
        """Release the state database."""
        self.store.dispose()
