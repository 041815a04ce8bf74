"""The SAP Business One plugin's hooks: thin, Service Layer records in, domain models out.

Source side of a connection: approved, open A/P invoices (``PurchaseInvoices``) with their
supplier business partners, the chart of accounts and the cost-accounting dimensions go out;
BILL payments come back as outgoing payments (``VendorPayments``) applied to the originating
invoice. Registered as this module (entry point ``ml_connector.plugins``). Which invoices move,
and how they read, is :mod:`ml_connector_sapb1._documents`; paging a change window,
:mod:`ml_connector_sapb1._paging`; payments back, :mod:`ml_connector_sapb1._payments`; the
session, errors and paging over HTTP, :mod:`ml_connector_sapb1.client`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from ml_connector import (
    Capability,
    ConcurrencyLimits,
    PluginDescription,
    Role,
    hookimpl,
)
from ml_connector.errors import AuthenticationError, InvalidRecordError, NotFoundError
from ml_connector.models import (
    AccountCatalog,
    AuthResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
    Vendor,
)
from pydantic import ValidationError

from ml_connector_sapb1 import _documents, _payments
from ml_connector_sapb1._documents import Rejection
from ml_connector_sapb1._paging import ENTITY_SET, read_changed
from ml_connector_sapb1.client import SapB1Client, tls_verify
from ml_connector_sapb1.schemas import (
    SYSTEM,
    BusinessPartner,
    ChartOfAccount,
    Credentials,
    DistributionRule,
    ProfitCenter,
    Settings,
    Wire,
)

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.models import ChangeWindow, PaymentPosting

    Context = ConnectionContext[Settings, Credentials]

__all__ = [
    "Credentials",
    "Settings",
    "authenticate",
    "check_connection",
    "close_connection",
    "describe_plugin",
    "find_payment",
    "get_payable",
    "list_accounts",
    "list_changed_payables",
    "record_payment",
]

log = logging.getLogger("ml_connector_sapb1")

M = TypeVar("M", bound=Wire)

_CLIENT = "sapb1.client"
_VENDORS = "sapb1.vendors"
# A page's rows are converted a few at a time, letting the event loop run in between: in one
# piece the conversion would hold up the answers that free BILL's slots meanwhile.
_ROWS_PER_TURN = 8
#: Answers may be slow (a page of invoices with their lines on a busy server).
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def _client(ctx: Context) -> SapB1Client:
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, SapB1Client):
        raise AuthenticationError("not signed in: call authenticate first", system=SYSTEM)
    return client


# --- Both sides --------------------------------------------------------------------------------


@hookimpl
def describe_plugin() -> PluginDescription:
    """SAP Business One as a source: settings, credentials, limits, dimensions."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SOURCE,
        settings_model=Settings,
        credentials_model=Credentials,
        # No rate limit is documented (sapb1.md §4, UNCONFIRMED): the practical limits are the
        # sessions (one here, one licence seat) and the server's capacity. A few requests in
        # flight per Service Layer; every request goes through ctx.http_client.
        limits=ConcurrencyLimits(max_in_flight=3, scope_setting="service_url", per_request=True),
        # CostingCode..CostingCode5 as BILL classifications (settings.dimension_kinds).
        capabilities=frozenset({Capability.DIMENSIONS}),
    )


@hookimpl
async def authenticate(ctx: Context) -> AuthResult:
    """Sign in (or reuse the session a killed run saved) and keep the client in ``ctx.state``."""
    settings, credentials = ctx.settings, ctx.credentials
    if not settings.verify_tls:
        log.warning(
            "%s: TLS certificate verification is OFF for %s (verify_tls=false): anyone on the "
            "path can read the B1 password and the session; use ca_bundle outside a test server",
            SYSTEM,
            settings.service_url,
        )
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, SapB1Client):
        http = ctx.http_client(
            settings.service_url + "/", verify=tls_verify(settings), timeout=HTTP_TIMEOUT
        )
        client = SapB1Client(
            http, settings, credentials, keeper=getattr(ctx, "saved_session", None)
        )
        ctx.state[_CLIENT] = client
    await client.sign_in()
    return AuthResult(
        principal=f"{credentials.username}@{settings.company_db}", expires_at=client.expires_at
    )


@hookimpl
async def check_connection(ctx: Context) -> ConnectionCheck:
    """Read one A/P invoice key: proves the URL, the company, the user and the A/P rights."""
    client, settings = _client(ctx), ctx.settings
    await client.request("GET", ENTITY_SET, params={"$top": "1", "$select": "DocEntry"})
    version = client.server_version or "version not reported"
    return ConnectionCheck(
        ok=True,
        detail=f"SAP Business One Service Layer {settings.version} ({version}) at "
        f"{settings.service_url}, company {settings.company_db}: A/P invoices readable as "
        f"{ctx.credentials.username}",
    )


@hookimpl
async def list_accounts(ctx: Context) -> AccountCatalog:
    """Every G/L account, active or not; the dimensions' cost centers and distribution rules."""
    client, settings = _client(ctx), ctx.settings
    accounts = [
        _documents.account(a)
        for a in _valid(ChartOfAccount, await client.collect("ChartOfAccounts"))
    ]
    dimensions = []
    if settings.dimension_kinds:
        centers = _valid(ProfitCenter, await client.collect("ProfitCenters"))
        try:
            rules = _valid(DistributionRule, await client.collect("DistributionRules"))
        except NotFoundError:
            rules = []  # a server without the set: the profit centers' own codes only
        dimensions = _documents.dimensions(centers, rules, settings)
    return AccountCatalog(accounts=tuple(accounts), dimensions=tuple(dimensions))


