"""The BILL plugin's hooks: translate between the domain models and the client.

Sink side of a connection: vendors and bills go into BILL, payments come back with the bills they
pay; webhooks are verified here before anything in them is read. Registered as this module (entry
point ``ml_connector.plugins``); the client it drives lives in ``ctx.state``.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from ml_connector.description import Capability, ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import (
    ConfigurationError,
    InvalidRecordError,
    UpstreamError,
    WebhookVerificationError,
)
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountKind,
    AuthResult,
    BillResult,
    ConnectionCheck,
    Dimension,
    DimensionKind,
    Payment,
    PaymentPage,
    PaymentStatus,
    RejectedRecord,
    VendorResult,
    WebhookBatch,
    WebhookEvent,
    WebhookSubscription,
)
from ml_connector_bill.client import BillClient, RecordRef, bill_time, quoted
from ml_connector_bill.schemas import (
    BULK_BILLS_LIMIT,
    DESCRIPTION_MAX,
    MAX_IN_FLIGHT,
    REQUESTS_PER_HOUR,
    SIGNATURE_HEADER,
    SYSTEM,
    VENDOR_NAME_MAX,
    BillCredentials,
    BillSettings,
    WireBill,
    WireChartOfAccount,
    WireClassification,
    WirePayment,
    WireSubscription,
    loads_untrusted,
    sign,
)

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.models import BillDraft, ChangeWindow, Vendor

__all__ = [
    "CANONICAL_MAX_BODY",
    "MAX_WEBHOOK_BODY",
    "SINGLE_STATUS",
    "authenticate",
    "check_connection",
    "close_connection",
    "create_account",
    "create_bill",
    "create_bills",
    "describe_plugin",
    "ensure_webhook_subscription",
    "find_bill",
    "find_vendor",
    "get_payment",
    "list_accounts",
    "list_changed_payments",
    "parse_webhook",
    "upsert_vendor",
    "verify_signature",
]

log = logging.getLogger("ml_connector_bill")

_CLIENT = "bill.client"
_PENDING_SUBSCRIPTIONS = "bill.pending_subscription_keys"
_PAYMENTS_BY_UPDATE = "bill.payments_filter_by_updated_time"
SESSION_IDLE = timedelta(minutes=35)  # bill.md §2

#: ``singleStatus`` (bill.md §5, ``/docs/single-status-payment-values``) in the connector's words.
#:
#: A payment is *paid* (and recorded against the ERP bill) only once the money has left BILL for
#: the vendor: SENT, DELIVERED, CLEARED, and FUNDS_ESCHEATED (disbursed, unclaimed, handed to the
#: state; BILL says it cannot be voided, so the payer's obligation is settled). PROCESSED is *not*
#: paid: BILL has processed the payment (funds collected under its good-funds model) but has not
#: disbursed it, and it can still fail before it is sent; BILL's page does not describe it
#: further, so the conservative reading wins. FUNDING_FAILED_ACTION_NEEDED is *failed* although
#: BILL disbursed: the payer's bank was never debited and a person must wire funds, which the ERP
#: must not record as an ordinary payment. Unknown values are *in process* (not final, §8).
#: CLEARED can still flip to DISBURSEMENT_FAILED_ACTION_NEEDED (§5); a payment already recorded
#: then stays recorded (the engine does not reverse postings) and needs a person.
SINGLE_STATUS: dict[str, PaymentStatus] = {
    "SCHEDULED": PaymentStatus.SCHEDULED,
    "FUNDING_STARTED": PaymentStatus.IN_PROCESS,
    "PROCESSED": PaymentStatus.IN_PROCESS,
    "DISBURSEMENT_ON_HOLD": PaymentStatus.IN_PROCESS,
    "SENT": PaymentStatus.PAID,
    "DELIVERED": PaymentStatus.PAID,
    "CLEARED": PaymentStatus.PAID,
    "FUNDS_ESCHEATED": PaymentStatus.PAID,
    "DISBURSEMENT_FAILED_ACTION_NEEDED": PaymentStatus.FAILED,
    "DISBURSEMENT_FAILED_VENDOR_BANK_REJECTED": PaymentStatus.FAILED,
    "FUNDING_FAILED_ACTION_NEEDED": PaymentStatus.FAILED,
    "FUNDING_FAILED_VOIDED": PaymentStatus.VOIDED,
    "CANCELED": PaymentStatus.CANCELLED,
    "CANCELLED": PaymentStatus.CANCELLED,
    "VOIDED": PaymentStatus.VOIDED,
}

#: Which bill-line classification key carries each dimension (bill.md §5). ``jobId`` and
#: ``employeeId`` on bill lines are UNCONFIRMED: sent anyway, so BILL refuses them visibly
#: rather than the coding being dropped in silence. BILL has no subaccounts.
_LINE_KEYS: dict[DimensionKind, str] = {
    DimensionKind.CLASS: "accountingClassId",
    DimensionKind.DEPARTMENT: "departmentId",
    DimensionKind.LOCATION: "locationId",
    DimensionKind.ITEM: "itemId",
    DimensionKind.JOB: "jobId",
    DimensionKind.EMPLOYEE: "employeeId",
}
#: The classification lists read for account mapping (bill.md §5).
_CLASSIFICATIONS: dict[str, DimensionKind] = {
    "accounting-classes": DimensionKind.CLASS,
    "departments": DimensionKind.DEPARTMENT,
    "locations": DimensionKind.LOCATION,
    "jobs": DimensionKind.JOB,
    "employees": DimensionKind.EMPLOYEE,
    "items": DimensionKind.ITEM,
}


def _client(ctx: ConnectionContext) -> BillClient:
    client = ctx.state.get(_CLIENT)
    if client is None:
        client = ctx.state[_CLIENT] = BillClient.for_context(ctx)
    assert isinstance(client, BillClient)
    return client


def _settings(ctx: ConnectionContext) -> BillSettings:
    if not isinstance(ctx.settings, BillSettings):
        raise ConfigurationError(f"{SYSTEM}: settings must be BillSettings")
    return ctx.settings


# --- Both sides ----------------------------------------------------------------------------------


@hookimpl
def describe_plugin() -> PluginDescription:
    """Describe BILL: 3 calls in flight per organization, 20,000 an hour, bulk bills of 200."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SINK,
        settings_model=BillSettings,
        credentials_model=BillCredentials,
        limits=ConcurrencyLimits(
            max_in_flight=MAX_IN_FLIGHT,
            scope_setting="organization_id",
            requests_per_hour=REQUESTS_PER_HOUR,
            batch_size=BULK_BILLS_LIMIT,
            # Every request goes through ctx.http_client: BILL counts requests, not hook calls.
            per_request=True,
        ),
        capabilities=frozenset(
            {Capability.BULK_CREATE_BILLS, Capability.CREATE_ACCOUNTS, Capability.WEBHOOKS}
        ),
    )


