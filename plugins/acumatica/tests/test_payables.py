"""Reading bills: only released ones, unwrapped, with tax lines, page by page without losses."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from plugins.acumatica.tests.support import context, emulator, open_bills, read_all, requests_to

from ml_connector.errors import InvalidRecordError
from ml_connector.models import ChangeWindow, DimensionKind
from ml_connector.testing import ManualClock, loop_turns
from ml_connector_acumatica import plugin
from ml_connector_acumatica.emulator import AcumaticaEmulator


def everything(emu: AcumaticaEmulator) -> ChangeWindow:
    return ChangeWindow(since=None, until=emu.now() + timedelta(seconds=1))


async def signed_in(emu: AcumaticaEmulator, **overrides: object):
    ctx = context(emu, **overrides)
    await plugin.authenticate(ctx)
    return ctx


async def test_only_open_bills_are_listed(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = await signed_in(emu)
    items, rejected, _ = await read_all(ctx, everything(emu))
    assert not rejected
    assert {p.source_id for p in items} == open_bills(emu)
    statuses = {b["Status"] for b in emu.books.ordered("Bill")}
    assert {"On Hold", "Balanced", "Pending Approval", "Closed", "Voided"} <= statuses
    assert {p.source_status for p in items} == {"Open"}
    kinds = {(b["Type"], b["Status"]) for b in emu.books.ordered("Bill")}
    assert ("Credit Adj.", "Open") in kinds
    assert ("Prepayment", "Open") in kinds
    assert requests_to(emu, "GET", "PurchaseOrder") == 0, "purchase orders are never read"


async def test_bills_are_unwrapped_with_lines_tax_and_vendor(clock: ManualClock) -> None:
    emu = emulator(clock)
    ref = emu.add_bill(
        "ACMEOFFICE",
        [
            ("61000", "ADM-000", Decimal("120.00"), "Toner"),
            ("61000", "SLS-000", Decimal("80.50"), "Paper"),
        ],
        tax_rate=Decimal("8.25"),
        vendor_ref="AO-7781",
    )
    ctx = await signed_in(emu)
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    assert payable.invoice_number == "AO-7781"
    assert payable.document_number == ref
    assert payable.total == Decimal("217.04")  # 200.50 + 16.54 tax
    amounts = [line.amount for line in payable.lines]
    assert amounts == [Decimal("120.00"), Decimal("80.50"), Decimal("16.54")]
    assert all(isinstance(a, Decimal) for a in amounts)
    tax = payable.lines[-1]
    assert (tax.line_id, tax.account_id, tax.dimensions) == ("tax:CASALES", "68000", {})
    assert payable.lines[0].dimensions == {DimensionKind.SUBACCOUNT: "ADM-000"}
    assert payable.lines[0].description == "Toner"
    assert payable.vendor.name == "Acme Office Supply Co."
    assert payable.vendor.email == "orders@acmeoffice.example"
    assert payable.vendor.address is not None
    assert payable.vendor.address.city == "Chicago"
    assert payable.modified_at == emu.now()
    assert payable.due_date - payable.invoice_date == timedelta(days=30)


async def test_tax_without_a_tax_account_rejects_only_that_bill(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = await signed_in(emu, tax_account=None)
    items, rejected, _ = await read_all(ctx, everything(emu))
    taxed = {b["ReferenceNbr"] for b in emu.books.ordered("Bill") if b["TaxTotal"]}
    assert {r.record_id for r in rejected} == taxed & open_bills(emu)
    assert {r.field for r in rejected} == {"TaxTotal"}
    assert "tax_account" in rejected[0].reason
    assert {p.source_id for p in items} == open_bills(emu) - taxed


@pytest.mark.parametrize(
    "options",
    [
        {"numbers_as_strings": True},
        {"utc_offset_minutes": -300},
        {"masked_subaccounts_on_lines": False},
    ],
)
async def test_unconfirmed_wire_variants_read_the_same(clock: ManualClock, options: dict) -> None:
    plain = emulator(ManualClock(clock()))
    variant = emulator(ManualClock(clock()), **options)
    expected, _, _ = await read_all(await signed_in(plain), everything(plain))
    got, rejected, _ = await read_all(await signed_in(variant), everything(variant))
    assert not rejected

    def comparable(payables):  # line ids are generated per emulator
        return [
            (p.source_id, p.total, p.modified_at, p.invoice_date,
             [(line.amount, line.account_id, line.dimensions) for line in p.lines])
            for p in payables
        ]  # fmt: skip

    assert comparable(got) == comparable(expected)


async def test_subaccounts_can_be_left_out(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = await signed_in(emu, subaccount_maps_to="none")
    items, _, _ = await read_all(ctx, everything(emu))
    assert all(line.dimensions == {} for p in items for line in p.lines)
    catalog = await plugin.list_accounts(ctx)
    assert catalog.dimensions == ()
    assert requests_to(emu, "GET", "/Subaccount") == 0


async def test_books_closed_guard_skips_older_bills(clock: ManualClock) -> None:
    emu = emulator(clock)
    old = emu.add_bill(
        "DATAFLOW", [("67000", "000-000", Decimal("10"), "x")], bill_date=date(2024, 12, 31)
    )
    new = emu.add_bill(
        "DATAFLOW", [("67000", "000-000", Decimal("10"), "x")], bill_date=date(2025, 1, 1)
    )
    ctx = await signed_in(emu, bills_from=date(2025, 1, 1))
    items, _, _ = await read_all(ctx, everything(emu))
    ids = {p.source_id for p in items}
    assert new in ids
    assert old not in ids
    assert all(p.invoice_date >= date(2025, 1, 1) for p in items)


async def test_window_bounds_lower_inclusive_upper_exclusive(clock: ManualClock) -> None:
    emu = emulator(clock)
    clock.advance(timedelta(hours=1))
    at = emu.now()
    ref = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("42.00"), "x")])
    ctx = await signed_in(emu)
    inclusive, _, _ = await read_all(
        ctx, ChangeWindow(since=at, until=at + timedelta(milliseconds=1))
    )
    assert [p.source_id for p in inclusive] == [ref]
    exclusive, _, _ = await read_all(ctx, ChangeWindow(since=None, until=at))
    assert ref not in {p.source_id for p in exclusive}


async def test_paging_is_complete_across_many_pages(clock: ManualClock) -> None:
    emu = emulator(clock, bills=30)
    ctx = await signed_in(emu, page_size=4)
    items, _, pages = await read_all(ctx, everything(emu))
    ids = [p.source_id for p in items]
    assert set(ids) == open_bills(emu)
    assert len(ids) == len(set(ids)), "nothing changed, so nothing repeats"
    assert pages >= len(ids) // 4


async def test_no_bill_is_lost_when_bills_change_between_pages(clock: ManualClock) -> None:
    emu = emulator(clock, bills=30)
    ctx = await signed_in(emu, page_size=5)
    window = everything(emu)
    start = emu.now()
    first = await plugin.list_changed_payables(ctx, window, None)
    seen = [p.source_id for p in first.items]
    clock.advance(timedelta(minutes=1))
    # Between pages: two bills of the first page are paid (they leave the filtered set, so
    # every later bill moves back two positions), one is edited, one old bill is released.
    for ref in seen[:2]:
        emu.edit_bill(ref, Status="Closed", Balance=Decimal(0))
    emu.edit_bill(seen[2], Description="edited after it was read")
    held = next(b for b in emu.books.ordered("Bill") if b["Status"] == "Balanced")
    emu.edit_bill(held["ReferenceNbr"], Status="Open")
    changed = {*seen[:3], held["ReferenceNbr"]}
    token = first.next_page_token
    while token is not None:
        page = await plugin.list_changed_payables(ctx, window, token)
        seen += [p.source_id for p in page.items]
        token = page.next_page_token
    unchanged_open = open_bills(emu) - changed
    assert unchanged_open <= set(seen), f"lost: {sorted(unchanged_open - set(seen))}"
    # What changed during the read is in the next window (the engine's next run).
    later, _, _ = await read_all(
        ctx, ChangeWindow(since=start, until=emu.now() + timedelta(seconds=1))
    )
    assert {seen[2], held["ReferenceNbr"]} <= {p.source_id for p in later}


async def test_more_changes_than_the_overlap_start_the_read_over(clock: ManualClock) -> None:
    emu = emulator(clock, bills=30)
    ctx = await signed_in(emu, page_size=5)
    window = everything(emu)
    first = await plugin.list_changed_payables(ctx, window, None)
    second = await plugin.list_changed_payables(ctx, window, first.next_page_token)
    clock.advance(timedelta(minutes=1))
    for payable in [*first.items, *second.items]:  # ten leave; the overlap covers two
        emu.edit_bill(payable.source_id, Status="Closed", Balance=Decimal(0))
    seen = {p.source_id for p in [*first.items, *second.items]}
    token = second.next_page_token
    while token is not None:
        page = await plugin.list_changed_payables(ctx, window, token)
        seen |= {p.source_id for p in page.items}
        token = page.next_page_token
    assert open_bills(emu) <= seen


async def test_a_token_from_another_window_is_refused(clock: ManualClock) -> None:
    emu = emulator(clock, bills=10)
    ctx = await signed_in(emu, page_size=3)
    page = await plugin.list_changed_payables(ctx, everything(emu), None)
    other = ChangeWindow(since=emu.now() - timedelta(days=1), until=emu.now())
    with pytest.raises(Exception, match="another query"):
        await plugin.list_changed_payables(ctx, other, page.next_page_token)


async def test_malformed_bills_are_rejected_by_field_and_the_rest_goes_on(
    clock: ManualClock,
) -> None:
    emu = emulator(clock)
    no_ref = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("10"), "x")])
    emu.bill(no_ref)["VendorRef"] = None
    bad_total = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("10"), "x")])
    emu.bill(bad_total)["Amount"] = Decimal("11.00")
    no_account = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("10"), "x")])
    emu.bill(no_account)["Details"][0]["Account"] = None
    ghost = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("10"), "x")])
    emu.bill(ghost)["Vendor"] = "NOSUCHVENDOR"
    not_a_number = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("10"), "x")])
    emu.bill(not_a_number)["Details"][0]["Amount"] = "ten dollars"
    ctx = await signed_in(emu)
    items, rejected, _ = await read_all(ctx, everything(emu))
    fields = {r.record_id: r.field for r in rejected}
    assert fields == {
        no_ref: "VendorRef",
        bad_total: "Amount",
        no_account: "Details.0.Account",
        ghost: "Vendor",
        not_a_number: "Details.0.Amount",
    }
    assert all(r.modified_at is not None for r in rejected if r.record_id != not_a_number)
    assert {p.source_id for p in items} == open_bills(emu) - set(fields)
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.get_payable(ctx, no_ref)
    assert (caught.value.record_id, caught.value.field) == (no_ref, "VendorRef")


async def test_get_payable_reads_any_status_and_none_when_missing(clock: ManualClock) -> None:
    emu = emulator(clock)
    held = next(b for b in emu.books.ordered("Bill") if b["Status"] == "On Hold")
    ctx = await signed_in(emu)
    payable = await plugin.get_payable(ctx, held["ReferenceNbr"])
    assert payable is not None
    assert payable.source_status == "On Hold"
    assert await plugin.get_payable(ctx, "999999") is None
    assert await plugin.get_payable(ctx, "no such/bill") is None


async def test_vendors_are_read_once_per_run(clock: ManualClock) -> None:
    emu = emulator(clock, bills=20)
    ctx = await signed_in(emu, page_size=3)
    items, _, _ = await read_all(ctx, everything(emu))
    vendors = {p.vendor.source_id for p in items}
    assert requests_to(emu, "GET", "/Vendor/") == len(vendors)


async def test_a_page_is_converted_with_the_event_loop_running_in_between(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator(clock, bills=30)
    ctx = await signed_in(emu, page_size=50)
    await read_all(ctx, everything(emu))  # vendors and subaccounts cached: no more HTTP in rows
    turns_at_row: list[int] = []
    read_bill = plugin._read_bill
    async with loop_turns() as turns:

        async def noting(*args: Any) -> Any:
            turns_at_row.append(turns())
            return await read_bill(*args)

        monkeypatch.setattr(plugin, "_read_bill", noting)
        await plugin.list_changed_payables(ctx, everything(emu), None)
    assert len(turns_at_row) > 16
    assert len(set(turns_at_row)) >= len(turns_at_row) // 8
