"""The SAP B1 emulator speaks the Service Layer's protocol (sapb1.md §7), checked on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ml_connector.emulation import (
    DemoSource,
    EmulatorOptions,
    FaultAction,
    load_emulator,
    serve_in_thread,
)
from ml_connector.testing import ManualClock

from ml_connector_sapb1.emulator import (
    BANK_ACCOUNT,
    COMPANY_DB,
    TAX_ACCOUNT,
    USERNAME,
    SapB1Emulator,
    create_emulator,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HOST = "http://sapb1.test"
V1, V2 = "/b1s/v1", "/b1s/v2"


def chart(emu: SapB1Emulator) -> None:
    emu.add_supplier("V1", name="Acme Office Supply")
    emu.add_supplier("V2", name="Bolt Freight")
    emu.add_customer("C1", name="Norm Retail")
    emu.add_account("6100", "Office Supplies")
    emu.add_account("6200", "Rent")
    emu.add_account("1400", "Inventory")
    emu.add_profit_center("ADMIN", "Administration", 1)
    emu.add_profit_center("EAST", "Eastern Region", 2)


def service(amount: str, account: str = "6100", **more: Any) -> dict[str, Any]:
    return {"AccountCode": account, "ItemDescription": "Services", "LineTotal": Decimal(amount)}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def emu(clock: ManualClock) -> SapB1Emulator:
    emulator = SapB1Emulator(EmulatorOptions(clock=clock))
    chart(emulator)
    return emulator


@pytest.fixture
async def http(emu: SapB1Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=emu.transport(), base_url=HOST) as client:
        yield client


def login_body(emu: SapB1Emulator, **override: str) -> dict[str, str]:
    body = {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": emu.password}
    return {**body, **override}


async def login(http: httpx.AsyncClient, emu: SapB1Emulator, root: str = V1) -> httpx.Response:
    answer = await http.post(f"{root}/Login", json=login_body(emu))
    assert answer.status_code == 200, answer.text
    return answer


def v1_error(answer: httpx.Response) -> tuple[int, int, str]:
    error = answer.json()["error"]
    assert error["message"]["lang"] == "en-us"
    assert isinstance(error["code"], int)
    return answer.status_code, error["code"], error["message"]["value"]


def v2_error(answer: httpx.Response) -> tuple[int, str, str]:
    error = answer.json()["error"]
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    return answer.status_code, error["code"], error["message"]


EXPIRED = "Invalid session or session already timeout."


# --- Sessions (§2) --------------------------------------------------------------------------------


async def test_login_answers_the_session_and_the_two_cookies_of_the_user_guide(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    answer = await login(http, emu)
    body = answer.json()
    assert body == {
        "odata.metadata": f"{HOST}/b1s/v1/$metadata#B1Sessions/@Element",
        "SessionId": body["SessionId"],
        "Version": body["Version"],
        "SessionTimeout": 30,
    }
    # B1SESSION has no Path (SAP-UG §3.1); ROUTEID is scoped to /b1s.
    assert answer.headers.get_list("set-cookie") == [
        f"B1SESSION={body['SessionId']};HttpOnly;",
        "ROUTEID=.node1; path=/b1s",
    ]
    jar = {c.name: c for c in http.cookies.jar}
    assert jar["B1SESSION"].path == "/b1s/v1"  # the default path: the login's directory
    assert not jar["B1SESSION"].path_specified
    assert jar["ROUTEID"].path == "/b1s"
    assert (await http.get(f"{V1}/BusinessPartners('V1')")).status_code == 200


async def test_v2_login_has_the_v4_context(http: httpx.AsyncClient, emu: SapB1Emulator) -> None:
    body = (await login(http, emu, V2)).json()
    assert body["@odata.context"] == f"{HOST}/b1s/v2/$metadata#B1Sessions/$entity"
    assert set(body) == {"@odata.context", "SessionId", "Version", "SessionTimeout"}


async def test_login_is_case_sensitive_and_every_other_path_needs_a_session(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    lower = await http.post(f"{V1}/login", json=login_body(emu))
    assert v1_error(lower) == (401, 301, EXPIRED)
    assert "set-cookie" not in lower.headers
    assert v1_error(await http.get(f"{V1}/PurchaseInvoices")) == (401, 301, EXPIRED)
    assert v2_error(await http.get(f"{V2}/PurchaseInvoices")) == (401, "301", EXPIRED)
    assert v1_error(await http.post(f"{V1}/Logout")) == (401, 301, EXPIRED)


@pytest.mark.parametrize(
    "override",
    [{"Password": "wrong"}, {"UserName": "nobody"}, {"CompanyDB": "SBODEMOUK"}],
)
async def test_a_refused_login_is_401_minus_304_in_each_shape(
    http: httpx.AsyncClient, emu: SapB1Emulator, override: dict[str, str]
) -> None:
    assert v1_error(await http.post(f"{V1}/Login", json=login_body(emu, **override))) == (
        401, -304, "Login failed",
    )  # fmt: skip
    assert v2_error(await http.post(f"{V2}/Login", json=login_body(emu, **override))) == (
        401, "-304", "Login failed",
    )  # fmt: skip


async def test_credentials_valid_false_refuses_every_login(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    emu.credentials_valid = False
    assert v1_error(await http.post(f"{V1}/Login", json=login_body(emu)))[:2] == (401, -304)


async def test_the_session_cookie_is_valid_on_both_roots_but_a_jar_scopes_it_to_one(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    session = (await login(http, emu)).json()["SessionId"]
    # The jar keeps B1SESSION for /b1s/v1 only (no Path): v2 gets no session from it.
    assert v2_error(await http.get(f"{V2}/BusinessPartners"))[:2] == (401, "301")
    explicit = {"Cookie": f"B1SESSION={session}; ROUTEID=.node1"}
    async with httpx.AsyncClient(transport=emu.transport(), base_url=HOST) as bare:
        assert (await bare.get(f"{V2}/BusinessPartners", headers=explicit)).status_code == 200


async def test_sessions_expire_after_the_idle_timeout_and_logout_ends_them(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    await login(http, emu)
    clock.advance(timedelta(minutes=29))
    assert (await http.get(f"{V1}/ChartOfAccounts")).status_code == 200  # use renews it
    clock.advance(timedelta(minutes=29))
    assert (await http.get(f"{V1}/ChartOfAccounts")).status_code == 200
    clock.advance(timedelta(minutes=30))
    assert v1_error(await http.get(f"{V1}/ChartOfAccounts")) == (401, 301, EXPIRED)
    await login(http, emu)
    logout = await http.post(f"{V1}/Logout")
    assert logout.status_code == 204
    assert logout.content == b""
    assert (await http.get(f"{V1}/ChartOfAccounts")).status_code == 401


async def test_session_timeout_option_and_expire_sessions(clock: ManualClock) -> None:
    emu = SapB1Emulator(EmulatorOptions(clock=clock, extra={"session_timeout": 5}))
    async with httpx.AsyncClient(transport=emu.transport(), base_url=HOST) as http:
        assert (await login(http, emu)).json()["SessionTimeout"] == 5
        clock.advance(timedelta(minutes=5))
        assert (await http.get(f"{V1}/ChartOfAccounts")).status_code == 401
        await login(http, emu)
        emu.expire_sessions()
        assert (await http.get(f"{V1}/ChartOfAccounts")).status_code == 401
    assert emu.logins == 2


# --- Errors (§3) ----------------------------------------------------------------------------------


async def test_missing_keys_are_404_minus_2028_in_each_shape(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    await login(http, emu)
    await login(http, emu, V2)
    text = "No matching records found (ODBC -2028)"
    assert v1_error(await http.get(f"{V1}/PurchaseInvoices(99)")) == (404, -2028, text)
    assert v2_error(await http.get(f"{V2}/PurchaseInvoices(99)")) == (404, "-2028", text)
    assert v1_error(await http.get(f"{V1}/BusinessPartners('NOPE')"))[:2] == (404, -2028)
    assert v1_error(await http.get(f"{V1}/Nothing"))[:2] == (404, -1)
    assert v1_error(await http.get(f"{V1}/PurchaseInvoices('1')"))[:2] == (400, -1000)


async def test_injected_faults_take_the_shape_of_the_root_asked(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    await login(http, emu, V2)
    emu.faults.add(FaultAction(503))
    assert v2_error(await http.get(f"{V2}/ChartOfAccounts"))[:2] == (503, "-1")
    emu.fail_next("session")
    assert v2_error(await http.get(f"{V2}/ChartOfAccounts")) == (401, "301", EXPIRED)
    emu.fail_next("malformed")
    garbled = await http.get(f"{V2}/ChartOfAccounts")
    assert garbled.status_code == 200
    assert garbled.headers["content-type"].startswith("text/html")
    emu.faults.add(FaultAction(502, kind="proxy"))
    assert "Proxy Error" in (await http.get(f"{V2}/ChartOfAccounts")).text
    emu.fail_next("throttled")
    throttled = await http.get(f"{V2}/ChartOfAccounts")
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "1")
    emu.faults.add(FaultAction(429, kind="throttled", retry_after=0.0))
    assert (await http.get(f"{V2}/ChartOfAccounts")).headers["retry-after"] == "0"
    emu.fail_next("unauthorized")
    assert (await http.get(f"{V2}/ChartOfAccounts")).status_code == 401
    assert (await http.post(f"{V2}/Login", json=login_body(emu))).status_code == 401


# --- Reading: shapes, paging, filters (§4-§6) -----------------------------------------------------


async def test_invoices_in_each_version_with_totals_dates_and_etag(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    clock.advance(timedelta(hours=5, minutes=7, seconds=42, microseconds=5))
    entry = emu.add_invoice(
        "V1",
        [service("100.00") | {"CostingCode": "ADMIN", "CostingCode2": "EAST"}, service("50.00")],
        num_at_card="INV-7",
        vat_sum=Decimal("12.37"),
        DocDate=date(2025, 12, 30),
    )
    await login(http, emu)
    await login(http, emu, V2)
    one = (await http.get(f"{V1}/PurchaseInvoices({entry})")).json()
    assert one["odata.metadata"] == f"{HOST}/b1s/v1/$metadata#PurchaseInvoices/@Element"
    assert (one["DocEntry"], one["CardName"], one["NumAtCard"]) == (
        entry,
        "Acme Office Supply",
        "INV-7",
    )
    assert one["DocNum"] != one["DocEntry"]
    assert (one["DocType"], one["DocObjectCode"]) == ("dDocument_Service", "oPurchaseInvoices")
    assert (one["DocDate"], one["DocDueDate"], one["UpdateDate"], one["UpdateTime"]) == (
        "2025-12-30", "2026-01-29", "2026-01-05", "14:07:42",
    )  # fmt: skip
    assert Decimal(str(one["VatSum"])) == Decimal("12.37")
    assert Decimal(str(one["DocTotal"])) == Decimal("162.37")  # sum(LineTotal) + VatSum
    lines = one["DocumentLines"]
    assert sum(Decimal(str(x["TaxTotal"])) for x in lines) == Decimal("12.37")
    assert (lines[0]["LineNum"], lines[0]["AccountCode"], lines[0]["ItemCode"]) == (0, "6100", None)
    assert (lines[0]["CostingCode"], lines[0]["CostingCode2"], lines[0]["CostingCode3"]) == (
        "ADMIN", "EAST", None,
    )  # fmt: skip
    assert (one["Cancelled"], one["CancelStatus"], one["DocumentStatus"]) == (
        "tNO", "csNo", "bost_Open",
    )  # fmt: skip
    assert "ETag" not in (await http.get(f"{V1}/PurchaseInvoices({entry})")).headers
    two = await http.get(f"{V2}/PurchaseInvoices({entry})")
    body = two.json()
    assert body["@odata.context"] == f"{HOST}/b1s/v2/$metadata#PurchaseInvoices/$entity"
    assert body["@odata.etag"] == two.headers["etag"]
    assert two.headers["etag"].startswith('W/"')
    assert (body["DocDate"], body["UpdateDate"], body["UpdateTime"]) == (
        "2025-12-30T00:00:00Z", "2026-01-05T00:00:00Z", "14:07:42",
    )  # fmt: skip
    stored = emu.invoice(entry)
    assert (stored["UpdateDate"], stored["UpdateTime"]) == (date(2026, 1, 5), time(14, 7, 42))
    assert stored["DocTotal"] == Decimal("162.37")


async def test_item_documents_carry_item_quantity_price_and_the_lines_account(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    entry = emu.add_invoice(
        "V2",
        [{"ItemCode": "A00001", "ItemDescription": "Wrap", "Quantity": 4, "Price": Decimal("2.50")},
         {"ItemCode": "A00002", "Quantity": 1, "Price": Decimal("10"), "AccountCode": "6100"}],
        doc_type="dDocument_Items",
    )  # fmt: skip
    await login(http, emu)
    one = (await http.get(f"{V1}/PurchaseInvoices({entry})")).json()
    assert one["DocType"] == "dDocument_Items"
    first, second = one["DocumentLines"]
    assert (first["ItemCode"], first["Quantity"], Decimal(str(first["LineTotal"]))) == (
        "A00001", 4, Decimal("10.00"),
    )  # fmt: skip
    assert first["AccountCode"] == "1400"  # no account given: the inventory account
    assert second["AccountCode"] == "6100"
    with pytest.raises(ValueError, match="ItemCode"):
        emu.add_invoice("V1", [service("1")], doc_type="dDocument_Items")
    with pytest.raises(ValueError, match="no ItemCode"):
        emu.add_invoice("V1", [service("1") | {"ItemCode": "A1"}])
    with pytest.raises(ValueError, match="does not exist"):
        emu.add_invoice("V1", [service("1", account="9999")])
    with pytest.raises(ValueError, match="dimension 1"):
        emu.add_invoice("V1", [service("1") | {"CostingCode": "EAST"}])
    with pytest.raises(ValueError, match="not a supplier"):
        emu.add_invoice("C1", [service("1")])


async def test_paging_defaults_to_20_with_a_relative_next_link_per_version(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    entries = [emu.add_invoice("V1", [service("1.00")]) for _ in range(45)]
    await login(http, emu)
    await login(http, emu, V2)
    first = (await http.get(f"{V1}/PurchaseInvoices")).json()
    assert len(first["value"]) == 20
    assert first["odata.nextLink"] == "PurchaseInvoices?$skip=20"
    assert "@odata.nextLink" not in first
    second = (await http.get(f"{V2}/PurchaseInvoices", params={"$skip": "20"})).json()
    assert second["@odata.nextLink"] == "PurchaseInvoices?$skip=40"
    assert "odata.nextLink" not in second
    # Following the links (relative to the service root) reads every record exactly once.
    seen: list[int] = []
    link: str | None = "PurchaseInvoices?$filter=DocEntry gt 0&$select=DocEntry&$orderby=DocEntry"
    while link:
        page = (await http.get(f"{V1}/{link}")).json()
        seen += [row["DocEntry"] for row in page["value"]]
        link = page.get("odata.nextLink")
        if link:
            assert link.startswith("PurchaseInvoices?$filter=DocEntry%20gt%200&$select=DocEntry")
    assert seen == entries


async def test_the_page_size_preference_is_honoured_and_echoed(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    for _ in range(45):
        emu.add_invoice("V1", [service("1.00")])
    await login(http, emu)
    url = f"{V1}/PurchaseInvoices"
    fifty = await http.get(url, headers={"Prefer": "odata.maxpagesize=50"})
    assert fifty.headers["preference-applied"] == "odata.maxpagesize=50"
    assert len(fifty.json()["value"]) == 45
    assert "odata.nextLink" not in fifty.json()
    ten = await http.get(url, headers={"Prefer": "odata.maxpagesize=10"})
    assert (len(ten.json()["value"]), ten.json()["odata.nextLink"]) == (
        10, "PurchaseInvoices?$skip=10",
    )  # fmt: skip
    unpaged = await http.get(url, headers={"Prefer": "odata.maxpagesize=0"})
    assert len(unpaged.json()["value"]) == 45
    assert unpaged.headers["preference-applied"] == "odata.maxpagesize=0"
    config = await http.get(url, headers={"B1S-PageSize": "30"})
    assert len(config.json()["value"]) == 30
    assert "preference-applied" not in config.headers
    both = await http.get(url, headers={"B1S-PageSize": "30", "Prefer": "odata.maxpagesize=5"})
    assert len(both.json()["value"]) == 5  # the preference beats the configuration
    top = (await http.get(url, params={"$top": "25"})).json()
    assert (len(top["value"]), top["odata.nextLink"]) == (20, "PurchaseInvoices?$top=5&$skip=20")
    rest = (await http.get(f"{V1}/{top['odata.nextLink']}")).json()
    assert (len(rest["value"]), "odata.nextLink" in rest) == (5, False)


async def test_next_link_path_option_gives_the_user_guides_v1_form(clock: ManualClock) -> None:
    emu = SapB1Emulator(EmulatorOptions(clock=clock, extra={"next_link": "path"}))
    chart(emu)
    for _ in range(21):
        emu.add_invoice("V1", [service("1.00")])
    async with httpx.AsyncClient(transport=emu.transport(), base_url=HOST) as http:
        await login(http, emu)
        page = (await http.get(f"{V1}/PurchaseInvoices")).json()
    assert page["odata.nextLink"] == "/b1s/v1/PurchaseInvoices?$skip=20"


async def test_date_filters_take_every_quoted_form_and_ignore_the_time(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    old = emu.add_invoice("V1", [service("1.00")])  # 2026-01-05 09:00
    clock.advance(timedelta(days=1, hours=14, minutes=30))  # 2026-01-06 23:30
    late = emu.add_invoice("V1", [service("2.00")])
    await login(http, emu)
    await login(http, emu, V2)
    for literal in (
        "'2026-01-06'", "'20260106'", "datetime'2026-01-06'", "'2026-01-06T23:59:59'",
        "datetime'2026-01-06T00:00:00'",
    ):  # fmt: skip
        found = await http.get(
            f"{V1}/PurchaseInvoices", params={"$filter": f"UpdateDate ge {literal}"}
        )
        assert [r["DocEntry"] for r in found.json()["value"]] == [late], literal
        v2 = await http.get(
            f"{V2}/PurchaseInvoices", params={"$filter": f"UpdateDate eq {literal}"}
        )
        assert [r["DocEntry"] for r in v2.json()["value"]] == [late], literal
    before = await http.get(
        f"{V1}/PurchaseInvoices", params={"$filter": "UpdateDate lt '2026-01-06T23:59:59'"}
    )
    assert [r["DocEntry"] for r in before.json()["value"]] == [old]
    # The unquoted OData v4 form is refused (§8 choice: the v1 quoted forms only).
    unquoted = {"$filter": "UpdateDate ge 2026-01-06"}
    assert v1_error(await http.get(f"{V1}/PurchaseInvoices", params=unquoted))[:2] == (400, -1000)
    assert v2_error(await http.get(f"{V2}/PurchaseInvoices", params=unquoted))[:2] == (400, "-1000")
    bad = await http.get(f"{V1}/PurchaseInvoices", params={"$filter": "UpdateDate ge 'soon'"})
    assert v1_error(bad)[:2] == (400, -1000)


async def test_time_filters_count_hours_and_minutes_only(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    clock.advance(timedelta(minutes=30, seconds=45))  # 09:30:45
    at = emu.add_invoice("V1", [service("1.00")])
    clock.advance(timedelta(minutes=1))  # 09:31:45
    after = emu.add_invoice("V1", [service("1.00")])
    await login(http, emu)
    for literal in ("'09:30:00'", "'09:30'", "'0930'", "'09:30:59'"):
        found = await http.get(
            f"{V1}/PurchaseInvoices",
            params={"$filter": f"UpdateDate eq '2026-01-05' and UpdateTime ge {literal}"},
        )
        assert [r["DocEntry"] for r in found.json()["value"]] == [at, after], literal
        exact = await http.get(
            f"{V1}/PurchaseInvoices", params={"$filter": f"UpdateTime eq {literal}"}
        )
        assert [r["DocEntry"] for r in exact.json()["value"]] == [at], literal


async def test_key_code_enum_and_reference_filters_with_and_or_select_orderby(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    a = emu.add_invoice("V1", [service("1.00")], num_at_card="A-1")
    clock.advance(timedelta(minutes=1))
    b = emu.add_invoice("V2", [service("2.00")], num_at_card="B-1")
    clock.advance(timedelta(minutes=1))
    c = emu.add_invoice("V1", [service("3.00")], num_at_card="A-2", cancelled=True)
    await login(http, emu)
    await login(http, emu, V2)

    async def entries(flt: str, root: str = V1, **more: str) -> list[Any]:
        answer = await http.get(f"{root}/PurchaseInvoices", params={"$filter": flt, **more})
        assert answer.status_code == 200, answer.text
        return [r["DocEntry"] for r in answer.json()["value"]]

    assert await entries(f"DocEntry eq {b}") == [b]
    assert await entries(f"DocEntry gt {a} and CardCode eq 'V1'") == [c, c + 1]
    assert await entries("CardCode eq 'V2' or NumAtCard eq 'A-1'") == [a, b]
    assert await entries("Cancelled eq 'tNO' and CancelStatus eq 'csNo'") == [a, b]
    assert await entries("Cancelled eq 'Y'") == [c]  # an enum by its letter
    assert await entries("CancelStatus eq 'csCancellation'") == [c + 1]
    assert await entries("Cancelled eq SAPB1.BoYesNoEnum'tYES'", V2) == [c]
    assert await entries("not (CardCode eq 'V1')") == [b]
    assert await entries("startswith(NumAtCard,'A-')") == [a, c, c + 1]
    assert await entries("substringof('-2',NumAtCard)") == [c, c + 1]
    assert await entries("contains(NumAtCard,'B')", V2) == [b]
    ordered = await entries(
        "DocEntry ge 1",
        **{"$orderby": "UpdateDate,UpdateTime,DocEntry desc", "$select": "DocEntry"},
    )
    assert ordered == [a, b, c + 1, c]
    picked = await http.get(
        f"{V1}/PurchaseInvoices", params={"$select": "DocEntry,NumAtCard", "$top": "1"}
    )
    assert picked.json()["value"] == [{"DocEntry": a, "NumAtCard": "A-1"}]
    for refused in (
        "Cancelled gt 'tNO'", "Nope eq 1", "DocumentLines/AccountCode eq '6100'",
        "DocEntry eq '1'", "CardCode eq CardName", "tolower(CardCode) eq 'v1'",
        "DocumentLines/any(d: d/AccountCode eq '6100')", "DocEntry eq",
    ):  # fmt: skip
        answer = await http.get(f"{V1}/PurchaseInvoices", params={"$filter": refused})
        assert v1_error(answer)[:2] == (400, -1000), refused
    expand = await http.get(f"{V2}/PurchaseInvoices", params={"$expand": "DocumentLines"})
    assert v2_error(expand)[:2] == (400, "-1000")


async def test_business_partners_by_card_type_name_or_letter(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    await login(http, emu)
    await login(http, emu, V2)
    for literal in ("'cSupplier'", "'S'", "1"):
        answer = await http.get(
            f"{V1}/BusinessPartners", params={"$filter": f"CardType eq {literal}"}
        )
        assert [r["CardCode"] for r in answer.json()["value"]] == ["V1", "V2"], literal
        assert {r["CardType"] for r in answer.json()["value"]} == {"cSupplier"}
    qualified = await http.get(
        f"{V2}/BusinessPartners", params={"$filter": "CardType eq SAPB1.BoCardTypes'cCustomer'"}
    )
    assert [r["CardCode"] for r in qualified.json()["value"]] == ["C1"]
    one = (await http.get(f"{V1}/BusinessPartners('V1')")).json()
    assert (one["CardName"], one["CardType"], one["Valid"]) == (
        "Acme Office Supply",
        "cSupplier",
        "tYES",
    )
    case = {"B1S-CaseInsensitive": "true"}
    loose = await http.get(
        f"{V1}/BusinessPartners", params={"$filter": "CardCode eq 'v1'"}, headers=case
    )
    assert [r["CardCode"] for r in loose.json()["value"]] == ["V1"]
    strict = await http.get(f"{V1}/BusinessPartners", params={"$filter": "CardCode eq 'v1'"})
    assert strict.json()["value"] == []


async def test_counts_chart_and_dimensions(http: httpx.AsyncClient, emu: SapB1Emulator) -> None:
    emu.add_account("6300", "Utilities", active=False)
    emu.add_profit_center("OLD", "Closed Dept", 1, active=False)
    await login(http, emu)
    await login(http, emu, V2)
    count = await http.get(f"{V1}/BusinessPartners/$count", params={"$filter": "CardType eq 'S'"})
    assert (count.status_code, count.text) == (200, "2")
    inline = (await http.get(f"{V1}/ChartOfAccounts", params={"$inlinecount": "allpages"})).json()
    assert inline["odata.count"] == str(len(inline["value"]))  # a string in v1
    counted = (await http.get(f"{V2}/ChartOfAccounts", params={"$count": "true"})).json()
    assert counted["@odata.count"] == len(counted["value"])
    utilities = (await http.get(f"{V1}/ChartOfAccounts('6300')")).json()
    assert (utilities["ActiveAccount"], utilities["FrozenFor"]) == ("tYES", "tYES")
    centers = (
        await http.get(f"{V1}/ProfitCenters", params={"$filter": "InWhichDimension eq 1"})
    ).json()["value"]
    assert {(c["CenterCode"], c["Active"]) for c in centers} == {("ADMIN", "tYES"), ("OLD", "tNO")}
    rule = (await http.get(f"{V1}/DistributionRules('EAST')")).json()
    assert (rule["InWhichDimension"], rule["Direct"]) == (2, "tYES")
    assert rule["DistributionRuleLines"][0]["CenterCode"] == "EAST"
    service_doc = (await http.get(f"{V1}/")).json()
    assert {"name": "Drafts", "kind": "EntitySet", "url": "Drafts"} in service_doc["value"]


# --- Drafts, cancellation, writes -----------------------------------------------------------------


async def test_documents_awaiting_approval_are_drafts_never_purchase_invoices(
    http: httpx.AsyncClient, emu: SapB1Emulator
) -> None:
    invoice = emu.add_invoice("V1", [service("5.00")], num_at_card="REAL-1")
    draft = emu.add_draft("V1", [service("7.00")], num_at_card="WAIT-1")
    assert draft == invoice == 1  # drafts number their DocEntry apart
    with pytest.raises(ValueError, match="draft"):
        emu.add_invoice("V1", [service("1.00")], authorization="dasPending")
    await login(http, emu)
    invoices = (await http.get(f"{V1}/PurchaseInvoices")).json()["value"]
    assert [r["NumAtCard"] for r in invoices] == ["REAL-1"]
    drafts = (await http.get(f"{V1}/Drafts")).json()["value"]
    assert [(r["NumAtCard"], r["DocObjectCode"], r["AuthorizationStatus"]) for r in drafts] == [
        ("WAIT-1", "oPurchaseInvoices", "dasPending"),
    ]
    added = emu.approve_draft(draft)
    approved = emu.invoice(added)
    assert (approved["NumAtCard"], approved["AuthorizationStatus"]) == ("WAIT-1", "dasApproved")
    assert emu.draft(draft)["DocumentStatus"] == "bost_Close"
    orders = emu.add_purchase_order("V2", [service("9.00")])
    assert emu.purchase_order(orders)["DocObjectCode"] == "oPurchaseOrders"
    assert len((await http.get(f"{V1}/PurchaseInvoices")).json()["value"]) == 2


async def test_cancelling_an_invoice_adds_its_cancellation_document(
    http: httpx.AsyncClient, emu: SapB1Emulator, clock: ManualClock
) -> None:
    entry = emu.add_invoice("V1", [service("40.00")], num_at_card="X-1")
    clock.advance(timedelta(hours=1))
    emu.cancel_invoice(entry)
    original = emu.invoice(entry)
    assert (original["Cancelled"], original["CancelStatus"], original["DocumentStatus"]) == (
        "tYES", "csYes", "bost_Close",
    )  # fmt: skip
    assert original["UpdateTime"] == time(10, 0)
    reversal = emu.invoice(entry + 1)
    assert (reversal["Cancelled"], reversal["CancelStatus"], reversal["NumAtCard"]) == (
        "tNO", "csCancellation", "X-1",
    )  # fmt: skip
    assert reversal["DocumentLines"][0]["BaseEntry"] == entry
    with pytest.raises(ValueError, match="already cancelled"):
        emu.cancel_invoice(entry)
    other = emu.add_invoice("V1", [service("1.00")])
    await login(http, emu)
    assert (await http.post(f"{V1}/PurchaseInvoices({other})/Cancel")).status_code == 204
    again = await http.post(f"{V1}/PurchaseInvoices({other})/Cancel")
    assert v1_error(again) == (400, -5002, "Document is already cancelled")


async def test_update_invoice_stamps_the_change(emu: SapB1Emulator, clock: ManualClock) -> None:
    entry = emu.add_invoice("V1", [service("10.00")], vat_sum=Decimal("1.00"))
    clock.advance(timedelta(days=2, minutes=3))
    emu.update_invoice(entry, Comments="fixed", lines=[service("20.00")])
    changed = emu.invoice(entry)
    assert (changed["Comments"], changed["DocTotal"], changed["VatSum"]) == (
        "fixed", Decimal("21.00"), Decimal("1.00"),
    )  # fmt: skip
    assert (changed["UpdateDate"], changed["UpdateTime"], changed["DataVersion"]) == (
        date(2026, 1, 7), time(9, 3), 2,
    )  # fmt: skip


async def test_patch_put_post_and_etags(http: httpx.AsyncClient, emu: SapB1Emulator) -> None:
    entry = emu.add_invoice("V1", [service("10.00")])
    draft = emu.add_draft("V1", [service("10.00"), service("5.00")])
    await login(http, emu, V2)
    url = f"{V2}/PurchaseInvoices({entry})"
    etag = (await http.get(url)).headers["etag"]
    assert (
        await http.patch(url, json={"Comments": "checked"}, headers={"If-Match": etag})
    ).status_code == 204
    stale = await http.patch(url, json={"Comments": "again"}, headers={"If-Match": etag})
    assert v2_error(stale)[:2] == (412, "-2039")
    assert (await http.patch(url, json={"Comments": "no if-match"})).status_code == 204
    assert emu.invoice(entry)["Comments"] == "no if-match"
    amounts = await http.patch(url, json={"DocumentLines": [{"LineNum": 0, "LineTotal": 1}]})
    assert v2_error(amounts)[:2] == (400, "-1029")
    unknown = await http.patch(url, json={"Bogus": 1})
    assert v2_error(unknown)[:2] == (400, "-1000")
    draft_url = f"{V2}/Drafts({draft})"
    merged = await http.patch(draft_url, json={"DocumentLines": [{"LineNum": 1, "LineTotal": 8}]})
    assert merged.status_code == 204
    assert emu.draft(draft)["DocTotal"] == Decimal("18.00")  # rows merge by LineNum
    replaced = await http.patch(
        draft_url,
        json={"DocumentLines": [service("3.00") | {"LineTotal": 3}]},
        headers={"B1S-ReplaceCollectionsOnPatch": "true"},
    )
    assert replaced.status_code == 204
    assert len(emu.draft(draft)["DocumentLines"]) == 1
    assert (await http.delete(draft_url)).status_code == 204
    assert v2_error(await http.delete(url))[:2] == (400, "-5006")
    created = await http.post(
        f"{V2}/BusinessPartners", json={"CardCode": "V9", "CardName": "New", "CardType": "S"}
    )
    assert created.status_code == 201
    assert created.json()["CardType"] == "cSupplier"
    assert created.headers["location"] == "/b1s/v2/BusinessPartners('V9')"
    duplicate = await http.post(f"{V2}/BusinessPartners", json={"CardCode": "V9", "CardName": "x"})
    assert v2_error(duplicate)[:2] == (400, "-10")
    quiet = await http.post(
        f"{V2}/BusinessPartners",
        json={"CardCode": "C9", "CardName": "Quiet"},
        headers={"Prefer": "return-no-content"},
    )
    assert (quiet.status_code, quiet.headers["location"]) == (204, "/b1s/v2/BusinessPartners('C9')")
    assert quiet.headers["preference-applied"] == "return-no-content"
    assert emu.partner("C9")["CardType"] == "cCustomer"
    put = await http.put(f"{V2}/BusinessPartners('V9')", json={"CardName": "Renamed"})
    assert put.status_code == 204
    assert (emu.partner("V9")["CardName"], emu.partner("V9")["Phone1"]) == ("Renamed", None)


# --- Entry point, serving, demo -------------------------------------------------------------------


def test_entry_point_settings_and_credentials() -> None:
    emu = load_emulator("sapb1")(EmulatorOptions())
    assert isinstance(emu, SapB1Emulator)
    assert isinstance(emu, DemoSource)
    url = "http://127.0.0.1:8000/b1s/v1"
    assert emu.settings(url) == {
        "service_url": url,
        "company_db": COMPANY_DB,
        "transfer_account": BANK_ACCOUNT,
        "tax_account": TAX_ACCOUNT,
    }
    assert {BANK_ACCOUNT, TAX_ACCOUNT} <= set(emu.books.accounts)
    assert emu.credentials() == {"username": "manager", "password": emu.password}
    assert emu.books.partners  # a small usable company
    assert emu.books.invoices
    assert BANK_ACCOUNT in emu.books.accounts
    with pytest.raises(ValueError, match="unknown"):
        SapB1Emulator(EmulatorOptions(extra={"pagesize": 5}))


def test_served_on_loopback_with_real_cookies() -> None:
    emu = create_emulator(EmulatorOptions())
    running = serve_in_thread(emu)
    try:
        assert running.base_url.endswith("/b1s/v1")
        with httpx.Client(base_url=running.base_url + "/") as client:
            assert client.post("Login", json=login_body(emu)).status_code == 200
            assert client.get("PurchaseInvoices").status_code == 200
    finally:
        running.stop()


def test_seed_demo_seeds_what_the_demo_checks(clock: ManualClock) -> None:
    emu = create_emulator(EmulatorOptions(clock=clock))
    emu.seed_demo(40, seed=7)
    eligible, held = emu.eligible_bills(), emu.held_bill_keys()
    assert len(eligible) == 40
    assert not eligible & held
    unmapped = emu.unmapped_account()
    assert unmapped in emu.account_numbers()
    invoices = list(emu.books.invoices.values())
    on_unmapped = [
        i for i in invoices if any(x["AccountCode"] == unmapped for x in i["DocumentLines"])
    ]
    assert len(on_unmapped) == 1
    assert (on_unmapped[0]["CardName"], on_unmapped[0]["NumAtCard"]) not in eligible | held
    types = {i["DocType"] for i in invoices if (i["CardName"], i["NumAtCard"]) in eligible}
    assert types == {"dDocument_Service", "dDocument_Items"}
    statuses = {
        i["AuthorizationStatus"] for i in invoices if (i["CardName"], i["NumAtCard"]) in eligible
    }
    assert statuses == {"dasWithout", "dasApproved"}
    drafts = {(d["CardName"], d["NumAtCard"]) for d in emu.books.drafts.values()}
    assert drafts
    assert drafts <= held
    assert not drafts & {(i["CardName"], i["NumAtCard"]) for i in invoices}
    assert any(i["CancelStatus"] == "csCancellation" for i in invoices)
    paid = [i for i in invoices if i["DocumentStatus"] == "bost_Close" and i["PaidToDate"]]
    assert paid
    assert all((p["CardName"], p["NumAtCard"]) in held for p in paid)
    assert all(emu.payments_posted()[(p["CardName"], p["NumAtCard"])] == 1 for p in paid)
    assert emu.books.orders
    totals = emu.bill_totals()
    key = sorted(eligible)[0]
    clock.advance(timedelta(minutes=10))
    emu.change_bill(key)
    assert emu.bill_totals()[key] > totals[key]
    changed = [i for i in emu.books.invoices.values() if (i["CardName"], i["NumAtCard"]) == key]
    assert changed[0]["UpdateTime"] == time(9, 10)
    assert emu.unmapped_bills() == {(on_unmapped[0]["CardName"], on_unmapped[0]["NumAtCard"])}
    assert emu.payments_unfinished() == set()
    vendor = sorted(eligible)[0][0]
    phone = emu.change_vendor(vendor)
    (partner,) = [p for p in emu.books.partners.values() if p["CardName"] == vendor]
    assert (partner["Phone1"], partner["UpdateTime"]) == (phone, time(9, 10))
    again = create_emulator(EmulatorOptions(clock=clock))
    again.seed_demo(40, seed=7)
    assert again.eligible_bills() == eligible
    assert again.held_bill_keys() == held