@hookimpl
async def authenticate(ctx: ConnectionContext) -> AuthResult:
    """Sign in (or keep the fresh session held); the session slides for 35 idle minutes."""
    client = _client(ctx)
    await client.ensure_signed_in()
    settings = _settings(ctx)
    assert isinstance(ctx.credentials, BillCredentials)
    return AuthResult(
        principal=f"{ctx.credentials.username}@{settings.organization_id}",
        expires_at=datetime.now(UTC) + SESSION_IDLE,  # if idle; every call slides it (§2)
    )


@hookimpl
async def check_connection(ctx: ConnectionContext) -> ConnectionCheck:
    """Read the session's details: proves the credentials and the organization, writes nothing."""
    details = await _client(ctx).session_details()
    organization = _settings(ctx).organization_id
    if isinstance(details, dict):
        organization = str(details.get("organizationId") or organization)
    return ConnectionCheck(ok=True, detail=f"BILL organization {organization}")


@hookimpl
async def close_connection(ctx: ConnectionContext) -> None:
    """Log out and close the HTTP client; never raises."""
    client = ctx.state.pop(_CLIENT, None)
    if isinstance(client, BillClient):
        await client.aclose()


# --- Accounts ------------------------------------------------------------------------------------


def _account_kind(word: str | None) -> AccountKind:
    # UNCONFIRMED (bill.md §5): the account type's vocabulary is not documented.
    if not word:
        return AccountKind.EXPENSE
    word = word.upper()
    for needles, kind in (
        (("EXPENSE", "COST"), AccountKind.EXPENSE),
        (("INCOME", "REVENUE"), AccountKind.INCOME),
        (("LIABILITY", "PAYABLE", "CREDIT_CARD"), AccountKind.LIABILITY),
        (("EQUITY",), AccountKind.EQUITY),
        (("ASSET", "BANK", "RECEIVABLE"), AccountKind.ASSET),
    ):
        if any(n in word for n in needles):
            return kind
    return AccountKind.OTHER


