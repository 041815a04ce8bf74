"""``ml-connector serve``: scheduled runs, the webhook receiver, health and metrics.

One process serves every connection (or the ones named): each is synced every interval, never
twice at once (an asyncio lock per connection in the process, the store's run lock across
processes). BILL webhook deliveries are verified against the stored signing key and answered
at once; the payment they announce is then recorded in the background, under the same lock.
Polling stays the baseline: a lost delivery only delays a payment until the next run.

The webhook route is open to anyone who finds the URL, so no body may cost it much: the body is
read up to a size cap (413 above it), verified over its raw bytes by the sink plugin before
anything parses it (401 when it does not match), and a signed delivery that cannot be used is
answered 200 and set aside in the exception queue (the sink would retry anything else, then
disable the subscription). Nothing a body holds makes it answer 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ml_connector.description import Capability
from ml_connector.engine import (
    PAYMENT_EVENTS,
    SyncEngine,
    SyncOptions,
    WebhookReceiver,
    ensure_subscription,
    open_engine,
)
from ml_connector.errors import ConfigurationError, ConnectorError, WebhookVerificationError
from ml_connector.store import count_exceptions, list_runs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    import httpx
    from starlette.requests import Request

    from ml_connector.models import WebhookBatch
    from ml_connector.registry import Registry
    from ml_connector.store import ConnectionRow, Store
    from ml_connector.vault import Vault

__all__ = ["Service", "ServiceOptions"]

log = logging.getLogger("ml_connector.service")


@dataclass(frozen=True)
class ServiceOptions:
    """How the service behaves.

    Attributes:
        interval: Time between two scheduled runs of one connection.
        connections: Serve only these connection names (all when empty).
        public_url: The URL the sink reaches this service at (``https://…``); webhooks are
            subscribed only when it is set.
        sync: Options for each run.
        transports: Per system key, an httpx transport instead of the network (tests, demo).
        webhook_max_body: The largest webhook body read, in bytes; a larger one is answered 413
            without being read to the end. BILL's payment events are a few kilobytes.
    """

    interval: timedelta = timedelta(minutes=15)
    connections: tuple[str, ...] = ()
    public_url: str | None = None
    sync: SyncOptions = field(default_factory=SyncOptions)
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
    webhook_max_body: int = 1 << 20


@dataclass
class _Verifier:
    """A connection kept open to verify its deliveries (opening one costs milliseconds)."""

    stamp: tuple[int | None, Any]
    receiver: WebhookReceiver
    stack: contextlib.AsyncExitStack


class Service:
    """The long-running service for the connections of one state store."""

    def __init__(
        self, store: Store, vault: Vault, registry: Registry, options: ServiceOptions
    ) -> None:
        self.store = store
        self.vault = vault
        self.registry = registry
        self.options = options
        self.metrics: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._verifiers: dict[str, _Verifier] = {}
        self._verifiers_lock = asyncio.Lock()
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/webhooks/{connection}", self._webhook, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    # --- Connections -----------------------------------------------------------------------

    def connection_names(self) -> list[str]:
        """The connections this service runs."""
        stored = [row.name for row in self.store.list_connections()]
        wanted = self.options.connections
        return [name for name in stored if not wanted or name in wanted]

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _engine(self, name: str) -> contextlib.AbstractAsyncContextManager[SyncEngine]:
        return open_engine(
            self.store,
            self.vault,
            self.registry,
            name,
            options=self.options.sync,
            transports=self.options.transports,
        )

    # --- Scheduled runs --------------------------------------------------------------------

    async def run_connection(self, name: str) -> dict[str, Any]:
        """One run of ``name`` now (waits for a webhook batch of it to finish first)."""
        async with self._lock(name), self._engine(name) as engine:
            await self._keep_subscription(name, engine)
            summary = await engine.run()
        self.metrics[f"runs_{summary.status.value}"] += 1
        for key, value in summary.counts.items():
            self.metrics[key] += value
        log.info("connection=%s run=%s status=%s", name, summary.run_id, summary.status.value)
        return {"run_id": summary.run_id, "status": summary.status.value, "error": summary.error}

    async def _keep_subscription(self, name: str, engine: SyncEngine) -> None:
        url = self.options.public_url
        if not url or Capability.WEBHOOKS not in engine.run_context.sink.description.capabilities:
            return
        try:
            await ensure_subscription(
                self.store, self.vault, engine, f"{url.rstrip('/')}/webhooks/{name}", PAYMENT_EVENTS
            )
        except ConnectorError as exc:
            # Polling covers the gap; the subscription is tried again before the next run.
            log.warning("connection=%s webhook subscription not ensured: %s", name, exc)

    async def run_all_once(self) -> dict[str, dict[str, Any]]:
        """Run every served connection once, one after another; failures do not stop the rest."""
        results = {}
        for name in self.connection_names():
            try:
                results[name] = await self.run_connection(name)
            except ConnectorError as exc:
                self.metrics["runs_failed"] += 1
                results[name] = {"status": "failed", "error": str(exc)}
                log.warning("connection=%s run failed: %s", name, exc)
        return results

    async def schedule(self, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        """Run every connection each interval, until cancelled."""
        while True:
            await self.run_all_once()
            await sleep(self.options.interval.total_seconds())

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        scheduler = asyncio.create_task(self.schedule())
        try:
            yield
        finally:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await self.drain()
            await self.close()

    # --- Webhooks --------------------------------------------------------------------------

    def _served_row(self, name: str) -> ConnectionRow | None:
        wanted = self.options.connections
        if wanted and name not in wanted:
            return None
        with contextlib.suppress(ConfigurationError):  # no such connection
            return self.store.get_connection(name)
        return None

    async def _verifier(self, row: ConnectionRow) -> WebhookReceiver:
        """The receiver that verifies ``row``'s deliveries, opened once and kept.

        Opening a connection builds both plugin managers (milliseconds of the event loop's
        time); a delivery must cost less, so the connection stays open until the connection is
        changed (its ``updated_at`` moves) or the service stops. Verifying needs no sign-in.
        """
        stamp = (row.id, row.updated_at)
        cached = self._verifiers.get(row.name)
        if cached is not None and cached.stamp == stamp:
            return cached.receiver
        async with self._verifiers_lock:
            cached = self._verifiers.get(row.name)
            if cached is not None and cached.stamp == stamp:
                return cached.receiver
            if cached is not None:
                del self._verifiers[row.name]
                await cached.stack.aclose()
            stack = contextlib.AsyncExitStack()
            try:
                engine = await stack.enter_async_context(self._engine(row.name))
            except BaseException:
                await stack.aclose()
                raise
            receiver = WebhookReceiver(self.store, self.vault, engine)
            self._verifiers[row.name] = _Verifier(stamp, receiver, stack)
            return receiver

    async def close(self) -> None:
        """Close the connections kept open to verify deliveries (shutdown; tests)."""
        async with self._verifiers_lock:
            verifiers, self._verifiers = self._verifiers, {}
            for verifier in verifiers.values():
                await verifier.stack.aclose()

    async def _read_body(self, request: Request) -> bytes | None:
        """The request's body, or ``None`` once it is larger than the cap (the rest is not read)."""
        cap = self.options.webhook_max_body
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _webhook(self, request: Request) -> Response:
        name = request.path_params["connection"]
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit():
            return JSONResponse({"error": "bad content-length"}, status_code=400)
        if int(declared) > self.options.webhook_max_body:
            # Refused on what it says it is: nothing of it is read.
            self.metrics["webhooks_too_large"] += 1
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            row = self._served_row(name)
            if row is None:
                return JSONResponse({"error": "unknown connection"}, status_code=404)
            body = await self._read_body(request)
            if body is None:
                self.metrics["webhooks_too_large"] += 1
                return JSONResponse({"error": "body too large"}, status_code=413)
            receiver = await self._verifier(row)
            batch = await receiver.accept(dict(request.headers), body)
        except WebhookVerificationError:
            self.metrics["webhooks_refused"] += 1
            return JSONResponse({"error": "signature does not match"}, status_code=401)
        except Exception as exc:
            # The store, the vault or a plugin failed, not the body: the sink may try again
            # later. Only the kind is logged: a plugin's message could quote the body.
            self.metrics["webhooks_failed"] += 1
            log.error("connection=%s webhook not verified: %s", name, type(exc).__name__)
            log.debug("connection=%s webhook not verified", name, exc_info=True)
            return JSONResponse({"error": "try again later"}, status_code=503)
        if batch is None:
            # Signed, but nothing the connector can use: listed in the exception queue. A 200 so
            # the sink does not retry it into a disabled subscription.
            self.metrics["webhooks_set_aside"] += 1
            return JSONResponse({"accepted": 0, "set_aside": 1})
        self.metrics["webhooks_accepted"] += 1
        task = asyncio.create_task(self._process(name, batch))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return JSONResponse({"accepted": len(batch.events)})

    async def _process(self, name: str, batch: WebhookBatch) -> None:
        # Runs after the delivery was answered: a failure here is logged, never an HTTP error;
        # the event stays unprocessed (a redelivery or the next poll records its payment).
        try:
            async with self._lock(name), self._engine(name) as engine:
                outcome = await WebhookReceiver(self.store, self.vault, engine).act(batch)
            self.metrics["payments_recorded"] += outcome.payments_recorded
        except ConnectorError as exc:
            log.warning("connection=%s webhook batch not processed: %s", name, exc)
        except Exception as exc:
            self.metrics["webhooks_failed"] += 1
            log.exception("connection=%s webhook batch failed: %s", name, type(exc).__name__)

    async def drain(self) -> None:
        """Wait for webhook batches being processed (tests; shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- Health and metrics ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Each served connection's last run and open exceptions."""
        connections: dict[str, Any] = {}
        with self.store.session(read_only=True) as session:
            for row in self.store.list_connections():
                if row.name not in self.connection_names() or row.id is None:
                    continue
                runs = list_runs(session, row.id, limit=1)
                last = runs[0][0] if runs else None
                exceptions = count_exceptions(session, row.id)
                connections[row.name] = {
                    "last_run": None
                    if last is None
                    else {
                        "id": last.id,
                        "status": last.status,
                        "finished_at": last.finished_at.isoformat() if last.finished_at else None,
                    },
                    "open_exceptions": exceptions.get("open", 0) + exceptions.get("retrying", 0),
                }
        return {"status": "ok", "connections": connections}

    async def _health(self, request: Request) -> Response:
        try:
            return JSONResponse(self.health())
        except ConfigurationError as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)

    async def _metrics(self, request: Request) -> Response:
        lines = []
        for key, value in sorted(self.metrics.items()):
            metric = f"ml_connector_{key}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n")
