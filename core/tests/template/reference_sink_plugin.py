"""The answer key of the sink template: its ``plugin.py`` with every hook implemented.

Tests copy this file over a rendered sink plugin's ``plugin.py`` (so its generated conformance
tests must pass), which is why it imports its siblings relatively: it works in a package of any
name. It uses the rendered ``client.py``, ``schemas.py`` and package metadata as they are, so it
also proves that they are enough to implement the contract. Not shipped: a partner's own
implementation is the point of the template.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from ml_connector import ConcurrencyLimits, PluginDescription, Role, hookimpl
from ml_connector.errors import ConfigurationError, ConflictError, InvalidRecordError
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountKind,
    AuthResult,
    BillResult,
    ConnectionCheck,
    Payment,
    PaymentPage,
    PaymentStatus,
    RejectedRecord,
    VendorResult,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from . import PLUGIN_INFO, schemas
from .client import PayablesClient

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.models import BillDraft, ChangeWindow, Vendor

__all__ = ["Credentials", "Settings"]

SYSTEM: str = PLUGIN_INFO["system"]
_CLIENT = "client"
_KINDS = {kind.value: kind for kind in AccountKind}
#: The API's payment status words in the connector's; the money has left once it is ``sent``.
#: A word the API adds later is ``in_process``: never paid by mistake.
_STATUS = {
    "scheduled": PaymentStatus.SCHEDULED,
    "processing": PaymentStatus.IN_PROCESS,
    "sent": PaymentStatus.PAID,
    "cleared": PaymentStatus.PAID,
    "failed": PaymentStatus.FAILED,
    "cancelled": PaymentStatus.CANCELLED,
    "voided": PaymentStatus.VOIDED,
}


class Settings(BaseModel):
    """Where the system is and which organization to write to (no secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: Annotated[str, Field(min_length=1, description="The API's base URL.")]
    organization_id: Annotated[
        str, Field(min_length=1, description="The organization bills go to, e.g. ORG-1001.")
    ]
    page_size: Annotated[int, Field(ge=1, le=100, description="Records per list request.")] = 50


class Credentials(BaseModel):
    """The API user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, Field(min_length=1, description="The API user.")]
    password: Annotated[SecretStr, Field(description="The API user's password.")]


@hookimpl
def describe_plugin() -> PluginDescription:
    """Describe the plugin: 3 requests in flight per organization, 10,000 an hour."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SINK,
        settings_model=Settings,
        credentials_model=Credentials,
        limits=ConcurrencyLimits(
            max_in_flight=3,
            scope_setting="organization_id",
            requests_per_hour=10_000,
            per_request=True,
        ),
    )


# --- Both sides --------------------------------------------------------------------------------


@hookimpl
async def authenticate(ctx: ConnectionContext[Settings, Credentials]) -> AuthResult:
    """Sign in, keeping the client in ``ctx.state``."""
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, PayablesClient):
        settings, credentials = ctx.settings, ctx.credentials
        client = PayablesClient(
            ctx.http_client(settings.base_url),
            settings.organization_id,
            credentials.username,
            credentials.password,
            page_size=settings.page_size,
        )
        ctx.state[_CLIENT] = client
    await client.sign_in()
    return AuthResult(
        principal=f"{client.username}@{client.organization_id}", expires_at=client.expires_at
    )


@hookimpl
async def check_connection(ctx: ConnectionContext[Settings, Credentials]) -> ConnectionCheck:
    """Read the organization signed in to."""
    organization = await _client(ctx).organization()
    return ConnectionCheck(ok=True, detail=f"signed in to {organization.name} ({organization.id})")


@hookimpl
async def list_accounts(ctx: ConnectionContext[Settings, Credentials]) -> AccountCatalog:
    """The chart of accounts, inactive accounts included."""
    accounts = await _client(ctx).accounts()
    return AccountCatalog(
        accounts=tuple(
            Account(
                id=a.id,
                number=a.number,
                name=a.name,
                kind=_KINDS.get(a.type, AccountKind.OTHER),
                active=a.active,
            )
            for a in accounts
        )
    )


@hookimpl
async def close_connection(ctx: ConnectionContext[Settings, Credentials]) -> None:
    """Sign out and close the HTTP client."""
    client = ctx.state.pop(_CLIENT, None)
    if isinstance(client, PayablesClient):
        await client.close()


# --- Vendors -----------------------------------------------------------------------------------


@hookimpl
async def upsert_vendor(
    ctx: ConnectionContext[Settings, Credentials], vendor: Vendor, existing_sink_id: str | None
) -> VendorResult:
    """Update the stored vendor, or create it (again, if the API no longer has it)."""
    client = _client(ctx)
    body = _new_vendor(vendor)
    record = ("vendor", vendor.source_id)
    if existing_sink_id is not None:
        updated = await client.update_vendor(existing_sink_id, body, record)
        if updated is not None:
            return VendorResult(sink_id=updated.id, created=False)
    created = await client.create_vendor(body, record)
    return VendorResult(sink_id=created.id, created=True)


@hookimpl
async def find_vendor(
    ctx: ConnectionContext[Settings, Credentials], vendor: Vendor
) -> VendorResult | None:
    """The oldest vendor carrying the source id, else the oldest with the same name."""
    client = _client(ctx)
    found = await client.find_vendors(external_id=vendor.source_id)
    if not found:
        found = await client.find_vendors(name=vendor.name)
    return VendorResult(sink_id=found[0].id, created=False) if found else None


# --- Bills -------------------------------------------------------------------------------------