def to_account(wire: WireChartOfAccount) -> Account | None:
    """A chart-of-accounts entry as a domain account (``None`` if it has no name)."""
    if not wire.name.strip():
        return None
    return Account(
        id=wire.id,
        number=wire.number,
        name=wire.name,
        kind=_account_kind(wire.kind),
        active=not wire.archived,
        parent_id=wire.parentId,
    )


def to_dimension(wire: WireClassification, kind: DimensionKind) -> Dimension | None:
    """A classification value as a domain dimension (``None`` if it has no name)."""
    if not wire.name.strip():
        return None
    return Dimension(
        id=wire.id, kind=kind, code=wire.shortName, name=wire.name, active=not wire.archived
    )


@hookimpl
async def list_accounts(ctx: ConnectionContext) -> AccountCatalog:
    """List the chart of accounts and every classification, archived ones as inactive."""
    client = _client(ctx)
    accounts = [a for w in await client.chart_of_accounts() if (a := to_account(w))]
    dimensions: list[Dimension] = []
    for resource, kind in _CLASSIFICATIONS.items():
        values = await client.classifications(resource)
        dimensions += [d for w in values if (d := to_dimension(w, kind))]
    return AccountCatalog(accounts=tuple(accounts), dimensions=tuple(dimensions))


@hookimpl
async def create_account(ctx: ConnectionContext, account: Account) -> Account:
    """Copy a source account into BILL's chart of accounts."""
    details: dict[str, Any] = {"type": account.kind.value.upper()}
    if account.number:
        details["number"] = account.number
    body = {"name": account.name, "account": details}
    wire = await _client(ctx).create_chart_of_account(body, RecordRef("account", account.id))
    created = to_account(wire)
    if created is None:
        raise UpstreamError("BILL created an account without a name", system=SYSTEM)
    return created


# --- Vendors -------------------------------------------------------------------------------------


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def vendor_body(vendor: Vendor) -> dict[str, Any]:
    """A vendor as BILL's create/update body (bill.md §5).

    Raises:
        InvalidRecordError: The vendor has no address, which BILL requires, or a name longer
            than BILL accepts (never cut: a shortened name could match another vendor).
    """
    if vendor.address is None:
        raise InvalidRecordError(
            "vendor", vendor.source_id, "address", "BILL requires a vendor address", system=SYSTEM
        )
    if len(vendor.name) > VENDOR_NAME_MAX:
        raise InvalidRecordError(
            "vendor",
            vendor.source_id,
            "name",
            f"the name is {len(vendor.name)} characters; BILL accepts at most {VENDOR_NAME_MAX} "
            "(the connector never cuts it): shorten it in the ERP",
            system=SYSTEM,
        )
    address = vendor.address
    return _compact(
        {
            "name": vendor.name,
            "accountType": "BUSINESS",
            "email": vendor.email,
            "phone": vendor.phone,
            "billCurrency": vendor.currency,
            "address": _compact(
                {
                    "line1": address.line1,
                    "line2": address.line2,
                    "city": address.city,
                    "stateOrProvince": address.state,
                    "zipOrPostalCode": address.postal_code,
                    "country": address.country,
                }
            ),
        }
    )


def _oldest_live(vendors: Sequence[Any]) -> Any:
    live = [v for v in vendors if not v.archived]
    return (live or list(vendors))[0] if vendors else None


@hookimpl
async def find_vendor(ctx: ConnectionContext, vendor: Vendor) -> VendorResult | None:
    """Find the oldest vendor with the same name (BILL keeps no external id, bill.md §8)."""
    found = _oldest_live(await _client(ctx).find_vendors(vendor.name))
    return None if found is None else VendorResult(sink_id=found.id, created=False)


@hookimpl
async def upsert_vendor(
    ctx: ConnectionContext, vendor: Vendor, existing_sink_id: str | None
) -> VendorResult:
    """Update the stored vendor, else adopt one with the same name, else create it.

    A vendor that already exists in BILL (entered by a clerk before the connector) is adopted by
    name, as bill.md §8 advises, rather than doubled.
    """
    client = _client(ctx)
    body = vendor_body(vendor)
    record = RecordRef("vendor", vendor.source_id)
    target = existing_sink_id
    if target is None:
        found = _oldest_live(await client.find_vendors(vendor.name))
        target = None if found is None else found.id
    if target is not None:
        updated = await client.update_vendor(target, body, record)
        if updated is not None:
            return VendorResult(sink_id=updated.id, created=False)
    created = await client.create_vendor(body, record)
    return VendorResult(sink_id=created.id, created=True)


