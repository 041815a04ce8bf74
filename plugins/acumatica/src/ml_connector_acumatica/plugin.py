"""The Acumatica plugin's hooks: translate between the domain models and the client.

Source side of a connection: released AP bills (type ``Bill``, status ``Open``) with their
vendors, GL accounts and subaccounts go out; BILL payments come back as AP checks applied to the
originating bill and released. Registered as this module (entry point ``ml_connector.plugins``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ml_connector.default_account_matcher import match_catalogs
from ml_connector.description import Capability, ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import AuthenticationError, ConfigurationError, InvalidRecordError
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountKind,
    AccountMapping,
    AuthResult,
    ConnectionCheck,
    Dimension,
    DimensionKind,
    MappingMethod,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
    Vendor,
)
from ml_connector_acumatica.client import (
    HTTP_TIMEOUT,
    SYSTEM,
    AcumaticaClient,
    odata_datetimeoffset,
    odata_string,
)
from ml_connector_acumatica.schemas import (
    AcumaticaCredentials,
    AcumaticaSettings,
    WireAccount,
    WireBill,
    WireCheck,
    WireSubaccount,
    WireVendor,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    "map_accounts",
    "record_payment",
]

# A page's rows are converted a few at a time, letting the event loop run in between: a page is
# 30 ms of CPU, and in one piece it would hold up the answers that free BILL's slots meanwhile.
_ROWS_PER_TURN = 8

_CLIENT = "acumatica.client"
_VENDORS = "acumatica.vendors"
_SUBACCOUNTS = "acumatica.subaccounts"

#: The only bills sent: released bills still owed (acumatica.md §5 status table).
BILL_TYPE, OPEN = "Bill", "Open"
BILL_EXPAND = ("Details", "TaxDetails")
VENDOR_EXPAND = ("MainContact", "MainContact/Address")
#: A check in one of these states was created but not released; any other state is final
#: (released, voided, or in an approval workflow) and counts as recorded.
_UNRELEASED_CHECK = frozenset({"On Hold", "Balanced"})
#: A check's applications: ``Details`` ("Documents to Apply") holds them until the check is
#: released, which moves them to ``History`` ("Application History", blank before release)
#: (UG AP302000; both detail entities in the 24.200.001 Check contract).
CHECK_EXPAND = ("Details", "History")
#: BILL classifications a subaccount may map to (BILL has no subaccounts).
SUBACCOUNT_TARGETS = (DimensionKind.DEPARTMENT, DimensionKind.CLASS, DimensionKind.LOCATION)
_ACCOUNT_KINDS = {
    "asset": AccountKind.ASSET,
    "liability": AccountKind.LIABILITY,
    "income": AccountKind.INCOME,
    "expense": AccountKind.EXPENSE,
}


# --- Context -----------------------------------------------------------------------------------


def _settings(ctx: ConnectionContext) -> AcumaticaSettings:
    if not isinstance(ctx.settings, AcumaticaSettings):
        raise ConfigurationError(f"{SYSTEM}: settings must be AcumaticaSettings")
    return ctx.settings


def _credentials(ctx: ConnectionContext) -> AcumaticaCredentials:
    if not isinstance(ctx.credentials, AcumaticaCredentials):
        raise ConfigurationError(f"{SYSTEM}: credentials must be AcumaticaCredentials")
    return ctx.credentials


def _client(ctx: ConnectionContext) -> AcumaticaClient:
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, AcumaticaClient):
        raise AuthenticationError("not signed in: call authenticate first", system=SYSTEM)
    return client


# --- Both sides --------------------------------------------------------------------------------


@hookimpl
def describe_plugin() -> PluginDescription:
    """Acumatica as a source: settings, credentials, three requests in flight per instance."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SOURCE,
        settings_model=AcumaticaSettings,
        credentials_model=AcumaticaCredentials,
        # Per-licence numbers are UNCONFIRMED (acumatica.md §8): 3 in flight per instance.
        # Acumatica queues requests over its concurrency limit and, past half the per-minute
        # budget, delays each one (§4): more in flight would not go faster, it would only
        # fill the instance's queue, which every integration shares and which declines
        # requests past 20 waiting. Slow answers hold a slot until they come (HTTP_TIMEOUT).
        limits=ConcurrencyLimits(max_in_flight=3, scope_setting="instance_url", per_request=True),
        capabilities=frozenset({Capability.DIMENSIONS}),
    )


