"""The Oracle NetSuite plugin's hooks: thin, SuiteQL rows in, domain models out.

Source side of a connection: approved, open vendor bills (``transaction`` type ``VendBill``)
with their expense and item lines, their vendors, the chart of accounts and the department /
class / location segments go out; BILL payments come back as ``vendorPayment`` records applied
to the bill, upserted by external id. Which bills move and how they read is
:mod:`ml_connector_netsuite._bills`; payments back, :mod:`ml_connector_netsuite._payments`;
tokens, SuiteQL and errors over HTTP, :mod:`ml_connector_netsuite.client`.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import httpx
from ml_connector import Capability, ConcurrencyLimits, PluginDescription, Role, hookimpl
from ml_connector.errors import AuthenticationError, InvalidRecordError, UpstreamError
from ml_connector.models import (
    AccountCatalog,
    Address,
    AuthResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
)

from ml_connector_netsuite import _bills, _payments
from ml_connector_netsuite._bills import DIMENSION_TABLES, Rejection
from ml_connector_netsuite.client import NetSuiteClient
from ml_connector_netsuite.schemas import SYSTEM, Credentials, Settings

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

log = logging.getLogger("ml_connector_netsuite")

_CLIENT = "netsuite.client"
_VENDORS = "netsuite.vendors"
_CURRENCIES = "netsuite.currencies"
_ADDRESSES = "netsuite.addresses"
_NO_ADDRESSES = "netsuite.no_addresses"
_IDS_PER_QUERY = 200
"""Bill or vendor ids per ``IN (...)`` list."""
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=10.0)

DEFAULT_CONCURRENCY = 5
"""A standard-tier account's concurrency limit (netsuite.md §4, CONFIRMED)."""


def _client(ctx: Context) -> NetSuiteClient:
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, NetSuiteClient):
        raise AuthenticationError("not signed in: call authenticate first", system=SYSTEM)
    return client


