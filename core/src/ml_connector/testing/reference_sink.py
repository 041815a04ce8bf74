"""The reference sink plugin (system key ``reference_sink``): BILL at the domain level.

Served by a :class:`FakeSink`, it behaves as BILL does where the engine can tell: BILL's id
prefixes, three calls in flight per organization (``BDC_1322`` beyond), session expiry
(``BDC_1109``, re-login once), all-or-nothing bulk bill creation of at most 200, paid bills left
alone, and webhooks signed with HMAC-SHA256 in ``x-bill-sha-signature``. Register an instance:
``pm.register(ReferenceSinkPlugin())``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ml_connector.description import Capability, ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import AuthenticationError, ConfigurationError, InvalidRecordError
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    Account,
    AccountCatalog,
    AuthResult,
    BillResult,
    ConnectionCheck,
    Payment,
    PaymentPage,
    RejectedRecord,
    VendorResult,
    WebhookBatch,
    WebhookEvent,
    WebhookSubscription,
)
from ml_connector.testing._client import SessionClient
from ml_connector.testing._paging import decode_token, encode_token
from ml_connector.testing._sink import BATCH_LIMIT, MAX_IN_FLIGHT, FakeSink
from ml_connector.testing._sink_rules import SYSTEM
from ml_connector.testing._webhooks import entity_key, parse_untrusted, verify_signature

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.models import BillDraft, ChangeWindow, Vendor
    from ml_connector.testing._records import SinkPayment

__all__ = [
    "PLUGIN",
    "PLUGIN_INFO",
    "ReferenceSinkCredentials",
    "ReferenceSinkPlugin",
    "ReferenceSinkSettings",
    "to_payment",
]

PLUGIN_INFO = {
    "system": SYSTEM,
    "display_name": "Reference sink (BILL-like, testing)",
    "role": "sink",
    "contract": ">=1.0,<2",
}
"""Entry-point metadata (``ml_connector.plugin_info``)."""

SESSION_IDLE_TIMEOUT = timedelta(minutes=35)  # bill.md §2


class ReferenceSinkSettings(BaseModel):
    """Which organization the reference sink serves, and where its state lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: Annotated[str, Field(min_length=1)] = Field(
        description="The organization; names the in-memory FakeSink and scopes the call cap."
    )
    state_path: str | None = Field(
        None, description="A SQLite file holding the sink's state; None keeps it in memory."
    )
    page_size: Annotated[int, Field(ge=1, le=100)] = Field(
        100, description="Payments per page of list_changed_payments (BILL allows 1-100)."
    )


class ReferenceSinkCredentials(BaseModel):
    """The login, as BILL's: user, password and developer key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    dev_key: SecretStr


def _settings(ctx: ConnectionContext) -> ReferenceSinkSettings:
    if not isinstance(ctx.settings, ReferenceSinkSettings):
        raise ConfigurationError(f"{SYSTEM}: settings must be ReferenceSinkSettings")
    return ctx.settings


def _credentials(ctx: ConnectionContext) -> ReferenceSinkCredentials:
    if not isinstance(ctx.credentials, ReferenceSinkCredentials):
        raise ConfigurationError(f"{SYSTEM}: credentials must be ReferenceSinkCredentials")
    return ctx.credentials


def _fake(ctx: ConnectionContext) -> FakeSink:
    settings = _settings(ctx)
    return FakeSink.attach(settings.organization_id, settings.state_path)


def to_payment(payment: SinkPayment) -> Payment | RejectedRecord:
    """Read a sink payment as a domain payment, or say why it cannot be one."""

    def reject(field: str | None, reason: str) -> RejectedRecord:
        return RejectedRecord(
            record_type="payment",
            record_id=payment.id,
            field=field,
            reason=reason,
            modified_at=payment.updated_at,
        )

    applied = sum((a.amount for a in payment.applications), Decimal(0))
    if applied != payment.amount:
        return reject(
            "applications", f"the applications add up to {applied}, not to {payment.amount}"
        )
    try:
        return Payment.model_validate(
            {
                "sink_id": payment.id,
                "vendor_sink_id": payment.vendor_id,
                "amount": payment.amount,
                "process_date": payment.process_date,
                "status": payment.status,
                "applications": [
                    {"bill_sink_id": a.bill_id, "amount": a.amount} for a in payment.applications
                ],
                "reference": payment.transaction_number,
                "updated_at": payment.updated_at,
            }
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return reject(".".join(str(p) for p in error["loc"]) or None, error["msg"])


def _webhook_refusal(event_id: str | None, field: str | None, reason: str) -> InvalidRecordError:
    # Signed but unusable: the core answers 200 and lists it in the exception queue (by event id
    # when there is one); a non-200 would only make the sink retry it, then disable the hook.
    return InvalidRecordError("webhook", event_id, field, reason, system=SYSTEM)


_WEBHOOK_ENTITIES = ("vendor", "bill", "payment")  # as the BILL plugin handles


def _webhook_text(value: Any) -> str | None:
    """``value`` if it is a usable id: a non-blank string the store's id columns can hold."""
    if isinstance(value, str) and value.strip() and len(value) <= 255:
        return value
    return None