def _valid(model: type[M], rows: list[dict[str, Any]]) -> list[M]:
    """The rows that read as ``model``; the others are logged and left out."""
    found: list[M] = []
    for raw in rows:
        try:
            found.append(model.model_validate(raw))
        except ValidationError:
            log.warning("%s: skipped a %s record without its key", SYSTEM, model.__name__)
    return found


@hookimpl
async def close_connection(ctx: Context) -> None:
    """Log out (the session holds a licence seat) and close; never raises."""
    client = ctx.state.pop(_CLIENT, None)
    ctx.state.pop(_VENDORS, None)
    if isinstance(client, SapB1Client):
        await client.close()


# --- Source: payables --------------------------------------------------------------------------


@hookimpl
async def list_changed_payables(
    ctx: Context, window: ChangeWindow, page_token: str | None
) -> PayablePage:
    """One page of approved, open A/P invoices whose change time is in ``[since, until)``."""
    client, settings = _client(ctx), ctx.settings
    page = await read_changed(client, window, page_token, settings.zone)
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    for raw in page.keyless:
        stamp = _documents.raw_stamp(raw, settings.zone)
        if stamp is None or _documents.in_window(stamp, window):
            rejected.append(
                _documents.rejected(
                    None, Rejection("DocEntry", "a PurchaseInvoices record without a DocEntry"),
                    stamp,
                )
            )  # fmt: skip
    for index, raw in enumerate(page.rows):
        if index and index % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        result = await _read(ctx, raw, window)
        if isinstance(result, Payable):
            items.append(result)
        elif result is not None:
            rejected.append(result)
    return PayablePage(
        items=tuple(items), rejected=tuple(rejected), next_page_token=page.next_token
    )


@hookimpl
async def get_payable(ctx: Context, source_id: str) -> Payable | None:
    """The A/P invoice ``PurchaseInvoices(<source_id>)`` whatever its status, or ``None``."""
    if not source_id.isdigit():
        return None
    raw = await _client(ctx).get_entity(ENTITY_SET, int(source_id), record=("payable", source_id))
    if raw is None:
        return None
    result = await _read(ctx, raw, None)
    if isinstance(result, RejectedRecord):
        raise InvalidRecordError("payable", source_id, result.field, result.reason, system=SYSTEM)
    assert result is not None  # without a window nothing is left out
    return result


async def _read(
    ctx: Context, raw: dict[str, Any], window: ChangeWindow | None
) -> Payable | RejectedRecord | None:
    """A record as a payable, a rejected record, or ``None`` if it is not for this window.

    With a window, the window and readiness are checked first: a record changed outside it, or
    not ready to pay, is left out (not rejected).
    """
    settings = ctx.settings
    record_id = str(raw.get("DocEntry"))
    try:
        document = _documents.parse_document(raw)
    except Rejection as rejection:
        stamp = _documents.raw_stamp(raw, settings.zone)
        if window is not None and stamp is not None and not _documents.in_window(stamp, window):
            return None
        return _documents.rejected(record_id, rejection, stamp)
    stamp = _documents.document_stamp(document, settings.zone)
    if window is not None:
        if stamp is not None and not _documents.in_window(stamp, window):
            return None
        if _documents.not_ready(document) is not None:
            return None
    try:
        currency = _documents.currency_of(document.DocCurrency, settings, "DocCurrency")
        vendor = await _vendor(ctx, document.CardCode, currency)
        return _documents.to_payable(document, vendor, settings)
    except Rejection as rejection:
        return _documents.rejected(record_id, rejection, stamp)


async def _vendor(ctx: Context, card_code: str | None, currency: str) -> Vendor:
    """The invoice's business partner as a vendor, read once per run (``ctx.state``).

    Raises:
        Rejection: No ``CardCode``, no such partner, or one that cannot be a vendor.
    """
    if not card_code:
        raise Rejection("CardCode", "the invoice has no business partner (CardCode)")
    cache: dict[str, BusinessPartner | Rejection] = ctx.state.setdefault(_VENDORS, {})
    found = cache.get(card_code)
    if found is None:
        raw = await _client(ctx).get_entity(
            "BusinessPartners", card_code, record=("vendor", card_code)
        )
        if raw is None:
            found = Rejection("CardCode", f"business partner {card_code} does not exist in B1")
        else:
            try:
                found = BusinessPartner.model_validate(raw)
            except ValidationError as exc:
                error = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in error["loc"])
                found = Rejection(f"BusinessPartners.{where}", str(error["msg"]))
        cache[card_code] = found
    if isinstance(found, Rejection):
        raise found
    return _documents.to_vendor(found, ctx.settings, currency)


# --- Source: payments back ---------------------------------------------------------------------


@hookimpl
async def find_payment(ctx: Context, posting: PaymentPosting) -> RecordedPayment | None:
    """The outgoing payment carrying this BILL payment, applied to this invoice; reads only.

    ``TransferReference`` is the BILL payment id and a ``PaymentInvoices`` row is on the
    invoice's ``DocEntry``; a cancelled payment does not count (a person undid it in B1), a
    payment draft awaiting approval does (posting again would pay twice once it is approved).
    """
    return await _payments.find(_client(ctx), posting)


@hookimpl
async def record_payment(ctx: Context, posting: PaymentPosting) -> RecordedPayment:
    """Post the BILL payment as an outgoing bank transfer applied to its A/P invoice, once.

    The core looks first (:func:`find_payment`); this hook looks again before it writes (one
    read against a duplicate payment) and never sends the ``POST`` twice blindly.
    """
    return await _payments.record(_client(ctx), ctx.settings, posting)
