"""The emulator on its own: Kinetic's paths and quirks, the entry points, loopback serving."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from plugins.epicor.tests.helpers import Chart, emulator, window

from ml_connector.context import ConnectionContext
from ml_connector.description import PluginInfo, Role
from ml_connector.emulation import DemoSource, EmulatorOptions, load_emulator, serve_in_thread
from ml_connector_epicor import PLUGIN_INFO, plugin
from ml_connector_epicor.emulator import EpicorEmulator
from ml_connector_epicor.schemas import GETROWS_TABLES, EpicorCredentials, EpicorSettings

API = "/KineticDemo/api/v2/odata/EPIC06/"


async def _get(emu: EpicorEmulator, path: str, **params: str) -> httpx.Response:
    auth = httpx.BasicAuth(emu.USER, emu.PASSWORD)
    headers = {"X-API-Key": emu.API_KEY}  # the header name is case-insensitive (§2)
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://epicor") as http:
        return await http.get(path, params=params, auth=auth, headers=headers)


async def _post(emu: EpicorEmulator, path: str, body: Any) -> httpx.Response:
    auth = httpx.BasicAuth(emu.USER, emu.PASSWORD)
    headers = {"x-api-key": emu.API_KEY}
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://epicor") as http:
        return await http.post(path, json=body, auth=auth, headers=headers)


async def test_collections_keys_select_expand_and_count() -> None:
    emu = emulator()
    chart = Chart(emu)
    key = chart.invoice("12.50")
    chart.invoice("13.50")
    listed = (await _get(emu, API + "Erp.BO.APInvoiceSvc/APInvoices", **{
        "$select": "InvoiceNum,DocInvoiceAmt", "$expand": "APInvDtls($expand=APInvExps)",
        "$top": "1", "$orderby": "InvoiceNum desc"})).json()  # fmt: skip
    assert listed["@odata.context"] == "$metadata#APInvoices"
    (row,) = listed["value"]
    assert set(row) == {"InvoiceNum", "DocInvoiceAmt", "APInvDtls"}
    assert row["InvoiceNum"] == "INV-1002"
    ((line,),) = [row["APInvDtls"]]
    ((expense,),) = [line["APInvExps"]]
    assert (line["InvoiceLine"], expense["InvoiceLine"], expense["GLAccount"]) == (
        1, 1, chart.office,
    )  # fmt: skip
    one = await _get(emu, API + f"Erp.BO.APInvoiceSvc/APInvoices('EPIC06',{key[0]},'{key[1]}')")
    assert one.json()["InvoiceNum"] == key[1]
    assert one.json()["ChangeDate"].count(":") == 2  # no offset: server time (§6)
    count = await _get(emu, API + "Erp.BO.APInvoiceSvc/APInvoices/$count",
                       **{"$filter": "DocInvoiceAmt gt 13"})  # fmt: skip
    assert count.text == "1"
    wrong_case = await _get(emu, API + "Erp.BO.APInvoiceSvc/APInvoices", **{"$Filter": "x eq 1"})
    assert len(wrong_case.json()["value"]) == 2  # a wrong-case option is ignored (§7)
    missing = await _get(emu, API + "Erp.BO.APInvoiceSvc/APInvoices('EPIC06',1,'NOPE')")
    assert missing.status_code == 404
    assert missing.json()["ErrorType"] == "Ice.Common.RecordNotFoundException"


async def test_the_line_distribution_is_expanded_per_line_as_kinetic_documents_it() -> None:
    """SNO's APInvoiceSvc: ``APInvDtls(…)/APInvExps``; OData v4 nests the second level."""
    emu = emulator()
    chart = Chart(emu)
    key = emu.books.add_invoice(chart.acme, "SPLIT-1", [
        (Decimal("90.00"), chart.office, "Toner", chart.repairs),
        (Decimal("10.00"), chart.freight, "Freight"),
    ])  # fmt: skip
    path = API + f"Erp.BO.APInvoiceSvc/APInvoices('EPIC06',{key[0]},'SPLIT-1')"
    nested = {"$expand": "APInvDtls($select=InvoiceLine,Description;"
                         "$expand=APInvExps($select=InvExpSeq,DocExpAmt,GLAccount))"}  # fmt: skip
    answer = await _get(emu, path, **nested)
    assert answer.status_code == 200, answer.text
    lines = answer.json()["APInvDtls"]
    assert [(li["InvoiceLine"], [(e["InvExpSeq"], e["GLAccount"]) for e in li["APInvExps"]])
            for li in lines] == [
        (1, [(1, chart.office), (2, chart.repairs)]),
        (2, [(1, chart.freight)]),
    ]  # fmt: skip
    assert set(lines[0]) == {"InvoiceLine", "Description", "APInvExps"}
    assert set(lines[0]["APInvExps"][0]) == {"InvExpSeq", "DocExpAmt", "GLAccount"}
    # without the nested option, the lines come without their distribution
    own = await _get(emu, path, **{"$expand": "APInvDtls"})
    assert "APInvExps" not in own.json()["APInvDtls"][0]
    # a navigation Kinetic has that the emulator keeps no rows for expands empty
    scheds = await _get(emu, path, **{"$expand": "APInvScheds,APIHAPInvExps"})
    assert (scheds.json()["APInvScheds"], scheds.json()["APIHAPInvExps"]) == ([], [])


