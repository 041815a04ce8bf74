"""Helpers shared by the BILL plugin's tests: emulators, contexts, vendors and drafts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.emulation import EmulatorOptions
from ml_connector.models import Address, BillDraft, BillDraftLine, Payable, PayableLine, Vendor
from ml_connector.testing import ManualClock
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import BillCredentials, BillSettings

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
BASE_URL = "http://bill.emulator.test/connect"


def new_clock() -> ManualClock:
    """The emulator's clock; each reading moves it a millisecond, so writes get distinct times."""
    return ManualClock(START, tick=timedelta(milliseconds=1))


def make_emulator(clock: ManualClock | None = None, **extra: Any) -> BillEmulator:
    """An emulator that delivers webhooks only when asked, without waiting between retries."""
    extra.setdefault("auto_deliver", False)
    extra.setdefault("delivery_backoff_scale", 0.0)
    options = EmulatorOptions(extra=extra)
    if clock is not None:
        options.clock = clock
    return BillEmulator(options)


def make_context(emulator: BillEmulator, **settings: Any) -> ConnectionContext:
    """A sink-side context whose HTTP client calls ``emulator`` in process."""
    values = emulator.settings(BASE_URL) | settings
    return ConnectionContext(
        connection="acme",
        system="bill",
        role=Role.SINK,
        settings=BillSettings.model_validate(values),
        credentials=BillCredentials.model_validate(emulator.credentials()),
        transport=emulator.transport(),
    )


def vendor(tag: str = "A", **changes: Any) -> Vendor:
    values: dict[str, Any] = {
        "source_id": f"V-{tag}",
        "name": f"Northwind Supplies {tag}",
        "email": "ap@northwind.example",
        "phone": "+1-555-0100",
        "address": Address(
            line1="1 Main St", city="Seattle", state="WA", postal_code="98101", country="US"
        ),
    }
    values.update(changes)
    return Vendor(**values)


def draft(
    vendor_sink_id: str,
    invoice: str,
    amounts: tuple[str, ...] = ("100.00", "28.99"),
    *,
    account_id: str,
    existing: str | None = None,
    classifications: dict[Any, str] | None = None,
) -> BillDraft:
    lines = tuple(
        PayableLine(line_id=str(i + 1), amount=Decimal(a), account_id="6100")
        for i, a in enumerate(amounts)
    )
    payable = Payable(
        source_id=f"P-{invoice}",
        document_number=f"D-{invoice}",
        invoice_number=invoice,
        vendor=vendor(),
        invoice_date=date(2025, 2, 1),
        due_date=date(2025, 3, 3),
        total=sum((Decimal(a) for a in amounts), Decimal(0)),
        lines=lines,
        modified_at=START,
    )
    return BillDraft(
        payable=payable,
        vendor_sink_id=vendor_sink_id,
        lines=tuple(
            BillDraftLine(
                amount=line.amount,
                description=f"line {line.line_id}",
                sink_account_id=account_id,
                classifications=classifications or {},
                source_line_id=line.line_id,
            )
            for line in lines
        ),
        existing_sink_id=existing,
    )