# --- Bills ---------------------------------------------------------------------------------------


def _check_length(payable_id: str, field: str, text: str, what: str) -> None:
    """Refuse text longer than BILL accepts: cutting it would change the record in silence."""
    if len(text) > DESCRIPTION_MAX:
        raise InvalidRecordError(
            "payable",
            payable_id,
            field,
            f"the {what} is {len(text)} characters; BILL accepts at most {DESCRIPTION_MAX} "
            "(the connector never cuts it): shorten it in the ERP",
            system=SYSTEM,
        )


def bill_body(draft: BillDraft) -> dict[str, Any]:
    """A mapped payable as BILL's bill body: invoice nested, ``dueDate`` top level (bill.md §5).

    Text is sent whole or not at all: a description (of the bill or of a line) longer than BILL
    accepts (:data:`~ml_connector_bill.schemas.DESCRIPTION_MAX`) refuses the draft before anything
    is sent, so the payable goes to the exception queue with the field named.

    Raises:
        InvalidRecordError: A line is coded to a dimension BILL has no classification for, or a
            description is longer than BILL accepts (field ``description`` or
            ``lines.N.description``).
    """
    payable = draft.payable
    lines = []
    for i, line in enumerate(draft.lines):
        classifications = {"chartOfAccountId": line.sink_account_id}
        for kind, sink_id in line.classifications.items():
            key = _LINE_KEYS.get(kind)
            if key is None:
                raise InvalidRecordError(
                    "payable",
                    payable.source_id,
                    f"lines.{i}.dimensions.{kind.value}",
                    f"BILL has no {kind.value} classification",
                    system=SYSTEM,
                )
            classifications[key] = sink_id
        item: dict[str, Any] = {"amount": line.amount, "classifications": classifications}
        if line.description:
            _check_length(
                payable.source_id, f"lines.{i}.description", line.description, "line description"
            )
            item["description"] = line.description
        lines.append(item)
    description = payable.description or f"ERP document {payable.document_number}"
    _check_length(payable.source_id, "description", description, "description")
    return {
        "vendorId": draft.vendor_sink_id,
        "invoice": {
            "invoiceNumber": payable.invoice_number,
            "invoiceDate": payable.invoice_date.isoformat(),
        },
        "dueDate": payable.due_date.isoformat(),
        "description": description,
        "billLineItems": lines,
    }


def _result(bill: WireBill, *, created: bool) -> BillResult:
    return BillResult(sink_id=bill.id, created=created, paid=bill.is_paid)


@hookimpl
async def find_bill(
    ctx: ConnectionContext, vendor_sink_id: str, invoice_number: str
) -> BillResult | None:
    """Find the oldest bill of the vendor with that invoice number (unarchived first)."""
    found = await _client(ctx).find_bills(vendor_sink_id, invoice_number)
    live = [b for b in found if not b.archived] or found
    return _result(live[0], created=False) if live else None


@hookimpl
async def create_bill(ctx: ConnectionContext, draft: BillDraft) -> BillResult:
    """Create the bill, or replace ``draft.existing_sink_id`` while it is unpaid.

    A stored bill that BILL no longer has is created again; a (partly) paid one is left alone.
    """
    client = _client(ctx)
    body = bill_body(draft)
    record = RecordRef("payable", draft.payable.source_id)
    if draft.existing_sink_id is not None:
        current = await client.get_bill(draft.existing_sink_id)
        if current is not None:
            if current.is_paid:
                return _result(current, created=False)
            return _result(await client.replace_bill(current.id, body, record), created=False)
    return _result(await client.create_bill(body, record), created=True)


@hookimpl
async def create_bills(ctx: ConnectionContext, drafts: Sequence[BillDraft]) -> list[BillResult]:
    """Create new bills in one all-or-nothing call (``POST /v3/bills/bulk``, at most 200)."""
    if len(drafts) > BULK_BILLS_LIMIT:
        raise ValueError(f"BILL takes at most {BULK_BILLS_LIMIT} bills per bulk call")
    if not drafts:
        return []
    single = drafts[0].payable.source_id if len(drafts) == 1 else None
    bodies = [bill_body(d) for d in drafts]
    created = await _client(ctx).create_bills(bodies, RecordRef("payable", single))
    if len(created) != len(drafts):
        raise UpstreamError(
            f"BILL created {len(created)} bills for a batch of {len(drafts)}", system=SYSTEM
        )
    # BILL answers in the order sent (bill.md §4); pair by vendor and invoice number anyway,
    # so a reordered answer can never link a payable to another payable's bill.
    unpaired: dict[tuple[str | None, str], list[WireBill]] = {}
    for bill in created:
        unpaired.setdefault((bill.vendorId, (bill.invoice_number or "").strip()), []).append(bill)
    results = []
    for draft in drafts:
        invoice = draft.payable.invoice_number
        same = unpaired.get((draft.vendor_sink_id, invoice)) or unpaired.get((None, invoice), [])
        if not same:
            raise UpstreamError(
                f"BILL's bulk answer has no bill for invoice {draft.payable.invoice_number}",
                system=SYSTEM,
            )
        results.append(_result(same.pop(0), created=True))
    return results


