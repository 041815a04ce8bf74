"""The emulator on its own: Kinetic's paths and quirks, the entry points, loopback serving."""

from __future__ import annotations

import asyncio
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
        "$select": "InvoiceNum,DocInvoiceAmt", "$expand": "APInvExps", "$top": "1",
        "$orderby": "InvoiceNum desc"})).json()  # fmt: skip
    assert listed["@odata.context"] == "$metadata#APInvoices"
    (row,) = listed["value"]
    assert set(row) == {"InvoiceNum", "DocInvoiceAmt", "APInvExps"}
    assert row["InvoiceNum"] == "INV-1002"
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
    del body["whereClauseVendRemitTo"]
    refused = await _post(emu, API + "Erp.BO.VendorSvc/GetRows", body)
    assert refused.status_code == 400
    assert refused.json()["ErrorMessage"] == (
        "Parameter whereClauseVendRemitTo is not found in the input object"
    )


async def test_methods_take_an_object_of_named_parameters() -> None:
    emu = emulator()
    answer = await _post(emu, API + "Erp.PROC.APPaymentPostSvc/GetNewParameters", {})
    assert answer.json()["returnObj"]["APPaymentPostParam"][0]["GroupID"] == ""
    refused = await _post(emu, API + "Erp.PROC.APPaymentPostSvc/GetNewParameters", [])
    assert refused.status_code == 400
    unknown = await _post(emu, API + "Erp.BO.PaymentEntrySvc/NoSuchMethod", {})
    assert unknown.status_code == 404


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
