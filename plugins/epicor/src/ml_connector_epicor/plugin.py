"""The Epicor Kinetic source plugin's hook implementations: thin, rows in, domain models out.

- Payables are posted AP invoices (``APInvHed``) that are open, not held and not debit memos;
  their lines are the GL expense distribution (``APInvExp``, one line per row, so every line has
  its GL account) plus a tax line for ``DocTaxAmt`` (coded to ``settings.tax_account``), and the
  total is ``DocInvoiceAmt``, all in the vendor's currency. There is no approval flag on AP
  invoices: ``Posted`` means approved and final (epicor.md §5). Purchase orders are never read.
- A payable's ``source_id`` is ``"<VendorNum>:<InvoiceNum>"``, Epicor's own key (with the
  Company of the connection), so the dedupe key is invoice number + vendor as in Epicor.
- Vendors' ``source_id`` is the ``VendorNum`` (internal, never changes; ``VendorID`` may).
- GL accounts' id is ``GLAccount1`` (what ``APInvExp.GLAccount`` holds); their number is the
  natural-account segment ``SegValue1``, which is what BILL's chart is usually numbered by.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from ml_connector.description import ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import ConfigurationError, InvalidRecordError
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    Account,
    AccountCatalog,
    Address,
    AuthResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
    Vendor,
)
from ml_connector_epicor.client import START, Cursor, EpicorClient
from ml_connector_epicor.schemas import (
    SYSTEM,
    EpicorCredentials,
    EpicorSettings,
    GLAccountRow,
    InvoiceRow,
    VendorRow,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ml_connector.context import ConnectionContext
    from ml_connector.models import ChangeWindow, PaymentPosting

__all__ = [
    "authenticate",
    "check_connection",
    "close_connection",
    "describe_plugin",
    "find_payment",
    "get_payable",
    "list_accounts",
    "list_changed_payables",
    "parse_source_id",
    "record_payment",
    "to_payable",
    "to_vendor",
]

log = logging.getLogger("ml_connector_epicor")

# A page's rows are converted a few at a time, letting the event loop run in between: in one
# piece a page's conversion would hold up the answers that free BILL's slots meanwhile.
_ROWS_PER_TURN = 8

_STATE_KEY = "epicor_client"

#: Country names as Kinetic's Vendor.Country holds them (a description, not a code), to ISO 3166.
_COUNTRIES = {
    "usa": "US", "united states": "US", "united states of america": "US", "us": "US",
    "canada": "CA", "mexico": "MX", "united kingdom": "GB", "uk": "GB", "great britain": "GB",
    "england": "GB", "ireland": "IE", "germany": "DE", "france": "FR", "netherlands": "NL",
    "belgium": "BE", "spain": "ES", "italy": "IT", "switzerland": "CH", "austria": "AT",
    "sweden": "SE", "norway": "NO", "denmark": "DK", "finland": "FI", "poland": "PL",
    "australia": "AU", "new zealand": "NZ", "china": "CN", "japan": "JP", "india": "IN",
    "singapore": "SG", "brazil": "BR", "south africa": "ZA", "philippines": "PH",
    "malaysia": "MY", "taiwan": "TW", "south korea": "KR", "korea": "KR",
}  # fmt: skip
_ISO3 = {"USA": "US", "CAN": "CA", "MEX": "MX", "GBR": "GB", "DEU": "DE", "FRA": "FR",
         "AUS": "AU", "NZL": "NZ", "IRL": "IE", "NLD": "NL", "CHN": "CN", "JPN": "JP"}  # fmt: skip


# --- Context ------------------------------------------------------------------------------------


def _settings(ctx: ConnectionContext) -> EpicorSettings:
    if not isinstance(ctx.settings, EpicorSettings):
        raise ConfigurationError(f"{SYSTEM}: settings must be EpicorSettings")
    return ctx.settings


def _client(ctx: ConnectionContext) -> EpicorClient:
    client = ctx.state.get(_STATE_KEY)
    if isinstance(client, EpicorClient):
        return client
    if not isinstance(ctx.credentials, EpicorCredentials):
        raise ConfigurationError(f"{SYSTEM}: credentials must be EpicorCredentials")
    settings = _settings(ctx)
    client = EpicorClient(settings, ctx.credentials, ctx.http_client(settings.server_url + "/"))
    ctx.state[_STATE_KEY] = client
    return client


# --- Page tokens --------------------------------------------------------------------------------


def _window_key(window: ChangeWindow) -> list[str | None]:
    return [window.since.isoformat() if window.since else None, window.until.isoformat()]


def _encode_token(window: ChangeWindow, cursor: Cursor) -> str:
    state = {"w": _window_key(window), "m": cursor.mode, "p": cursor.position}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _decode_token(token: str, window: ChangeWindow) -> Cursor:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(str(state["m"]), int(state["p"]))
        same_window = state["w"] == _window_key(window)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ConfigurationError(f"{SYSTEM}: not a page token of this plugin") from None
    if not same_window or cursor.mode not in ("odata", "getrows"):
        raise ConfigurationError(f"{SYSTEM}: the page token belongs to another window")
    return cursor


# --- Rows to domain models ----------------------------------------------------------------------


def parse_source_id(source_id: str) -> tuple[int, str] | None:
    """``"<VendorNum>:<InvoiceNum>"`` as its two key parts, or ``None`` if it is not one."""
    number, sep, invoice = source_id.partition(":")
    if not sep or not invoice or not number.isdigit():
        return None
    return int(number), invoice


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    # UNCONFIRMED (§6): Kinetic sends date-times without an offset; they are server-local.
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(UTC)


def change_time(row: InvoiceRow, zone: ZoneInfo) -> datetime:
    """When the invoice last changed: ``ChangeDate``, else its invoice date (conversions)."""
    if row.ChangeDate is not None:
        return _aware(row.ChangeDate, zone).astimezone(UTC)
    day = row.InvoiceDate or datetime(1970, 1, 1).date()
    return datetime.combine(day, time(), zone).astimezone(UTC)


def is_ready(row: InvoiceRow) -> bool:
    """Posted, open, not held, not a debit memo: ready to pay (epicor.md §5)."""
    if not row.Posted or row.InvoiceHeld or row.HoldInvoice or row.PayHold or row.DebitMemo:
        return False
    if row.OpenPayable is not None:
        return row.OpenPayable
    balance = row.DocInvoiceBal if row.DocInvoiceBal is not None else row.InvoiceBal
    return balance is None or balance > 0


def _status(row: InvoiceRow) -> str:
    if not row.Posted:
        return "unposted"
    return "posted" if is_ready(row) else "posted_not_payable"


def _country(text: str) -> str | None:
    value = text.strip()
    if not value:
        return "US"  # Address's own default; Kinetic leaves Country blank for domestic vendors
    if len(value) == 2 and value.isalpha():
        return value.upper()
    return _ISO3.get(value.upper()) or _COUNTRIES.get(" ".join(value.lower().split()))


def to_vendor(row: VendorRow, base_currency: str) -> Vendor | tuple[str, str]:
    """A Kinetic vendor as a domain vendor, or ``(field, reason)`` if it cannot be one."""
    if not row.Name.strip():
        return "Vendor.Name", f"vendor {row.VendorID or row.VendorNum} has no name"
    address = None
    if any(v.strip() for v in (row.Address1, row.City, row.ZIP, row.State)):
        country = _country(row.Country)
        if country is None:
            return "Vendor.Country", (
                f"vendor {row.VendorID or row.VendorNum}: country {row.Country!r} is not a "
                "country name this plugin knows; use the ISO code"
            )
        extra = " ".join(p.strip() for p in (row.Address2, row.Address3) if p.strip())
        address = Address(
            line1=row.Address1.strip() or None,
            line2=extra or None,
            city=row.City.strip() or None,
            state=row.State.strip() or None,
            postal_code=row.ZIP.strip() or None,
            country=country,
        )
    email = row.EMailAddress.replace(",", ";").split(";")[0].strip() or None
    try:
        return Vendor(
            source_id=str(row.VendorNum),
            name=row.Name.strip(),
            email=email,
            phone=row.PhoneNum.strip() or None,
            address=address,
            currency=(row.CurrencyCode.strip() or base_currency).upper(),
            active=not row.Inactive,
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return "Vendor." + ".".join(str(p) for p in error["loc"]), error["msg"]


def _raw_id(raw: Mapping[str, Any]) -> str | None:
    number, invoice = raw.get("VendorNum"), raw.get("InvoiceNum")
    return f"{number}:{invoice}" if number is not None and invoice else None


def to_payable(
    raw: Mapping[str, Any], vendors: Mapping[int, Mapping[str, Any]], settings: EpicorSettings
) -> Payable | RejectedRecord:
    """An ``APInvHed`` row (with ``APInvDtls`` and ``APInvExps``) as a payable, or why not."""
    zone = ZoneInfo(settings.server_timezone)
    try:
        row = InvoiceRow.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return RejectedRecord(
            record_type="payable",
            record_id=_raw_id(raw),
            field=".".join(str(p) for p in error["loc"]) or None,
            reason=error["msg"],
        )
    source_id = f"{row.VendorNum}:{row.InvoiceNum}"
    modified = change_time(row, zone)

    def reject(field: str | None, reason: str) -> RejectedRecord:
        return RejectedRecord(
            record_type="payable",
            record_id=source_id,
            field=field,
            reason=reason,
            modified_at=modified,
        )

    vendor_raw = vendors.get(row.VendorNum)
    if vendor_raw is None:
        who = row.VendorNumVendorID or row.VendorNum
        return reject("VendorNum", f"vendor {who} was not found in Epicor")
    try:
        vendor = to_vendor(VendorRow.model_validate(vendor_raw), settings.base_currency)
    except ValidationError as exc:
        return reject(
            "VendorNum", f"vendor {row.VendorNum} cannot be read: {exc.errors()[0]['msg']}"
        )
    if isinstance(vendor, tuple):
        return reject(*vendor)
    details = {d.InvoiceLine: d for d in row.APInvDtls}
    expenses = sorted(row.APInvExps, key=lambda e: (e.InvoiceLine, e.InvExpSeq))
    if not expenses:
        return reject("APInvExps", "the invoice has no GL expense distribution")
    per_line: dict[int, int] = {}
    for exp in expenses:
        per_line[exp.InvoiceLine] = per_line.get(exp.InvoiceLine, 0) + 1
    lines: list[dict[str, Any]] = []
    for i, exp in enumerate(expenses):
        if not exp.GLAccount.strip():
            return reject(f"APInvExps.{i}.GLAccount", "the distribution line has no GL account")
        detail = details.get(exp.InvoiceLine)
        only = detail is not None and per_line[exp.InvoiceLine] == 1
        lines.append(
            {
                "line_id": f"{exp.InvoiceLine}.{exp.InvExpSeq}",
                "amount": exp.DocExpAmt,
                "description": (detail.Description if detail else "") or exp.GLAccountDesc or None,
                "account_id": exp.GLAccount.strip(),
                "quantity": detail.VendorQty if only and detail else None,
                "unit_price": detail.DocUnitCost if only and detail else None,
            }
        )
    if row.DocTaxAmt:
        if not settings.tax_account:
            return reject(
                "DocTaxAmt",
                f"the invoice carries tax {row.DocTaxAmt}; set settings.tax_account (the GL "
                "account tax lines are coded to) to sync it",
            )
        lines.append(
            {
                "line_id": "tax",
                "amount": row.DocTaxAmt,
                "description": "Tax",
                "account_id": settings.tax_account,
            }
        )
    line_sum = sum((line["amount"] for line in lines), Decimal(0))
    if line_sum != row.DocInvoiceAmt:
        return reject(
            "DocInvoiceAmt",
            f"invoice total {row.DocInvoiceAmt} does not equal its GL distribution and tax "
            f"({line_sum})",
        )
    if row.InvoiceDate is None:
        return reject("InvoiceDate", "the invoice has no invoice date")
    if row.DueDate is None:
        return reject("DueDate", "the invoice has no due date")
    try:
        return Payable.model_validate(
            {
                "source_id": source_id,
                "document_number": row.InvoiceNum,
                "invoice_number": row.InvoiceNum,
                "vendor": vendor,
                "invoice_date": row.InvoiceDate,
                "due_date": row.DueDate,
                "currency": (row.CurrencyCode.strip() or vendor.currency).upper(),
                "total": row.DocInvoiceAmt,
                "lines": lines,
                "description": row.Description.strip() or row.InvoiceComment.strip() or None,
                "modified_at": modified,
                "source_status": _status(row),
            }
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return reject(".".join(str(p) for p in error["loc"]) or None, error["msg"])


def to_account(row: GLAccountRow) -> Account:
    """A GL account: id ``GLAccount1``, number the natural segment, name ``AccountDesc``."""
    return Account(
        id=row.GLAccount1,
        number=row.SegValue1.strip() or None,
        name=row.AccountDesc.strip() or row.GLAccount1,
        active=row.Active,
    )


# --- Hooks --------------------------------------------------------------------------------------


@hookimpl
def describe_plugin() -> PluginDescription:
    """Describe the Epicor plugin: settings, credentials, two calls in flight per server."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SOURCE,
        settings_model=EpicorSettings,
        credentials_model=EpicorCredentials,
        # No documented rate limit; keep concurrency low (epicor.md §4, §8: default 2).
        limits=ConcurrencyLimits(max_in_flight=2, scope_setting="server_url", per_request=True),
    )


