"""Typed facades over one side's plugin manager: what the engine calls.

The engine never touches ``pm.hook``: it holds a :class:`SourceDriver` and a :class:`SinkDriver`,
one per side of a connection, and awaits methods with real types::

    plugin = registry.load("acumatica", Role.SOURCE)
    async with SourceDriver(plugin, registry.plugin_manager(plugin), ctx) as source:
        page = await source.list_changed_payables(window)

What a driver adds to a bare hook call:

- It signs in lazily: the first call that needs the system runs ``authenticate`` once, even when
  several calls start together; a failure that retrying cannot fix is not repeated (a wrong
  password stays wrong, and repeated logins can lock the account).
- It awaits what pluggy returns (a coroutine for ``async def`` implementations, a plain value for
  ``def`` ones) and checks the type of the answer, so a plugin's mistake surfaces as a
  :class:`~ml_connector.errors.PluginError` naming the plugin and the hook.
- It refuses optional hooks the plugin's description does not declare as capabilities.
- :meth:`Driver.close` calls every ``close_connection`` implementation and never raises.

Errors the plugins raise on purpose (:mod:`ml_connector.errors`) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel

from ml_connector.description import Capability, Role
from ml_connector.errors import ConnectorError, PluginError
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountMapping,
    AuthResult,
    BillResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    Payment,
    PaymentPage,
    RecordedPayment,
    VendorResult,
    WebhookBatch,
    WebhookSubscription,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    import pluggy
    from pydantic import SecretStr

    from ml_connector.context import ConnectionContext
    from ml_connector.description import PluginDescription
    from ml_connector.models import BillDraft, ChangeWindow, PaymentPosting, Vendor
    from ml_connector.registry import LoadedPlugin

__all__ = ["Driver", "SinkDriver", "SourceDriver"]

log = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)


class Driver:
    """What both sides offer; use :class:`SourceDriver` or :class:`SinkDriver`.

    Args:
        plugin: The side's plugin, from :meth:`ml_connector.registry.Registry.load`.
        plugin_manager: The side's manager, from
            :meth:`ml_connector.registry.Registry.plugin_manager`.
        ctx: The side's context; its ``system`` and ``role`` must match the plugin's.

    Raises:
        PluginError: The plugin, the context and the driver disagree on system or role.
    """

    role: ClassVar[Role]

    def __init__(
        self,
        plugin: LoadedPlugin,
        plugin_manager: pluggy.PluginManager,
        ctx: ConnectionContext,
    ) -> None:
        if plugin.role is not self.role:
            raise PluginError(
                f"plugin {plugin.system!r} is a {plugin.role.value} plugin, "
                f"not a {self.role.value} plugin"
            )
        if ctx.system != plugin.system or ctx.role != self.role:
            raise PluginError(
                f"connection {ctx.connection!r}: the context is for {ctx.system!r} as "
                f"{ctx.role}, but this driver runs {plugin.system!r} as {self.role.value}"
            )
        self._plugin = plugin
        self._pm = plugin_manager
        self._ctx = ctx
        self._auth_lock = asyncio.Lock()
        self._auth: AuthResult | None = None
        self._auth_failure: BaseException | None = None

    # --- What is driven ---------------------------------------------------------------------------

    @property
    def system(self) -> str:
        """The system key of the side's plugin."""
        return self._plugin.system

    @property
    def description(self) -> PluginDescription:
        """What the plugin's ``describe_plugin`` returned."""
        return self._plugin.description

    @property
    def distribution(self) -> str | None:
        """The distribution that provides the plugin."""
        return self._plugin.distribution

    @property
    def plugin_version(self) -> str | None:
        """The version of that distribution."""
        return self._plugin.version

    @property
    def ctx(self) -> ConnectionContext:
        """The side's context."""
        return self._ctx

    def implements(self, hook: str) -> bool:
        """Whether anything on this side implements ``hook`` (wrappers alone do not count)."""
        caller = getattr(self._pm.hook, hook, None)
        if caller is None:
            return False
        return any(not (impl.wrapper or impl.hookwrapper) for impl in caller.get_hookimpls())

    # --- Both sides -------------------------------------------------------------------------------

    async def authenticate(self) -> AuthResult:
        """Sign in, once: later calls return the first result.

        A plugin without an ``authenticate`` implementation needs no sign-in; the result is then
        empty. If signing in fails with an error that retrying cannot fix, later calls raise the
        same error without trying again.

        Returns:
            Who the side is signed in as.
        """
        if self._auth is not None:
            return self._auth
        async with self._auth_lock:
            if self._auth is None:
                if self._auth_failure is not None:
                    raise self._auth_failure
                try:
                    self._auth = await self._sign_in()
                except Exception as exc:
                    if not (isinstance(exc, ConnectorError) and exc.retryable):
                        self._auth_failure = exc
                    raise
            return self._auth

    async def check_connection(self) -> ConnectionCheck:
        """Make the cheapest call that proves settings and credentials work."""
        result = await self._call("check_connection")
        return self._expect("check_connection", result, ConnectionCheck)

    async def list_accounts(self) -> AccountCatalog:
        """List the accounts and dimension values bill lines can be coded to."""
        result = await self._call("list_accounts")
        return self._expect("list_accounts", result, AccountCatalog)

    async def map_accounts(
        self,
        source: AccountCatalog,
        sink: AccountCatalog,
        manual: Sequence[AccountMapping],
    ) -> list[AccountMapping]:
        """Map source accounts and dimensions to the sink's; needs no sign-in.

        Answered by the core's default matcher unless the plugin or an extension overrides it.

        Args:
            source: The source side's catalog.
            sink: The sink side's catalog.
            manual: Operator-set mappings; they always win.

        Returns:
            Every mapping found.
        """
        result = await self._answer(
            "map_accounts", ctx=self._ctx, source=source, sink=sink, manual=manual
        )
        return self._expect_list("map_accounts", result, AccountMapping)

    async def close(self) -> None:
        """Call every ``close_connection`` implementation; log failures, never raise.

        The driver signs in again if it is used after closing.
        """
        try:
            results = self._pm.hook.close_connection(ctx=self._ctx)
        except Exception:
            log.warning("close_connection failed for plugin %r", self.system, exc_info=True)
            results = []
        finally:
            self._auth = None
            self._auth_failure = None
        # Async implementations fail only when awaited: await each on its own so every one runs.
        for result in results if isinstance(results, list) else [results]:
            if not inspect.isawaitable(result):
                continue
            try:
                await result
            except Exception:
                log.warning("close_connection failed for plugin %r", self.system, exc_info=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- Calling ----------------------------------------------------------------------------------

    async def _sign_in(self) -> AuthResult:
        if not self.implements("authenticate"):
            return AuthResult()
        result = await self._answer("authenticate", ctx=self._ctx)
        return self._expect("authenticate", result, AuthResult)

    async def _call(self, hook: str, **kwargs: Any) -> object:
        """Sign in if not yet done, then call ``hook`` with this side's context."""
        await self.authenticate()
        return await self._answer(hook, ctx=self._ctx, **kwargs)

    async def _answer(self, hook: str, **kwargs: Any) -> object:
        result = getattr(self._pm.hook, hook)(**kwargs)
        # pluggy's first-result calls return None when no implementation answered; an async
        # implementation always answers (with a coroutine), so a None it awaits to is an answer.
        if result is None:
            if self.implements(hook):
                raise PluginError(
                    f"no implementation of {hook} answered for plugin {self.system!r}"
                )
            raise PluginError(f"plugin {self.system!r} does not implement {hook}")
        if inspect.isawaitable(result):
            return await result
        return result

    def _require(self, capability: Capability, hook: str) -> None:
        if capability not in self.description.capabilities:
            raise PluginError(
                f"plugin {self.system!r} does not declare the capability {capability.value!r}, "
                f"which {hook} needs"
            )

    def _expect(self, hook: str, value: object, kind: type[_Model]) -> _Model:
        if isinstance(value, kind):
            return value
        raise PluginError(
            f"plugin {self.system!r} returned {type(value).__name__} from {hook}, "
            f"expected {kind.__name__}"
        )

    def _expect_optional(self, hook: str, value: object, kind: type[_Model]) -> _Model | None:
        return None if value is None else self._expect(hook, value, kind)

    def _expect_list(self, hook: str, value: object, kind: type[_Model]) -> list[_Model]:
        if not isinstance(value, list | tuple):
            raise PluginError(
                f"plugin {self.system!r} returned {type(value).__name__} from {hook}, "
                f"expected a list of {kind.__name__}"
            )
        return [self._expect(hook, item, kind) for item in value]


class SourceDriver(Driver):
    """The source (ERP) side of a connection."""

    role = Role.SOURCE

    async def list_changed_payables(
        self, window: ChangeWindow, page_token: str | None = None
    ) -> PayablePage:
        """Read one page of approved payables changed within ``window``.

        Args:
            window: The change-time interval to read.
            page_token: ``None`` for the first page, else the previous page's token.

        Returns:
            The page.
        """
        result = await self._call("list_changed_payables", window=window, page_token=page_token)
        return self._expect("list_changed_payables", result, PayablePage)

    async def get_payable(self, source_id: str) -> Payable | None:
        """Read one payable by id, whatever its status; ``None`` if the ERP has none."""
        result = await self._call("get_payable", source_id=source_id)
        return self._expect_optional("get_payable", result, Payable)

    async def record_payment(self, posting: PaymentPosting) -> RecordedPayment:
        """Apply a sink payment to the originating ERP bill, exactly once."""
        result = await self._call("record_payment", posting=posting)
        return self._expect("record_payment", result, RecordedPayment)

    async def find_payment(self, posting: PaymentPosting) -> RecordedPayment | None:
        """The ERP payment that carries ``posting``; ``None`` if there is none.

        ``None`` too for a plugin that does not implement ``find_payment`` (contract < 1.2):
        its ``record_payment`` looks before it writes on its own.
        """
        if not self.implements("find_payment"):
            return None
        result = await self._call("find_payment", posting=posting)
        return self._expect_optional("find_payment", result, RecordedPayment)


class SinkDriver(Driver):
    """The sink (BILL) side of a connection."""

    role = Role.SINK

    async def find_vendor(self, vendor: Vendor) -> VendorResult | None:
        """Look a vendor up without changing anything; ``None`` if the sink has none."""
        result = await self._call("find_vendor", vendor=vendor)
        return self._expect_optional("find_vendor", result, VendorResult)

    async def upsert_vendor(
        self, vendor: Vendor, existing_sink_id: str | None = None
    ) -> VendorResult:
        """Create the vendor, or update the one stored as ``existing_sink_id``."""
        result = await self._call("upsert_vendor", vendor=vendor, existing_sink_id=existing_sink_id)
        return self._expect("upsert_vendor", result, VendorResult)

    async def find_bill(self, vendor_sink_id: str, invoice_number: str) -> BillResult | None:
        """Find a bill by vendor and invoice number; ``None`` if there is none."""
        result = await self._call(
            "find_bill", vendor_sink_id=vendor_sink_id, invoice_number=invoice_number
        )
        return self._expect_optional("find_bill", result, BillResult)

    async def create_bill(self, draft: BillDraft) -> BillResult:
        """Create the bill, or update it while it is unpaid."""
        result = await self._call("create_bill", draft=draft)
        return self._expect("create_bill", result, BillResult)

    async def create_bills(self, drafts: Sequence[BillDraft]) -> list[BillResult]:
        """Create many new bills in one all-or-nothing call (capability ``bulk_create_bills``).

        Args:
            drafts: New bills, at most ``description.limits.batch_size`` of them.

        Returns:
            One result per draft, in order.

        Raises:
            PluginError: The plugin lacks the capability, or returned a result count that differs
                from the number of drafts.
            ValueError: More drafts than the plugin's batch size.
        """
        self._require(Capability.BULK_CREATE_BILLS, "create_bills")
        batch_size = self.description.limits.batch_size
        if batch_size is not None and len(drafts) > batch_size:
            raise ValueError(
                f"{len(drafts)} drafts exceed plugin {self.system!r}'s batch size of {batch_size}"
            )
        if not drafts:
            return []
        result = await self._call("create_bills", drafts=drafts)
        results = self._expect_list("create_bills", result, BillResult)
        if len(results) != len(drafts):
            raise PluginError(
                f"plugin {self.system!r} returned {len(results)} results from create_bills "
                f"for {len(drafts)} drafts"
            )
        return results

    async def create_account(self, account: Account) -> Account:
        """Create a chart-of-accounts entry (capability ``create_accounts``)."""
        self._require(Capability.CREATE_ACCOUNTS, "create_account")
        result = await self._call("create_account", account=account)
        return self._expect("create_account", result, Account)

    async def list_changed_payments(
        self, window: ChangeWindow, page_token: str | None = None
    ) -> PaymentPage:
        """Read one page of sink payments changed within ``window``."""
        result = await self._call("list_changed_payments", window=window, page_token=page_token)
        return self._expect("list_changed_payments", result, PaymentPage)

    async def get_payment(self, sink_id: str) -> Payment | None:
        """Read one sink payment by id; ``None`` if the sink has none."""
        result = await self._call("get_payment", sink_id=sink_id)
        return self._expect_optional("get_payment", result, Payment)

    async def ensure_webhook_subscription(
        self,
        notification_url: str,
        events: Sequence[str],
        existing: WebhookSubscription | None = None,
    ) -> WebhookSubscription:
        """Make sure the sink delivers ``events`` to ``notification_url`` (capability ``webhooks``).

        Args:
            notification_url: The HTTPS URL of ``ml-connector serve``'s receiver.
            events: Event types, e.g. ``["payment.updated"]``.
            existing: The subscription this connection stored, if any.

        Returns:
            The subscription; ``security_key`` is set only when it was just created or rotated.
        """
        self._require(Capability.WEBHOOKS, "ensure_webhook_subscription")
        result = await self._call(
            "ensure_webhook_subscription",
            notification_url=notification_url,
            events=events,
            existing=existing,
        )
        return self._expect("ensure_webhook_subscription", result, WebhookSubscription)

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, security_key: SecretStr
    ) -> WebhookBatch:
        """Verify a webhook delivery's signature, then parse it (capability ``webhooks``).

        Needs no sign-in: verifying is local, and a delivery must not cost a login.
        """
        self._require(Capability.WEBHOOKS, "parse_webhook")
        result = await self._answer(
            "parse_webhook", ctx=self._ctx, headers=headers, body=body, security_key=security_key
        )
        return self._expect("parse_webhook", result, WebhookBatch)
