"""The answer key of the plugin template: its ``plugin.py`` with every hook implemented.

Tests copy this file over a rendered plugin's ``plugin.py`` (so its generated conformance tests
must pass), which is why it imports its siblings relatively: it works in a package of any name.
It uses the rendered ``client.py``, ``schemas.py`` and package metadata as they are, so it also
proves that they are enough to implement the contract. Not shipped: a partner's own
implementation is the point of the template.

It is linted with the rendered plugin's own ruff settings (``ml_connector`` third-party; see
``ruff.toml`` here), so it passes ``ruff check`` in a rendered plugin as well as here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from ml_connector import ConcurrencyLimits, PluginDescription, Role, hookimpl
from ml_connector.errors import ConfigurationError, InvalidRecordError
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountKind,
    Address,
    AuthResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
    Vendor,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from . import PLUGIN_INFO, schemas
from .client import ErpClient

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.models import ChangeWindow, PaymentPosting

__all__ = ["Credentials", "Settings"]

SYSTEM: str = PLUGIN_INFO["system"]
_CLIENT = "client"
_VENDORS = "vendors"
_KINDS = {kind.value: kind for kind in AccountKind}


class Settings(BaseModel):
    """Where the system is and how to read it (no secrets here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: Annotated[str, Field(min_length=1, description="The API's base URL.")]
    page_size: Annotated[int, Field(ge=1, le=100, description="Records per list request.")] = 100


class Credentials(BaseModel):
    """The API client credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: Annotated[str, Field(min_length=1, description="The API client id.")]
    client_secret: Annotated[SecretStr, Field(description="The API client secret.")]


@hookimpl
def describe_plugin() -> PluginDescription:
    """Describe the plugin: schemas, limits."""
    return PluginDescription(
        system=SYSTEM,
        role=Role.SOURCE,
        settings_model=Settings,
        credentials_model=Credentials,
        limits=ConcurrencyLimits(max_in_flight=4),
    )


# --- Both sides --------------------------------------------------------------------------------


@hookimpl
async def authenticate(ctx: ConnectionContext[Settings, Credentials]) -> AuthResult:
    """Sign in and keep the client in ``ctx.state``."""
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, ErpClient):
        client = ErpClient(
            ctx.http_client(ctx.settings.base_url),
            ctx.credentials.client_id,
            ctx.credentials.client_secret,
            page_size=ctx.settings.page_size,
        )
        ctx.state[_CLIENT] = client
    await client.sign_in()
    return AuthResult(principal=client.client_id, expires_at=client.expires_at)


@hookimpl
async def check_connection(ctx: ConnectionContext[Settings, Credentials]) -> ConnectionCheck:
    """Read the company: the cheapest read there is."""
    company = await _client(ctx).company()
    return ConnectionCheck(ok=True, detail=f"signed in to {company.name} ({company.id})")


@hookimpl
async def list_accounts(ctx: ConnectionContext[Settings, Credentials]) -> AccountCatalog:
    """Every GL account, active or not."""
    accounts = await _client(ctx).accounts()
    return AccountCatalog(
        accounts=tuple(
            Account(
                id=a.code,
                number=a.code,
                name=a.name,
                kind=_KINDS.get(a.type, AccountKind.OTHER),
                active=a.active,
            )
            for a in accounts
        )
    )


@hookimpl
async def close_connection(ctx: ConnectionContext[Settings, Credentials]) -> None:
    """Revoke the token and close the client; nothing to do without one."""
    client = ctx.state.pop(_CLIENT, None)
    ctx.state.pop(_VENDORS, None)
    if isinstance(client, ErpClient):
        await client.close()


# --- Source ------------------------------------------------------------------------------------


@hookimpl
async def list_changed_payables(
    ctx: ConnectionContext[Settings, Credentials], window: ChangeWindow, page_token: str | None
) -> PayablePage:
    """One page of approved bills; purchase orders and bills on hold are skipped."""
    rows, next_token = await _client(ctx).changed_bills(window.since, window.until, page_token)
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    for row in rows:
        if not _payable_row(row):  # the API cannot filter these; they must not be paid
            continue
        try:
            items.append(await _payable(ctx, schemas.Bill.model_validate(row)))
        except InvalidRecordError as exc:
            rejected.append(_rejected(row, exc.field, exc.reason))
        except ValidationError as exc:
            rejected.append(_rejected(row, *_first_error(exc)))
    return PayablePage(items=tuple(items), rejected=tuple(rejected), next_page_token=next_token)


@hookimpl
async def get_payable(
    ctx: ConnectionContext[Settings, Credentials], source_id: str
) -> Payable | None:
    """One bill, whatever its status; a purchase order is there but is no payable."""
    row = await _client(ctx).bill(source_id)
    if row is None:
        return None
    if (kind := row.get("type", "bill")) != "bill":
        reason = f"a {kind}, not a bill"
        raise InvalidRecordError("payable", source_id, "type", reason, system=SYSTEM)
    try:
        return await _payable(ctx, schemas.Bill.model_validate(row))
    except ValidationError as exc:
        field, reason = _first_error(exc)
        raise InvalidRecordError("payable", source_id, field, reason, system=SYSTEM) from exc


@hookimpl
async def find_payment(
    ctx: ConnectionContext[Settings, Credentials], posting: PaymentPosting
) -> RecordedPayment | None:
    """The payment carrying this sink payment's id on this bill, if there is one."""
    bill_id = posting.payable.source_id
    existing = await _client(ctx).payments(
        bill_id=bill_id, external_reference=posting.payment_sink_id
    )
    return RecordedPayment(source_id=existing[0].id, already_recorded=True) if existing else None


@hookimpl
async def record_payment(
    ctx: ConnectionContext[Settings, Credentials], posting: PaymentPosting
) -> RecordedPayment:
    """Post the payment with the sink payment's id as its external reference."""
    client = _client(ctx)
    bill_id = posting.payable.source_id
    created = await client.create_payment(
        schemas.NewPayment(
            bill_id=bill_id,
            amount=posting.amount,
            paid_on=posting.paid_on,
            external_reference=posting.payment_sink_id,
            memo=posting.reference,
        )
    )
    return RecordedPayment(source_id=created.id)


# --- Mapping -----------------------------------------------------------------------------------


def _payable_row(row: dict[str, Any]) -> bool:
    """Whether a listed row is a bill that may be paid: not a purchase order, not on hold.

    Read before the row is parsed, so a record that must not move is skipped even when it would
    not parse (it is no exception to queue).
    """
    return row.get("type", "bill") == "bill" and row.get("on_hold") is not True


def _client(ctx: ConnectionContext[Settings, Credentials]) -> ErpClient:
    client = ctx.state.get(_CLIENT)
    if not isinstance(client, ErpClient):
        raise ConfigurationError(f"{SYSTEM}: not signed in (authenticate was not called)")
    return client


async def _vendor(ctx: ConnectionContext[Settings, Credentials], vendor_id: str) -> Vendor:
    """The bill's vendor, read once per connection side and kept in ``ctx.state``."""
    cache: dict[str, Vendor] = ctx.state.setdefault(_VENDORS, {})
    if vendor_id not in cache:
        wire = await _client(ctx).vendor(vendor_id)
        if wire is None:
            raise InvalidRecordError("vendor", vendor_id, None, "no such vendor", system=SYSTEM)
        address = wire.address
        cache[vendor_id] = Vendor(
            source_id=wire.id,
            name=wire.name,
            email=wire.email,
            phone=wire.phone,
            address=None
            if address is None
            else Address(
                line1=address.line1,
                line2=address.line2,
                city=address.city,
                state=address.region,
                postal_code=address.postal_code,
                country=address.country or "US",
            ),
            currency=wire.currency,
            active=wire.active,
        )
    return cache[vendor_id]


async def _payable(ctx: ConnectionContext[Settings, Credentials], bill: schemas.Bill) -> Payable:
    """The domain payable; raises ValidationError naming the field when it cannot be one."""
    vendor = await _vendor(ctx, bill.vendor_id)
    return Payable.model_validate(
        {
            "source_id": bill.id,
            "document_number": bill.number,
            "invoice_number": bill.invoice_number,
            "vendor": vendor,
            "invoice_date": bill.invoice_date,
            "due_date": bill.due_date or bill.invoice_date,
            "currency": bill.currency,
            "total": bill.amount,
            "lines": [
                {
                    "line_id": str(line.line_no),
                    "amount": line.amount,
                    "description": line.description,
                    "account_id": line.account_code,
                }
                for line in bill.lines
            ],
            "description": bill.memo,
            "modified_at": bill.modified_at,
            "source_status": bill.status,
        }
    )


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem as ``(dotted field, reason)``, e.g. ``("lines.0.account_id", …)``."""
    first = exc.errors(include_url=False)[0]
    return ".".join(str(part) for part in first["loc"]) or None, first["msg"]


def _rejected(row: dict[str, Any], field: str | None, reason: str) -> RejectedRecord:
    record_id = row.get("id")
    try:
        modified_at: datetime | None = datetime.fromisoformat(str(row.get("modified_at")))
    except ValueError:
        modified_at = None
    return RejectedRecord(
        record_type="payable",
        record_id=None if record_id is None else str(record_id),
        field=field,
        reason=reason,
        modified_at=modified_at if modified_at and modified_at.tzinfo else None,
    )