@hookimpl
async def authenticate(ctx: ConnectionContext) -> AuthResult:
    """Check the API key and credentials are configured; fetch the first token if any."""
    identity = await _client(ctx).sign_in()
    return AuthResult(principal=identity.principal, expires_at=identity.expires_at)


@hookimpl
async def check_connection(ctx: ConnectionContext) -> ConnectionCheck:
    """Read at most one AP invoice: proves the key, the user and the AP rights; writes nothing."""
    client = _client(ctx)
    await client.first_invoice_probe()
    settings = client.settings
    return ConnectionCheck(
        ok=True,
        detail=f"Epicor Kinetic {settings.instance}, company {settings.company}: AP invoices "
        f"readable as {client.identity.principal}",
    )


@hookimpl
async def list_accounts(ctx: ConnectionContext) -> AccountCatalog:
    """Every GL account of the company, active or not."""
    rows = await _client(ctx).gl_accounts()
    accounts: dict[str, Account] = {}
    for raw in rows:
        try:
            account = to_account(GLAccountRow.model_validate(raw))
        except ValidationError:
            log.warning("epicor: skipped a GL account row without GLAccount1")
            continue
        accounts.setdefault(account.id, account)
    return AccountCatalog(accounts=tuple(accounts.values()))


@hookimpl
async def close_connection(ctx: ConnectionContext) -> None:
    """Close the HTTP client; never raises."""
    client = ctx.state.pop(_STATE_KEY, None)
    if isinstance(client, EpicorClient):
        try:
            await client.close()
        except Exception:  # closing must not fail a run that is over
            log.warning("epicor: closing the HTTP client failed", exc_info=True)


