"""Text BILL would refuse is refused whole before it is sent, never cut (issue #17).

BILL accepts a ``description`` of at most 4000 characters on a bill and on a line item, and a
vendor ``name`` of 1-100 (bill.md §5). The plugin refuses an over-long draft with the field named
and sends nothing; the emulator refuses an over-long body the way BILL does (400, the error
array, ``field: message``), so a client that forgot the check cannot pass either.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from plugins.bill.tests.support import draft, vendor

from ml_connector.context import ConnectionContext
from ml_connector.errors import InvalidRecordError
from ml_connector.models import BillDraft
from ml_connector_bill import plugin
from ml_connector_bill.client import RecordRef
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import DESCRIPTION_MAX, VENDOR_NAME_MAX, dumps

LONGEST = "x" * DESCRIPTION_MAX
TOO_LONG = "x" * (DESCRIPTION_MAX + 1)


@pytest.fixture
def rent(emulator: BillEmulator) -> str:
    return emulator.account_id("6100")


@pytest.fixture
async def vendor_id(ctx: ConnectionContext) -> str:
    return (await plugin.upsert_vendor(ctx, vendor(), None)).sink_id


def _with_description(base: BillDraft, text: str) -> BillDraft:
    return base.model_copy(
        update={"payable": base.payable.model_copy(update={"description": text})}
    )


def _with_line_description(base: BillDraft, index: int, text: str) -> BillDraft:
    lines = list(base.lines)
    lines[index] = lines[index].model_copy(update={"description": text})
    return base.model_copy(update={"lines": tuple(lines)})


def _writes(emulator: BillEmulator) -> int:
    return emulator.log.writes(exclude=("/login", "/logout"))


def test_the_limits_are_bills() -> None:
    assert (DESCRIPTION_MAX, VENDOR_NAME_MAX) == (4000, 100)  # bill.md §5


# --- The plugin refuses before it sends -----------------------------------------------------------


async def test_the_longest_description_bill_accepts_goes_whole(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    base = draft(vendor_id, "INV-L", account_id=rent)
    longest = _with_line_description(_with_description(base, LONGEST), 1, LONGEST)
    result = await plugin.create_bill(ctx, longest)
    stored = emulator.bills[result.sink_id]
    assert stored["description"] == LONGEST
    assert stored["billLineItems"][1]["description"] == LONGEST


async def test_an_over_long_bill_description_is_refused_not_cut(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    before = _writes(emulator)
    bad = _with_description(draft(vendor_id, "INV-D", account_id=rent), TOO_LONG)
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, bad)
    error = raised.value
    assert (error.record_type, error.record_id, error.field) == (
        "payable",
        "P-INV-D",
        "description",
    )
    assert "4001 characters" in error.reason
    assert "at most 4000" in error.reason
    assert _writes(emulator) == before  # nothing was sent
    assert emulator.bills_for(vendor_id, "INV-D") == []


async def test_an_over_long_line_description_is_refused_with_its_line(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    before = _writes(emulator)
    bad = _with_line_description(draft(vendor_id, "INV-E", account_id=rent), 1, TOO_LONG)
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, bad)
    assert (raised.value.record_id, raised.value.field) == ("P-INV-E", "lines.1.description")
    assert "at most 4000" in raised.value.reason
    assert _writes(emulator) == before


async def test_an_update_to_an_over_long_description_leaves_the_bill_alone(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    created = await plugin.create_bill(ctx, draft(vendor_id, "INV-U", account_id=rent))
    stored = dict(emulator.bills[created.sink_id])
    before = _writes(emulator)
    changed = draft(vendor_id, "INV-U", ("300.00",), account_id=rent, existing=created.sink_id)
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bill(ctx, _with_description(changed, TOO_LONG))
    assert raised.value.field == "description"
    assert _writes(emulator) == before
    assert emulator.bills[created.sink_id] == stored


async def test_a_bulk_create_with_one_over_long_description_sends_nothing(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    good = draft(vendor_id, "INV-G", account_id=rent)
    bad = _with_description(draft(vendor_id, "INV-H", account_id=rent), TOO_LONG)
    before = _writes(emulator)
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.create_bills(ctx, [good, bad])
    assert (raised.value.record_id, raised.value.field) == ("P-INV-H", "description")
    assert _writes(emulator) == before


async def test_an_over_long_vendor_name_is_refused_not_cut(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    before = _writes(emulator)
    with pytest.raises(InvalidRecordError) as raised:
        await plugin.upsert_vendor(ctx, vendor("N", name="N" * (VENDOR_NAME_MAX + 1)), None)
    error = raised.value
    assert (error.record_type, error.record_id, error.field) == ("vendor", "V-N", "name")
    assert "101 characters" in error.reason
    assert "at most 100" in error.reason
    assert _writes(emulator) == before
    longest = await plugin.upsert_vendor(ctx, vendor("M", name="M" * VENDOR_NAME_MAX), None)
    assert emulator.vendors[longest.sink_id]["name"] == "M" * VENDOR_NAME_MAX


# --- The emulator refuses what BILL refuses -------------------------------------------------------


def _body(vendor_id: str, rent: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "vendorId": vendor_id,
        "invoice": {"invoiceNumber": "INV-W", "invoiceDate": "2025-02-01"},
        "dueDate": "2025-03-03",
        "billLineItems": [
            {"amount": Decimal("10.00"), "classifications": {"chartOfAccountId": rent}}
        ],
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"description": TOO_LONG}, "description"),
        ({"description": 12}, "description"),
        (
            {"billLineItems": [{"amount": Decimal("10.00"), "description": TOO_LONG}]},
            "billLineItems[0].description",
        ),
    ],
    ids=["bill", "not-text", "line"],
)
async def test_the_emulator_refuses_an_over_long_description_as_bill_does(
    ctx: ConnectionContext,
    emulator: BillEmulator,
    vendor_id: str,
    rent: str,
    changes: dict[str, object],
    field: str,
) -> None:
    client = plugin._client(ctx)
    body = _body(vendor_id, rent, **changes)
    for send in (
        lambda: client.create_bill(body, RecordRef("payable", "P-W")),
        lambda: client.create_bills([body], RecordRef("payable", "P-W")),
    ):
        with pytest.raises(InvalidRecordError) as raised:
            await send()
        assert (raised.value.record_id, raised.value.field) == ("P-W", field)
        assert raised.value.system == "bill"
    refusals = [r for r in emulator.log.records if r.status == 400]
    assert len(refusals) == 2
    assert emulator.bills_for(vendor_id, "INV-W") == []


async def test_the_emulator_refuses_an_over_long_description_on_replace(
    ctx: ConnectionContext, emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    client = plugin._client(ctx)
    created = await client.create_bill(_body(vendor_id, rent), RecordRef("payable", "P-W"))
    with pytest.raises(InvalidRecordError) as raised:
        await client.replace_bill(
            created.id, _body(vendor_id, rent, description=TOO_LONG), RecordRef("payable", "P-W")
        )
    assert raised.value.field == "description"
    assert emulator.bills[created.id].get("description") is None


async def test_the_emulator_answers_bills_error_array(
    emulator: BillEmulator, vendor_id: str, rent: str
) -> None:
    # The raw answer a client gets, without the plugin's client: bill.md §3's shape.
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://bill.test/connect"
    ) as http:
        login = await http.post(
            "/v3/login",
            content=dumps(
                {
                    "username": emulator.config.username,
                    "password": emulator.config.password,
                    "organizationId": emulator.config.organization_id,
                    "devKey": emulator.config.dev_key,
                }
            ),
        )
        headers = {"devKey": emulator.config.dev_key, "sessionId": login.json()["sessionId"]}
        answer = await http.post(
            "/v3/bills",
            content=dumps(_body(vendor_id, rent, description=TOO_LONG)),
            headers=headers,
        )
    assert answer.status_code == 400
    (error,) = answer.json()
    assert set(error) == {"timestamp", "code", "severity", "category", "message"}
    assert error["code"].startswith("BDC_")
    assert error["severity"] == "ERROR"
    assert error["message"] == "description: must be at most 4000 characters"
