"""What the end-to-end benchmarks share: a seeded ERP and BILL emulator pair, and a sync against it.

In production the ERP and BILL are remote servers: their CPU is not the connector's. So by default
each emulator runs in its own child process (``spawn``; one process each, so that neither waits
for the other's GIL), serving real HTTP on a free loopback port (``serve_in_thread``), and the
connection reaches them over TCP with plain httpx, as it would reach the real services. The
benchmark process then holds only the engine, its plugins and its state store, so its CPU time and
RSS are the connector's own. The parent talks to each child over a pipe for the connection's
settings, the duplicates/missing check, the request counters (and their reset between runs) and
stop. ``in_process=True`` keeps the old arrangement (httpx ASGI transports
into emulators in this process), where the emulators' CPU counts against the engine.
"""

from __future__ import annotations

import gc
import multiprocessing
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ml_connector.connections import SideInput, create_connection
from ml_connector.emulation import (
    DemoSink,
    DemoSource,
    Emulator,
    EmulatorOptions,
    load_emulator,
    serve_in_thread,
)
from ml_connector.engine import LimiterPool, RunSummary, SyncOptions, open_engine
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.vault import Vault
from ml_connector_bill.schemas import MAX_IN_FLIGHT, REQUESTS_PER_HOUR

__all__ = [
    "BILL_IN_FLIGHT",
    "BILL_REQUESTS_PER_HOUR",
    "SINK",
    "Routes",
    "Running",
    "Seeding",
    "State",
    "cpu_seconds",
    "data_writes",
    "reads",
    "session_calls",
    "start_emulators",
    "state",
    "sync",
    "writes_by_route",
]

SINK = "bill"
NAME = "bench"
SEED = 11
BILL_IN_FLIGHT = MAX_IN_FLIGHT  # BILL's cap: 3 requests in flight per developer key and org
BILL_REQUESTS_PER_HOUR = REQUESTS_PER_HOUR  # BILL's real hourly budget (20,000)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SESSION = ("/login", "/logout")  # session POSTs: not data writes
_COMMANDS = frozenset({"eligible", "bills_by_key", "routes", "errors", "reset", "cpu"})

Routes = Counter[tuple[str, str]]
"""Requests served per (method, route), as ``RequestLog.by_route`` counts them."""


def cpu_seconds() -> float:
    """This process's user+system CPU time (all its threads; not its children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def writes_by_route(routes: Routes) -> dict[str, int]:
    return {f"{m} {r}": n for (m, r), n in sorted(routes.items()) if m in _WRITES and n}


def data_writes(routes: Routes) -> int:
    return sum(
        n for (m, r), n in routes.items() if m in _WRITES and not any(x in r for x in _SESSION)
    )


def session_calls(routes: Routes) -> int:
    return sum(n for (_, r), n in routes.items() if any(x in r for x in _SESSION))


def reads(routes: Routes) -> int:
    return sum(n for (m, _), n in routes.items() if m not in _WRITES)


@dataclass(frozen=True)
class Seeding:
    """How the pair is seeded: ``bills`` approved bills in ``source``, BILL given its chart.

    ``extra`` holds each system's emulator options by system key, e.g.
    ``{"bill": {"requests_per_hour": 10_000_000}}``.
    """

    source: str
    bills: int
    latency: float
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)


def _seeded(system: str, seeding: Seeding, chart: dict[str, str] | None) -> Emulator:
    """One emulator, seeded: the ERP with its bills, BILL with ``chart`` (number to name)."""
    extra = dict(seeding.extra.get(system, {}))
    emulator = load_emulator(system)(EmulatorOptions(seeding.latency, seed=SEED, extra=extra))
    if isinstance(emulator, DemoSource) and chart is None:
        emulator.seed_demo(seeding.bills, SEED)
    elif isinstance(emulator, DemoSink) and chart is not None:
        emulator.seed_chart(chart)
    else:
        raise SystemExit(f"{system} cannot be seeded for the benchmark")
    return emulator


def _chart(erp: Emulator) -> dict[str, str]:
    """The ERP's chart of accounts but the deliberately unmapped account: what BILL is given."""
    assert isinstance(erp, DemoSource)
    unmapped = erp.unmapped_account()
    return {n: name for n, name in erp.account_numbers().items() if n != unmapped}


