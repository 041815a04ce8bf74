"""``ml-connector serve``: scheduled runs, the webhook receiver, health and metrics.

One process serves every connection (or the ones named): each is synced every interval, never
twice at once (an asyncio lock per connection in the process, the store's run lock across
processes). BILL webhook deliveries are verified against the stored signing key and answered
at once; the payment they announce is then recorded in the background, under the same lock.
Polling stays the baseline: a lost delivery only delays a payment until the next run.
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

    from ml_connector.registry import Registry
    from ml_connector.store import Store
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
    """

    interval: timedelta = timedelta(minutes=15)
    connections: tuple[str, ...] = ()
    public_url: str | None = None
    sync: SyncOptions = field(default_factory=SyncOptions)
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None


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

    # --- Webhooks --------------------------------------------------------------------------

    async def _webhook(self, request: Request) -> Response:
        name = request.path_params["connection"]
        if name not in self.connection_names():
            return JSONResponse({"error": "unknown connection"}, status_code=404)
        body = await request.body()
        headers = dict(request.headers)
        try:
            async with self._engine(name) as engine:
                receiver = WebhookReceiver(self.store, self.vault, engine)
                batch = await receiver.verify(headers, body)
        except WebhookVerificationError:
            self.metrics["webhooks_refused"] += 1
            return JSONResponse({"error": "signature does not match"}, status_code=401)
        self.metrics["webhooks_accepted"] += 1
        task = asyncio.create_task(self._process(name, batch))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return JSONResponse({"accepted": len(batch.events)})

    async def _process(self, name: str, batch: Any) -> None:
        try:
            async with self._lock(name), self._engine(name) as engine:
                outcome = await WebhookReceiver(self.store, self.vault, engine).act(batch)
            self.metrics["payments_recorded"] += outcome.payments_recorded
        except ConnectorError as exc:
            log.warning("connection=%s webhook batch not processed: %s", name, exc)

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