# --- Payments ------------------------------------------------------------------------------------


def _payment_status(wire: WirePayment) -> PaymentStatus:
    word = (wire.singleStatus or wire.status or "").strip().upper()
    return SINGLE_STATUS.get(word, PaymentStatus.IN_PROCESS)


#: Domain field -> BILL's name, so a rejected payment names the field BILL sent.
_WIRE_NAMES = {
    "vendor_sink_id": "vendorId",
    "process_date": "processDate",
    "updated_at": "updatedTime",
    "applications": "billPayments",
}


def to_payment(raw: Any) -> Payment | RejectedRecord:
    """A BILL payment as a domain payment with its bill applications, or why it cannot be one.

    Applications come from ``billPayments`` (bill.md §5), else from ``billId`` for the whole
    amount; they must add up to the payment's amount, or the ERP would be told a wrong sum.
    """
    record_id = raw.get("id") if isinstance(raw, dict) else None

    def reject(field: str | None, reason: str) -> RejectedRecord:
        return RejectedRecord(
            record_type="payment",
            record_id=record_id if isinstance(record_id, str) else None,
            field=field,
            reason=reason,
        )

    try:
        wire = WirePayment.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return reject(".".join(str(p) for p in error["loc"]) or None, error["msg"])
    if wire.amount is None:
        return reject("amount", "the payment has no amount")
    applications = [(a.billId, a.amount, a.id) for a in wire.billPayments]
    if not applications and wire.billId:
        applications = [(wire.billId, wire.amount, None)]
    if not applications:
        return reject("billPayments", "the payment is applied to no bill")
    applied = sum((amount for _, amount, _ in applications), Decimal(0))
    if applied != wire.amount:
        return reject("billPayments", f"the applications add up to {applied}, not to {wire.amount}")
    vendor_id = wire.vendorId or (wire.vendor.id if wire.vendor else None)
    try:
        return Payment.model_validate(
            {
                "sink_id": wire.id,
                "vendor_sink_id": vendor_id,
                "amount": wire.amount,
                "process_date": wire.processDate,
                "status": _payment_status(wire),
                "applications": [
                    {"bill_sink_id": bill, "amount": amount, "application_id": application}
                    for bill, amount, application in applications
                ],
                "reference": wire.transactionNumber or None,
                "updated_at": wire.updatedTime or wire.createdTime,
            }
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        head = str(error["loc"][0]) if error["loc"] else ""
        return reject(_WIRE_NAMES.get(head, head or None), error["msg"])


def _encode_token(mode: str, page: str | None) -> str:
    raw = json.dumps({"m": mode, "p": page}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str | None]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        mode, page = state["m"], state["p"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamError("the payments page token is not one this plugin issued") from None
    if mode not in ("updated", "scan") or not (page is None or isinstance(page, str)):
        raise UpstreamError("the payments page token is not one this plugin issued")
    return mode, page


def _in_window(payment: Payment, window: ChangeWindow) -> bool:
    since = window.since
    return (since is None or payment.updated_at >= since) and payment.updated_at < window.until


async def _payments_page(
    ctx: ConnectionContext, window: ChangeWindow, mode: str, page: str | None
) -> tuple[list[Any], str | None] | None:
    """One page in ``mode``; ``None`` when BILL refuses the ``updatedTime`` filter."""
    client = _client(ctx)
    if mode == "scan":
        return await client.payments_page([], "createdTime:asc", page)
    # Milliseconds are floored: a little too much is read, and the window is applied exactly here.
    until = bill_time(window.until + timedelta(milliseconds=1))
    filters = [f"updatedTime:lt:{quoted(until)}"]
    if window.since is not None:
        filters.insert(0, f"updatedTime:gte:{quoted(bill_time(window.since))}")
    try:
        fetched = await client.payments_page(filters, "updatedTime:asc", page)
    except UpstreamError as exc:
        # Only a plain refusal of the request: a throttle may also come as 400 (§8).
        if type(exc) is not UpstreamError or exc.status != 400 or page is not None:
            raise
        log.warning("BILL refused the updatedTime filter on payments; reading them all")
        ctx.state[_PAYMENTS_BY_UPDATE] = False
        return None
    ctx.state[_PAYMENTS_BY_UPDATE] = True
    return fetched


@hookimpl
async def list_changed_payments(
    ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
) -> PaymentPage:
    """Read one page of payments changed in ``[since, until)``, any status, with applications.

    BILL's ``updatedTime`` filter on payments is UNCONFIRMED (bill.md §6, §8): it is tried, and
    if BILL refuses it (400) the connection falls back to reading every payment by creation time
    and keeping those changed in the window, which also re-reads payments that are not final.
    """
    mode, page = ("updated", None) if page_token is None else _decode_token(page_token)
    if mode == "updated" and ctx.state.get(_PAYMENTS_BY_UPDATE) is False:
        mode = "scan"
    fetched = await _payments_page(ctx, window, mode, page)
    if fetched is None:  # BILL refused the filter on the first page: read them all
        mode = "scan"
        fetched = await _payments_page(ctx, window, mode, page)
    assert fetched is not None
    raws, next_page = fetched
    items: list[Payment] = []
    rejected: list[RejectedRecord] = []
    for raw in raws:
        view = to_payment(raw)
        if isinstance(view, Payment):
            if _in_window(view, window):
                items.append(view)
        else:
            rejected.append(view)
    return PaymentPage(
        items=tuple(items),
        rejected=tuple(rejected),
        next_page_token=None if next_page is None else _encode_token(mode, next_page),
    )


@hookimpl
async def get_payment(ctx: ConnectionContext, sink_id: str) -> Payment | None:
    """Read one payment; a payment that cannot be read as one raises InvalidRecordError."""
    raw = await _client(ctx).get_payment(sink_id)
    if raw is None:
        return None
    view = to_payment(raw)
    if isinstance(view, RejectedRecord):
        raise InvalidRecordError("payment", sink_id, view.field, view.reason, system=SYSTEM)
    return view


# --- Webhook subscriptions -----------------------------------------------------------------------


def _subscription_body(ctx: ConnectionContext, url: str, events: Sequence[str]) -> dict[str, Any]:
    return {
        "name": f"ml-connector {ctx.connection}"[:100],
        "status": {"enabled": True},
        "events": [{"type": e, "version": "1"} for e in events],
        "notificationUrl": url,
    }


async def _adopt_or_create(
    ctx: ConnectionContext, client: BillClient, url: str, events: Sequence[str]
) -> tuple[WireSubscription, SecretStr]:
    """A subscription for ``url`` whose signing key we hold.

    The idempotency key of a create is kept in ``ctx.state`` until the create succeeds, so an
    engine retry after a lost answer replays it and BILL returns the first answer, key included
    (bill.md §6, 24 hours). A subscription to the URL that exists without a key we know (BILL
    refuses a duplicate, and shows a key only once) gets its key rotated instead.
    """
    pending: dict[str, str] = ctx.state.setdefault(_PENDING_SUBSCRIPTIONS, {})
    slot = url + "|" + ",".join(events)
    if slot not in pending:
        same_url = [s for s in await client.subscriptions() if s.notificationUrl == url]
        if same_url:
            key = await client.rotate_security_key(same_url[0].id, str(uuid.uuid4()))
            return same_url[0], key
        pending[slot] = str(uuid.uuid4())
    created = await client.create_subscription(_subscription_body(ctx, url, events), pending[slot])
    del pending[slot]
    if created.securityKey is None:
        raise UpstreamError(
            f"BILL created subscription {created.id} without a securityKey", system=SYSTEM
        )
    return created, created.securityKey


@hookimpl
async def ensure_webhook_subscription(
    ctx: ConnectionContext,
    notification_url: str,
    events: Sequence[str],
    existing: WebhookSubscription | None,
) -> WebhookSubscription:
    """Create, adopt, re-enable or update the subscription; the key only when new or rotated.

    BILL disables a subscription after its retries fail (bill.md §6); it is re-enabled here with
    a ``PATCH`` carrying every field. The returned ``security_key`` must be stored encrypted at
    once by the caller: BILL never shows it again.
    """
    client = _client(ctx)
    wanted = tuple(sorted(set(events)))
    current = None if existing is None else await client.get_subscription(existing.sink_id)
    key: SecretStr | None = None
    if current is None:
        current, key = await _adopt_or_create(ctx, client, notification_url, wanted)
    if (
        not current.status.enabled
        or current.event_types != wanted
        or current.notificationUrl != notification_url
    ):
        log.info("re-enabling or updating BILL webhook subscription %s", current.id)
        current = await client.update_subscription(
            current.id, _subscription_body(ctx, notification_url, wanted)
        )
    return WebhookSubscription(
        sink_id=current.id,
        notification_url=current.notificationUrl or notification_url,
        events=current.event_types or wanted,
        enabled=current.status.enabled,
        security_key=key,
    )


# --- Webhook deliveries --------------------------------------------------------------------------

MAX_WEBHOOK_BODY = 1 << 20
"""The largest delivery verified, in bytes; a larger one is refused without being read.

BILL's payment events are a few kilobytes (bill.md §6: the payment, its bill ids, the vendor); a
megabyte leaves room for a bill event with hundreds of lines.
"""

CANONICAL_MAX_BODY = 16 * 1024
"""The largest delivery re-serialised when its raw bytes do not match the signature.

What BILL signs is UNCONFIRMED (bill.md §6): the raw body, or "the minified JSON payload". The
fallback parses and re-writes the body, so it runs only on bodies this small, which keeps a forged
delivery's cost to a few milliseconds (about 5 at this size). A payment event, the one the
connector subscribes to, is a few kilobytes even with a hundred bill ids.
"""

_DIGEST_LENGTH = 44  # base64 of a 32-byte HMAC-SHA256, with its padding
_MAX_TEXT = 255  # the longest event id, type or entity id kept (the store's id columns)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


# A non-integral number's text as received, wrapped so json.dumps writes it as a string it can be
# told by; the wrapping is then cut out again. A string of BILL's that starts and ends with NUL
# would lose its quotes too: that only changes which bytes are tried, never what verifies.
_NUMBER_MARK = "\x00"
_MARKED_OPEN, _MARKED_CLOSE = b'"\\u0000', b'\\u0000"'


def _marked(text: str) -> str:
    return f"{_NUMBER_MARK}{text}{_NUMBER_MARK}"


def _minified(value: Any, *, ascii_only: bool) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def _canonical_forms(body: bytes, *, inner: bool = True) -> list[bytes]:
    """The re-serialisations BILL may have signed (bill.md §6: "the minified JSON payload").

    Numbers as received first (``230.00`` stays ``230.00``), then Python's own minified forms;
    for a payload sent as a JSON string, the inner document too (one level). Used only to compute
    HMACs, only on bodies up to :data:`CANONICAL_MAX_BODY`, and only once the body passed
    :func:`~ml_connector_bill.schemas.loads_untrusted`'s limits (depth, number length, UTF-8, no
    lone surrogates): a body outside them has no canonical form, so only its raw bytes can
    match. Every step after the checks is C code (json), linear in the body's size.
    """
    if len(body) > CANONICAL_MAX_BODY:
        return []
    try:
        plain = loads_untrusted(body, exact=False)
        as_received = json.loads(body, parse_float=_marked)  # within the limits just checked
        forms = [
            _minified(as_received, ascii_only=False)
            .replace(_MARKED_OPEN, b"")
            .replace(_MARKED_CLOSE, b""),
            _minified(plain, ascii_only=True),
            _minified(plain, ascii_only=False),
        ]
    except (ValueError, RecursionError):  # not JSON, outside the limits, or not UTF-8-encodable
        return []
    if inner and isinstance(plain, str):
        forms.append(plain.encode())
        forms += _canonical_forms(plain.encode(), inner=False)
    return forms


def verify_signature(headers: Mapping[str, str], body: bytes, security_key: str) -> None:
    """Check ``x-bill-sha-signature`` against the body, in constant time, before reading it.

    What BILL signs is UNCONFIRMED (bill.md §6): the raw body is checked first, then (for bodies
    up to :data:`CANONICAL_MAX_BODY`) its minified re-serialisations. A whitespace-only change
    therefore still verifies (the content is the one BILL signed); any change to the content
    does not. A body over :data:`MAX_WEBHOOK_BODY` or a header that cannot be a base64
    HMAC-SHA256 is refused before any work on the body.

    Raises:
        WebhookVerificationError: The header is missing or no form of the body matches.
    """
    provided = _header(headers, SIGNATURE_HEADER)
    if not provided:
        raise WebhookVerificationError(f"the delivery has no {SIGNATURE_HEADER} header")
    # "backslashreplace": a header value is whatever the sender wrote; comparing must not raise.
    given = provided.strip().encode("utf-8", "backslashreplace")
    if len(given) != _DIGEST_LENGTH:
        raise WebhookVerificationError("the webhook signature is not a base64 HMAC-SHA256")
    if len(body) > MAX_WEBHOOK_BODY:
        raise WebhookVerificationError(
            f"the delivery is larger than {MAX_WEBHOOK_BODY} bytes; nothing in it was read"
        )
    if hmac.compare_digest(sign(body, security_key).encode(), given):
        return
    for form in _canonical_forms(body):
        if form != body and hmac.compare_digest(sign(form, security_key).encode(), given):
            return
    raise WebhookVerificationError("the webhook signature does not match the body")


_ENTITIES = ("vendor", "bill", "payment")


def _refusal(event_id: str | None, field: str | None, reason: str) -> InvalidRecordError:
    # A signed delivery the connector cannot use: the core answers it 200 (BILL would retry it,
    # then disable the subscription) and lists it in the exception queue under the event id.
    return InvalidRecordError("webhook", event_id, field, reason, system=SYSTEM)


def _text(value: Any) -> str | None:
    """``value`` if it is a usable id or name: a non-blank string the store can hold."""
    if isinstance(value, str) and value.strip() and len(value) <= _MAX_TEXT:
        return value
    return None


def _shown(value: str) -> str:
    # Reasons name the value, shortened: they are shown to a person and stored.
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _event(data: Any, organization_id: str) -> tuple[WebhookEvent, str | None]:
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        raise _refusal(None, "metadata", "the delivery has no metadata")
    event_id = _text(metadata.get("eventId"))
    if event_id is None:
        raise _refusal(None, "metadata.eventId", "is missing or not an id")
    event_type = _text(metadata.get("eventType"))
    if event_type is None:
        raise _refusal(event_id, "metadata.eventType", "is missing or not an event type")
    organization = metadata.get("organizationId")
    if organization is not None and organization != organization_id:
        raise _refusal(event_id, "metadata.organizationId", "the event is for another organization")
    entity_type = event_type.split(".", 1)[0]
    if entity_type not in _ENTITIES:
        raise _refusal(
            event_id, "metadata.eventType", f"{_shown(event_type)} is not an event this handles"
        )
    entity = data.get(entity_type)
    entity_id = _text(entity.get("id")) if isinstance(entity, dict) else None
    if entity_id is None:
        raise _refusal(event_id, entity_type, f"the event carries no {entity_type} with an id")
    subscription = metadata.get("subscriptionId")
    # Payload values are hints (the engine re-reads the payment); JSON-safe copies only.
    payload = json.loads(json.dumps(entity, default=str))
    event = WebhookEvent(
        event_id=event_id,
        event_type=event_type,
        entity_type=entity_type,
        entity_id=entity_id,
        payload=payload,
    )
    return event, subscription if isinstance(subscription, str) else None


@hookimpl
async def parse_webhook(
    ctx: ConnectionContext,
    headers: Mapping[str, str],
    body: bytes,
    security_key: SecretStr,
) -> WebhookBatch:
    """Verify the delivery's signature, then parse its vendor, bill or payment event.

    Local: no call to BILL. The body is read only after the signature matched, and then with
    bounded depth and number length too: a signed body is BILL's, but must not cost more than
    linear time either.

    Raises:
        WebhookVerificationError: The signature is missing or does not match.
        InvalidRecordError: The delivery is signed but not an event this plugin can use (not JSON
            within the limits, another organization's, an unhandled event type, no entity id);
            ``record_id`` is its event id when it has one.
    """
    verify_signature(headers, body, security_key.get_secret_value())
    try:
        data = loads_untrusted(body)
        if isinstance(data, str):  # bill.md §6: "JSON-escaped and presented as a string"
            data = loads_untrusted(data.encode())
    except ValueError as exc:
        raise _refusal(None, None, f"the body cannot be read: {exc}") from None
    organization_id = _settings(ctx).organization_id
    parsed = [
        _event(item, organization_id) for item in (data if isinstance(data, list) else [data])
    ]
    if not parsed:
        raise _refusal(None, None, "the delivery carries no event")
    return WebhookBatch(subscription_id=parsed[0][1], events=tuple(e for e, _ in parsed))