@hookimpl
def describe_plugin() -> PluginDescription:
    """NetSuite as a source: settings, credentials, the account's concurrency, dimensions."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SOURCE,
        settings_model=Settings,
        credentials_model=Credentials,
        # Concurrency is governed per account (web services + RESTlets together): 5 on the
        # standard tier, 15 on Tier 1, +10 per SuiteCloud Plus licence (netsuite.md §4). The
        # declared value is the smallest (ConcurrencyLimits cannot read a setting); the
        # concurrency_limit setting caps each connection's client as well.
        limits=ConcurrencyLimits(
            max_in_flight=DEFAULT_CONCURRENCY, scope_setting="account_id", per_request=True
        ),
        capabilities=frozenset({Capability.DIMENSIONS}),
    )


@hookimpl
async def authenticate(ctx: Context) -> AuthResult:
    """Get an M2M access token and keep the client in ``ctx.state``."""
    settings, credentials = ctx.settings, ctx.credentials
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, NetSuiteClient):
        http = ctx.http_client(settings.rest_url, timeout=HTTP_TIMEOUT)
        client = NetSuiteClient(http, settings, credentials)
        ctx.state[_CLIENT] = client
    await client.sign_in()
    return AuthResult(
        principal=f"{credentials.client_id}@{settings.account_id}", expires_at=client.expires_at
    )


@hookimpl
async def check_connection(ctx: Context) -> ConnectionCheck:
    """Read one vendor bill id with SuiteQL: proves the host, the token and the role."""
    client, settings = _client(ctx), ctx.settings
    await client.suiteql(
        "SELECT t.id FROM transaction t WHERE t.type = 'VendBill' ORDER BY t.id", limit=1
    )
    scope = f", subsidiary {settings.subsidiary_id}" if settings.subsidiary_id else ""
    return ConnectionCheck(
        ok=True,
        detail=f"NetSuite account {settings.account_id} at {settings.rest_url}{scope}: vendor "
        f"bills readable with SuiteQL as client {ctx.credentials.client_id}",
    )


@hookimpl
async def list_accounts(ctx: Context) -> AccountCatalog:
    """Every GL account, active or not, and the department / class / location values."""
    client = _client(ctx)
    rows = await client.keyset(_bills.accounts_query)
    accounts = [a for a in (_bills.account(r) for r in rows) if a is not None]
    dimensions = []
    for kind, table in DIMENSION_TABLES.items():
        if kind.value not in ctx.settings.dimensions:
            continue
        values = await client.keyset(functools.partial(_bills.dimension_query, table))
        dimensions += [d for d in (_bills.dimension(kind, r) for r in values) if d is not None]
    return AccountCatalog(accounts=tuple(accounts), dimensions=tuple(dimensions))


@hookimpl
async def close_connection(ctx: Context) -> None:
    """Close the HTTP client (an M2M token has nothing to revoke); never raises."""
    client = ctx.state.pop(_CLIENT, None)
    ctx.state.pop(_VENDORS, None)
    ctx.state.pop(_CURRENCIES, None)
    ctx.state.pop(_ADDRESSES, None)
    ctx.state.pop(_NO_ADDRESSES, None)
    if isinstance(client, NetSuiteClient):
        await client.close()


# --- Source: payables --------------------------------------------------------------------------


@hookimpl
async def list_changed_payables(
    ctx: Context, window: ChangeWindow, page_token: str | None
) -> PayablePage:
    """One page of approved, open vendor bills whose change time is in ``[since, until)``.

    The page token is the last internal id read: the next page is ``t.id > <token>``.
    """
    client, settings = _client(ctx), ctx.settings
    if page_token is not None and not page_token.isdigit():
        raise ValueError(f"invalid page token {page_token!r}")
    page = await client.suiteql(
        _bills.bill_query(window, settings, page_token), limit=settings.page_size
    )
    candidates: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for row in page.items:
        moment = _bills.stamp(row, settings.zone)
        if moment is not None and not _bills.in_window(moment, window):
            continue
        if _bills.not_ready(row, settings) is not None:
            continue
        candidates.append(row)
    items, more_rejected = await _read(ctx, candidates)
    rejected += more_rejected
    next_token = None
    if page.has_more and page.items:
        next_token = _bills.text(page.items[-1], "id")
    return PayablePage(items=tuple(items), rejected=tuple(rejected), next_page_token=next_token)


@hookimpl
async def get_payable(ctx: Context, source_id: str) -> Payable | None:
    """The vendor bill with this internal id whatever its status, or ``None``.

    Raises:
        InvalidRecordError: The transaction is not a vendor bill (a purchase order), or cannot
            be read as a payable (naming the field).
    """
    if not source_id.isdigit():
        return None
    page = await _client(ctx).suiteql(_bills.one_query(source_id), limit=1)
    if not page.items:
        return None
    row = page.items[0]
    if not _bills.is_bill(row):
        raise InvalidRecordError(
            "payable",
            source_id,
            "type",
            f"transaction {source_id} is a {_bills.text(row, 'type')}, not a vendor bill",
            system=SYSTEM,
        )
    items, rejected = await _read(ctx, [row])
    if rejected:
        raise InvalidRecordError(
            "payable", source_id, rejected[0].field, rejected[0].reason, system=SYSTEM
        )
    return items[0]


async def _read(
    ctx: Context, rows: list[dict[str, Any]]
) -> tuple[list[Payable], list[RejectedRecord]]:
    """Bill rows as payables (lines and vendors read in bulk), or rejected records."""
    client, settings = _client(ctx), ctx.settings
    ids = [i for i in (_bills.text(r, "id") for r in rows) if i is not None]
    lines: dict[str, list[_bills.Line]] = {i: [] for i in ids}
    for chunk in _bills.chunks(ids, _IDS_PER_QUERY):
        for raw in await client.query_all(_bills.lines_query(chunk)):
            bill = _bills.text(raw, "transaction")
            if bill in lines:
                lines[bill].append(_bills.line(raw))
    vendors = await _vendors(ctx, [v for v in (_bills.text(r, "entity") for r in rows) if v])
    addresses = await _addresses(ctx, [v for v in vendors if not isinstance(vendors[v], Rejection)])
    currencies = await _currencies(ctx)
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    for row in rows:
        record_id = _bills.text(row, "id")
        try:
            currency = _bills.currency_code(_bills.text(row, "currency"), currencies)
            vendor_id = _bills.text(row, "entity")
            found = vendors.get(vendor_id or "")
            if vendor_id is None or found is None:
                raise Rejection("entity", f"the bill's vendor {vendor_id} cannot be read")
            if isinstance(found, Rejection):
                raise found
            vendor = _bills.to_vendor(found, currency, addresses.get(vendor_id))
            items.append(
                _bills.to_payable(row, lines.get(record_id or "", []), vendor, currency, settings)
            )
        except Rejection as rejection:
            rejected.append(_bills.rejected(record_id, rejection, _bills.stamp(row, settings.zone)))
    return items, rejected


async def _vendors(ctx: Context, vendor_ids: list[str]) -> dict[str, dict[str, Any] | Rejection]:
    """The vendors' rows, read once per run (``ctx.state``)."""
    cache: dict[str, dict[str, Any] | Rejection] = ctx.state.setdefault(_VENDORS, {})
    missing = sorted({v for v in vendor_ids if v not in cache and v.isdigit()})
    for chunk in _bills.chunks(missing, _IDS_PER_QUERY):
        for row in await _client(ctx).query_all(_bills.vendors_query(chunk)):
            vendor_id = _bills.text(row, "id")
            if vendor_id is not None:
                cache[vendor_id] = row
        for vendor_id in chunk:
            cache.setdefault(
                vendor_id, Rejection("entity", f"vendor {vendor_id} does not exist in NetSuite")
            )
    return cache