@hookimpl
async def authenticate(ctx: ConnectionContext) -> AuthResult:
    """Sign in (OAuth or cookie, per settings) and keep the client in ``ctx.state``."""
    settings, credentials = _settings(ctx), _credentials(ctx)
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, AcumaticaClient):
        client = AcumaticaClient(
            # Answers may be slow but coming: the licence delays and queues requests (§4).
            ctx.http_client(settings.instance_url, timeout=HTTP_TIMEOUT),
            settings,
            credentials,
            # A session a killed run left behind is reused or ended first (contract 1.2).
            keeper=getattr(ctx, "saved_session", None),
            report_wait=ctx.report_wait if hasattr(ctx, "report_wait") else None,
        )
        ctx.state[_CLIENT] = client
    await client.sign_in()
    return AuthResult(
        principal=f"{credentials.username}@{settings.tenant}", expires_at=client.session.expires_at
    )


@hookimpl
async def check_connection(ctx: ConnectionContext) -> ConnectionCheck:
    """Read the endpoint listing and one GL account: proves URL, version and sign-in."""
    client, settings = _client(ctx), _settings(ctx)
    listing = await client.endpoint_listing()
    problem = await client.endpoint_problem()
    if problem is not None:
        return ConnectionCheck(ok=False, detail=problem)
    await client.list_page("Account", top=1)
    build = (
        listing.get("version", {}).get("acumaticaBuildVersion")
        if isinstance(listing, dict)
        else None
    )
    return ConnectionCheck(
        ok=True,
        detail=f"Acumatica {build or '(build not reported)'} at {settings.instance_url}, "
        f"endpoint {settings.endpoint}, tenant {settings.tenant}",
    )


@hookimpl
async def list_accounts(ctx: ConnectionContext) -> AccountCatalog:
    """Every GL account, and every subaccount unless subaccounts are left out of BILL."""
    client, settings = _client(ctx), _settings(ctx)
    accounts = [_account(WireAccount.model_validate(r)) for r in await client.list_all("Account")]
    dimensions: list[Dimension] = []
    if settings.subaccount_maps_to != "none":
        dimensions = [_subaccount(s) for s in await _load_subaccounts(ctx)]
    return AccountCatalog(accounts=tuple(accounts), dimensions=tuple(dimensions))


@hookimpl
async def map_accounts(
    source: AccountCatalog, sink: AccountCatalog, manual: Sequence[AccountMapping]
) -> list[AccountMapping]:
    """The core's matching, plus subaccounts onto BILL classifications.

    BILL has no subaccounts, so the default matcher (same kind only) never maps them. Here a
    subaccount maps to the one active BILL department, class or location whose code equals the
    subaccount's code (separators and case aside), else whose name equals its description;
    two candidates, even of different kinds, mean no mapping (never a guess). Manual mappings
    win over both.
    """
    mappings = match_catalogs(source, sink, manual)
    taken = {(m.source_kind, m.source_id) for m in mappings}
    return [*mappings, *match_subaccounts(source, sink, taken)]


@hookimpl
async def close_connection(ctx: ConnectionContext) -> None:
    """Log out (cookie sessions hold a licence slot until they time out) and close; never raises."""
    client = ctx.state.pop(_CLIENT, None)
    ctx.state.pop(_VENDORS, None)
    ctx.state.pop(_SUBACCOUNTS, None)
    if isinstance(client, AcumaticaClient):
        await client.close()


