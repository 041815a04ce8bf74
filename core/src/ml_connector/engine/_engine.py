"""One run of a connection: accounts, payables in, payments back."""

from __future__ import annotations

import asyncio
import functools
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_connector.default_account_matcher import ACCOUNT_KIND, match_catalogs
from ml_connector.description import Capability
from ml_connector.engine import _payables, _payments
from ml_connector.engine._context import RunContext, RunObserver, SyncOptions, task_group
from ml_connector.engine._ledger import AuditRecord, Ledger, correlation_id_of
from ml_connector.engine._limits import LimiterPool
from ml_connector.engine._mapping import AccountCoder
from ml_connector.engine._sweep import IntentSweep
from ml_connector.errors import ConnectorError, InvalidRecordError
from ml_connector.models import AccountCatalog, AccountMapping, ChangeWindow, MappingMethod
from ml_connector.store import ObjectType, RunStatus

if TYPE_CHECKING:
    from datetime import datetime

    from ml_connector.drivers import Driver, SinkDriver, SourceDriver
    from ml_connector.engine._limits import RequestLimiter
    from ml_connector.models import Account
    from ml_connector.store import Store

__all__ = ["RunSummary", "SyncEngine"]

_ACCOUNT = ObjectType.ACCOUNT.value

#: The limiters of each event loop, shared by every connection that talks to the same scope.
#: Per loop, because asyncio primitives belong to the loop that first uses them.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LimiterPool] = (
    weakref.WeakKeyDictionary()
)


def _shared_pool() -> LimiterPool:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return LimiterPool()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = LimiterPool()
    return pool


@dataclass
class RunSummary:
    """How a run went.

    Attributes:
        run_id: The run's row id.
        status: succeeded, failed or interrupted.
        counts: Tallies such as ``bills_created`` or ``payments_recorded``.
        error: Why the run failed, if it did.
    """

    run_id: int
    status: RunStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _scope(driver: Driver) -> str:
    setting = driver.description.limits.scope_setting
    value = getattr(driver.ctx.settings, setting, None) if setting else None
    return str(value) if value is not None else f"connection:{driver.ctx.connection}"


def _same_account(account: Account, chart: AccountCatalog) -> Account | None:
    """The sink account a create of ``account`` made, by the default matcher's rules."""
    found = match_catalogs(AccountCatalog(accounts=(account,)), chart, ())
    return next((a for m in found for a in chart.accounts if a.id == m.sink_id), None)


def _limiter(driver: Driver, pool: LimiterPool) -> RequestLimiter:
    return pool.get(driver.system, _scope(driver), driver.description.limits)


