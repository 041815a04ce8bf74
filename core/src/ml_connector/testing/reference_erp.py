"""The reference ERP plugin (source, system key ``reference_erp``), served by a :class:`FakeErp`.

A faithful, small source plugin for engine tests and benchmarks: it pages approved payables by
change time, reports malformed ERP bills as rejected records, posts payments idempotently, and
behaves like a real client on throttling, outages and session expiry (all injected through
``fake.faults``). Register an instance: ``pm.register(ReferenceErpPlugin())``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ml_connector.description import Capability, ConcurrencyLimits, PluginDescription, Role
from ml_connector.errors import ConfigurationError, InvalidRecordError
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    AccountCatalog,
    AuthResult,
    ConnectionCheck,
    Payable,
    PayablePage,
    RecordedPayment,
    RejectedRecord,
)
from ml_connector.testing._client import SessionClient
from ml_connector.testing._erp import SYSTEM, FakeErp
from ml_connector.testing._paging import decode_token, encode_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from ml_connector.context import ConnectionContext
    from ml_connector.models import ChangeWindow, PaymentPosting, Vendor
    from ml_connector.testing._records import ErpPayable

__all__ = [
    "PLUGIN",
    "PLUGIN_INFO",
    "ReferenceErpCredentials",
    "ReferenceErpPlugin",
    "ReferenceErpSettings",
    "to_payable",
]

PLUGIN_INFO = {
    "system": SYSTEM,
    "display_name": "Reference ERP (testing)",
    "role": "source",
    # 1.2: record_payment posts plainly, relying on the engine's find_payment look-first.
    "contract": ">=1.2,<2",
}
"""Entry-point metadata (``ml_connector.plugin_info``)."""


class ReferenceErpSettings(BaseModel):
    """Where the reference ERP lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance: Annotated[str, Field(min_length=1)] = Field(
        "default", description="The ERP instance (tenant); names the in-memory FakeErp."
    )
    state_path: str | None = Field(
        None, description="A SQLite file holding the ERP's state; None keeps it in memory."
    )
    page_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        100, description="Payables per page of list_changed_payables."
    )


