"""One sync of a stored connection in a child process that kills itself with SIGKILL at a point.

    python -m tests.kill_child '{"db": ..., "connection": ..., "point": {...}, ...}'

The emulators the connection reaches run elsewhere (the test's process, on loopback), so what
they hold survives the kill. The kill points are instrumentation of this process only, put in
place by :func:`install` before the run starts; the engine's code is not changed:

``intent``
    after :meth:`Ledger.begin_intents` committed its ``on_call``-th batch of intents of object
    type ``target`` (``bill``, ``vendor``, ``account``, ``payment``), before the create is sent.
``response``
    after the ``on_call``-th response to a request of route ``target`` (:data:`ROUTES`: an
    account, vendor or bill create, a vendor or bill update, a bulk create, a payment record or
    its release/post) arrived from the other system, before the plugin reads it: the other
    system did the write, the connector never heard of it.
``ledger_commit``
    inside the ``on_call``-th transaction of :meth:`Store.transaction` (the ledger's intents,
    and the completions and audit events waiting for them): ``when="before"`` its COMMIT, after
    every statement ran (SQLite's commit is atomic, so this is any crash during it that loses
    it), ``when="after"`` right after it.
``cursor_commit``
    inside the transaction that moves stream ``target``'s cursor (``payables`` or
    ``payments``), before its COMMIT or after it.

The test process imports this module through :mod:`tests.kill_support`, which starts each child
from a fork server that imported it once (an import of the engine and the plugins takes seconds;
a fork, milliseconds). Run as a module, it does the same in the foreground.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
from sqlalchemy import event
from tests.e2e_support import FAST_RETRY

from ml_connector.engine import LimiterPool, SyncOptions, open_engine, run_async
from ml_connector.engine._ledger import Ledger
from ml_connector.http import AiohttpTransport
from ml_connector.registry import Registry
from ml_connector.store import Store, WriteTransaction, open_store
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "KINDS",
    "ROUTES",
    "ChildRun",
    "KillPoint",
    "child_main",
    "install",
    "route_for",
]

KINDS = ("intent", "response", "ledger_commit", "cursor_commit")


@dataclass(frozen=True)
class Route:
    """Requests of one kind: the side that answers them, their method and path."""

    side: str  # "source" or "sink"
    method: str
    path: str  # a regular expression searched in the URL's path

    def matches(self, request: httpx.Request) -> bool:
        """Whether ``request`` is one of these."""
        return request.method == self.method and re.search(self.path, request.url.path) is not None


_SINK = {
    "account_create": Route("sink", "POST", r"/v3/classifications/chart-of-accounts$"),
    "vendor_create": Route("sink", "POST", r"/v3/vendors$"),
    "vendor_update": Route("sink", "PATCH", r"/v3/vendors/[^/]+$"),
    "bill_create": Route("sink", "POST", r"/v3/bills$"),
    "bill_update": Route("sink", "PUT", r"/v3/bills/[^/]+$"),
    "bill_bulk_create": Route("sink", "POST", r"/v3/bills/bulk$"),
}
#: Per source system: the request that enters a payment, and the one that releases (posts) it.
_SOURCE = {
    "acumatica": {
        "payment_record": Route("source", "PUT", r"/Check$"),
        "payment_post": Route("source", "POST", r"/Check/ReleaseCheck$"),
    },
    "epicor": {
        "payment_record": Route("source", "POST", r"/Erp\.BO\.PaymentEntrySvc/Update$"),
        "payment_post": Route("source", "POST", r"/Erp\.PROC\.APPaymentPostSvc/RunDirect$"),
    },
    # SAP B1 posts an outgoing payment in the one call that creates it: no second step.
    "sapb1": {
        "payment_record": Route("source", "POST", r"/VendorPayments$"),
        "payment_post": Route("source", "POST", r"/VendorPayments$"),
    },
    # NetSuite too: one upsert by external id records and posts the payment.
    "netsuite": {
        "payment_record": Route("source", "PUT", r"/vendorPayment/eid:[^/]+$"),
        "payment_post": Route("source", "PUT", r"/vendorPayment/eid:[^/]+$"),
    },
}
ROUTES = (*_SINK, "payment_record", "payment_post")


def route_for(name: str, source: str) -> Route:
    """The route called ``name`` (one of :data:`ROUTES`) of a connection from ``source``."""
    if name in _SINK:
        return _SINK[name]
    return _SOURCE[source][name]


@dataclass(frozen=True)
class KillPoint:
    """Where the child dies (see the module's docstring)."""

    kind: str
    target: str = ""
    on_call: int = 1
    when: str = "before"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kill point kind {self.kind!r}")
        if self.kind == "response" and self.target not in ROUTES:
            raise ValueError(f"unknown route {self.target!r}")
        if self.when not in ("before", "after") or self.on_call < 1:
            raise ValueError(f"bad kill point {self}")

    @property
    def label(self) -> str:
        """A short name, e.g. ``response:bill_create#3`` or ``cursor_commit:payables:before``."""
        if self.kind == "ledger_commit":
            return f"ledger_commit:{self.when}#{self.on_call}"
        if self.kind == "cursor_commit":
            return f"cursor_commit:{self.target}:{self.when}"
        return f"{self.kind}:{self.target}#{self.on_call}"


@dataclass(frozen=True)
class ChildRun:
    """What a child does: one run of ``connection`` in ``db``, killed at ``point`` (if reached).

    ``env``: environment variables to set (``None``: unset) before anything is opened, so the
    vault finds the test's key. ``log`` receives the child's stdout and stderr; ``summary`` the
    run's summary as JSON, if the run ends.
    """

    db: str
    connection: str
    log: str
    summary: str
    point: KillPoint | None = None
    bulk: bool = False
    create_missing_accounts: bool = False
    env: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        """The run as one JSON argument for ``python -m tests.kill_child``."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildRun:
        """The run :meth:`to_json` wrote."""
        data = json.loads(text)
        point = data.pop("point")
        return cls(**data, point=None if point is None else KillPoint(**point))


def _die() -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("SIGKILL did not kill the process")  # pragma: no cover


class _Nth:
    """Counts events (from any thread); true exactly at the ``n``-th."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._seen = 0
        self._lock = threading.Lock()

    def hit(self) -> bool:
        with self._lock:
            self._seen += 1
            return self._seen == self._n


class _KillingTransport(httpx.AsyncBaseTransport):
    """Sends through ``inner``; dies when the ``n``-th response of ``route`` has arrived."""

    def __init__(self, inner: httpx.AsyncBaseTransport, route: Route, n: int) -> None:
        self._inner = inner
        self._route = route
        self._nth = _Nth(n)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if self._route.matches(request) and self._nth.hit():
            _die()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _wrap(method: Callable[..., Any], after: Callable[[tuple[Any, ...]], None]) -> Any:
    """``method``, calling ``after(args)`` once it returned (sync or async alike)."""
    if inspect.iscoroutinefunction(method):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            after(args)
            return result

        return wrapped_async

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        after(args)
        return result

    return wrapped


def _install_intent(point: KillPoint) -> None:
    nth = _Nth(point.on_call)

    def after(args: tuple[Any, ...]) -> None:
        if args[1] == point.target and nth.hit():
            _die()

    Ledger.begin_intents = _wrap(Ledger.begin_intents, after)  # type: ignore[method-assign]


def _install_ledger_commit(point: KillPoint) -> None:
    nth = _Nth(point.on_call)
    commit = WriteTransaction.commit

    def killing_commit(self: WriteTransaction) -> None:
        hit = nth.hit()
        if hit and point.when == "before":
            _die()
        commit(self)
        if hit:
            _die()

    WriteTransaction.commit = killing_commit  # type: ignore[method-assign]


def _install_cursor_commit(point: KillPoint, store: Store) -> None:
    moving: list[str] = []  # the stream whose cursor is being committed, while it is

    def on_commit(*_: Any) -> None:
        if moving and moving[-1] == point.target and point.when == "before":
            _die()

    # Whichever way the ledger commits the cursor: a session (SQLAlchemy's commit event, after
    # the flush ran the statements) or a raw transaction of the store.
    event.listen(store.engine, "commit", on_commit)
    commit = WriteTransaction.commit

    def watched_commit(self: WriteTransaction) -> None:
        on_commit()
        commit(self)

    WriteTransaction.commit = watched_commit  # type: ignore[method-assign]
    original = Ledger.set_cursor

    def done(args: tuple[Any, ...]) -> None:
        moving.pop()
        if args[1] == point.target and point.when == "after":
            _die()

    inner = _wrap(original, done)
    if inspect.iscoroutinefunction(original):

        async def set_cursor_async(*args: Any, **kwargs: Any) -> Any:
            moving.append(args[1])
            return await inner(*args, **kwargs)

        Ledger.set_cursor = set_cursor_async  # type: ignore[method-assign,assignment]
    else:

        def set_cursor(*args: Any, **kwargs: Any) -> Any:
            moving.append(args[1])
            return inner(*args, **kwargs)

        Ledger.set_cursor = set_cursor  # type: ignore[method-assign]


def install(
    point: KillPoint | None, store: Store, source: str, sink: str
) -> dict[str, httpx.AsyncBaseTransport] | None:
    """Put ``point`` in place in this process; the transports the run must use (if any)."""
    if point is None:
        return None
    if point.kind == "intent":
        _install_intent(point)
    elif point.kind == "ledger_commit":
        _install_ledger_commit(point)
    elif point.kind == "cursor_commit":
        _install_cursor_commit(point, store)
    else:
        route = route_for(point.target, source)
        system = source if route.side == "source" else sink
        return {system: _KillingTransport(AiohttpTransport(), route, point.on_call)}
    return None


def _environment(env: Mapping[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _redirect(log: str) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


async def _sync(job: ChildRun, store: Store) -> dict[str, Any]:
    row = store.get_connection(job.connection)
    transports = install(job.point, store, row.source_system, row.sink_system)
    options = SyncOptions(
        bulk=job.bulk, create_missing_accounts=job.create_missing_accounts, retry=FAST_RETRY
    )
    async with open_engine(
        store,
        Vault.from_environment(),
        Registry(),
        job.connection,
        options=options,
        transports=transports,
        limiters=LimiterPool(),
    ) as engine:
        summary = await engine.run()
    return {"status": summary.status.value, "counts": summary.counts, "error": summary.error}


def child_main(job: ChildRun) -> None:
    """The child's work: the run, its summary written to ``job.summary``; or death on the way."""
    _redirect(job.log)
    _environment(job.env)
    print(f"kill point: {job.point.label if job.point else 'none'}", flush=True)
    store = open_store(job.db)
    try:
        summary = run_async(_sync(job, store))
    finally:
        store.dispose()
    Path(job.summary).write_text(json.dumps(summary))
    print(f"the run ended: {summary}", flush=True)


if __name__ == "__main__":
    child_main(ChildRun.from_json(sys.argv[1]))