@hookimpl
async def list_changed_payables(
    ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
) -> PayablePage:
    """One page of posted, open AP invoices changed in ``[since, until)``.

    The server filters on ``Posted`` and ``ChangeDate`` (minus the overlap); the rest of the
    rule (open, not held, before ``until``) is checked here, see
    :meth:`~ml_connector_epicor.client.EpicorClient.invoices_query` for why.
    """
    client = _client(ctx)
    settings = client.settings
    zone = ZoneInfo(settings.server_timezone)
    cursor = START if page_token is None else _decode_token(page_token, window)
    page = await client.query_page(client.invoices_query(window.since), cursor, ("payables", None))
    wanted: list[dict[str, Any]] = []
    rejected: list[RejectedRecord] = []
    for index, raw in enumerate(page.rows):
        if index and index % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        try:
            row = InvoiceRow.model_validate(raw)
        except ValidationError:
            wanted.append(raw)  # to_payable reports it
            continue
        if change_time(row, zone) < window.until and is_ready(row):
            wanted.append(raw)
    numbers = [n for n in (r.get("VendorNum") for r in wanted) if isinstance(n, int)]
    vendors = await client.vendors(numbers)
    items: list[Payable] = []
    for index, raw in enumerate(wanted):
        if index and index % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        view = to_payable(raw, vendors, settings)
        if isinstance(view, Payable):
            items.append(view)
        else:
            rejected.append(view)
    return PayablePage(
        items=tuple(items),
        rejected=tuple(rejected),
        next_page_token=None if page.next is None else _encode_token(window, page.next),
    )