@pytest.mark.parametrize(
    ("resource", "expand", "message"),
    [
        # the call the client used to make: the header has no APInvExps navigation
        ("APInvoices", "APInvExps",
         "Could not find a property named 'APInvExps' on type 'Erp.Tablesets.APInvHedRow'."),
        ("APInvoices('EPIC06',{vendor},'{invoice}')", "APInvDtls,APInvExps",
         "Could not find a property named 'APInvExps' on type 'Erp.Tablesets.APInvHedRow'."),
        # OData v3's path form: v4 wants each level in its own parentheses
        ("APInvoices", "APInvDtls/APInvExps",
         "Found a path with multiple navigation properties"),
        ("APInvoices", "APInvDtls($expand=APInvExpz)",
         "Could not find a property named 'APInvExpz' on type 'Erp.Tablesets.APInvDtlRow'."),
        ("APInvoices", "APInvDtls($select=NoSuch)",
         "Could not find a property named 'NoSuch' on type 'Erp.Tablesets.APInvDtlRow'."),
        ("APInvoices", "InvoiceNum",
         "Property 'InvoiceNum' on type 'Erp.Tablesets.APInvHedRow' is not a navigation"),
        ("APInvoices", "APInvDtls($expand=APInvExps", "')' expected"),
    ],
)  # fmt: skip
async def test_an_expand_kinetic_does_not_know_is_a_400_odata_exception(
    resource: str, expand: str, message: str
) -> None:
    emu = emulator()
    chart = Chart(emu)
    key = chart.invoice("12.50")
    path = API + "Erp.BO.APInvoiceSvc/" + resource.format(vendor=key[0], invoice=key[1])
    answer = await _get(emu, path, **{"$expand": expand})
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"HttpStatus", "ReasonPhrase", "ErrorMessage", "ErrorType",
                         "CorrelationId"}  # fmt: skip
    assert (body["HttpStatus"], body["ErrorType"]) == (400, "Microsoft.OData.ODataException")
    assert body["ErrorMessage"].startswith("The query specified in the URI is not valid.")
    assert message in body["ErrorMessage"]


async def test_a_bad_filter_is_a_400_odata_exception_with_the_error_body() -> None:
    emu = emulator()
    answer = await _get(emu, API + "Erp.BO.VendorSvc/Vendors", **{"$filter": "NoSuch eq 1"})
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"HttpStatus", "ReasonPhrase", "ErrorMessage", "ErrorType",
                         "CorrelationId"}  # fmt: skip
    assert body["HttpStatus"] == 400
    assert body["ErrorType"] == "Microsoft.OData.ODataException"
    assert "NoSuch" in body["ErrorMessage"]


async def test_getrows_wants_a_where_clause_for_every_table() -> None:
    emu = emulator(invoices=6)
    body: dict[str, Any] = {f"whereClause{t}": "1=0" for t in GETROWS_TABLES["Erp.BO.VendorSvc"]}
    body |= {"whereClauseVendor": "Country = 'Canada' BY VendorID DESC", "pageSize": 0,
             "absolutePage": 0}  # fmt: skip
    answer = (await _post(emu, API + "Erp.BO.VendorSvc/GetRows", body)).json()
    assert [v["VendorID"] for v in answer["returnObj"]["Vendor"]] == ["MAPLETL"]
    assert answer["parameters"] == {"morePages": False}
    # SNO lists GetRows as a GET with its parameters in the query string: served too
    query = {k: str(v) for k, v in body.items()}
    as_get = (await _get(emu, API + "Erp.BO.VendorSvc/GetRows", **query)).json()
    assert as_get == answer
    del body["whereClauseVendRemitTo"]
    refused = await _post(emu, API + "Erp.BO.VendorSvc/GetRows", body)
    assert refused.status_code == 400
    assert refused.json()["ErrorMessage"] == (
        "Parameter whereClauseVendRemitTo is not found in the input object"
    )


async def test_methods_take_an_object_of_named_parameters() -> None:
    emu = emulator()
    not_object = await _post(emu, API + "Erp.PROC.APPaymentPostSvc/RunDirect", [])
    assert not_object.status_code == 400
    assert "object of named parameters" in not_object.json()["ErrorMessage"]
    unknown = await _post(emu, API + "Erp.BO.PaymentEntrySvc/NoSuchMethod", {})
    assert unknown.status_code == 404