async def _addresses(ctx: Context, vendor_ids: list[str]) -> dict[str, Address]:
    """The vendors' default billing addresses, read once per run (``ctx.state``).

    An account that refuses the address query (a 400: the join is UNCONFIRMED) is read
    without addresses from then on, and the run goes on.
    """
    cache: dict[str, Address | None] = ctx.state.setdefault(_ADDRESSES, {})
    if ctx.state.get(_NO_ADDRESSES):
        return {}
    missing = sorted({v for v in vendor_ids if v not in cache and v.isdigit()})
    for chunk in _bills.chunks(missing, _IDS_PER_QUERY):
        try:
            rows = await _client(ctx).query_all(_bills.addresses_query(chunk))
        except UpstreamError as exc:
            if exc.status != httpx.codes.BAD_REQUEST:
                raise
            log.warning("%s: vendor addresses cannot be read (%s); reading without", SYSTEM, exc)
            ctx.state[_NO_ADDRESSES] = True
            return {}
        for row in rows:
            vendor_id = _bills.text(row, "id")
            if vendor_id is not None and cache.get(vendor_id) is None:
                cache[vendor_id] = _bills.address(row)
        for vendor_id in chunk:
            cache.setdefault(vendor_id, None)
    return {k: v for k, v in cache.items() if v is not None}


async def _currencies(ctx: Context) -> dict[str, str]:
    """Currency internal id -> ISO code (``currency.symbol``), read once per run."""
    cached = ctx.state.get(_CURRENCIES)
    if isinstance(cached, dict):
        return cached
    found: dict[str, str] = {}
    for row in await _client(ctx).query_all(_bills.CURRENCIES_QUERY):
        currency_id, symbol = _bills.text(row, "id"), _bills.text(row, "symbol")
        if currency_id is not None and symbol is not None:
            found[currency_id] = symbol
    ctx.state[_CURRENCIES] = found
    return found


# --- Source: payments back ---------------------------------------------------------------------


@hookimpl
async def find_payment(ctx: Context, posting: PaymentPosting) -> RecordedPayment | None:
    """The vendorPayment with this BILL payment's external id, applied to the bill; reads only."""
    return await _payments.find(_client(ctx), posting)


@hookimpl
async def record_payment(ctx: Context, posting: PaymentPosting) -> RecordedPayment:
    """Upsert the BILL payment as a vendorPayment applied to its bill (a replay updates it)."""
    return await _payments.record(_client(ctx), ctx.settings, posting)