# --- Source ------------------------------------------------------------------------------------


@hookimpl
async def list_changed_payables(
    ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
) -> PayablePage:
    """One page of open bills whose LastModifiedDateTime is in ``[since, until)``."""
    client, settings = _client(ctx), _settings(ctx)
    rows, next_token = await client.read_window(
        "Bill",
        filter=bill_filter(window),
        expand=BILL_EXPAND,
        key=_reference_nbr,
        page_size=settings.page_size,
        token=page_token,
        tag=f"{window.since.isoformat() if window.since else '-'}|{window.until.isoformat()}",
    )
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    for index, row in enumerate(rows):
        if index and index % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        result = await _read_bill(ctx, row, window)
        if isinstance(result, Payable):
            items.append(result)
        elif result is not None:
            rejected.append(result)
    return PayablePage(items=tuple(items), rejected=tuple(rejected), next_page_token=next_token)


@hookimpl
async def get_payable(ctx: ConnectionContext, source_id: str) -> Payable | None:
    """The bill ``Bill/<source_id>`` whatever its status; ``None`` if Acumatica has none."""
    row = await _client(ctx).get(
        "Bill", BILL_TYPE, source_id, expand=BILL_EXPAND, record=("payable", source_id)
    )
    if row is None:
        return None
    result = await _read_bill(ctx, row, None)
    if isinstance(result, RejectedRecord):
        raise InvalidRecordError("payable", source_id, result.field, result.reason, system=SYSTEM)
    return result


# optionalhook: a core older than contract 1.2 has no find_payment spec and would refuse the
# plugin for an unknown hook; so marked, that core just never calls it (record_payment looks
# first on its own), and the declared range stays >=1.0.
@hookimpl(optionalhook=True)
async def find_payment(ctx: ConnectionContext, posting: PaymentPosting) -> RecordedPayment | None:
    """The AP check that carries this BILL payment and is applied to its bill; reads only.

    Whatever the check's state: one on hold or balanced but not released is the posting all
    the same (a second check would pay the bill twice once both are released), and so is a
    voided one (a person undid it in Acumatica; the connector does not redo it).
    """
    check = await _find_check(_client(ctx), posting)
    if check is None:
        return None
    return RecordedPayment(
        source_id=_nbr(check),
        already_recorded=True,
        # record_payment releases a check a lost answer or a crash left unreleased.
        finished=check.status not in _UNRELEASED_CHECK,
    )


@hookimpl
async def record_payment(ctx: ConnectionContext, posting: PaymentPosting) -> RecordedPayment:
    """Apply a BILL payment to its bill as a released AP check, once.

    The check's ``PaymentRef`` carries the BILL payment id; a check with that reference that is
    applied to this bill is the posting. The core looks for it first (:func:`find_payment`);
    this hook looks again before it writes, for a core older than contract 1.2 and because the
    look costs one request against a duplicate payment. One check per (BILL payment, bill),
    since the engine posts each application on its own.
    """
    client, settings = _client(ctx), _settings(ctx)
    bill_nbr = posting.payable.source_id
    record = ("payment", posting.payment_sink_id)
    existing = await _find_check(client, posting)
    if existing is not None:
        if existing.status not in _UNRELEASED_CHECK:
            return RecordedPayment(source_id=_nbr(existing), already_recorded=True)
        # Created, but the release never happened (lost answer, crash): finish the job.
        await _release(client, existing, record)
        return RecordedPayment(source_id=_nbr(existing))
    body: dict[str, Any] = {
        "Type": "Payment",
        "Vendor": posting.payable.vendor.source_id,
        "PaymentRef": posting.payment_sink_id,
        "PaymentAmount": posting.amount,
        "ApplicationDate": posting.paid_on,
        "Description": f"BILL payment {posting.payment_sink_id} ({posting.reference})"[:150],
        "Hold": False,
        "PaymentMethod": settings.payment_method,
        "CashAccount": settings.cash_account,
        "Details": [{"DocType": BILL_TYPE, "ReferenceNbr": bill_nbr, "AmountPaid": posting.amount}],
    }
    created = WireCheck.model_validate(
        await client.put("Check", body, expand=("Details",), record=record)
    )
    await _release(client, created, record)
    return RecordedPayment(source_id=_nbr(created))