def _parse_delivery(body: bytes, organization_id: str) -> WebhookBatch:
    """Parse a verified delivery; only called once its signature matched.

    Parsed with bounded depth and number length (:func:`parse_untrusted`): a signed body must not
    cost more than linear time either.
    """
    try:
        data: Any = parse_untrusted(body)
        if isinstance(data, str):  # bill.md §6: the payload may come JSON-escaped, as a string
            data = parse_untrusted(data.encode())
    except ValueError as exc:
        raise _webhook_refusal(None, None, f"the body cannot be read: {exc}") from None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        raise _webhook_refusal(None, "metadata", "the delivery has no metadata")
    event_id = _webhook_text(metadata.get("eventId"))
    if event_id is None:
        raise _webhook_refusal(None, "metadata.eventId", "is missing or not an id")
    for name in ("eventType", "organizationId"):
        if _webhook_text(metadata.get(name)) is None:
            raise _webhook_refusal(event_id, f"metadata.{name}", "is missing")
    if metadata["organizationId"] != organization_id:
        raise _webhook_refusal(
            event_id, "metadata.organizationId", "the event is for another organization"
        )
    key = entity_key(metadata["eventType"])
    if key not in _WEBHOOK_ENTITIES:
        raise _webhook_refusal(
            event_id, "metadata.eventType", "is not a vendor, bill or payment event"
        )
    entity = data.get(key)
    entity_id = _webhook_text(entity.get("id")) if isinstance(entity, dict) else None
    if entity_id is None:
        raise _webhook_refusal(event_id, key, f"the event carries no {key} with an id")
    subscription_id = metadata.get("subscriptionId")
    return WebhookBatch(
        subscription_id=subscription_id if isinstance(subscription_id, str) else None,
        events=(
            WebhookEvent(
                event_id=event_id,
                event_type=metadata["eventType"],
                entity_type=key,
                entity_id=entity_id,
                payload=entity,
            ),
        ),
    )


