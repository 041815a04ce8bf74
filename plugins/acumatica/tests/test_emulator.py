"""The emulator speaks Acumatica's protocol (acumatica.md §7), checked on the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from plugins.acumatica.tests.support import BASE_URL, emulator

from ml_connector.emulation import available_emulators, load_emulator
from ml_connector.testing import ManualClock
from ml_connector_acumatica.emulator import CLIENT_GUID, AcumaticaEmulator
from ml_connector_acumatica.schemas import AcumaticaCredentials, AcumaticaSettings

V = "entity/Default/24.200.001"


@pytest.fixture
def emu(clock: ManualClock) -> AcumaticaEmulator:
    return emulator(clock)


@pytest.fixture
async def http(emu: AcumaticaEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=BASE_URL, transport=emu.transport()) as client:
        yield client


async def login(http: httpx.AsyncClient, emu: AcumaticaEmulator, **body: str) -> httpx.Response:
    fields = {"name": emu.config.username, "password": emu.config.password, "tenant": "Acme"}
    return await http.post("entity/auth/login", json={**fields, **body})


async def test_listing_names_build_and_endpoints(http: httpx.AsyncClient) -> None:
    listing = (await http.get("entity")).json()
    assert listing["version"]["acumaticaBuildVersion"]
    assert {"name": "Default", "version": "24.200.001",
            "href": "/AcumaticaDB/entity/Default/24.200.001/"} in listing["endpoints"]  # fmt: skip


async def test_unknown_version_is_404_and_unsigned_is_401(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    assert (await http.get("entity/Default/24.200.001/Bill")).status_code == 401
    assert (await http.get("entity/Default/24.200.001/Bill")).content == b""
    await login(http, emu)
    missing = await http.get("entity/Default/21.100.001/Bill")
    assert missing.status_code == 404
    assert "No HTTP resource was found" in missing.json()["message"]


async def test_cookie_login_and_logout_rules(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    both = await login(http, emu, company="Acme")
    assert both.status_code == 400
    unknown = await login(http, emu, tenant="Globex")
    assert unknown.status_code == 500
    assert unknown.json()["exceptionType"].endswith("PXUndefinedCompanyException")
    ok = await login(http, emu)
    assert (ok.status_code, ok.content) == (204, b"")
    assert "session" in ok.cookies
    request = http.build_request("POST", "entity/auth/logout")
    del request.headers["Content-Length"]
    assert (await http.send(request)).status_code == 411, "IIS wants Content-Length"
    assert (await http.post("entity/auth/logout", content=b"")).status_code == 204
    assert (await http.get(f"{V}/Account")).status_code == 401


async def test_oauth_grants(http: httpx.AsyncClient, emu: AcumaticaEmulator) -> None:
    base = {"client_id": f"{CLIENT_GUID}@Acme", "client_secret": emu.config.client_secret}
    user = {"username": emu.config.username, "password": emu.config.password}
    unsupported = await http.post(
        "identity/connect/token", data={**base, "grant_type": "client_credentials"}
    )
    assert unsupported.json() == {"error": "unsupported_grant_type"}
    api_only = await http.post(
        "identity/connect/token", data={**base, **user, "grant_type": "password", "scope": "api"}
    )
    assert api_only.json()["expires_in"] == 3600
    assert "refresh_token" not in api_only.json(), "refresh tokens only with offline_access"
    full = (
        await http.post(
            "identity/connect/token",
            data={**base, **user, "grant_type": "password", "scope": "api offline_access"},
        )
    ).json()
    refresh = {**base, "grant_type": "refresh_token", "refresh_token": full["refresh_token"]}
    assert (await http.post("identity/connect/token", data=refresh)).status_code == 200
    assert (await http.post("identity/connect/token", data=refresh)).json() == {
        "error": "invalid_grant"
    }
    wrong_client = await http.post(
        "identity/connect/token", data={**base, "client_secret": "x", "grant_type": "password"}
    )
    assert wrong_client.json() == {"error": "invalid_client"}
    discovery = (await http.get("identity/.well-known/openid-configuration")).json()
    assert "client_credentials" not in discovery["grant_types_supported"]  # fmt: skip


async def test_values_are_wrapped_and_details_need_expand(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    await login(http, emu)
    bills = (await http.get(f"{V}/Bill", params={"$top": "2"})).json()
    assert isinstance(bills, list), "lists are bare arrays"
    assert len(bills) == 2
    bill = bills[0]
    assert bill["ReferenceNbr"] == {"value": "000001"}
    assert isinstance(bill["id"], str), "system fields are bare"
    assert bill["rowNumber"] == 1
    assert "Details" not in bill
    assert bill["Amount"]["value"] == float(emu.bill("000001")["Amount"])
    expanded = (await http.get(f"{V}/Bill/Bill/000001", params={"$expand": "Details"})).json()
    assert expanded["Details"][0]["Account"]["value"]
    assert expanded["Details"][0]["POOrderNbr"] == {}, "null fields are empty objects"
    selected = (await http.get(f"{V}/Vendor", params={"$select": "VendorID", "$top": "1"})).json()
    assert set(selected[0]) == {"id", "rowNumber", "VendorID"}


async def test_filter_paging_and_missing_keys(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    await login(http, emu)
    query = (
        "(Status eq 'Open' or Status eq 'Closed') and Type eq 'Bill' "
        "and substringof('INV', VendorRef)"
    )
    found = (await http.get(f"{V}/Bill", params={"$filter": query})).json()
    statuses = {b["Status"]["value"] for b in found}
    assert statuses == {"Open", "Closed"}
    paged = (
        await http.get(f"{V}/Bill", params={"$filter": query, "$top": "3", "$skip": "3"})
    ).json()
    assert [b["ReferenceNbr"] for b in paged] == [b["ReferenceNbr"] for b in found[3:6]]
    bad = await http.get(f"{V}/Bill", params={"$filter": "NoSuchField eq 1"})
    assert bad.status_code == 400
    missing = await http.get(f"{V}/Bill/Bill/999999")
    assert missing.status_code == 500
    assert missing.json()["exceptionType"].endswith("NoEntitySatisfiesTheConditionException")


async def test_put_is_an_upsert_with_preconditions(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    await login(http, emu)
    vendor = {"VendorID": {"value": "NEWCO"}, "VendorName": {"value": "New Co"}}
    created = (await http.put(f"{V}/Vendor", json=vendor)).json()
    updated = (
        await http.put(f"{V}/Vendor", json={**vendor, "VendorName": {"value": "New Co Ltd"}})
    ).json()
    assert created["id"] == updated["id"]
    assert updated["VendorName"] == {"value": "New Co Ltd"}
    insert_only = await http.put(f"{V}/Vendor", json=vendor, headers={"If-None-Match": "*"})
    assert insert_only.status_code == 412
    update_only = await http.put(
        f"{V}/Vendor", json={"VendorID": {"value": "NOBODY"}, "VendorName": {"value": "x"}},
        headers={"If-Match": "*"},
    )  # fmt: skip
    assert update_only.status_code == 412


async def test_bill_release_and_duplicate_vendor_ref(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    await login(http, emu)
    bill = {"Type": {"value": "Bill"}, "Vendor": {"value": "DATAFLOW"},
            "VendorRef": {"value": "DF-1"}, "Hold": {"value": False},
            "Details": [{"Account": {"value": "67000"}, "Amount": {"value": 99.5}}]}  # fmt: skip
    created = (await http.put(f"{V}/Bill", json=bill)).json()
    assert created["Status"] == {"value": "Balanced"}
    duplicate = await http.put(f"{V}/Bill", json=bill)
    assert duplicate.json()["exceptionType"].endswith("OutcomeEntityHasErrorsException")
    key = {"Type": created["Type"], "ReferenceNbr": created["ReferenceNbr"]}
    release = await http.post(f"{V}/Bill/ReleaseBill", json={"Entity": key, "parameters": {}})
    assert release.status_code == 202
    status_url = release.headers["Location"]
    busy = await http.get(f"{V}/Account")
    assert busy.status_code == 500, "the session's other requests fail while an action runs"
    assert (await http.get(release.request.url.join(status_url))).status_code == 204
    assert emu.bill(created["ReferenceNbr"]["value"])["Status"] == "Open"
    edit = await http.put(f"{V}/Bill", json={**key, "Description": {"value": "x"}})
    assert edit.status_code == 422, "released bills are not editable"
    assert (await http.post(f"{V}/Bill/NoSuchAction", json={"entity": key})).status_code == 404


async def test_check_422_returns_the_entity_with_field_errors(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    await login(http, emu)
    check = {"Type": {"value": "Payment"}, "Vendor": {"value": "DATAFLOW"},
             "PaymentAmount": {"value": 10}, "Hold": {"value": False},
             "Details": [{"DocType": {"value": "Bill"}, "ReferenceNbr": {"value": "999999"},
                          "AmountPaid": {"value": 10}}]}  # fmt: skip
    refused = await http.put(f"{V}/Check", json=check)
    assert refused.status_code == 422
    body = refused.json()
    assert "raised at least one error" in body["error"]
    assert body["ReferenceNbr"] == {"value": "<NEW>"}
    assert "cannot be found" in body["Details"][0]["ReferenceNbr"]["error"]


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown acumatica emulator options: speed"):
        emulator(speed=3)


def test_seed_has_every_status_and_realistic_records() -> None:
    emu = emulator(bills=0)
    statuses = {(b["Type"], b["Status"]) for b in emu.books.ordered("Bill")}
    for status in ("Open", "On Hold", "Balanced", "Pending Approval", "Closed", "Voided"):
        assert ("Bill", status) in statuses
    multi = [b for b in emu.books.ordered("Bill") if len(b["Details"]) > 1 and b["TaxTotal"]]
    assert multi, "multi-line bills with tax"
    for bill in emu.books.ordered("Bill"):
        lines = sum((d["Amount"] for d in bill["Details"]), Decimal(0))
        assert lines + bill["TaxTotal"] == bill["Amount"]
    assert emu.books.ordered("PurchaseOrder")
    assert (
        emulator(bills=0).books.ordered("Bill")[0]["Amount"]
        == emu.books.ordered("Bill")[0]["Amount"]
    )


def test_registered_for_ml_connector_emulate() -> None:
    assert "acumatica" in available_emulators()
    emu = load_emulator("acumatica")(emulator().options)
    assert AcumaticaSettings(**emu.settings("http://127.0.0.1:8000/AcumaticaDB"))
    assert AcumaticaCredentials(**emu.credentials())


@pytest.mark.slow
def test_ml_connector_emulate_acumatica_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_connector", "emulate", "acumatica", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        start = json.loads(process.stdout.readline())
        assert start["base_url"].endswith("/AcumaticaDB")
        assert start["settings"]["instance_url"] == start["base_url"]
        with httpx.Client(base_url=start["base_url"]) as client:
            creds = start["credentials"]
            token = client.post(
                "identity/connect/token",
                data={"grant_type": "password", "scope": "api", "client_id": creds["client_id"],
                      "client_secret": creds["client_secret"], "username": creds["username"],
                      "password": creds["password"]},
            )  # fmt: skip
            assert token.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0


def test_the_demo_seeds_more_bills_than_five_digit_invoice_numbers() -> None:
    emu = emulator()
    emu.seed_demo(91_000, seed=3)  # 90,000 five-digit numbers: this hung before

    eligible = emu.eligible_bills()
    assert len(eligible) == 5 + 91_000
    assert len({invoice for _, invoice in eligible}) == len(eligible)


def test_demo_source_for_ml_connector_demo() -> None:
    demo_source = getattr(pytest.importorskip("ml_connector.emulation"), "DemoSource", None)
    if demo_source is None:
        pytest.skip("this core has no demo protocol")
    emu = emulator()
    assert isinstance(emu, demo_source)
    emu.seed_demo(10, seed=3)
    eligible = emu.eligible_bills()
    assert len(eligible) == 5 + 10, "the fixed open bills and the generated ones"
    held = emu.held_bill_keys()
    assert len(held) == 14, "eleven unreleased, paid or other documents, three POs"
    assert not held & eligible, "a bill is either eligible or held, never both"
    assert emu.unmapped_account() in emu.account_numbers()
    assert emu.settings(BASE_URL)["subaccount_maps_to"] == "none"
    assert set(emu.payments_posted().values()) == {0, 1}, "only the historical check"