def check_filter(posting: PaymentPosting) -> str:
    """The ``$filter`` of the checks that may carry a posting: its payment id, its vendor.

    Header fields only: Acumatica cannot filter on detail entities (acumatica.md §4), so the
    application to the bill is matched on the rows that come back.
    """
    return (
        f"Type eq 'Payment' and PaymentRef eq {odata_string(posting.payment_sink_id)} "
        f"and Vendor eq {odata_string(posting.payable.vendor.source_id)}"
    )


async def _find_check(client: AcumaticaClient, posting: PaymentPosting) -> WireCheck | None:
    """The check carrying ``posting``, released or not; ``None`` if there is none.

    Only the check applied to ``posting.payable`` counts: one BILL payment that pays several
    bills of a vendor is one check per bill, all with the same ``PaymentRef``. The header
    fields the server filtered on are checked again, so a server that ignored the filter
    cannot make another payment's check pass for this one.
    """
    rows = await client.list_all("Check", filter=check_filter(posting), expand=CHECK_EXPAND)
    wanted = {
        "type": "payment",
        "ref": _fold(posting.payment_sink_id),
        "vendor": _fold(posting.payable.vendor.source_id),
    }
    for row in rows:
        check = WireCheck.model_validate(row)
        # A field left out of the answer is not held against the check (a duplicate payment is
        # worse than a posting a person sees missing); one that differs is.
        given = {"type": check.type, "ref": check.payment_ref, "vendor": check.vendor}
        if any(value is not None and _fold(value) != wanted[k] for k, value in given.items()):
            continue
        if _applied_to(check, posting.payable.source_id):
            return check
    return None


def _applied_to(check: WireCheck, bill_nbr: str) -> bool:
    """Whether the check applies to the bill, before its release or after it."""
    rows = [*(check.details or ()), *(check.history or ())]
    return any(r.doc_type == BILL_TYPE and r.reference_nbr == bill_nbr for r in rows)


def _fold(text: str | None) -> str:
    # Acumatica compares strings case-insensitively (SQL Server's usual collation) and keeps
    # no padding; matching the same way keeps this check from refusing what the filter found.
    return (text or "").strip().casefold()


async def _release(client: AcumaticaClient, check: WireCheck, record: tuple[str, str]) -> None:
    keys = {"Type": check.type or "Payment", "ReferenceNbr": _nbr(check)}
    if check.status == "On Hold":  # a payment must be off hold to release (UG AP payments)
        await client.put("Check", {**keys, "Hold": False}, record=record)
    await client.invoke("Check", "ReleaseCheck", keys, record=record)


def _nbr(check: WireCheck) -> str:
    if not check.reference_nbr:
        raise InvalidRecordError(
            "payment", None, "ReferenceNbr", "Acumatica returned a check without a number"
        )
    return check.reference_nbr


# --- Reading bills -----------------------------------------------------------------------------