class ReferenceSinkPlugin:
    """The reference sink's hook implementations; keeps no state of its own."""

    def __init__(self) -> None:
        self._client = SessionClient(SYSTEM)

    # --- Both sides ----------------------------------------------------------------------------

    @hookimpl
    def describe_plugin(self) -> PluginDescription:
        """Describe the reference sink: BILL's limits, bulk bills, accounts, webhooks."""
        return PluginDescription(
            system=SYSTEM,
            role=Role.SINK,
            settings_model=ReferenceSinkSettings,
            credentials_model=ReferenceSinkCredentials,
            limits=ConcurrencyLimits(
                max_in_flight=MAX_IN_FLIGHT, scope_setting="organization_id", batch_size=BATCH_LIMIT
            ),
            capabilities=frozenset(
                {Capability.BULK_CREATE_BILLS, Capability.CREATE_ACCOUNTS, Capability.WEBHOOKS}
            ),
        )

    @hookimpl
    async def authenticate(self, ctx: ConnectionContext) -> AuthResult:
        """Log in to the organization; the session slides for 35 idle minutes."""
        fake = _fake(ctx)
        credentials = _credentials(ctx)

        def login() -> str:
            if not credentials.dev_key.get_secret_value():
                raise AuthenticationError(
                    "Developer key is invalid.", system=SYSTEM, status=401, code="BDC_1102"
                )
            return fake.login(credentials.username, credentials.password.get_secret_value())

        await self._client.sign_in(ctx, fake, login)
        return AuthResult(
            principal=f"{credentials.username}@{fake.organization_id}",
            expires_at=fake.clock() + SESSION_IDLE_TIMEOUT,
        )

    @hookimpl
    async def check_connection(self, ctx: ConnectionContext) -> ConnectionCheck:
        """Read the organization: proves the session works, writes nothing."""
        fake = _fake(ctx)
        return await self._client.call(
            ctx,
            fake,
            "check_connection",
            lambda: ConnectionCheck(
                ok=True, detail=f"reference sink organization {fake.organization_id!r}"
            ),
        )

    @hookimpl
    async def list_accounts(self, ctx: ConnectionContext) -> AccountCatalog:
        """List the chart of accounts and the classifications."""
        fake = _fake(ctx)
        return await self._client.call(
            ctx,
            fake,
            "list_accounts",
            lambda: AccountCatalog(
                accounts=tuple(fake.accounts.values()),
                dimensions=tuple(fake.classifications.values()),
            ),
        )

    @hookimpl
    async def close_connection(self, ctx: ConnectionContext) -> None:
        """Log out; never raises."""
        try:
            fake: FakeSink | None = _fake(ctx)
        except Exception:  # the fake is gone or the settings are wrong: nothing to end there
            fake = None
        self._client.sign_out(ctx, fake)

    # --- Vendors -------------------------------------------------------------------------------

    @hookimpl
    async def find_vendor(self, ctx: ConnectionContext, vendor: Vendor) -> VendorResult | None:
        """Find the oldest vendor with the same name (BILL keeps no external id)."""
        fake = _fake(ctx)

        def find() -> VendorResult | None:
            found = fake.find_vendors(vendor.name)
            return VendorResult(sink_id=found[0].id, created=False) if found else None

        return await self._client.call(ctx, fake, "find_vendor", find)

    @hookimpl
    async def upsert_vendor(
        self, ctx: ConnectionContext, vendor: Vendor, existing_sink_id: str | None
    ) -> VendorResult:
        """Update the stored vendor, or create one (also when the stored one is gone).

        Without ``existing_sink_id`` this always creates, as BILL accepts duplicate names: the
        engine is expected to look the vendor up first (``find_vendor``) when unsure.
        """
        fake = _fake(ctx)

        def upsert() -> VendorResult:
            if existing_sink_id is not None:
                updated = fake.update_vendor(existing_sink_id, vendor)
                if updated is not None:
                    return VendorResult(sink_id=updated.id, created=False)
            return VendorResult(sink_id=fake.create_vendor(vendor).id, created=True)

        return await self._client.call(ctx, fake, "upsert_vendor", upsert)

    # --- Bills and accounts --------------------------------------------------------------------

    @hookimpl
    async def find_bill(
        self, ctx: ConnectionContext, vendor_sink_id: str, invoice_number: str
    ) -> BillResult | None:
        """Find the oldest bill with that vendor and invoice number."""
        fake = _fake(ctx)

        def find() -> BillResult | None:
            found = fake.bills_for(vendor_sink_id, invoice_number)
            return BillResult(sink_id=found[0].id, paid=found[0].paid) if found else None

        return await self._client.call(ctx, fake, "find_bill", find)

    @hookimpl
    async def create_bill(self, ctx: ConnectionContext, draft: BillDraft) -> BillResult:
        """Create the bill, or update ``draft.existing_sink_id`` unless it is (partly) paid."""
        fake = _fake(ctx)

        def write() -> BillResult:
            if draft.existing_sink_id is None:
                bill = fake.create_bills([draft])[0]
                return BillResult(sink_id=bill.id, created=True)
            bill, paid = fake.update_bill(draft.existing_sink_id, draft)
            return BillResult(sink_id=bill.id, paid=paid)

        return await self._client.call(ctx, fake, "create_bill", write)

    @hookimpl
    async def create_bills(
        self, ctx: ConnectionContext, drafts: Sequence[BillDraft]
    ) -> list[BillResult]:
        """Create new bills all or nothing (BILL's bulk create, at most 200)."""
        fake = _fake(ctx)

        def write() -> list[BillResult]:
            return [BillResult(sink_id=b.id, created=True) for b in fake.create_bills(drafts)]

        return await self._client.call(ctx, fake, "create_bills", write)

    @hookimpl
    async def create_account(self, ctx: ConnectionContext, account: Account) -> Account:
        """Copy a source account into the chart of accounts."""
        fake = _fake(ctx)
        return await self._client.call(
            ctx, fake, "create_account", lambda: fake.create_account(account)
        )

    # --- Payments and webhooks -----------------------------------------------------------------

    @hookimpl
    async def list_changed_payments(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PaymentPage:
        """Read one page of payments (any status) changed in ``[since, until)``."""
        fake = _fake(ctx)
        page_size = _settings(ctx).page_size
        after = None if page_token is None else decode_token(page_token, window, system=SYSTEM)

        def read() -> PaymentPage:
            records, last = fake.changed_payments(window, after, page_size)
            items: list[Payment] = []
            rejected: list[RejectedRecord] = []
            for record in records:
                view = to_payment(record)
                if isinstance(view, Payment):
                    items.append(view)
                else:
                    rejected.append(view)
            return PaymentPage(
                items=tuple(items),
                rejected=tuple(rejected),
                next_page_token=None if last is None else encode_token(last, window),
            )

        return await self._client.call(ctx, fake, "list_changed_payments", read)

    @hookimpl
    async def get_payment(self, ctx: ConnectionContext, sink_id: str) -> Payment | None:
        """Read one payment; a malformed one raises InvalidRecordError."""
        fake = _fake(ctx)

        def read() -> Payment | None:
            record = fake.payments.get(sink_id)
            if record is None:
                return None
            view = to_payment(record)
            if isinstance(view, RejectedRecord):
                raise InvalidRecordError("payment", sink_id, view.field, view.reason, system=SYSTEM)
            return view

        return await self._client.call(ctx, fake, "get_payment", read)

    @hookimpl
    async def ensure_webhook_subscription(
        self,
        ctx: ConnectionContext,
        notification_url: str,
        events: Sequence[str],
        existing: WebhookSubscription | None,
    ) -> WebhookSubscription:
        """Create, re-enable, update or re-key the subscription; the key only when new."""
        fake = _fake(ctx)

        def ensure() -> WebhookSubscription:
            sub, new_key = fake.ensure_subscription(
                notification_url, events, existing.sink_id if existing else None
            )
            return WebhookSubscription(
                sink_id=sub.id,
                notification_url=sub.notification_url,
                events=tuple(sub.events),
                enabled=sub.enabled,
                security_key=SecretStr(sub.security_key) if new_key else None,
            )

        return await self._client.call(ctx, fake, "ensure_webhook_subscription", ensure)

    @hookimpl
    async def parse_webhook(
        self,
        ctx: ConnectionContext,
        headers: Mapping[str, str],
        body: bytes,
        security_key: SecretStr,
    ) -> WebhookBatch:
        """Verify the HMAC-SHA256 signature over the raw body, then parse the one event.

        Local: no call to the sink, no session needed.
        """
        verify_signature(headers, body, security_key.get_secret_value())
        return _parse_delivery(body, _settings(ctx).organization_id)


PLUGIN = ReferenceSinkPlugin()
"""A ready instance, for the ``ml_connector.plugins`` entry point."""