class _Answers:
    """What the benchmarks ask one emulator, wherever it runs."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._cpu = cpu_seconds()

    def side(self, root: str) -> SideInput:
        emulator = self.emulator
        return SideInput(
            emulator.system, emulator.settings(root + emulator.base_path), emulator.credentials()
        )

    def eligible(self) -> set[Any]:
        assert isinstance(self.emulator, DemoSource)
        return set(self.emulator.eligible_bills())

    def bills_by_key(self) -> dict[Any, int]:
        assert isinstance(self.emulator, DemoSink)
        return dict(self.emulator.bills_by_key())

    def routes(self) -> Routes:
        return Counter(self.emulator.log.by_route)

    def errors(self) -> dict[int, int]:
        """Error statuses answered since the last reset (the log keeps the last 100,000)."""
        return dict(Counter(r.status for r in self.emulator.log.records if r.status >= 400))

    def reset(self) -> None:
        """Forget the requests served so far, and the CPU time spent."""
        self.emulator.log.clear()
        self._cpu = cpu_seconds()

    def cpu(self) -> float:
        """CPU seconds this process spent since the last reset."""
        return cpu_seconds() - self._cpu


def _serve(pipe: Any, system: str, seeding: Seeding, chart: dict[str, str] | None) -> None:
    """A child process: seed one emulator, serve it on loopback, answer until told to stop."""
    emulator = _seeded(system, seeding, chart)
    # The seeded records live as long as the process: out of the collector's way, whose full
    # collections walked them all (70-80 ms at 2,000 bills), holding every answer meanwhile. A
    # real ERP's or BILL's pauses are not the connector's.
    gc.freeze()
    server = serve_in_thread(emulator)
    answers = _Answers(emulator)
    try:
        pipe.send((answers.side(server.root_url), None if chart else _chart(emulator)))
        while True:
            try:
                command = pipe.recv()
            except EOFError:  # the parent is gone
                break
            if command not in _COMMANDS:  # "stop"
                break
            pipe.send(getattr(answers, command)())
    finally:
        server.stop()


class _Child:
    """One emulator served from its own child process (its own GIL: two emulators in one
    process would delay each other's answers)."""

    def __init__(self, system: str, seeding: Seeding, chart: dict[str, str] | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs, system, seeding, chart), daemon=True
        )
        self._process.start()
        theirs.close()  # so that recv() sees EOF if the child dies
        try:
            self.side, self.chart = self._pipe.recv()
        except EOFError:
            self._process.join()
            code = self._process.exitcode
            raise SystemExit(f"the {system} emulator process failed (exit code {code})") from None

    def __getattr__(self, command: str) -> Callable[[], Any]:
        if command not in _COMMANDS:
            raise AttributeError(command)

        def ask() -> Any:
            self._pipe.send(command)
            return self._pipe.recv()

        return ask

    def stop(self) -> None:
        with suppress(OSError):  # the child may be gone already
            self._pipe.send("stop")
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
        self._pipe.close()


