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
  natural-account segment ``SegValue1``, which is what BILL's chart is usually numbered by. The
  segments ``settings.segment_dimensions`` names (``SegValue2``..``SegValue20``: department,
  division, …) are dimensions: listed from ``COASegValues`` and carried on every line, so the
  core maps them onto BILL classifications.
- A vendor on payment hold (``Vendor.PayHold``) is not synced: its invoices come back rejected,
  naming the hold, so they wait in the exception queue until it is lifted.
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

from ml_connector.description import Capability, ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import ConfigurationError, InvalidRecordError
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    Account,
    AccountCatalog,
    Address,
    AuthResult,
    ConnectionCheck,
    Dimension,
    DimensionKind,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
    Vendor,
)
from ml_connector_epicor.client import START, Cursor, EpicorClient
from ml_connector_epicor.schemas import (
    SYSTEM,
    COASegValueRow,
    EpicorCredentials,
    EpicorSettings,
    GLAccountRow,
    InvoiceRow,
    VendorRow,
    segment_values,
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


#: The key of ``APInvHed`` (with the Company of the connection): a row without one cannot be
#: a payable, its id being ``"<VendorNum>:<InvoiceNum>"``.
_INVOICE_KEYS = ("VendorNum", "InvoiceNum")


def _blank(value: Any) -> bool:
    # Kinetic's integer columns are not nullable: a missing VendorNum may come as 0.
    return value is None or value == 0 or (isinstance(value, str) and not value.strip())


def _raw_id(raw: Mapping[str, Any]) -> str:
    """The payable id of a row, or as much of it as there is (with ``SysRowID`` to tell apart)."""
    number, invoice = raw.get("VendorNum"), raw.get("InvoiceNum")
    if not _blank(number) and not _blank(invoice):
        return f"{number}:{invoice}"
    partial = f"{'?' if _blank(number) else number}:{'?' if _blank(invoice) else invoice}"
    row_id = raw.get("SysRowID")
    return f"{partial} (SysRowID {row_id})" if row_id else partial


def _raw_change(raw: Mapping[str, Any], zone: ZoneInfo) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(str(raw.get("ChangeDate"))), zone).astimezone(UTC)
    except ValueError:
        return None


def _missing_key(raw: Mapping[str, Any], zone: ZoneInfo) -> RejectedRecord | None:
    """A row without one of its key columns, rejected naming the column; else ``None``."""
    missing = next((k for k in _INVOICE_KEYS if _blank(raw.get(k))), None)
    if missing is None:
        return None
    known = [
        f"{name} {raw[name]}"
        for name in ("InvoiceNum", "VendorNumVendorID", "VendorNum", "SysRowID")
        if name != missing and not _blank(raw.get(name))
    ]
    return RejectedRecord(
        record_type="payable",
        record_id=_raw_id(raw),
        field=missing,
        reason=f"the AP invoice row ({', '.join(known) or 'nothing to identify it'}) has no "
        f"{missing}, a key of APInvHed: it cannot be a bill until it has one",
        modified_at=_raw_change(raw, zone),
    )


def invoice_accounts(raw: Mapping[str, Any]) -> set[str]:
    """The GL accounts an ``APInvHed`` row's distribution (``APInvDtls.APInvExps``) is coded to."""
    found: set[str] = set()
    lines = raw.get("APInvDtls")
    for line in lines if isinstance(lines, list) else []:
        expenses = line.get("APInvExps") if isinstance(line, dict) else None
        for exp in expenses if isinstance(expenses, list) else []:
            account = exp.get("GLAccount") if isinstance(exp, dict) else None
            if isinstance(account, str) and account.strip():
                found.add(account.strip())
    return found


def line_dimensions(
    account: str, segments: Mapping[str, Mapping[int, str] | None], settings: EpicorSettings
) -> dict[DimensionKind, str]:
    """The dimensions a line on ``account`` carries: its segments named in the settings."""
    values = segments.get(account) or {}
    return {kind: values[n] for n, kind in settings.segment_dimensions.items() if values.get(n)}