class ReferenceErpCredentials(BaseModel):
    """The reference ERP's login."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1)]
    password: SecretStr


def _settings(ctx: ConnectionContext) -> ReferenceErpSettings:
    if not isinstance(ctx.settings, ReferenceErpSettings):
        raise ConfigurationError(f"{SYSTEM}: settings must be ReferenceErpSettings")
    return ctx.settings


def _credentials(ctx: ConnectionContext) -> ReferenceErpCredentials:
    if not isinstance(ctx.credentials, ReferenceErpCredentials):
        raise ConfigurationError(f"{SYSTEM}: credentials must be ReferenceErpCredentials")
    return ctx.credentials


def _fake(ctx: ConnectionContext) -> FakeErp:
    settings = _settings(ctx)
    return FakeErp.attach(settings.instance, settings.state_path)


def to_payable(fake: FakeErp, record: ErpPayable) -> Payable | RejectedRecord:
    """Read an ERP bill as a domain payable, or say why it cannot be one.

    Nothing is cached: holding 100,000 converted payables costs more in garbage collection than
    converting again (about 15 µs each).
    """

    def reject(field: str | None, reason: str) -> RejectedRecord:
        return RejectedRecord(
            record_type="payable",
            record_id=record.source_id,
            field=field,
            reason=reason,
            modified_at=record.modified_at,
        )

    return _convert(record, fake.vendors.get(record.vendor_id), reject)


def _convert(
    record: ErpPayable,
    vendor: Vendor | None,
    reject: Callable[[str | None, str], RejectedRecord],
) -> Payable | RejectedRecord:
    if vendor is None:
        return reject("vendor_id", f"vendor {record.vendor_id} does not exist")
    for i, line in enumerate(record.lines):
        if line.account_id is None:
            return reject(f"lines.{i}.account_id", "the line has no GL account")
    line_sum = sum((line.amount for line in record.lines), Decimal(0))
    if line_sum != record.total:
        return reject(
            "total", f"total {record.total} does not equal the sum of the lines {line_sum}"
        )
    try:
        return Payable.model_validate(
            {
                "source_id": record.source_id,
                "document_number": record.document_number,
                "invoice_number": record.invoice_number,
                "vendor": vendor,
                "invoice_date": record.invoice_date,
                "due_date": record.due_date,
                "currency": record.currency,
                "total": record.total,
                "lines": [
                    {
                        "line_id": line.line_id,
                        "amount": line.amount,
                        "description": line.description,
                        "account_id": line.account_id,
                        "dimensions": line.dimensions,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                    }
                    for line in record.lines
                ],
                "description": record.description,
                "modified_at": record.modified_at,
                "source_status": record.status.value,
            }
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        return reject(".".join(str(p) for p in error["loc"]) or None, error["msg"])


class ReferenceErpPlugin:
    """The reference ERP's hook implementations; keeps no state of its own."""

    def __init__(self) -> None:
        self._client = SessionClient(SYSTEM)

    @hookimpl
    def describe_plugin(self) -> PluginDescription:
        """Describe the reference ERP: settings, credentials, no limits, dimensions."""
        return PluginDescription(
            system=SYSTEM,
            role=Role.SOURCE,
            settings_model=ReferenceErpSettings,
            credentials_model=ReferenceErpCredentials,
            limits=ConcurrencyLimits(),
            capabilities=frozenset({Capability.DIMENSIONS}),
        )

    @hookimpl
    async def authenticate(self, ctx: ConnectionContext) -> AuthResult:
        """Log in to the fake ERP and keep the session in ``ctx.state``."""
        fake = _fake(ctx)
        credentials = _credentials(ctx)

        def login() -> str:
            return fake.login(credentials.username, credentials.password.get_secret_value())

        await self._client.sign_in(ctx, fake, login)
        return AuthResult(principal=f"{credentials.username}@{fake.instance}")

    @hookimpl
    async def check_connection(self, ctx: ConnectionContext) -> ConnectionCheck:
        """Read the instance's size: proves the session works, writes nothing."""
        fake = _fake(ctx)
        return await self._client.call(
            ctx,
            fake,
            "check_connection",
            lambda: ConnectionCheck(
                ok=True,
                detail=f"reference ERP instance {fake.instance!r}: "
                f"{len(fake.payables)} AP documents",
            ),
        )

    @hookimpl
    async def list_accounts(self, ctx: ConnectionContext) -> AccountCatalog:
        """List every GL account and dimension value (subaccounts, departments, …)."""
        fake = _fake(ctx)
        return await self._client.call(
            ctx,
            fake,
            "list_accounts",
            lambda: AccountCatalog(
                accounts=tuple(fake.accounts.values()),
                dimensions=tuple(fake.dimensions.values()),
            ),
        )

    @hookimpl
    async def close_connection(self, ctx: ConnectionContext) -> None:
        """Log out; never raises."""
        try:
            fake: FakeErp | None = _fake(ctx)
        except Exception:  # the fake is gone or the settings are wrong: nothing to end there
            fake = None
        self._client.sign_out(ctx, fake)

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        """Read one page of approved payables changed in ``[since, until)``.

        Order is ``(modified_at, source_id)``; malformed bills come back in ``rejected``.
        """
        fake = _fake(ctx)
        page_size = _settings(ctx).page_size
        after = None if page_token is None else decode_token(page_token, window, system=SYSTEM)

        def read() -> PayablePage:
            records, last = fake.changed_payables(window, after, page_size)
            items: list[Payable] = []
            rejected: list[RejectedRecord] = []
            for record in records:
                view = to_payable(fake, record)
                if isinstance(view, Payable):
                    items.append(view)
                else:
                    rejected.append(view)
            return PayablePage(
                items=tuple(items),
                rejected=tuple(rejected),
                next_page_token=None if last is None else encode_token(last, window),
            )

        return await self._client.call(ctx, fake, "list_changed_payables", read)

    @hookimpl
    async def get_payable(self, ctx: ConnectionContext, source_id: str) -> Payable | None:
        """Read one payable by id, whatever its status; a malformed one raises."""
        fake = _fake(ctx)

        def read() -> Payable | None:
            record = fake.payables.get(source_id)
            if record is None:
                return None
            view = to_payable(fake, record)
            if isinstance(view, RejectedRecord):
                raise InvalidRecordError(
                    "payable", source_id, view.field, view.reason, system=SYSTEM
                )
            return view

        return await self._client.call(ctx, fake, "get_payable", read)

    @hookimpl
    async def record_payment(
        self, ctx: ConnectionContext, posting: PaymentPosting
    ) -> RecordedPayment:
        """Post the payment against its bill.

        It does not look first, like most ERP APIs: the engine calls :meth:`find_payment`
        before every posting, and the crash tests prove that guard, not this one.
        """
        fake = _fake(ctx)

        def post() -> RecordedPayment:
            payment = fake.post_payment(
                sink_payment_id=posting.payment_sink_id,
                payable_id=posting.payable.source_id,
                amount=posting.amount,
                paid_on=posting.paid_on,
                reference=posting.reference,
            )
            return RecordedPayment(source_id=payment.id)

        return await self._client.call(ctx, fake, "record_payment", post)

    @hookimpl
    async def find_payment(
        self, ctx: ConnectionContext, posting: PaymentPosting
    ) -> RecordedPayment | None:
        """The ERP payment carrying this sink payment for this bill, if one was posted."""
        fake = _fake(ctx)

        def find() -> RecordedPayment | None:
            payment = fake.find_payment(posting.payment_sink_id, posting.payable.source_id)
            return (
                None
                if payment is None
                else RecordedPayment(source_id=payment.id, already_recorded=True)
            )

        return await self._client.call(ctx, fake, "find_payment", find)


PLUGIN = ReferenceErpPlugin()
"""A ready instance, for the ``ml_connector.plugins`` entry point."""
