"""Vendors, bills (single and bulk), the chart of accounts and classifications (bill.md §5)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from plugins.bill.tests.support import draft, make_context, make_emulator, vendor

from ml_connector.context import ConnectionContext
from ml_connector.errors import InvalidRecordError
from ml_connector.models import Account, AccountKind, DimensionKind
from ml_connector_bill import plugin
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import dumps


@pytest.fixture
def rent(emulator: BillEmulator) -> str:
    return emulator.account_id("6100")


# --- Vendors -------------------------------------------------------------------------------------


async def test_vendor_create_shape(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    result = await plugin.upsert_vendor(ctx, vendor("A"), None)
    assert result.created
    assert result.sink_id.startswith("009")
    stored = emulator.vendors[result.sink_id]
    assert stored["name"] == "Northwind Supplies A"
    assert stored["address"] == {
        "line1": "1 Main St",
        "city": "Seattle",
        "stateOrProvince": "WA",
        "zipOrPostalCode": "98101",
        "country": "US",
    }
    assert stored["billCurrency"] == "USD"


async def test_vendor_found_updated_and_adopted(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    first = await plugin.upsert_vendor(ctx, vendor("A"), None)
    found = await plugin.find_vendor(ctx, vendor("A"))
    assert found is not None
    assert found.sink_id == first.sink_id
    updated = await plugin.upsert_vendor(
        ctx, vendor("A", email="remit@northwind.example"), first.sink_id
    )
    assert (updated.sink_id, updated.created) == (first.sink_id, False)
    assert emulator.vendors[first.sink_id]["email"] == "remit@northwind.example"
    # a vendor a clerk entered before the connector is adopted by name, not doubled (§8)
    adopted = await plugin.upsert_vendor(ctx, vendor("A", source_id="V-OTHER"), None)
    assert (adopted.sink_id, adopted.created) == (first.sink_id, False)
    assert len(emulator.vendors) == 1
    assert await plugin.find_vendor(ctx, vendor("Z")) is None


async def test_a_vanished_vendor_is_created_again(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    result = await plugin.upsert_vendor(ctx, vendor("A"), "00901GONE000000000000")
    assert result.created
    assert len(emulator.vendors) == 1


@pytest.mark.parametrize(
    "name", ['The "Best" Supplies', "Smith, Jones & Co.", '"Quoted" Ltd', ",Comma First"]
)
async def test_vendor_names_with_quotes_and_commas_are_found(
    ctx: ConnectionContext, emulator: BillEmulator, name: str
) -> None:
    await plugin.upsert_vendor(ctx, vendor("O", name=f"{name} Holdings"), None)
    special = vendor("Q", name=name)
    created = await plugin.upsert_vendor(ctx, special, None)
    assert created.created
    found = await plugin.find_vendor(ctx, special)
    assert found is not None
    assert found.sink_id == created.sink_id
    assert all(r.status == 200 for r in emulator.log.records if r.method == "GET")


async def test_vendor_refusals_name_the_record_and_field(ctx: ConnectionContext) -> None:
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.upsert_vendor(ctx, vendor("N", address=None), None)
    assert (raised.value.record_id, raised.value.field) == ("V-N", "address")
    broken = vendor("C")
    assert broken.address is not None
    no_city = broken.model_copy(
        update={"address": broken.address.model_copy(update={"city": None})}
    )
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.upsert_vendor(ctx, no_city, None)
    assert raised.value.record_type == "vendor"
    assert raised.value.record_id == "V-C"
    assert raised.value.field == "address.city"
    assert raised.value.system == "bill"


# --- Bills ---------------------------------------------------------------------------------------


async def test_bill_create_wire_shape(
    ctx: ConnectionContext, emulator: BillEmulator, rent: str
) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    department = next(iter(emulator.classifications["departments"]))
    result = await plugin.create_bill(
        ctx,
        draft(
            vendor_id,
            "INV-1",
            ("149.00", "79.99"),
            account_id=rent,
            classifications={DimensionKind.DEPARTMENT: department},
        ),
    )
    assert result.created
    assert not result.paid
    bill = emulator.bills[result.sink_id]
    assert result.sink_id.startswith("00n")
    assert bill["invoice"] == {"invoiceNumber": "INV-1", "invoiceDate": "2025-02-01"}
    assert bill["dueDate"] == "2025-03-03"  # top level, not inside invoice
    assert bill["amount"] == Decimal("228.99")  # exact: Decimals travel as written
    assert [line["amount"] for line in bill["billLineItems"]] == [
        Decimal("149.00"),
        Decimal("79.99"),
    ]
    assert bill["billLineItems"][0]["classifications"] == {
        "chartOfAccountId": rent,
        "departmentId": department,
    }
    assert bill["billLineItems"][0]["id"].startswith("bli")
    assert bill["description"] == "ERP document D-INV-1"


async def test_bill_found_by_vendor_and_invoice(ctx: ConnectionContext, rent: str) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    created = [
        await plugin.create_bill(ctx, draft(vendor_id, f"INV-{i}", account_id=rent))
        for i in range(5)
    ]
    found = await plugin.find_bill(ctx, vendor_id, "INV-3")
    assert found is not None
    assert (found.sink_id, found.created) == (created[3].sink_id, False)
    assert await plugin.find_bill(ctx, vendor_id, "INV-404") is None


async def test_bill_updated_while_unpaid_then_left_alone(
    ctx: ConnectionContext, emulator: BillEmulator, rent: str
) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    created = await plugin.create_bill(ctx, draft(vendor_id, "INV-1", account_id=rent))
    changed = draft(vendor_id, "INV-1", ("300.00",), account_id=rent, existing=created.sink_id)
    updated = await plugin.create_bill(ctx, changed)
    assert (updated.sink_id, updated.created, updated.paid) == (created.sink_id, False, False)
    bill = emulator.bills[created.sink_id]
    assert bill["amount"] == Decimal("300.00")
    assert len(bill["billLineItems"]) == 1
    emulator.pay({created.sink_id: Decimal("100.00")})  # partly paid
    again = draft(vendor_id, "INV-1", ("999.00",), account_id=rent, existing=created.sink_id)
    locked = await plugin.create_bill(ctx, again)
    assert locked.paid
    assert emulator.bills[created.sink_id]["amount"] == Decimal("300.00")
    assert len(emulator.bills_for(vendor_id, "INV-1")) == 1


async def test_a_vanished_bill_is_created_again(
    ctx: ConnectionContext, emulator: BillEmulator, rent: str
) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    result = await plugin.create_bill(
        ctx, draft(vendor_id, "INV-1", account_id=rent, existing="00n01GONE000000000000")
    )
    assert result.created
    assert len(emulator.bills) == 1


async def test_bill_refusal_names_the_payable_and_field(ctx: ConnectionContext, rent: str) -> None:
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, draft("00901NOSUCHVENDOR00", "INV-9", account_id=rent))
    assert (raised.value.record_type, raised.value.record_id) == ("payable", "P-INV-9")
    assert raised.value.field == "vendorId"
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, draft(vendor_id, "INV-9", account_id="0ca01NOSUCHACCOUNT0"))
    assert raised.value.field == "billLineItems[0].classifications.chartOfAccountId"


async def test_a_subaccount_cannot_reach_bill(ctx: ConnectionContext, rent: str) -> None:
    bad = draft("009X", "INV-S", account_id=rent, classifications={DimensionKind.SUBACCOUNT: "x"})
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, bad)
    assert raised.value.field == "lines.0.dimensions.subaccount"


async def test_bulk_create_in_order(
    ctx: ConnectionContext, emulator: BillEmulator, rent: str
) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    drafts = [draft(vendor_id, f"B-{i}", account_id=rent) for i in range(5)]
    results = await plugin.create_bills(ctx, drafts)
    assert [emulator.bills[r.sink_id]["invoice"]["invoiceNumber"] for r in results] == [
        f"B-{i}" for i in range(5)
    ]
    assert all(r.created for r in results)
    bulk_calls = [r for r in emulator.log.records if r.path.endswith("/v3/bills/bulk")]
    assert [r.status for r in bulk_calls] == [201]


async def test_a_failed_bulk_batch_creates_nothing(
    ctx: ConnectionContext, emulator: BillEmulator, rent: str
) -> None:
    vendor_id = (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id
    emulator.refuse_invoice("B-3", "invoice.invoiceNumber", "duplicate in the vendor's books")
    drafts = [draft(vendor_id, f"B-{i}", account_id=rent) for i in range(5)]
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bills(ctx, drafts)
    assert raised.value.record_id is None  # BILL does not say which bill of the batch
    assert raised.value.field == "invoice.invoiceNumber"
    assert emulator.bills == {}
    # alone, the bad bill is named
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bills(ctx, drafts[3:4])
    assert raised.value.record_id == "P-B-3"


async def test_a_reordered_bulk_answer_is_paired_by_invoice(rent: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v3/login"):
            return httpx.Response(200, json={"sessionId": "s"})
        sent = json.loads(request.content)
        answer = [
            {"id": f"00n{i}", "vendorId": b["vendorId"], "invoice": b["invoice"]}
            for i, b in enumerate(sent)
        ]
        return httpx.Response(201, json=answer[::-1])

    ctx = make_context(make_emulator())
    ctx.transport = httpx.MockTransport(handler)
    results = await plugin.create_bills(
        ctx, [draft("009V", f"R-{i}", account_id=rent) for i in range(3)]
    )
    assert [r.sink_id for r in results] == ["00n0", "00n1", "00n2"]
    await plugin.close_connection(ctx)


async def test_bulk_is_capped_at_200(ctx: ConnectionContext, rent: str) -> None:
    assert plugin.describe_plugin().limits.batch_size == 200
    drafts = [draft("009X", f"B-{i}", account_id=rent) for i in range(201)]
    with pytest.raises(ValueError, match="200"):
        await plugin.create_bills(ctx, drafts)


# --- Accounts ------------------------------------------------------------------------------------


async def test_list_accounts_reads_the_chart_and_classifications(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    catalog = await plugin.list_accounts(ctx)
    by_number = {a.number: a for a in catalog.accounts}
    assert by_number["6100"].name == "Rent"
    assert by_number["6100"].kind is AccountKind.EXPENSE
    assert by_number["2000"].kind is AccountKind.LIABILITY
    assert by_number["1000"].kind is AccountKind.ASSET
    kinds = {d.kind for d in catalog.dimensions}
    assert {DimensionKind.DEPARTMENT, DimensionKind.LOCATION, DimensionKind.CLASS} <= kinds
    sales = next(d for d in catalog.dimensions if d.name == "Sales")
    assert (sales.code, sales.kind) == ("SALES", DimensionKind.DEPARTMENT)


async def test_create_account(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    created = await plugin.create_account(
        ctx, Account(id="7990", number="7990", name="Suspense Clearing")
    )
    assert created.id.startswith("0ca")
    assert (created.number, created.name) == ("7990", "Suspense Clearing")
    catalog = await plugin.list_accounts(ctx)
    assert created in catalog.accounts
    assert emulator.account_id("7990") == created.id


def test_bodies_are_written_as_json_dumps_writes_them_and_decimals_digit_for_digit() -> None:
    value = {
        "text": 'é\n"\\\u2028',
        "none": None,
        "flags": [True, False, 0, 1],
        "count": -5,
        "big": 10**30,
        "nested": [{"k": []}, "x"],
        "amount": Decimal("1234.50"),
    }
    as_json = json.dumps({**value, "amount": 0}, ensure_ascii=False, separators=(",", ":"))
    assert dumps(value) == as_json.replace('"amount":0', '"amount":1234.50').encode()
