"""The plugin contract: every hook a plugin can implement, and what each must do.

A plugin is a module (or object) with functions marked ``@ml_connector.hookimpl`` whose names and
arguments match the specs below; it may accept fewer arguments than a spec offers. Every hook is
``async def``, except where noted; plugins call their system with ``httpx.AsyncClient``.

Who answers a call: each side of a connection runs its own :class:`pluggy.PluginManager` holding the
core's default plugins, the one system plugin that serves that side, and installed cross-cutting
extensions (entry-point group ``ml_connector.extensions``). A hook marked *first result* is answered
by the first implementation pluggy calls, so an extension marked ``tryfirst=True`` overrides the
system plugin, and a ``wrapper=True`` implementation wraps it (it receives the coroutine the inner
implementation returned and must return an awaitable of the same result). A plain ``def``
implementation that returns ``None`` declines and lets the next implementation answer.

Errors: implementations raise the classes of :mod:`ml_connector.errors` and nothing else on
purpose: the engine retries :class:`~ml_connector.errors.ThrottledError` and
:class:`~ml_connector.errors.TransientError`, puts
:class:`~ml_connector.errors.InvalidRecordError` in the exception queue, and stops the run on
:class:`~ml_connector.errors.AuthenticationError`. Clients re-login on session expiry themselves.

The contract's version is :data:`ml_connector.contract.CONTRACT_VERSION`; each hook says in which
contract version it was added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ml_connector.context import ConnectionContext
    from ml_connector.description import PluginDescription
    from ml_connector.models import (
        Account,
        AccountCatalog,
        AccountMapping,
        AuthResult,
        BillDraft,
        BillResult,
        ChangeWindow,
        ConnectionCheck,
        Payable,
        PayablePage,
        Payment,
        PaymentPage,
        PaymentPosting,
        RecordedPayment,
        Vendor,
        VendorResult,
        WebhookBatch,
        WebhookSubscription,
    )

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "ml_connector"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- Both sides --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def describe_plugin() -> PluginDescription:  # type: ignore[empty-body]
    """Describe the plugin: settings and credentials schemas, limits, capabilities.

    Called once when the plugin is loaded, before any other hook. This hook is a plain ``def``
    (not ``async``): it only returns constants.

    Returns:
        The plugin's :class:`~ml_connector.description.PluginDescription`; its ``system`` and
        ``role`` must equal the plugin's entry-point metadata.

    Raises:
        Nothing: a plugin that cannot describe itself is reported as broken.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def authenticate(ctx: ConnectionContext) -> AuthResult:  # type: ignore[empty-body]
    """Sign in to the system and keep what later calls need in ``ctx.state``.

    Called lazily, once per side per run, before the first other call. Afterwards the plugin's
    client renews the session or token by itself whenever the system reports expiry (once per
    expiry, then replays the call), so the engine never calls this hook again for an expiry.

    Args:
        ctx: The connection side; ``ctx.credentials`` holds the decrypted secrets.

    Returns:
        Who we are signed in as and when the session expires, if known.

    Raises:
        AuthenticationError: The system rejected the credentials.
        TransientError: The system could not be reached.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def check_connection(ctx: ConnectionContext) -> ConnectionCheck:  # type: ignore[empty-body]
    """Make the cheapest call that proves the settings and credentials work.

    Called by ``ml-connector ping`` after ``authenticate``. Must not write anything.

    Args:
        ctx: The connection side.

    Returns:
        ``ok`` and a one-line detail for people (the organisation or endpoint reached).

    Raises:
        UpstreamError: Any failure, mapped to the core's error classes.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def list_accounts(ctx: ConnectionContext) -> AccountCatalog:  # type: ignore[empty-body]
    """List the GL accounts and dimension values bill lines can be coded to.

    Called once per run on each side, before payables are read.

    Args:
        ctx: The connection side.

    Returns:
        Every account and dimension value, active or not (the matcher skips inactive ones).

    Raises:
        UpstreamError: Any failure, mapped to the core's error classes.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def map_accounts(  # type: ignore[empty-body]
    ctx: ConnectionContext,
    source: AccountCatalog,
    sink: AccountCatalog,
    manual: Sequence[AccountMapping],
) -> list[AccountMapping]:
    """Decide which sink account and classification each source account and dimension maps to.

    The core's default implementation (``ml_connector.default_account_matcher``, ``trylast``)
    keeps every manual mapping, then matches by account number, then by name. A plugin or an
    extension overrides it with ``tryfirst=True`` (for example a customer's own rules).

    Args:
        ctx: The side whose plugin manager answers (the source's), for per-connection mapping
            settings; no sign-in is needed or done.
        source: The source side's catalog.
        sink: The sink side's catalog.
        manual: Mappings an operator set; they always win.

    Returns:
        Every mapping found. A source account left out is *unmapped*: bills using it go to the
        exception queue, never to a wrong account.

    Raises:
        Nothing on purpose.

    .. versionadded:: 1.0
    """


@hookspec
async def close_connection(ctx: ConnectionContext) -> None:
    """Release what the plugin holds for this side: log out sessions, close HTTP clients.

    Called once at the end of every run, also after a failed run; every implementation is
    called. Must not raise for a session that is already gone.

    Args:
        ctx: The connection side.

    Returns:
        Nothing.

    Raises:
        Nothing on purpose.

    .. versionadded:: 1.0
    """


# --- Source (ERP) ------------------------------------------------------------------------------


@hookspec(firstresult=True)
async def list_changed_payables(  # type: ignore[empty-body]
    ctx: ConnectionContext,
    window: ChangeWindow,
    page_token: str | None,
) -> PayablePage:
    """Read one page of approved payables changed within a window.

    Only bills ready to pay are returned: approved, released or posted, not on hold, not
    purchase orders. The engine calls this with ``page_token=None`` for the first page, then with
    each page's ``next_page_token`` until it is ``None``. The window's lower bound is inclusive
    and the upper bound exclusive, and every payable returned has its ``modified_at`` in it (a
    system whose change stamps are coarser than a window may read from a little before the lower
    bound rather than lose a change). In a window nothing changes during, each payable comes back
    exactly once; one that changed during the read may appear on two pages (the engine
    deduplicates by ``source_id``), but none may be skipped.

    Args:
        ctx: The source side.
        window: The change-time interval to read.
        page_token: ``None`` for the first page, else the previous page's token.

    Returns:
        The page's payables, the records that could not be read as payables (as
        :class:`~ml_connector.models.RejectedRecord`, never as an exception), and the next token.

    Raises:
        UpstreamError: The page could not be read at all.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def get_payable(ctx: ConnectionContext, source_id: str) -> Payable | None:
    """Read one payable by its source id, whatever its status.

    Used to re-drive one record (``ml-connector replay``, exception retries) and to read the
    payable a sink payment pays before recording the payment against it.

    Args:
        ctx: The source side.
        source_id: The payable's id in the ERP.

    Returns:
        The payable, or ``None`` if the ERP no longer has it.

    Raises:
        InvalidRecordError: The record exists but cannot be read as a payable.
        UpstreamError: The read failed.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def record_payment(  # type: ignore[empty-body]
    ctx: ConnectionContext, posting: PaymentPosting
) -> RecordedPayment:
    """Apply a sink payment to the originating ERP bill.

    Store ``posting.payment_sink_id`` on the ERP payment, so :func:`find_payment` finds it. A
    plugin that implements ``find_payment`` may post plainly: the engine calls it before every
    ``record_payment``, and after a crash, and never posts what it finds. A plugin that does not
    must be idempotent on its own: look for an ERP payment that carries
    ``posting.payment_sink_id`` *and* is applied to ``posting.payable`` first (one sink payment
    may pay several bills, so the payment id alone is not the key), and return it with
    ``already_recorded=True`` instead of posting twice.

    Args:
        ctx: The source side.
        posting: What to apply, to which payable, for how much.

    Returns:
        The ERP payment document that carries the posting.

    Raises:
        InvalidRecordError: The ERP refused the posting (closed period, bill not open, …).
        UpstreamError: Any other failure.

    .. versionadded:: 1.0
    .. versionchanged:: 1.2
        Idempotency is the engine's (through ``find_payment``) where that hook is implemented.
    """


@hookspec(firstresult=True)
async def find_payment(ctx: ConnectionContext, posting: PaymentPosting) -> RecordedPayment | None:
    """Look for the ERP payment that carries a posting, without changing anything.

    The core calls this before every ``record_payment`` and for every payment intent a crash
    left open, so an ERP whose API would post the same payment twice never gets the chance.
    Match on ``posting.payment_sink_id`` (which ``record_payment`` stores on the ERP payment)
    *and* the application to ``posting.payable``: one sink payment may pay several bills.

    A plugin that does not implement this hook answers ``None`` through the core, and its
    ``record_payment`` must then look before it writes on its own (as contract 1.0 asked).

    Args:
        ctx: The source side.
        posting: The posting ``record_payment`` would apply.

    Returns:
        The ERP payment document that carries the posting (``already_recorded=True``;
        ``finished=False`` if the ERP has not released or posted it yet, so the engine lets
        ``record_payment`` finish it), or ``None`` if the ERP has none.

    Raises:
        UpstreamError: The lookup failed.

    .. versionadded:: 1.2
    """


# --- Sink (BILL) -------------------------------------------------------------------------------


@hookspec(firstresult=True)
async def find_vendor(ctx: ConnectionContext, vendor: Vendor) -> VendorResult | None:
    """Look a vendor up in the sink without changing anything.

    Used to reconcile an interrupted create: the engine recorded an intent, the process died, and
    it must know whether the create happened. Match on the name (and whatever external id the
    sink keeps for the source id).

    Args:
        ctx: The sink side.
        vendor: The source vendor.

    Returns:
        The existing vendor (``created=False``), or ``None`` if there is none.

    Raises:
        UpstreamError: The lookup failed.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def upsert_vendor(  # type: ignore[empty-body]
    ctx: ConnectionContext, vendor: Vendor, existing_sink_id: str | None
) -> VendorResult:
    """Create the vendor in the sink, or update it if it exists.

    Args:
        ctx: The sink side.
        vendor: The vendor as the source has it.
        existing_sink_id: The sink id this connection stored for the vendor, if any.

    Returns:
        The vendor's sink id and whether this call created it.

    Raises:
        InvalidRecordError: The sink refused the vendor's data (names the field).
        UpstreamError: Any other failure.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def find_bill(
    ctx: ConnectionContext, vendor_sink_id: str, invoice_number: str
) -> BillResult | None:
    """Find a bill in the sink by vendor and invoice number, without changing anything.

    Used to reconcile an interrupted create before creating again.

    Args:
        ctx: The sink side.
        vendor_sink_id: The vendor's sink id.
        invoice_number: The vendor's invoice number.

    Returns:
        The existing bill, or ``None``.

    Raises:
        UpstreamError: The lookup failed.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def create_bill(  # type: ignore[empty-body]
    ctx: ConnectionContext, draft: BillDraft
) -> BillResult:
    """Create the bill in the sink, or update it while it is unpaid.

    With ``draft.existing_sink_id`` set, update that bill (lines, amounts, dates) unless the sink
    reports it paid or partly paid; then change nothing and return ``paid=True``.

    Args:
        ctx: The sink side.
        draft: The payable with sink vendor and account ids.

    Returns:
        The bill's sink id, whether it was created, and whether it is paid.

    Raises:
        InvalidRecordError: The sink refused the bill's data (names the field).
        UpstreamError: Any other failure.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def create_bills(  # type: ignore[empty-body]
    ctx: ConnectionContext, drafts: Sequence[BillDraft]
) -> list[BillResult]:
    """Create many new bills in one call (capability ``bulk_create_bills``).

    All or nothing: either every bill is created and the results come back in the order of
    ``drafts``, or none is and the call raises. The engine then splits the batch to isolate the
    bad bill. Never called with more drafts than ``limits.batch_size``, nor with updates.

    Args:
        ctx: The sink side.
        drafts: New bills only (``existing_sink_id`` is ``None``).

    Returns:
        One result per draft, in order.

    Raises:
        InvalidRecordError: The sink refused the batch because of a record's data.
        UpstreamError: Any other failure.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def create_account(  # type: ignore[empty-body]
    ctx: ConnectionContext, account: Account
) -> Account:
    """Create a chart-of-accounts entry in the sink (capability ``create_accounts``).

    Called only for connections that allow it, for source accounts that have no match.

    Args:
        ctx: The sink side.
        account: The source account to copy (number, name, kind).

    Returns:
        The created sink account with its sink id.

    Raises:
        InvalidRecordError: The sink refused the account.
        UpstreamError: Any other failure.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def list_changed_payments(  # type: ignore[empty-body]
    ctx: ConnectionContext,
    window: ChangeWindow,
    page_token: str | None,
) -> PaymentPage:
    """Read one page of sink payments changed within a window, with their bill applications.

    Paging works as in ``list_changed_payables``. Payments in every status are returned; the
    engine records only those that are paid.

    Args:
        ctx: The sink side.
        window: The change-time interval to read.
        page_token: ``None`` for the first page, else the previous page's token.

    Returns:
        The page's payments and the next token.

    Raises:
        UpstreamError: The page could not be read.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def get_payment(ctx: ConnectionContext, sink_id: str) -> Payment | None:
    """Read one sink payment by id, e.g. to confirm what a webhook event announced.

    Args:
        ctx: The sink side.
        sink_id: The payment's id in the sink.

    Returns:
        The payment, or ``None`` if the sink has no such payment.

    Raises:
        UpstreamError: The read failed.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def ensure_webhook_subscription(  # type: ignore[empty-body]
    ctx: ConnectionContext,
    notification_url: str,
    events: Sequence[str],
    existing: WebhookSubscription | None,
) -> WebhookSubscription:
    """Make sure the sink delivers these events to this URL (capability ``webhooks``).

    Creates the subscription if ``existing`` is ``None`` or gone, re-enables it if the sink
    disabled it, and updates its events or URL if they differ.

    Args:
        ctx: The sink side.
        notification_url: The HTTPS URL of ``ml-connector serve``'s receiver.
        events: Event types, e.g. ``["payment.updated"]``.
        existing: The subscription this connection stored, if any.

    Returns:
        The subscription; ``security_key`` is set only when it was just created or rotated, and
        the core encrypts and stores it at once.

    Raises:
        UpstreamError: Any failure.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def parse_webhook(  # type: ignore[empty-body]
    ctx: ConnectionContext,
    headers: Mapping[str, str],
    body: bytes,
    security_key: SecretStr,
) -> WebhookBatch:
    """Verify a webhook delivery's signature, then parse its events.

    Nothing in the body may be trusted before the signature matches; compare in constant time,
    over the raw bytes first. Parsing is allowed only to rebuild a canonical form to verify
    against (BILL may sign the minified JSON), never to act on, and then only with bounded size,
    nesting and number length: anyone can post a body, and none may cost more than milliseconds.
    Event payloads are hints: the engine re-reads the entity (e.g. ``get_payment``) before it
    acts, and never uses amounts from a payload.

    Args:
        ctx: The sink side.
        headers: The delivery's HTTP headers (case-insensitive lookups are the plugin's job).
        body: The raw request body, exactly as received.
        security_key: The subscription's signing key.

    Returns:
        The delivery's events.

    Raises:
        WebhookVerificationError: The signature is missing or wrong.
        InvalidRecordError: The signature matches but the body is not a known event. Set
            ``record_id`` to the event id when there is one: the core answers such a delivery
            200 and lists it in the exception queue (a refusal would be retried by the sink).

    .. versionadded:: 1.0
    """