def to_payable(
    raw: Mapping[str, Any],
    vendors: Mapping[int, Mapping[str, Any]],
    settings: EpicorSettings,
    segments: Mapping[str, Mapping[int, str] | None] | None = None,
) -> Payable | RejectedRecord:
    """An ``APInvHed`` row (lines expanded, each with its ``APInvExps``) as a payable, or why not.

    ``segments`` holds the segment values of the accounts the row is coded to (GL account id to
    ``{segment number: value}``), for ``settings.segment_dimensions``.
    """
    zone = ZoneInfo(settings.server_timezone)
    missing = _missing_key(raw, zone)
    if missing is not None:
        return missing
    try:
        row = InvoiceRow.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return RejectedRecord(
            record_type="payable",
            record_id=_raw_id(raw),
            field=".".join(str(p) for p in error["loc"]) or None,
            reason=error["msg"],
            modified_at=_raw_change(raw, zone),
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
        vendor_row = VendorRow.model_validate(vendor_raw)
    except ValidationError as exc:
        return reject(
            "VendorNum", f"vendor {row.VendorNum} cannot be read: {exc.errors()[0]['msg']}"
        )
    if vendor_row.PayHold:
        who = vendor_row.VendorID or row.VendorNumVendorID or row.VendorNum
        return reject(
            "Vendor.PayHold",
            f"vendor {who} is on payment hold in Epicor: its bills are not synced while it is "
            "(retry this entry once the hold is lifted)",
        )
    vendor = to_vendor(vendor_row, settings.base_currency)
    if isinstance(vendor, tuple):
        return reject(*vendor)
    segments = segments or {}
    lines: list[dict[str, Any]] = []
    # In line and sequence order; a rejection names the row by its place in the answer.
    for line_index, detail in sorted(enumerate(row.APInvDtls), key=lambda p: p[1].InvoiceLine):
        expenses = sorted(enumerate(detail.APInvExps), key=lambda p: p[1].InvExpSeq)
        for exp_index, exp in expenses:
            if not exp.GLAccount.strip():
                return reject(
                    f"APInvDtls.{line_index}.APInvExps.{exp_index}.GLAccount",
                    "the distribution line has no GL account",
                )
            account = exp.GLAccount.strip()
            only = len(expenses) == 1
            lines.append(
                {
                    "line_id": f"{detail.InvoiceLine}.{exp.InvExpSeq}",
                    "amount": exp.DocExpAmt,
                    "description": detail.Description or exp.GLAccountDesc or None,
                    "account_id": account,
                    "dimensions": line_dimensions(account, segments, settings),
                    "quantity": detail.VendorQty if only else None,
                    "unit_price": detail.DocUnitCost if only else None,
                }
            )
    if not lines:
        return reject(
            "APInvDtls.APInvExps",
            "the invoice has no GL expense distribution (no APInvExps on any of its lines)",
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
                "dimensions": line_dimensions(settings.tax_account, segments, settings),
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


def to_dimensions(
    values: list[dict[str, Any]], accounts: list[dict[str, Any]], settings: EpicorSettings
) -> list[Dimension]:
    """The values of the segments that are dimensions, each as the dimension kind it is.

    From ``COASegValues`` (code ``SegmentCode``, name ``SegmentName``), plus any value a GL
    account uses that the segment has no row for (named by its code). A value is identified by
    its code, which is what the lines carry.
    """
    kinds = settings.segment_dimensions
    found: dict[tuple[DimensionKind, str], Dimension] = {}
    for raw in values:
        try:
            row = COASegValueRow.model_validate(raw)
        except ValidationError:
            log.warning("epicor: skipped a COASegValues row without SegmentNbr or SegmentCode")
            continue
        kind, code = kinds.get(row.SegmentNbr), row.SegmentCode.strip()
        if kind is None or not code:
            continue
        name = row.SegmentName.strip() or row.SegmentDesc.strip() or code
        dimension = Dimension(id=code, kind=kind, code=code, name=name, active=row.ActiveFlag)
        found.setdefault((kind, code), dimension)
    for raw in accounts:
        for number, code in segment_values(raw).items():
            kind = kinds.get(number)
            if kind is not None:
                found.setdefault((kind, code), Dimension(id=code, kind=kind, code=code, name=code))
    return list(found.values())


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
        # GL segments beyond the natural account (settings.segment_dimensions).
        capabilities=frozenset({Capability.DIMENSIONS}),
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
    """Every GL account of the company, active or not, and the segment values that are dimensions.

    Dimensions only for ``settings.segment_dimensions`` (none by default): the core maps each
    value onto the BILL classification of that kind with its code, or else its name.
    """
    client = _client(ctx)
    rows = await client.gl_accounts()
    accounts: dict[str, Account] = {}
    for raw in rows:
        try:
            account = to_account(GLAccountRow.model_validate(raw))
        except ValidationError:
            log.warning("epicor: skipped a GL account row without GLAccount1")
            continue
        accounts.setdefault(account.id, account)
    dimensions: list[Dimension] = []
    if client.settings.segment_dimensions:
        dimensions = to_dimensions(await client.segment_values(), rows, client.settings)
    return AccountCatalog(accounts=tuple(accounts.values()), dimensions=tuple(dimensions))


async def _segments_of(
    client: EpicorClient, raws: list[dict[str, Any]]
) -> dict[str, dict[int, str] | None]:
    """The segment values of the accounts these rows (and the tax line) are coded to.

    Read only when some segments are dimensions.
    """
    settings = client.settings
    if not settings.segment_dimensions:
        return {}
    accounts = {a for raw in raws for a in invoice_accounts(raw)}
    if settings.tax_account:
        accounts.add(settings.tax_account)
    return {a: await client.account_segments(a) for a in sorted(accounts)}


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
        missing = _missing_key(raw, zone)
        if missing is not None:
            # No key, no payable id: named in the exception queue, the rest of the page goes on.
            if missing.modified_at is None or missing.modified_at < window.until:
                rejected.append(missing)
            continue
        try:
            row = InvoiceRow.model_validate(raw)
        except ValidationError:
            wanted.append(raw)  # to_payable reports it
            continue
        if change_time(row, zone) < window.until and is_ready(row):
            wanted.append(raw)
    numbers = [n for n in (r.get("VendorNum") for r in wanted) if isinstance(n, int)]
    vendors = await client.vendors(numbers)
    segments = await _segments_of(client, wanted)
    items: list[Payable] = []
    for index, raw in enumerate(wanted):
        if index and index % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        view = to_payable(raw, vendors, settings, segments)
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
    vendors = await client.vendors([key[0]])
    view = to_payable(raw, vendors, client.settings, await _segments_of(client, [raw]))
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
