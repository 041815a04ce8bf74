"""Reading payables, vendors and accounts: what is listed, paging, fallbacks, conversion."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
from plugins.epicor.tests.helpers import Chart, Recording, context, emulator, read_all, window

from ml_connector.errors import ConfigurationError, InvalidRecordError
from ml_connector.models import ChangeWindow
from ml_connector.testing import loop_turns
from ml_connector_epicor import plugin


def _ids(items: list[object]) -> list[str]:
    return [p.source_id for p in items]  # type: ignore[attr-defined]


async def test_only_posted_open_invoices_not_on_hold_are_listed() -> None:
    emu = emulator()
    chart = Chart(emu)
    ready = {chart.invoice("10.00"), chart.invoice("20.00")}
    chart.invoice("30.00", posted=False)  # still in its AP entry group
    chart.invoice("31.00", posted=False, InvoiceHeld=True)
    chart.invoice("32.00", PayHold=True)
    chart.invoice("33.00", HoldInvoice=True)
    chart.invoice("34.00", DebitMemo=True)
    paid = chart.invoice("35.00")
    emu.books.invoices[paid].head.update(
        DocInvoiceBal=Decimal(0), InvoiceBal=Decimal(0), OpenPayable=False
    )
    items, _ = await read_all(context(emu), window(emu))
    assert sorted(_ids(items)) == sorted(Chart.source_id(k) for k in ready)
    assert {p.source_status for p in items} == {"posted"}


async def test_paging_returns_every_invoice_across_page_boundaries() -> None:
    emu = emulator()
    chart = Chart(emu)
    keys = {chart.invoice(f"{i}.00") for i in range(1, 24)}
    items, pages = await read_all(context(emu, page_size=5), window(emu))
    assert sorted(_ids(items)) == sorted(Chart.source_id(k) for k in keys)
    assert len(pages) == 6  # five pages of rows, then an empty one proves the end


async def test_rows_changing_while_pages_are_read_never_push_another_row_out() -> None:
    emu = emulator()
    chart = Chart(emu)
    keys = [chart.invoice(f"{i}.00") for i in range(1, 31)]
    ctx = context(emu, page_size=7)
    start = emu.now()
    win = window(emu)
    first = await plugin.list_changed_payables(ctx, win, None)
    seen = _ids(list(first.items))
    touched = {keys[0], keys[12], keys[29], keys[20]}  # some already read, some not yet
    for key in touched:
        emu.books.touch(key)
    token = first.next_page_token
    while token is not None:
        page = await plugin.list_changed_payables(ctx, win, token)
        seen += _ids(list(page.items))
        token = page.next_page_token
    untouched = {Chart.source_id(k) for k in keys} - {Chart.source_id(k) for k in touched}
    assert untouched <= set(seen), f"skipped: {sorted(untouched - set(seen))}"
    later, _ = await read_all(ctx, window(emu, since=start))
    assert {Chart.source_id(k) for k in touched} <= set(_ids(later))


async def test_the_window_excludes_its_upper_bound() -> None:
    emu = emulator()
    chart = Chart(emu)
    key = chart.invoice()
    changed = emu.books.invoices[key].head["ChangeDate"]
    ctx = context(emu)
    before, _ = await read_all(ctx, ChangeWindow(since=None, until=changed))
    including, _ = await read_all(ctx, ChangeWindow(since=changed, until=changed + timedelta(1)))
    assert before == []
    assert _ids(including) == [Chart.source_id(key)]


@pytest.mark.parametrize(("overlap", "listed"), [(24.0, True), (0.0, False)])
async def test_the_change_date_filter_reaches_back_by_the_overlap(
    overlap: float, listed: bool
) -> None:
    emu = emulator()
    chart = Chart(emu)
    key = chart.invoice()
    recording = Recording(emu.transport())
    ctx = context(emu, transport=recording, change_overlap_hours=overlap)
    since = emu.now() + timedelta(hours=2)
    items, _ = await read_all(ctx, ChangeWindow(since=since, until=since + timedelta(hours=1)))
    assert (Chart.source_id(key) in _ids(items)) is listed
    query = parse_qs(recording.v2()[0].url.query.decode())
    expected = (since - timedelta(hours=overlap)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert query["$filter"] == [f"Posted eq true and ChangeDate ge {expected}Z"]
    assert query["$orderby"] == ["ChangeDate desc,VendorNum,InvoiceNum"]
    # the distribution is a navigation of each line (OData v4 nested expand), not of the header
    assert query["$expand"] == ["APInvDtls($expand=APInvExps)"]


async def test_a_500_on_odata_falls_back_to_getrows_and_stays_there() -> None:
    emu = emulator()
    chart = Chart(emu)
    keys = {chart.invoice(f"{i}.00") for i in range(1, 12)}
    emu.set_odata_500(1.0)
    ctx = context(emu, page_size=4)
    items, _ = await read_all(ctx, window(emu))
    await plugin.list_accounts(ctx)
    assert sorted(set(_ids(items))) == sorted(Chart.source_id(k) for k in keys)
    failed = [r for r in emu.log.records if r.status == 500]
    assert [r.path.rsplit("/", 1)[-1] for r in failed] == ["APInvoices", "Vendors", "GLAccounts"]
    getrows = [r for r in emu.log.records if r.path.endswith("/GetRows")]
    assert len(getrows) >= 4


async def test_occasional_seeded_500s_lose_nothing() -> None:
    emu = emulator(invoices=40, odata_500=0.3)
    eligible = {f"{v}:{i}" for v, i in emu.seeded.eligible}
    items, _ = await read_all(context(emu, page_size=6), window(emu))
    assert set(_ids(items)) == eligible
    assert any(r.status == 500 for r in emu.log.records)


async def test_a_fallback_in_the_middle_of_a_read_starts_over_without_losing_rows() -> None:
    emu = emulator()
    chart = Chart(emu)
    keys = {chart.invoice(f"{i}.00") for i in range(1, 15)}
    ctx = context(emu, page_size=5)
    win = window(emu)
    first = await plugin.list_changed_payables(ctx, win, None)
    emu.set_odata_500(1.0)
    seen = _ids(list(first.items))
    token = first.next_page_token
    while token is not None:
        page = await plugin.list_changed_payables(ctx, win, token)
        seen += _ids(list(page.items))
        token = page.next_page_token
    assert set(seen) == {Chart.source_id(k) for k in keys}


async def test_getrows_pages_counted_from_one_still_read_everything() -> None:
    emu = emulator(getrows_page_base=1, odata_500=1.0)
    chart = Chart(emu)
    keys = {chart.invoice(f"{i}.00") for i in range(1, 12)}
    items, _ = await read_all(context(emu, page_size=4), window(emu))
    assert set(_ids(items)) == {Chart.source_id(k) for k in keys}


@pytest.mark.parametrize("next_link", [True, False])
async def test_a_server_cap_below_top_is_paged_through(next_link: bool) -> None:
    emu = emulator(row_cap=3, next_link=next_link)
    chart = Chart(emu)
    keys = {chart.invoice(f"{i}.00") for i in range(1, 11)}
    items, _ = await read_all(context(emu, page_size=10), window(emu))
    assert sorted(_ids(items)) == sorted(Chart.source_id(k) for k in keys)


async def test_an_odata_v3_date_literal_server_is_tolerated() -> None:
    emu = emulator(date_literal="v3")
    chart = Chart(emu)
    key = chart.invoice()
    ctx = context(emu)
    since = emu.now() - timedelta(hours=1)
    items, _ = await read_all(ctx, window(emu, since=since))
    again, _ = await read_all(ctx, window(emu, since=since))
    assert _ids(items) == _ids(again) == [Chart.source_id(key)]
    assert [r.status for r in emu.log.records if "APInvoices" in r.path].count(400) == 1


async def test_vendors_are_read_by_the_ids_the_invoices_reference() -> None:
    emu = emulator()
    chart = Chart(emu)
    for n in range(8):
        emu.books.add_vendor(f"V{n}", f"Unused Vendor {n}")
    chart.invoice("5.00")
    chart.invoice("6.00", vendor=chart.maple)
    recording = Recording(emu.transport())
    await read_all(context(emu, transport=recording), window(emu))
    vendor_calls = [r for r in recording.v2() if r.url.path.endswith("/Vendors")]
    filters = [parse_qs(r.url.query.decode())["$filter"][0] for r in vendor_calls]
    assert filters[0] == f"(VendorNum eq {chart.acme} or VendorNum eq {chart.maple})"


async def test_lines_are_the_gl_distribution_plus_a_tax_line() -> None:
    emu = emulator()
    chart = Chart(emu)
    key = emu.books.add_invoice(
        chart.acme,
        "SI0004411",
        [
            (Decimal("300.00"), chart.office, "Toner cartridges", chart.repairs),
            (Decimal("45.10"), chart.freight, "Freight"),
        ],
        tax=Decimal("21.75"),
    )
    items, _ = await read_all(context(emu), window(emu))
    (payable,) = items
    assert payable.source_id == Chart.source_id(key)
    assert payable.invoice_number == payable.document_number == "SI0004411"
    assert payable.total == Decimal("366.85")
    lines = [(li.line_id, li.amount, li.account_id, li.quantity) for li in payable.lines]
    assert lines == [
        ("1.1", Decimal("200.00"), chart.office, None),
        ("1.2", Decimal("100.00"), chart.repairs, None),
        ("2.1", Decimal("45.10"), chart.freight, Decimal(1)),
        ("tax", Decimal("21.75"), "6900|00", None),
    ]
    assert all(type(li.amount) is Decimal for li in payable.lines)
    assert payable.vendor.source_id == str(chart.acme)
    assert payable.vendor.address is not None
    assert payable.vendor.address.country == "US"


async def test_a_foreign_vendor_keeps_its_currency_and_country() -> None:
    emu = emulator()
    chart = Chart(emu)
    chart.invoice("99.95", vendor=chart.maple)
    (payable,), _ = await read_all(context(emu), window(emu))
    assert payable.currency == payable.vendor.currency == "CAD"
    assert payable.vendor.address is not None
    assert payable.vendor.address.country == "CA"


async def test_invoices_that_cannot_be_payables_are_rejected_naming_the_field() -> None:
    emu = emulator()
    chart = Chart(emu)
    good = chart.invoice("10.00")
    no_lines = chart.invoice("11.00")
    emu.books.invoices[no_lines].expenses.clear()
    no_account = emu.books.add_invoice(chart.acme, "NOACCT-1", [
        (Decimal("6.00"), chart.office, "a"), (Decimal("6.00"), chart.office, "b", chart.repairs),
    ])  # fmt: skip
    emu.books.invoices[no_account].expenses[2]["GLAccount"] = ""  # line 2, second split
    mismatch = chart.invoice("13.00")
    emu.books.invoices[mismatch].head["DocInvoiceAmt"] = Decimal("13.01")
    taxed = emu.books.add_invoice(chart.acme, "TAXED-1", [(Decimal(5), chart.office, "x")],
                                  tax=Decimal("0.36"))  # fmt: skip
    abroad = emu.books.add_vendor("FARAWAY", "Faraway Ltd", Address1="1 Road", City="Town",
                                  ZIP="1", Country="Atlantis")  # fmt: skip
    far = chart.invoice("14.00", vendor=abroad)
    items, pages = await read_all(context(emu, tax_account=None), window(emu))
    rejected = {r.record_id: r for page in pages for r in page.rejected}
    assert _ids(items) == [Chart.source_id(good)]
    expected = {
        no_lines: "APInvDtls.APInvExps",
        no_account: "APInvDtls.1.APInvExps.1.GLAccount",
        mismatch: "DocInvoiceAmt",
        taxed: "DocTaxAmt",
        far: "Vendor.Country",
    }
    assert {k: v.field for k, v in rejected.items()} == {
        Chart.source_id(k): f for k, f in expected.items()
    }
    assert all(r.modified_at is not None for r in rejected.values())
    assert "settings.tax_account" in rejected[Chart.source_id(taxed)].reason


async def test_get_payable_reads_any_status_and_names_bad_records() -> None:
    emu = emulator()
    chart = Chart(emu)
    draft = chart.invoice("10.00", posted=False)
    broken = chart.invoice("11.00")
    emu.books.invoices[broken].expenses.clear()
    odd = emu.books.add_invoice(chart.acme, "O'Brien/7", [(Decimal(3), chart.office, "x")])
    ctx = context(emu)
    unposted = await plugin.get_payable(ctx, Chart.source_id(draft))
    assert unposted is not None
    assert unposted.source_status == "unposted"
    quoted = await plugin.get_payable(ctx, Chart.source_id(odd))
    assert quoted is not None
    assert quoted.invoice_number == "O'Brien/7"
    assert await plugin.get_payable(ctx, f"{chart.acme}:NO-SUCH") is None
    assert await plugin.get_payable(ctx, "not-an-epicor-id") is None
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.get_payable(ctx, Chart.source_id(broken))
    assert (caught.value.record_id, caught.value.field) == (
        Chart.source_id(broken), "APInvDtls.APInvExps",
    )  # fmt: skip
    emu.set_odata_500(1.0)
    again = await plugin.get_payable(ctx, Chart.source_id(odd))
    assert again == quoted


async def test_accounts_are_gl_accounts_numbered_by_their_natural_segment() -> None:
    emu = emulator(invoices=5)
    catalog = await plugin.list_accounts(context(emu))
    by_id = {a.id: a for a in catalog.accounts}
    assert by_id["6100|10"].number == "6100"
    assert by_id["6100|10"].name == "Office Supplies - Administration"
    assert by_id["8800|00"].active is False
    assert len(catalog.accounts) == len(emu.books.accounts)
    none = await plugin.list_accounts(context(emu, coa_code="OTHERBOOK"))
    assert none.accounts == ()


async def test_a_page_token_of_another_window_is_refused() -> None:
    emu = emulator()
    chart = Chart(emu)
    for i in range(3):
        chart.invoice(f"{i + 1}.00")
    ctx = context(emu, page_size=1)
    page = await plugin.list_changed_payables(ctx, window(emu), None)
    assert page.next_page_token is not None
    other = ChangeWindow(since=emu.now() - timedelta(days=1), until=emu.now())
    with pytest.raises(ConfigurationError, match="another window"):
        await plugin.list_changed_payables(ctx, other, page.next_page_token)
    with pytest.raises(ConfigurationError, match="not a page token"):
        await plugin.list_changed_payables(ctx, other, "garbage!")


async def test_a_page_is_converted_with_the_event_loop_running_in_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = emulator()
    chart = Chart(emu)
    for i in range(1, 31):
        chart.invoice(f"{i}.00")
    ctx = context(emu, page_size=50)
    turns_at_row: list[int] = []
    to_payable = plugin.to_payable
    async with loop_turns() as turns:

        def noting(*args: Any) -> Any:
            turns_at_row.append(turns())
            return to_payable(*args)

        monkeypatch.setattr(plugin, "to_payable", noting)
        await plugin.list_changed_payables(ctx, window(emu), None)
    assert len(turns_at_row) == 30
    assert len(set(turns_at_row)) >= 30 // 8


async def test_getrows_returns_the_distribution_flat_and_it_is_joined_to_its_line() -> None:
    emu = emulator()
    chart = Chart(emu)
    emu.books.add_invoice(chart.acme, "SPLIT-7", [
        (Decimal("90.00"), chart.office, "Toner", chart.repairs),
        (Decimal("30.00"), chart.office, "Paper", chart.freight),
        (Decimal("12.50"), chart.freight, "Freight"),
    ])  # fmt: skip
    chart.invoice("20.00")
    by_odata, _ = await read_all(context(emu), window(emu))
    emu.set_odata_500(1.0)
    recording = Recording(emu.transport())
    by_getrows, _ = await read_all(context(emu, transport=recording), window(emu))
    assert by_getrows == by_odata
    split = next(p for p in by_getrows if p.invoice_number == "SPLIT-7")
    assert [(li.line_id, li.amount, li.account_id) for li in split.lines] == [
        ("1.1", Decimal("60.00"), chart.office),
        ("1.2", Decimal("30.00"), chart.repairs),
        ("2.1", Decimal("20.00"), chart.office),
        ("2.2", Decimal("10.00"), chart.freight),
        ("3.1", Decimal("12.50"), chart.freight),
    ]
    (call,) = [r for r in recording.v2() if r.url.path.endswith("APInvoiceSvc/GetRows")][:1]
    sent = json.loads(call.content)
    assert sent["whereClauseAPInvDtl"] == sent["whereClauseAPInvExp"] == ""
    assert sent["whereClauseAPIHAPInvExp"] == "1=0"


@pytest.mark.parametrize(
    ("column", "value"),
    [("InvoiceNum", None), ("InvoiceNum", "  "), ("VendorNum", None), ("VendorNum", 0),
     ("InvoiceNum", "absent"), ("VendorNum", "absent")],
)  # fmt: skip
async def test_an_invoice_without_a_key_is_rejected_naming_it_and_the_page_goes_on(
    column: str, value: object
) -> None:
    emu = emulator()
    chart = Chart(emu)
    good = {chart.invoice("10.00"), chart.invoice("11.00")}
    broken = chart.invoice("12.00")
    head = emu.books.invoices[broken].head
    if value == "absent":
        del head[column]
    else:
        head[column] = value
    items, pages = await read_all(context(emu, page_size=2), window(emu))
    assert sorted(_ids(items)) == sorted(Chart.source_id(k) for k in good)
    (rejected,) = [r for page in pages for r in page.rejected]
    assert rejected.field == column
    assert f"has no {column}, a key of APInvHed" in rejected.reason
    assert rejected.record_id is not None
    assert head["SysRowID"] in rejected.record_id
    kept = str(broken[0]) if column == "InvoiceNum" else broken[1]
    assert kept in rejected.record_id  # the key part it has names it too
    assert rejected.modified_at is not None


async def test_a_vendor_on_payment_hold_is_not_synced_and_its_bills_say_why() -> None:
    emu = emulator()
    chart = Chart(emu)
    held = {chart.invoice("10.00", vendor=chart.maple), chart.invoice("11.00", vendor=chart.maple)}
    ready = chart.invoice("12.00")
    emu.books.vendors[chart.maple]["PayHold"] = True
    ctx = context(emu)
    items, pages = await read_all(ctx, window(emu))
    assert _ids(items) == [Chart.source_id(ready)]
    rejected = {r.record_id: r for page in pages for r in page.rejected}
    assert set(rejected) == {Chart.source_id(k) for k in held}
    for record in rejected.values():
        assert record.field == "Vendor.PayHold"
        assert record.reason.startswith("vendor MAPLETL is on payment hold in Epicor")
    with pytest.raises(InvalidRecordError) as caught:  # a retry while held fails the same way
        await plugin.get_payable(ctx, Chart.source_id(sorted(held)[0]))
    assert caught.value.field == "Vendor.PayHold"
    emu.books.vendors[chart.maple]["PayHold"] = False  # the hold is lifted: a retry moves it
    lifted = await plugin.get_payable(context(emu), Chart.source_id(sorted(held)[0]))
    assert lifted is not None
    assert lifted.vendor.source_id == str(chart.maple)