@hookimpl
async def get_payable(ctx: ConnectionContext, source_id: str) -> Payable | None:
    """One AP invoice by ``"<VendorNum>:<InvoiceNum>"``, whatever its status."""
    key = parse_source_id(source_id)
    if key is None:
        return None
    client = _client(ctx)
    raw = await client.invoice(*key)
    if raw is None:
        return None
    view = to_payable(raw, await client.vendors([key[0]]), client.settings)
    if isinstance(view, RejectedRecord):
        raise InvalidRecordError("payable", source_id, view.field, view.reason, system=SYSTEM)
    return view


# optionalhook: a core older than contract 1.2 has no find_payment spec and would refuse the
# plugin for an unknown hook; so marked, that core just never calls it (record_payment looks
# first on its own), and the declared range stays >=1.0.
@hookimpl(optionalhook=True)
async def find_payment(ctx: ConnectionContext, posting: PaymentPosting) -> RecordedPayment | None:
    """The AP payment (``CheckHed``) carrying this BILL payment with an ``APTran`` on the invoice.

    Reads only. A payment saved but not yet posted (its group unposted) is the posting all the
    same: entering another would pay the invoice twice once both groups are posted. A voided
    one too: a person undid it in Epicor; the connector does not redo it.
    """
    key = parse_source_id(posting.payable.source_id)
    if key is None:
        return None  # not an Epicor invoice id: no payment can be applied to it
    found = await _client(ctx).find_payment(
        posting.payment_sink_id, key[0], key[1], _payment_record(posting, key)
    )
    if found is None:
        return None
    return RecordedPayment(
        source_id=str(found.HeadNum),
        already_recorded=True,
        # record_payment posts a group a lost answer or a crash left unposted.
        finished=found.Posted or found.Voided or not _settings(ctx).post_payments,
    )


def _payment_record(posting: PaymentPosting, key: tuple[int, str]) -> tuple[str, str]:
    return ("payment", f"{posting.payment_sink_id} for payable {key[0]}:{key[1]}")


@hookimpl
async def record_payment(ctx: ConnectionContext, posting: PaymentPosting) -> RecordedPayment:
    """Enter the BILL payment against its invoice through Payment Entry, once.

    The core looks first (:func:`find_payment`); the client looks again before it enters
    anything (the same lookup), for a core older than contract 1.2 and because the look costs
    one request against a duplicate payment.
    """
    key = parse_source_id(posting.payable.source_id)
    if key is None:
        raise InvalidRecordError(
            "payment",
            posting.payment_sink_id,
            "payable.source_id",
            f"{posting.payable.source_id!r} is not an Epicor invoice id",
            system=SYSTEM,
        )
    head_num, existed = await _client(ctx).enter_payment(
        payment_id=posting.payment_sink_id,
        vendor_num=key[0],
        invoice_num=key[1],
        amount=posting.amount,
        paid_on=posting.paid_on,
        reference=posting.reference,
    )
    return RecordedPayment(source_id=str(head_num), already_recorded=existed)