async def test_payment_posting_parameters_are_a_get_and_run_direct_takes_them_back() -> None:
    """SNO's APPaymentPostSvc: GetNewParameters is GET, answering APPaymentPostTableset (one
    table, APPaymentPostProcess); RunDirect is POST {"ds": tableset}."""
    emu = emulator()
    service = API + "Erp.PROC.APPaymentPostSvc/"
    answer = await _get(emu, service + "GetNewParameters")
    assert answer.status_code == 200
    tableset = answer.json()["returnObj"]
    assert set(tableset) == {"APPaymentPostProcess", "ExtensionTables"}
    (row,) = tableset["APPaymentPostProcess"]
    assert (row["GroupID"], row["RowMod"]) == ("", "A")
    assert {"ActType", "AutoAction", "AgentID", "SysRowID"} <= set(row)
    # what the client used to do, and Kinetic refuses
    posted = await _post(emu, service + "GetNewParameters", {})
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET"
    assert posted.json()["ErrorMessage"] == (
        "The requested resource does not support http method 'POST'."
    )
    old = {"ds": {"APPaymentPostParam": [{"GroupID": "G1", "RowMod": "U"}]}}
    wrong_table = await _post(emu, service + "RunDirect", old)
    assert wrong_table.status_code == 400
    body = wrong_table.json()
    assert body["ErrorType"] == "Ice.Common.BusinessObjectException"
    assert body["ErrorDetails"][0]["Table"] == "APPaymentPostProcess"
    row["GroupID"] = "NOGROUP"
    unknown_group = await _post(emu, service + "RunDirect", {"ds": tableset})
    assert unknown_group.status_code == 400
    assert unknown_group.json()["ErrorMessage"] == "Payment group NOGROUP not found."
    as_get = await _get(emu, service + "RunDirect")
    assert (as_get.status_code, as_get.headers["allow"]) == (405, "POST")


async def test_an_unknown_instance_is_not_found() -> None:
    emu = emulator()
    answer = await _get(emu, "/Other/api/v2/odata/EPIC06/Erp.BO.VendorSvc/Vendors")
    assert answer.status_code == 404


def test_the_entry_points_resolve() -> None:
    groups = {
        "ml_connector.plugin_info": PLUGIN_INFO,
        "ml_connector.plugins": plugin,
    }
    for group, expected in groups.items():
        (found,) = [ep for ep in entry_points(group=group) if ep.name == "epicor"]
        assert found.load() is expected
    info = PluginInfo.model_validate(PLUGIN_INFO)
    assert (info.system, info.role) == ("epicor", Role.SOURCE)
    factory = load_emulator("epicor")
    emu = factory(EmulatorOptions(seed=3))
    assert isinstance(emu, EpicorEmulator)
    assert isinstance(emu, DemoSource)
    assert len(emu.seeded.eligible) == 40  # seeded by default, reproducibly
    again = factory(EmulatorOptions(seed=3))
    assert again.seeded.eligible == emu.seeded.eligible


def test_the_demo_protocol() -> None:
    emu = emulator()
    emu.seed_demo(bills=12, seed=5)
    assert len(emu.eligible_bills()) == 12
    held = emu.held_bill_keys()
    assert len(held) == 5
    assert not held & emu.eligible_bills(), "a bill is either eligible or held, never both"
    assert emu.unmapped_account() in emu.account_numbers()
    assert emu.payments_posted() == {}


def test_served_on_loopback_the_plugin_works_over_real_http() -> None:
    emu = EpicorEmulator(EmulatorOptions(seed=1, extra={"invoices": 8}))
    running = serve_in_thread(emu)
    try:
        ctx = ConnectionContext(
            connection="loopback",
            system="epicor",
            role=Role.SOURCE,
            settings=EpicorSettings.model_validate(emu.settings(running.base_url)),
            credentials=EpicorCredentials.model_validate(emu.credentials()),
        )

        async def ping_and_read() -> int:
            try:
                await plugin.authenticate(ctx)
                check = await plugin.check_connection(ctx)
                assert check.ok
                page = await plugin.list_changed_payables(ctx, window(emu), None)
                return len(page.items)
            finally:
                await plugin.close_connection(ctx)

        assert asyncio.run(ping_and_read()) == 8
    finally:
        running.stop()


@pytest.mark.parametrize("extra", [{"odata_500": 1.0}, {"date_literal": "v3"}])
def test_options_are_read(extra: dict[str, Any]) -> None:
    emu = emulator(**extra)
    assert emu.odata_500_rate == extra.get("odata_500", 0.0)
    assert emu.date_literal == extra.get("date_literal", "v4")