class SyncEngine:
    """Runs a connection: pairs its source driver with its sink driver over the store.

    Args:
        store: The state store.
        connection_id: The connection's row id.
        source: The source side.
        sink: The sink side.
        options: How the run behaves.
        observer: Receives progress.
        limiters: Where limiters are shared (by default, among the engines of this event loop).
    """

    def __init__(
        self,
        store: Store,
        connection_id: int,
        source: SourceDriver,
        sink: SinkDriver,
        options: SyncOptions | None = None,
        observer: RunObserver | None = None,
        limiters: LimiterPool | None = None,
    ) -> None:
        pool = limiters or _shared_pool()
        versions = {d.system: d.plugin_version for d in (source, sink)}
        self.ledger = Ledger(store, connection_id, plugin_versions=versions)
        self.run_context = RunContext(
            source=source,
            sink=sink,
            ledger=self.ledger,
            options=options or SyncOptions(),
            sink_limiter=_limiter(sink, pool),
            source_limiter=_limiter(source, pool),
        )
        max_wait = self.run_context.options.retry.max_delay
        for driver, limiter in (
            (sink, self.run_context.sink_limiter),
            (source, self.run_context.source_limiter),
        ):
            if driver.description.limits.per_request:
                # Clients the plugin builds from now on hold a slot per request (the run's
                # hook calls then hold none: see RunContext.read).
                driver.ctx.request_slot = functools.partial(limiter.slot, max_wait)
        if observer is not None:
            self.run_context.observer = observer
            # A plugin that waits (a licence slot, a budget) says so through report_wait; an
            # observer with a ``wait`` method (optional: older ones lack it) shows it.
            wait = getattr(observer, "wait", None)
            if callable(wait):
                source.ctx.on_wait = sink.ctx.on_wait = wait

    def exclusive(self) -> AbstractContextManager[None]:
        """The connection's run lock: one run (or replay, or webhook batch) at a time.

        Raises:
            ConnectionBusyError: Another process holds it.
        """
        name = self.run_context.source.ctx.connection
        return self.ledger.store.connection_lock(self.ledger.connection_id, name)

    async def run(self) -> RunSummary:
        """One full run; the cursors move only for the streams that were read completely.

        Raises:
            ConnectionBusyError: Another process is running this connection (nothing was done).
        """
        with self.exclusive():
            return await self._run()

    async def _run(self) -> RunSummary:
        run = self.run_context
        started = run.options.now()
        run_id = self.ledger.start_run()
        status, error = RunStatus.SUCCEEDED, None
        try:
            sweep = IntentSweep(run)
            await sweep.sweep()
            run.observer.stage("accounts")
            coder = await self.sync_accounts()
            run.observer.stage("payables")
            payables = _payables.PayableSync(run, coder)
            payments = _payments.PaymentSync(run)
            try:
                await self._retry_queued(payables, payments)
                await payables.sync(self._window(_payables.STREAM, started))
            finally:
                await payables.close()
            self.ledger.set_cursor(_payables.STREAM, started)
            run.observer.stage("payments")
            # Creates whose retries ran out this run may still have reached the sink, and a
            # payment of such a bill must be known as ours: decide them before reading payments.
            payments.undecided_bills = await sweep.sweep((ObjectType.BILL.value,))
            await payments.sync(self._window(_payments.STREAM, started))
            self.ledger.set_cursor(_payments.STREAM, started)
        except ConnectorError as exc:
            status, error = RunStatus.FAILED, str(exc)
        except BaseException as exc:  # cancelled or killed: say so, then let it go on
            self.ledger.finish_run(RunStatus.INTERRUPTED, dict(run.counts), type(exc).__name__)
            raise
        self.ledger.finish_run(status, dict(run.counts), error)
        return RunSummary(run_id, status, dict(run.counts), error)

    def _window(self, stream: str, until: datetime) -> ChangeWindow:
        cursor = self.ledger.cursor(stream)
        since = None if cursor is None else min(cursor - self.run_context.options.lookback, until)
        return ChangeWindow(since=since, until=until)

    # --- Accounts ----------------------------------------------------------------------------

    async def sync_accounts(self) -> AccountCoder:
        """List both catalogs, map them, create missing sink accounts if allowed, persist."""
        run = self.run_context
        async with task_group() as group:
            source_read = group.create_task(run.source_read(run.source.list_accounts))
            sink_read = group.create_task(run.sink_read(run.sink.list_accounts))
        source_catalog, sink_catalog = source_read.result(), sink_read.result()
        manual = self.ledger.manual_mappings()
        mappings = await run.source.map_accounts(source_catalog, sink_catalog, manual)
        mapped = {m.source_id: m.sink_id for m in mappings if m.source_kind == ACCOUNT_KIND}
        for intent in self.ledger.open_intents(_ACCOUNT):
            # A create that was interrupted and did happen shows in the sink's chart, where the
            # matcher just found it.
            if intent.source_id in mapped:
                self._complete_account(intent.source_id, mapped[intent.source_id], "reconciled")
        if (
            run.options.create_missing_accounts
            and Capability.CREATE_ACCOUNTS in run.sink.description.capabilities
        ):
            created = await self._create_missing(source_catalog, sink_catalog, mappings)
            mappings = [*mappings, *created]
        self.ledger.save_mappings(mappings)
        coder = AccountCoder(mappings)
        active = [a for a in source_catalog.accounts if a.active]
        unmapped = [a.id for a in active if not coder.is_mapped(a.id)]
        run.count("accounts_mapped", coder.mapped_accounts)
        run.count("accounts_unmapped", len(unmapped))
        for account_id in unmapped:
            self.ledger.audit(
                AuditRecord(_ACCOUNT, "unmapped", "warning", account_id, error="no sink account")
            )
        return coder

    async def _create_missing(
        self, source: AccountCatalog, sink_chart: AccountCatalog, mappings: list[AccountMapping]
    ) -> list[AccountMapping]:
        run, sink = self.run_context, self.run_context.sink
        mapped = {m.source_id for m in mappings if m.source_kind == ACCOUNT_KIND}
        created = []
        for account in (a for a in source.accounts if a.active and a.id not in mapped):
            link = self.ledger.link(_ACCOUNT, account.id)
            if link is not None:
                sink_id = link.sink_id
            elif (found := _same_account(account, sink_chart)) is not None:
                # Made by an interrupted create that this connection's matcher (a plugin's own
                # rules) left unmapped: link it, never create it twice.
                sink_id = self._complete_account(account.id, found.id, "reconciled")
            else:
                await self.ledger.begin_intents(_ACCOUNT, [(account.id, "1")])

                async def find(a: Account = account) -> Account | None:
                    return _same_account(a, await sink.list_accounts())

                result = await run.write(
                    run.sink_limiter,
                    lambda a=account: sink.create_account(a),  # type: ignore[misc]
                    find,
                )
                sink_id = self._complete_account(account.id, result.id, "created")
                run.count("accounts_created")
            created.append(
                AccountMapping(
                    source_kind=ACCOUNT_KIND,
                    source_id=account.id,
                    sink_kind=ACCOUNT_KIND,
                    sink_id=sink_id,
                    method=MappingMethod.CREATED,
                )
            )
        return created

    def _complete_account(self, source_id: str, sink_id: str, action: str) -> str:
        self.ledger.complete(
            _ACCOUNT,
            source_id,
            sink_id,
            "1",
            AuditRecord(_ACCOUNT, action, "ok", source_id, sink_id),
        )
        return sink_id

    async def _retry_queued(
        self, payables: _payables.PayableSync, payments: _payments.PaymentSync
    ) -> None:
        """Re-drive the exception-queue entries an operator sent back with ``exceptions retry``.

        The cursor has moved past them, so they are read again by id; success resolves the entry,
        failure puts it back in the queue with the new reason.
        """
        run = self.run_context
        for item in self.ledger.retrying_exceptions():
            run.count("exceptions_retried")
            field_path: str | None = None
            correlation_id: str | None = None
            try:
                if item.object_type == ObjectType.BILL.value:
                    source_id = item.source_id
                    payable = await run.source_read(lambda s=source_id: run.source.get_payable(s))  # type: ignore[misc]
                    if payable is not None:
                        await payables.sync_one(payable)
                        continue
                    reason = f"the source no longer has payable {source_id}"
                elif item.object_type == ObjectType.PAYMENT.value:
                    payment_id = _payments.payment_id_of(item.source_id)
                    payment = await run.sink_read(lambda p=payment_id: run.sink.get_payment(p))  # type: ignore[misc]
                    if payment is not None:
                        await payments.sync_one(payment)
                        continue
                    reason = f"the sink no longer has payment {payment_id}"
                else:
                    reason = f"{item.object_type} records cannot be retried on their own"
            except InvalidRecordError as exc:
                # The system still refuses the record as it reads it (e.g. the source rejects
                # its totals): back to the queue with the new reason, and the run goes on.
                field_path, reason, correlation_id = exc.field, exc.reason, correlation_id_of(exc)
            self.ledger.add_exception(
                item.object_type,
                item.source_id,
                field_path,
                reason,
                item.payload_digest,
                correlation_id=correlation_id,
            )

    # --- Replay ------------------------------------------------------------------------------

    async def replay_payable(self, source_id: str) -> dict[str, Any]:
        """Re-drive one payable now, whatever the cursor says."""
        with self.exclusive():
            return await self._replay_payable(source_id)

    async def _replay_payable(self, source_id: str) -> dict[str, Any]:
        run = self.run_context
        coder = await self.sync_accounts()
        try:
            payable = await run.source_read(lambda: run.source.get_payable(source_id))
        except InvalidRecordError as exc:
            # Say it where the clerk looks, too: the queue entry gets the current reason.
            self.ledger.add_exception(
                ObjectType.BILL.value,
                source_id,
                exc.field,
                exc.reason,
                None,
                correlation_id=correlation_id_of(exc),
            )
            raise
        if payable is None:
            raise ConnectorError(f"the source has no payable {source_id}")
        payables = _payables.PayableSync(run, coder)
        try:
            await payables.sync_one(payable)
        finally:
            await payables.close()
        self.ledger.flush()
        return dict(run.counts)
