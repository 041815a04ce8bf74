"""GL segments beyond the natural account as dimensions (``settings.segment_dimensions``).

Kinetic's GL accounts carry ``SegValue1``..``SegValue20`` (SNO ``Erp_BO_GLAccountSvc``); segment
1 is the natural account (BILL's account number), the others are what a chart makes of them
(department, division, location, …), named in ``COASegValues`` (``Erp.BO.COASegValuesSvc``).
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from plugins.epicor.tests.helpers import Chart, Recording, context, emulator, read_all, window
from pydantic import ValidationError

from ml_connector.description import Capability
from ml_connector.models import DimensionKind
from ml_connector_epicor import plugin
from ml_connector_epicor.emulator import EpicorEmulator
from ml_connector_epicor.schemas import EpicorSettings

DEPARTMENT, LOCATION = DimensionKind.DEPARTMENT, DimensionKind.LOCATION


def _chart(emu: EpicorEmulator) -> Chart:
    chart = Chart(emu)
    books = emu.books
    for code, name in (("00", "Company-wide"), ("10", "Administration"), ("20", "Production")):
        books.add_segment_value(2, code, name)
    books.add_segment_value(2, "40", "Closed Plant", active=False)
    books.add_segment_value(1, "6100", "Office Supplies")  # segment 1: never a dimension
    return chart


def test_the_plugin_declares_dimensions() -> None:
    assert Capability.DIMENSIONS in plugin.describe_plugin().capabilities


async def test_by_default_no_segment_is_a_dimension_and_nothing_more_is_read() -> None:
    emu = emulator()
    chart = _chart(emu)
    chart.invoice("10.00")
    ctx = context(emu)
    catalog = await plugin.list_accounts(ctx)
    (payable,), _ = await read_all(ctx, window(emu))
    assert catalog.dimensions == ()
    assert all(line.dimensions == {} for line in payable.lines)
    assert not any("COASegValues" in r.path for r in emu.log.records)


async def test_segment_values_are_listed_as_the_dimension_they_are() -> None:
    emu = emulator()
    chart = _chart(emu)
    emu.books.add_account("6300", "30", "Utilities - Sales")  # "30" has no COASegValues row
    recording = Recording(emu.transport())
    ctx = context(emu, transport=recording, segment_dimensions={"2": "department"})
    catalog = await plugin.list_accounts(ctx)
    values = {(d.kind, d.id): (d.code, d.name, d.active) for d in catalog.dimensions}
    assert values == {
        (DEPARTMENT, "00"): ("00", "Company-wide", True),
        (DEPARTMENT, "10"): ("10", "Administration", True),
        (DEPARTMENT, "20"): ("20", "Production", True),
        (DEPARTMENT, "40"): ("40", "Closed Plant", False),
        (DEPARTMENT, "30"): ("30", "30", True),  # used by an account, named by its code
    }
    assert {a.id for a in catalog.accounts} == set(emu.books.accounts)
    assert catalog.accounts[0].number is not None
    read = next(r for r in recording.v2() if r.url.path.endswith("/COASegValues"))
    assert parse_qs(read.url.query.decode())["$filter"] == ["(SegmentNbr eq 2)"]
    accounts = next(r for r in recording.v2() if r.url.path.endswith("/GLAccounts"))
    assert "SegValue2" in parse_qs(accounts.url.query.decode())["$select"][0].split(",")
    assert chart.office in {a.id for a in catalog.accounts}


async def test_each_line_carries_its_accounts_segments_the_tax_line_too() -> None:
    emu = emulator()
    chart = _chart(emu)
    emu.books.add_invoice(
        chart.acme,
        "DEPT-1",
        [(Decimal("90.00"), chart.office, "Toner", chart.repairs)],
        tax=Decimal("6.53"),
    )
    ctx = context(emu, segment_dimensions={"2": "department"})
    (payable,), _ = await read_all(ctx, window(emu))
    assert [(li.account_id, li.dimensions) for li in payable.lines] == [
        (chart.office, {DEPARTMENT: "10"}),
        (chart.repairs, {DEPARTMENT: "20"}),
        (chart.tax, {DEPARTMENT: "00"}),
    ]
    again = await plugin.get_payable(ctx, payable.source_id)
    assert again == payable


async def test_several_segments_and_blank_ones() -> None:
    emu = emulator()
    chart = _chart(emu)
    emu.books.add_segment_value(3, "EAST", "East Region")
    both = emu.books.add_account("6500", "10", "Professional Fees - Admin East", "EAST")
    plain = emu.books.add_account("6700", "", "Software - no department")
    emu.books.add_invoice(chart.acme, "SEGS-1", [
        (Decimal("40.00"), both, "Audit"), (Decimal("5.00"), plain, "Backup"),
    ])  # fmt: skip
    ctx = context(emu, segment_dimensions={"3": "location", "2": "department"})
    (payable,), _ = await read_all(ctx, window(emu))
    assert [li.dimensions for li in payable.lines] == [{DEPARTMENT: "10", LOCATION: "EAST"}, {}]
    catalog = await plugin.list_accounts(ctx)
    assert (LOCATION, "EAST", "East Region") in {(d.kind, d.id, d.name) for d in catalog.dimensions}


async def test_an_account_created_after_the_chart_was_read_is_read_again() -> None:
    emu = emulator()
    chart = _chart(emu)
    ctx = context(emu, segment_dimensions={"2": "department"})
    await plugin.list_accounts(ctx)  # the run reads the chart first
    newer = emu.books.add_account("7100", "20", "Shop Supplies - Production")
    emu.books.add_invoice(chart.acme, "NEW-ACCT", [(Decimal("3.00"), newer, "Gloves")])
    (payable,), _ = await read_all(ctx, window(emu))
    assert payable.lines[0].dimensions == {DEPARTMENT: "20"}


async def test_segment_values_fall_back_to_getrows_too() -> None:
    emu = emulator()
    _chart(emu)
    ctx = context(emu, segment_dimensions={"2": "department"})
    by_odata = await plugin.list_accounts(ctx)
    emu.set_odata_500(1.0, {"Erp.BO.GLAccountSvc", "Erp.BO.COASegValuesSvc"})
    by_getrows = await plugin.list_accounts(context(emu, segment_dimensions={"2": "department"}))
    assert by_getrows == by_odata
    assert any(r.path.endswith("COASegValuesSvc/GetRows") for r in emu.log.records)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"1": "department"}, "segment 1 is the natural account"),
        ({"21": "class"}, "segments 2 to 20"),
        ({"2": "class", "3": "class"}, "two segments are the same dimension (class)"),
        ({"2": "division"}, "Input should be"),
    ],
)
def test_segment_settings_are_checked(value: dict[str, str], message: str) -> None:
    emu = emulator()
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EpicorSettings.model_validate(emu.settings("https://x") | {"segment_dimensions": value})
