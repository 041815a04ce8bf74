"""Reading bills, vendors, accounts and segments from the emulator."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from ml_connector.errors import InvalidRecordError
from ml_connector.models import (
    AccountKind,
    ChangeWindow,
    DimensionKind,
    Payable,
    PayablePage,
    RejectedRecord,
)
from ml_connector.testing import ManualClock

from ml_connector_netsuite import plugin
from ml_connector_netsuite._bills import literal_time
from ml_connector_netsuite.emulator import NetSuiteEmulator

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import netsuite_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.netsuite.tests import netsuite_testkit as kit  # type: ignore[import-not-found,no-redef]


@pytest.fixture
def emu() -> NetSuiteEmulator:
    return kit.emulator()


async def _read(emu: NetSuiteEmulator, **settings: Any) -> PayablePage:
    ctx = kit.context(emu, **settings)
    await plugin.authenticate(ctx)
    window = ChangeWindow(since=None, until=emu.now() + timedelta(seconds=1))
    items: list[Payable] = []
    rejected: list[RejectedRecord] = []
    token: str | None = None
    while True:
        page = await plugin.list_changed_payables(ctx, window, token)
        items += page.items
        rejected += page.rejected
        token = page.next_page_token
        if token is None:
            await plugin.close_connection(ctx)
            return PayablePage(items=tuple(items), rejected=tuple(rejected))


async def test_a_bill_reads_with_its_lines_accounts_and_segments(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    bill_id = company.bill("100.00", split=True, tranid="A-17", memo="March supplies")
    page = await _read(emu)
    (payable,) = page.items
    assert payable.source_id == str(bill_id)
    assert payable.invoice_number == "A-17"
    assert payable.description == "March supplies"
    assert payable.total == Decimal("100.00")
    assert payable.currency == "USD"
    assert payable.vendor.source_id == str(company.acme)
    assert payable.vendor.name == "Acme Supplies"
    assert payable.vendor.email == "ap@acme.test"
    assert [line.amount for line in payable.lines] == [Decimal("50.00"), Decimal("50.00")]
    assert [line.account_id for line in payable.lines] == [
        str(company.expense),
        str(company.travel),
    ]
    assert payable.lines[0].dimensions == {
        DimensionKind.DEPARTMENT: str(company.department),
        DimensionKind.CLASS: str(company.klass),
        DimensionKind.LOCATION: str(company.location),
    }
    assert payable.lines[1].dimensions == {}
    assert payable.modified_at == kit.START
    assert payable.source_status == "open"


async def test_the_dimensions_setting_limits_the_segments(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    company.bill("100.00", split=True)
    page = await _read(emu, dimensions=["department"])
    assert page.items[0].lines[0].dimensions == {DimensionKind.DEPARTMENT: str(company.department)}


async def test_only_approved_open_bills_without_hold_move(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    ready = company.bill("10.00")
    company.bill("11.00", approved=False)
    company.bill("12.00", status="paid")
    company.bill("13.00", status="cancelled")
    company.bill("14.00", status="rejected")
    company.bill("15.00", paymenthold=True)
    emu.add_purchase_order(company.acme, company.lines("16.00"))
    page = await _read(emu)
    assert [p.source_id for p in page.items] == [str(ready)]
    assert page.rejected == ()


async def test_a_connection_scoped_to_a_subsidiary_reads_only_its_bills(
    emu: NetSuiteEmulator,
) -> None:
    company = kit.Company(emu)
    here = company.bill("10.00")
    there = company.bill("11.00", subsidiary=2)
    scoped = await _read(emu)  # the emulator's settings: subsidiary 1
    assert [p.source_id for p in scoped.items] == [str(here)]
    everything = await _read(emu, subsidiary_id=None)
    assert {p.source_id for p in everything.items} == {str(here), str(there)}


async def test_a_bill_without_a_reference_number_is_rejected_naming_tranid(
    emu: NetSuiteEmulator,
) -> None:
    company = kit.Company(emu)
    bill_id = company.bill("10.00")
    emu.update_bill(bill_id, tranid=None)
    page = await _read(emu)
    assert page.items == ()
    (rejected,) = page.rejected
    assert rejected.record_id == str(bill_id)
    assert rejected.field == "tranid"


async def test_a_line_without_an_account_is_rejected_naming_it(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    bill_id = emu.add_bill(company.acme, [{"account": None, "amount": Decimal("5.00")}])
    page = await _read(emu)
    (rejected,) = page.rejected
    assert rejected.record_id == str(bill_id)
    assert rejected.field == "transactionline.0.expenseaccount"


async def test_pages_are_keyed_on_the_internal_id() -> None:
    clock = ManualClock(kit.START)
    emu = kit.emulator(clock)
    company = kit.Company(emu)
    ids = [company.bill(f"{10 + i}.00") for i in range(7)]
    ctx = kit.context(emu, page_size=3)
    await plugin.authenticate(ctx)
    window = ChangeWindow(since=None, until=emu.now() + timedelta(seconds=1))
    first = await plugin.list_changed_payables(ctx, window, None)
    assert [p.source_id for p in first.items] == [str(i) for i in ids[:3]]
    assert first.next_page_token == str(ids[2])
    # a bill of the first page changes meanwhile: it leaves the window, nothing else moves
    clock.advance(timedelta(seconds=5))
    emu.update_bill(ids[0], memo="edited")
    second = await plugin.list_changed_payables(ctx, window, first.next_page_token)
    assert [p.source_id for p in second.items] == [str(i) for i in ids[3:6]]
    with pytest.raises(ValueError, match="page token"):
        await plugin.list_changed_payables(ctx, window, "1 OR 1=1")


def test_window_bounds_are_literals_in_the_account_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    moment = datetime(2026, 1, 5, 17, 0, 0, 250_000, tzinfo=UTC)
    zone = ZoneInfo("America/Los_Angeles")
    assert literal_time(moment, zone) == (
        "TO_TIMESTAMP('2026-01-05 09:00:00', 'YYYY-MM-DD HH24:MI:SS')"
    )
    assert literal_time(moment, zone, up=True) == (
        "TO_TIMESTAMP('2026-01-05 09:00:01', 'YYYY-MM-DD HH24:MI:SS')"
    )


async def test_get_payable_refuses_a_purchase_order(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    order = emu.add_purchase_order(company.acme, company.lines("16.00"))
    pending = company.bill("11.00", approved=False)
    ctx = kit.context(emu)
    await plugin.authenticate(ctx)
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.get_payable(ctx, str(order))
    assert caught.value.field == "type"
    found = await plugin.get_payable(ctx, str(pending))
    assert found is not None
    assert found.source_status == "pending approval"
    assert await plugin.get_payable(ctx, "999999") is None
    assert await plugin.get_payable(ctx, "eid:x") is None


async def test_accounts_and_segments_are_listed(emu: NetSuiteEmulator) -> None:
    company = kit.Company(emu)
    old = emu.add_account("6300", "Old Travel", active=False)
    ctx = kit.context(emu)
    await plugin.authenticate(ctx)
    catalog = await plugin.list_accounts(ctx)
    accounts = {a.id: a for a in catalog.accounts}
    assert accounts[str(company.expense)].number == "6100"
    assert accounts[str(company.expense)].kind is AccountKind.EXPENSE
    assert accounts[str(old)].active is False
    kinds = {a.kind for a in catalog.accounts}
    assert {AccountKind.ASSET, AccountKind.LIABILITY} <= kinds  # bank, A/P
    segments = {(d.kind, d.id): d.name for d in catalog.dimensions}
    assert segments[(DimensionKind.DEPARTMENT, str(company.department))] == "Operations"
    assert segments[(DimensionKind.CLASS, str(company.klass))] == "Retail"
    assert segments[(DimensionKind.LOCATION, str(company.location))] == "Boston"
    check = await plugin.check_connection(ctx)
    assert check.ok
    await plugin.close_connection(ctx)
    await plugin.close_connection(ctx)  # twice: nothing happens