class Running:
    """A started pair: its connection sides, its transports (``None``: real HTTP), its figures."""

    def __init__(self, erp: Any, bill: Any, sides: tuple[SideInput, SideInput]) -> None:
        self._erp, self._bill, self.sides = erp, bill, sides
        self.transports: dict[str, httpx.AsyncBaseTransport] | None = None
        if isinstance(erp, _Answers) and isinstance(bill, _Answers):
            self.transports = {
                erp.emulator.system: erp.emulator.transport(),
                SINK: bill.emulator.transport(),
            }

    @property
    def where(self) -> str:
        return "process" if self.transports is None else "inprocess"

    def check(self) -> dict[str, int]:
        """Duplicates and missing bills, from the systems' own records."""
        in_bill: dict[Any, int] = self._bill.bills_by_key()
        eligible: set[Any] = self._erp.eligible()
        return {
            "eligible": len(eligible),
            "duplicates": sum(1 for n in in_bill.values() if n > 1),
            "missing": len(eligible - set(in_bill)),
            "unexpected": len(set(in_bill) - eligible),
        }

    def routes(self) -> dict[str, Routes]:
        """Requests served since the last reset, by route: ``{"erp": ..., "bill": ...}``."""
        return {"erp": self._erp.routes(), "bill": self._bill.routes()}

    def errors(self) -> dict[str, dict[int, int]]:
        return {"erp": self._erp.errors(), "bill": self._bill.errors()}

    def reset(self) -> None:
        self._erp.reset()
        self._bill.reset()

    def emulator_cpu(self) -> float | None:
        """The emulator processes' CPU seconds since the last reset (``None`` in process)."""
        if self.transports is not None:
            return None
        return round(float(self._erp.cpu()) + float(self._bill.cpu()), 3)


@contextmanager
def start_emulators(seeding: Seeding, *, in_process: bool = False) -> Iterator[Running]:
    """The seeded pair, each served from its own child process (or, ``in_process``, from this
    one)."""
    if in_process:
        erp = _Answers(_seeded(seeding.source, seeding, None))
        bill = _Answers(_seeded(SINK, seeding, _chart(erp.emulator)))
        sides = (erp.side("http://erp.emulator"), bill.side("http://bill.emulator"))
        yield Running(erp, bill, sides)
        return
    children: list[_Child] = []
    try:
        children.append(_Child(seeding.source, seeding, None))
        children.append(_Child(SINK, seeding, children[0].chart))
        erp_child, bill_child = children
        yield Running(erp_child, bill_child, (erp_child.side, bill_child.side))
    finally:
        for child in children:
            child.stop()


@dataclass
class State:
    """A temporary SQLite state with the benchmark's connection stored in it."""

    store: Store
    vault: Vault
    registry: Registry


@contextmanager
def state(sides: tuple[SideInput, SideInput], parent: str | None = None) -> Iterator[State]:
    """A fresh state in a temporary folder (under ``parent``), deleted at the end."""
    folder = Path(tempfile.mkdtemp(prefix="ml-connector-e2e-", dir=parent))
    try:
        made = State(
            open_store(str(folder / "state.db")),
            Vault.from_key_file(folder / "master.key"),
            Registry(),
        )
        create_connection(made.store, made.vault, made.registry, NAME, *sides)
        try:
            yield made
        finally:
            made.store.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def sync(
    made: State,
    transports: dict[str, httpx.AsyncBaseTransport] | None,
    bulk: bool,
    on_start: Callable[[], None] | None = None,
    bill_requests_per_hour: int = BILL_REQUESTS_PER_HOUR,
) -> tuple[RunSummary, float, float]:
    """One run of the connection's engine: its summary, wall seconds and this process's CPU s.

    ``on_start`` is called just before the run (after both sides are opened).
    ``bill_requests_per_hour`` is the BILL budget the engine keeps to (the plugin declares BILL's
    real one): a benchmark that raises the emulator's budget raises this one with it.
    """
    async with open_engine(
        made.store,
        made.vault,
        made.registry,
        NAME,
        options=SyncOptions(bulk=bulk),
        transports=transports,
        limiters=LimiterPool(),
    ) as engine:
        limiter = engine.run_context.sink_limiter
        limiter.limits = limiter.limits.model_copy(
            update={"requests_per_hour": bill_requests_per_hour}
        )
        if on_start is not None:
            on_start()
        cpu, started = cpu_seconds(), time.perf_counter()
        summary = await engine.run()
        return summary, time.perf_counter() - started, cpu_seconds() - cpu