def bill_filter(window: ChangeWindow) -> str:
    """The ``$filter`` of changed open bills (acumatica.md §6).

    ``gt`` is the documented operator; the window's lower bound is inclusive, so the literal is
    a millisecond earlier (Acumatica keeps milliseconds at most).
    """
    parts = [f"Type eq {odata_string(BILL_TYPE)}", f"Status eq {odata_string(OPEN)}"]
    if window.since is not None:
        since = window.since.replace(microsecond=window.since.microsecond // 1000 * 1000)
        parts.append(f"LastModifiedDateTime gt {odata_datetimeoffset(since - _MS)}")
    parts.append(f"LastModifiedDateTime lt {odata_datetimeoffset(_ceil_ms(window.until))}")
    # bills_from is applied here, not in the filter: the date'…' literal is documented for newer
    # endpoints only (acumatica.md §6), and open bills are few enough to read them all.
    return " and ".join(parts)


_MS = timedelta(milliseconds=1)


def _ceil_ms(value: datetime) -> datetime:
    # The upper bound is exclusive and re-checked here; rounding it up keeps the server's
    # answer a superset of the window.
    if value.microsecond % 1000:
        value = value.replace(microsecond=value.microsecond // 1000 * 1000) + _MS
    return value


def _reference_nbr(row: dict[str, Any]) -> str:
    value = row.get("ReferenceNbr")
    if isinstance(value, dict):
        value = value.get("value")
    return str(value)


async def _read_bill(
    ctx: ConnectionContext, row: dict[str, Any], window: ChangeWindow | None
) -> Payable | RejectedRecord | None:
    """A bill row as a payable, a rejected record, or ``None`` if it is not for sending.

    With a window, what the server filtered is checked again (type, status, window, date): a
    server that ignores part of a ``$filter`` must not make the connector send a draft.
    """
    reference = _reference_nbr(row)
    try:
        bill = WireBill.model_validate(row)
    except ValidationError as exc:
        return _rejected(reference, _loc(exc), _msg(exc), None)
    if window is not None and not _eligible(bill, window, _settings(ctx)):
        return None
    try:
        vendor = await _vendor(ctx, bill)
        payable = _payable(bill, vendor, _settings(ctx), await _subaccount_ids(ctx, bill))
    except _Reject as reject:
        return _rejected(reference, reject.field, reject.reason, bill)
    except ValidationError as exc:
        return _rejected(reference, _loc(exc), _msg(exc), bill)
    return payable


def _eligible(bill: WireBill, window: ChangeWindow, settings: AcumaticaSettings) -> bool:
    if bill.type != BILL_TYPE or bill.status != OPEN:
        return False
    modified = bill.last_modified
    if modified is not None and (
        modified >= window.until or (window.since is not None and modified < window.since)
    ):
        return False
    return not (
        settings.bills_from is not None
        and bill.date is not None
        and bill.date < settings.bills_from
    )


class _Reject(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _rejected(
    reference: str, field: str | None, reason: str, bill: WireBill | None
) -> RejectedRecord:
    return RejectedRecord(
        record_type="payable",
        record_id=reference,
        field=field,
        reason=reason,
        modified_at=bill.last_modified if bill is not None else None,
    )


def _loc(exc: ValidationError) -> str | None:
    error = exc.errors(include_url=False, include_input=False)[0]
    return ".".join(str(part) for part in error["loc"]) or None


def _msg(exc: ValidationError) -> str:
    return str(exc.errors(include_url=False, include_input=False)[0]["msg"])


def _payable(
    bill: WireBill, vendor: Vendor, settings: AcumaticaSettings, subaccounts: dict[str, str]
) -> Payable:
    """Translate a bill; tax becomes lines of its own so that the lines add up to the total."""
    if not bill.vendor_ref:
        raise _Reject("VendorRef", "the bill has no vendor reference (the invoice number)")
    if bill.date is None:
        raise _Reject("Date", "the bill has no date")
    if bill.amount is None:
        raise _Reject("Amount", "the bill has no amount")
    if bill.last_modified is None:
        raise _Reject("LastModifiedDateTime", "the bill has no change time")
    if not bill.details:
        raise _Reject("Details", "the bill has no lines")
    lines: list[dict[str, Any]] = []
    for index, detail in enumerate(bill.details):
        amount = detail.amount if detail.amount is not None else detail.extended_cost
        if amount is None:
            raise _Reject(f"Details.{index}.Amount", "the line has no amount")
        if not detail.account:
            raise _Reject(f"Details.{index}.Account", "the line has no GL account")
        dimensions = {}
        if settings.subaccount_maps_to != "none" and detail.subaccount:
            dimensions[DimensionKind.SUBACCOUNT] = subaccounts.get(
                normalise_code(detail.subaccount), detail.subaccount
            )
        lines.append(
            {
                "line_id": detail.id or str(detail.row_number or index + 1),
                "amount": amount,
                "description": detail.transaction_description or detail.description,
                "account_id": detail.account,
                "dimensions": dimensions,
                "quantity": detail.qty,
                "unit_price": detail.unit_cost,
            }
        )
    lines += _tax_lines(bill, sum((line["amount"] for line in lines), Decimal(0)), settings)
    return Payable.model_validate(
        {
            "source_id": bill.reference_nbr,
            "document_number": bill.reference_nbr,
            "invoice_number": bill.vendor_ref,
            "vendor": vendor,
            "invoice_date": bill.date,
            # No terms, no due date: Acumatica then treats the bill as due on its date.
            "due_date": bill.due_date or bill.date,
            "currency": bill.currency_id or vendor.currency,
            "total": bill.amount,
            "lines": lines,
            "description": bill.description,
            "modified_at": bill.last_modified,
            "source_status": bill.status,
        }
    )


def _tax_lines(
    bill: WireBill, line_sum: Decimal, settings: AcumaticaSettings
) -> list[dict[str, Any]]:
    assert bill.amount is not None  # checked by the caller
    tax = bill.tax_total or Decimal(0)
    if line_sum == bill.amount:
        return []  # no tax, or tax included in the line amounts
    if tax == 0 or line_sum + tax != bill.amount:
        raise _Reject(
            "Amount",
            f"Amount {bill.amount} is not the sum of the lines {line_sum} plus tax {tax}",
        )
    if not settings.tax_account:
        raise _Reject(
            "TaxTotal",
            f"the bill carries tax of {tax}, but the connection has no tax_account setting "
            "to code tax lines to",
        )
    rows = [t for t in bill.tax_details or () if t.tax_amount]
    if sum((t.tax_amount or Decimal(0) for t in rows), Decimal(0)) != tax:
        rows = []  # the details disagree with the total: one line for the total
    if not rows:
        return [_tax_line("tax", tax, "Tax", settings.tax_account)]
    return [
        _tax_line(f"tax:{t.tax_id or i}", t.tax_amount or Decimal(0), f"Tax {t.tax_id or ''}",
                  settings.tax_account)
        for i, t in enumerate(rows)
    ]  # fmt: skip


def _tax_line(line_id: str, amount: Decimal, description: str, account: str) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "amount": amount,
        "description": description.strip(),
        "account_id": account,
    }


async def _vendor(ctx: ConnectionContext, bill: WireBill) -> Vendor:
    """The bill's vendor, read once per run (``ctx.state`` lives for one run)."""
    if not bill.vendor:
        raise _Reject("Vendor", "the bill has no vendor")
    cache: dict[str, Vendor | _Reject] = ctx.state.setdefault(_VENDORS, {})
    found = cache.get(bill.vendor)
    if found is None:
        row = await _client(ctx).get(
            "Vendor", bill.vendor, expand=VENDOR_EXPAND, record=("vendor", bill.vendor)
        )
        found = (
            _Reject("Vendor", f"vendor {bill.vendor} does not exist")
            if row is None
            else _to_vendor(row, bill.currency_id)
        )
        cache[bill.vendor] = found
    if isinstance(found, _Reject):
        raise found
    return found


def _to_vendor(row: dict[str, Any], currency: str | None) -> Vendor | _Reject:
    try:
        wire = WireVendor.model_validate(row)
        contact = wire.main_contact
        address = contact.address if contact else None
        return Vendor.model_validate(
            {
                "source_id": wire.vendor_id,
                "name": wire.vendor_name or wire.legal_name or wire.vendor_id,
                "email": contact.email if contact else None,
                "phone": contact.phone1 if contact else None,
                "address": None
                if address is None
                else {
                    "line1": address.address_line1,
                    "line2": address.address_line2,
                    "city": address.city,
                    "state": address.state,
                    "postal_code": address.postal_code,
                    **({"country": address.country.upper()} if address.country else {}),
                },
                "currency": wire.currency_id or currency or "USD",
                "active": (wire.status or "Active") != "Inactive",
            }
        )
    except ValidationError as exc:
        return _Reject(f"Vendor.{_loc(exc)}", f"vendor data: {_msg(exc)}")


# --- Accounts and subaccounts ------------------------------------------------------------------


def normalise_code(code: str) -> str:
    """A segmented code without its separators or case: ``"ADM-000"`` -> ``"ADM000"``.

    Whether lines carry subaccounts masked (``ADM-000``) or raw (``ADM000``) is UNCONFIRMED
    (the IDG example sends ``000000``), so both are matched to the catalog's code.
    """
    return re.sub(r"[^0-9A-Za-z]", "", code).upper()


async def _load_subaccounts(ctx: ConnectionContext) -> list[WireSubaccount]:
    rows = await _client(ctx).list_all("Subaccount")
    subaccounts = [WireSubaccount.model_validate(r) for r in rows]
    ctx.state[_SUBACCOUNTS] = {
        normalise_code(s.subaccount_cd): s.subaccount_cd for s in subaccounts
    }
    return subaccounts


async def _subaccount_ids(ctx: ConnectionContext, bill: WireBill) -> dict[str, str]:
    """Normalised code -> the catalog's code, loaded once per run when a line needs it."""
    if _settings(ctx).subaccount_maps_to == "none":
        return {}
    known: dict[str, str] | None = ctx.state.get(_SUBACCOUNTS)
    if known is None:
        if not any(d.subaccount for d in bill.details or ()):
            return {}
        await _load_subaccounts(ctx)
        known = ctx.state[_SUBACCOUNTS]
    return known


def _account(wire: WireAccount) -> Account:
    return Account(
        id=wire.account_cd,
        number=wire.account_cd,
        name=wire.description or wire.account_cd,
        kind=_ACCOUNT_KINDS.get((wire.type or "").casefold(), AccountKind.OTHER),
        active=wire.active is not False,
    )


def _subaccount(wire: WireSubaccount) -> Dimension:
    return Dimension(
        id=wire.subaccount_cd,
        kind=DimensionKind.SUBACCOUNT,
        code=wire.subaccount_cd,
        name=wire.description or wire.subaccount_cd,
        active=wire.active is not False,
    )


def match_subaccounts(
    source: AccountCatalog, sink: AccountCatalog, taken: set[tuple[str, str]]
) -> list[AccountMapping]:
    """Map each unmapped subaccount to the one BILL classification with its code, or name."""
    candidates = [d for d in sink.dimensions if d.active and d.kind in SUBACCOUNT_TARGETS]
    found: list[AccountMapping] = []
    for value in source.dimensions:
        if value.kind is not DimensionKind.SUBACCOUNT:
            continue
        if (value.kind.value, value.id) in taken:
            continue
        code = normalise_code(value.code or value.id)
        name = " ".join(value.name.casefold().split())
        by_code = [c for c in candidates if c.code and normalise_code(c.code) == code]
        by_name = [c for c in candidates if " ".join(c.name.casefold().split()) == name]
        match = by_code if by_code else by_name
        if len(match) != 1:
            continue  # none, or two (maybe of different kinds): leave it to a person
        found.append(
            AccountMapping(
                source_kind=DimensionKind.SUBACCOUNT.value,
                source_id=value.id,
                sink_kind=match[0].kind.value,
                sink_id=match[0].id,
                method=MappingMethod.PLUGIN,
            )
        )
    return found