@hookimpl
async def create_bill(
    ctx: ConnectionContext[Settings, Credentials], draft: BillDraft
) -> BillResult:
    """Create the bill, or replace the stored one while it is unpaid; a paid one is kept."""
    client = _client(ctx)
    body = _new_bill(draft)
    record = ("payable", draft.payable.source_id)
    if draft.existing_sink_id is not None:
        current = await client.bill(draft.existing_sink_id)
        if current is not None:
            if current.is_paid:
                return BillResult(sink_id=current.id, paid=True)
            try:
                updated = await client.update_bill(current.id, body, record)
            except ConflictError as exc:
                if exc.code != "bill_paid":
                    raise
                return BillResult(sink_id=current.id, paid=True)  # paid since it was read
            return BillResult(sink_id=updated.id, paid=updated.is_paid)
    created = await client.create_bill(body, record)
    return BillResult(sink_id=created.id, created=True, paid=created.is_paid)


@hookimpl
async def find_bill(
    ctx: ConnectionContext[Settings, Credentials], vendor_sink_id: str, invoice_number: str
) -> BillResult | None:
    """The vendor's oldest bill with this invoice number."""
    found = await _client(ctx).find_bills(vendor_sink_id, invoice_number)
    return BillResult(sink_id=found[0].id, paid=found[0].is_paid) if found else None


# --- Payments ----------------------------------------------------------------------------------


@hookimpl
async def list_changed_payments(
    ctx: ConnectionContext[Settings, Credentials], window: ChangeWindow, page_token: str | None
) -> PaymentPage:
    """One page of payments changed in the window; unreadable ones are rejected, not raised."""
    rows, cursor = await _client(ctx).changed_payments(window.since, window.until, page_token)
    items: list[Payment] = []
    rejected: list[RejectedRecord] = []
    for row in rows:
        try:
            items.append(_payment(schemas.Payment.model_validate(row)))
        except InvalidRecordError as exc:
            rejected.append(_rejected(row, exc.field, exc.reason))
        except ValidationError as exc:
            rejected.append(_rejected(row, *_first_error(exc)))
    return PaymentPage(items=tuple(items), rejected=tuple(rejected), next_page_token=cursor)


@hookimpl
async def get_payment(
    ctx: ConnectionContext[Settings, Credentials], sink_id: str
) -> Payment | None:
    """One payment; one that cannot be read as a payment raises InvalidRecordError."""
    row = await _client(ctx).payment(sink_id)
    if row is None:
        return None
    try:
        return _payment(schemas.Payment.model_validate(row))
    except ValidationError as exc:
        field, reason = _first_error(exc)
        raise InvalidRecordError("payment", sink_id, field, reason, system=SYSTEM) from exc


# --- Mapping -----------------------------------------------------------------------------------


def _client(ctx: ConnectionContext[Settings, Credentials]) -> PayablesClient:
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, PayablesClient):
        raise ConfigurationError(f"{SYSTEM}: not signed in (authenticate was not called)")
    return client


def _new_vendor(vendor: Vendor) -> schemas.NewVendor:
    address = vendor.address
    return schemas.NewVendor(
        name=vendor.name,
        email=vendor.email,
        phone=vendor.phone,
        address=None
        if address is None
        else schemas.Address(
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            region=address.state,
            postal_code=address.postal_code,
            country=address.country,
        ),
        currency=vendor.currency,
        external_id=vendor.source_id,
    )


def _new_bill(draft: BillDraft) -> schemas.NewBill:
    payable = draft.payable
    for i, line in enumerate(draft.lines):
        if line.classifications:  # refused visibly rather than dropped in silence
            kinds = ", ".join(sorted(kind.value for kind in line.classifications))
            raise InvalidRecordError(
                "payable",
                payable.source_id,
                f"lines.{i}.classifications",
                f"the API has no dimensions to code a line to ({kinds})",
                system=SYSTEM,
            )
    description = payable.description or f"ERP document {payable.document_number}"
    return schemas.NewBill(
        vendor_id=draft.vendor_sink_id,
        invoice_number=payable.invoice_number,
        invoice_date=payable.invoice_date,
        due_date=payable.due_date,
        currency=payable.currency,
        description=description[:4000],
        lines=[
            schemas.NewBillLine(
                account_id=line.sink_account_id,
                amount=line.amount,
                description=None if line.description is None else line.description[:4000],
            )
            for line in draft.lines
        ],
    )


def _payment(wire: schemas.Payment) -> Payment:
    """The domain payment; raises InvalidRecordError or ValidationError naming the field."""
    applied = sum((a.amount for a in wire.applications), Decimal(0))
    if applied != wire.amount:
        reason = f"the applications add up to {applied}, not to the amount {wire.amount}"
        raise InvalidRecordError("payment", wire.id, "applications", reason, system=SYSTEM)
    return Payment.model_validate(
        {
            "sink_id": wire.id,
            "vendor_sink_id": wire.vendor_id,
            "amount": wire.amount,
            "process_date": wire.process_date,
            "status": _STATUS.get(wire.status, PaymentStatus.IN_PROCESS),
            "applications": [
                {"bill_sink_id": a.bill_id, "amount": a.amount, "application_id": a.id}
                for a in wire.applications
            ],
            "reference": wire.reference,
            "updated_at": wire.updated_at,
        }
    )


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem as ``(dotted field, reason)``, e.g. ``("applications.0.amount", …)``."""
    first = exc.errors(include_url=False)[0]
    return ".".join(str(part) for part in first["loc"]) or None, first["msg"]


def _rejected(row: dict[str, Any], field: str | None, reason: str) -> RejectedRecord:
    record_id = row.get("id")
    return RejectedRecord(
        record_type="payment",
        record_id=None if record_id is None else str(record_id),
        field=field,
        reason=reason,
    )
