"""Helpers: each reference plugin behind a real pluggy PluginManager, and small record builders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pluggy
from pydantic import SecretStr

from ml_connector import hookspecs
from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.models import (
    Address,
    BillDraft,
    BillDraftLine,
    DimensionKind,
    Payable,
    PayableLine,
    Vendor,
)
from ml_connector.testing import (
    ErpLine,
    ErpPayable,
    FakeSink,
    ReferenceErpCredentials,
    ReferenceErpSettings,
    ReferenceSinkCredentials,
    ReferenceSinkSettings,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
ORG = "00801TESTORG"


def plugin_manager(plugin: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    return pm


class Side:
    """One connection side: a plugin manager holding one reference plugin, and its context."""

    def __init__(self, plugin: object, ctx: ConnectionContext) -> None:
        self.pm = plugin_manager(plugin)
        self.ctx = ctx

    async def __call__(self, hook: str, **kwargs: Any) -> Any:
        result = getattr(self.pm.hook, hook)(ctx=self.ctx, **kwargs)
        if isinstance(result, list):  # close_connection is not first-result
            return [await r for r in result]
        return await result


def erp_ctx(**settings: Any) -> ConnectionContext:
    settings.setdefault("instance", "acme")
    return ConnectionContext(
        connection="test",
        system="reference_erp",
        role=Role.SOURCE,
        settings=ReferenceErpSettings(**settings),
        credentials=ReferenceErpCredentials(username="ap-bot", password=SecretStr("s3cret")),
    )


def sink_ctx(**settings: Any) -> ConnectionContext:
    settings.setdefault("organization_id", ORG)
    return ConnectionContext(
        connection="test",
        system="reference_sink",
        role=Role.SINK,
        settings=ReferenceSinkSettings(**settings),
        credentials=ReferenceSinkCredentials(
            username="ap@example.com", password=SecretStr("pw"), dev_key=SecretStr("dev")
        ),
    )


def vendor(n: int = 1, **changes: Any) -> Vendor:
    fields: dict[str, Any] = {
        "source_id": f"V{n}",
        "name": f"Vendor {n} LLC",
        "address": Address(line1=f"{n} Main St", city="Austin", state="TX", postal_code="78701"),
    }
    return Vendor(**{**fields, **changes})


def erp_payable(
    n: int,
    *,
    modified_at: datetime | None = None,
    amounts: tuple[str, ...] = ("100.00",),
    vendor_id: str = "V1",
    **changes: Any,
) -> ErpPayable:
    lines = [
        ErpLine(line_id=str(i + 1), amount=Decimal(a), account_id="6000")
        for i, a in enumerate(amounts)
    ]
    record = ErpPayable(
        source_id=f"AP-{n:04d}",
        document_number=f"{n:04d}",
        invoice_number=f"INV-{n}",
        vendor_id=vendor_id,
        invoice_date=date(2025, 2, 1),
        due_date=date(2025, 3, 1),
        total=sum((line.amount for line in lines), Decimal(0)),
        lines=lines,
        modified_at=modified_at or T0 + timedelta(minutes=n),
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def draft(
    sink: FakeSink,
    vendor_sink_id: str,
    n: int = 1,
    *,
    amounts: tuple[str, ...] = ("100.00",),
    existing_sink_id: str | None = None,
    account_id: str | None = None,
    classifications: dict[DimensionKind, str] | None = None,
) -> BillDraft:
    account = account_id or next(iter(sink.accounts))
    payable = Payable(
        source_id=f"AP-{n:04d}",
        document_number=f"{n:04d}",
        invoice_number=f"INV-{n}",
        vendor=vendor(1),
        invoice_date=date(2025, 2, 1),
        due_date=date(2025, 3, 1),
        total=sum((Decimal(a) for a in amounts), Decimal(0)),
        lines=tuple(
            PayableLine(line_id=str(i), amount=Decimal(a), account_id="6000")
            for i, a in enumerate(amounts)
        ),
        modified_at=T0,
    )
    return BillDraft(
        payable=payable,
        vendor_sink_id=vendor_sink_id,
        lines=tuple(
            BillDraftLine(
                amount=Decimal(a),
                sink_account_id=account,
                classifications=classifications or {},
                source_line_id=str(i),
            )
            for i, a in enumerate(amounts)
        ),
        existing_sink_id=existing_sink_id,
    )
