"""The NetSuite emulator over raw HTTP: each rule of /work/shared/api/netsuite.md it reproduces."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ml_connector.emulation import DemoSource, EmulatorOptions, FaultAction
from ml_connector.testing import ManualClock

from ml_connector_netsuite.emulator import NetSuiteEmulator, create_emulator

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BASE = "http://emulator"
TOKEN = "/services/rest/auth/oauth2/v1/token"
SUITEQL = "/services/rest/query/v1/suiteql"
RECORD = "/services/rest/record/v1"
pytestmark = pytest.mark.asyncio


def make(**extra: Any) -> tuple[NetSuiteEmulator, ManualClock]:
    clock = ManualClock(START)
    return NetSuiteEmulator(EmulatorOptions(clock=clock, extra=extra)), clock


def client(emulator: NetSuiteEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=emulator.transport(), base_url=BASE)


def assertion(
    emulator: NetSuiteEmulator,
    *,
    alg: str = "ES256",
    key: Any = None,
    lifetime: int = 300,
    aud: str | None = None,
    iss: str | None = None,
    kid: str | None = None,
    iat: datetime | None = None,
    scope: Any = ("rest_webservices",),
) -> str:
    creds = emulator.credentials()
    issued = int((iat or emulator.now()).timestamp())
    claims = {
        "iss": iss or creds["client_id"],
        "scope": list(scope) if isinstance(scope, tuple) else scope,
        "aud": aud or f"{BASE}{TOKEN}",
        "iat": issued,
        "exp": issued + lifetime,
        "jti": "x",
    }
    return jwt.encode(
        claims,
        key or creds["private_key"],
        algorithm=alg,
        headers={"kid": kid or creds["certificate_id"], "typ": "JWT"},
    )


async def get_token(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token,
        },
    )


async def login(emulator: NetSuiteEmulator, http: httpx.AsyncClient) -> dict[str, str]:
    answer = await get_token(http, assertion(emulator))
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def suiteql(
    http: httpx.AsyncClient, auth: dict[str, str], q: str, **params: Any
) -> httpx.Response:
    return await http.post(
        SUITEQL, json={"q": q}, params=params, headers={**auth, "Prefer": "transient"}
    )


def seeded() -> tuple[NetSuiteEmulator, ManualClock, dict[str, int]]:
    emulator, clock = make()
    ids = {
        "vendor": emulator.add_vendor("Acme Supply", email="ap@acme.example"),
        "expense": emulator.add_account("6100", "Office Supplies"),
        "dept": emulator.add_department("Operations"),
        "class": emulator.add_class("Retail"),
        "loc": emulator.add_location("Seattle"),
    }
    ids["bill"] = emulator.add_bill(
        ids["vendor"],
        [
            {
                "account": ids["expense"],
                "amount": Decimal("100.00"),
                "department": ids["dept"],
                "class": ids["class"],
                "location": ids["loc"],
                "memo": "Paper",
            },
            {"account": ids["expense"], "amount": Decimal("25.50"), "memo": "Pens"},
        ],
        tranid="INV-1",
    )
    return emulator, clock, ids


# --- Tokens (§2) ----------------------------------------------------------------------------


async def test_token_for_a_valid_es256_and_ps256_assertion() -> None:
    emulator, _ = make()
    async with client(emulator) as http:
        answer = await get_token(http, assertion(emulator))
        assert answer.status_code == 200
        body = answer.json()
        assert body["expires_in"] == 3600
        assert body["token_type"] == "Bearer"
        assert "refresh_token" not in body
    # PS256 against an RSA certificate: swap in an RSA integration key.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    emulator.integration.public_key = rsa_key.public_key()
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    async with client(emulator) as http:
        assert (await get_token(http, assertion(emulator, alg="PS256", key=pem))).status_code == 200
        refused = await get_token(http, assertion(emulator, alg="RS256", key=pem))
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"lifetime": 3601}, 400, "invalid_grant"),
        ({"iat": START - timedelta(minutes=10)}, 400, "invalid_grant"),  # expired
        ({"aud": "https://elsewhere/token"}, 400, "invalid_grant"),
        ({"kid": "unknown"}, 401, "invalid_client"),
        ({"iss": "someone-else"}, 401, "invalid_client"),
        ({"scope": "suite_analytics"}, 400, "invalid_grant"),
    ],
)
async def test_bad_assertions_are_refused(change: dict[str, Any], status: int, error: str) -> None:
    emulator, _ = make()
    async with client(emulator) as http:
        answer = await get_token(http, assertion(emulator, **change))
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert "error_description" in answer.json()


async def test_assertion_signed_with_another_key_is_refused() -> None:
    emulator, _ = make()
    other = NetSuiteEmulator()
    async with client(emulator) as http:
        answer = await get_token(http, assertion(emulator, key=other.credentials()["private_key"]))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


async def test_scope_as_string_and_canonical_audience_accepted() -> None:
    emulator, _ = make()
    async with client(emulator) as http:
        answer = await get_token(
            http, assertion(emulator, scope="rest_webservices,restlets", aud=emulator.token_url)
        )
    assert answer.status_code == 200
    assert emulator.host == "1234567-sb1.suitetalk.api.netsuite.com"


async def test_token_needs_a_form_body_and_grant_type() -> None:
    emulator, _ = make()
    async with client(emulator) as http:
        as_json = await http.post(TOKEN, json={"grant_type": "client_credentials"})
        wrong = await http.post(TOKEN, data={"grant_type": "password"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_request"


async def test_access_token_expires_after_an_hour_and_on_expire_tokens() -> None:
    emulator, clock = seeded()[:2]
    async with client(emulator) as http:
        auth = await login(emulator, http)
        assert (await suiteql(http, auth, "SELECT id FROM vendor")).status_code == 200
        clock.advance(timedelta(minutes=60))
        expired = await suiteql(http, auth, "SELECT id FROM vendor")
        assert expired.status_code == 401
        assert expired.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
        assert expired.headers["content-type"].startswith("application/vnd.oracle.resource+json")
        auth = await login(emulator, http)
        emulator.expire_sessions()
        assert (await http.get(f"{RECORD}/vendor/1", headers=auth)).status_code == 401
        unknown = await http.get(f"{RECORD}/vendor/1", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401


async def test_credentials_invalid_refuses_tokens() -> None:
    emulator, _ = make()
    emulator.credentials_valid = False
    async with client(emulator) as http:
        answer = await get_token(http, assertion(emulator))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


# --- SuiteQL (§4, §5, §6) ---------------------------------------------------------------------


async def test_suiteql_needs_prefer_transient() -> None:
    emulator, _, _ = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        answer = await http.post(SUITEQL, json={"q": "SELECT id FROM vendor"}, headers=auth)
    assert answer.status_code == 400
    assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"


async def test_suiteql_joins_aliases_and_lower_case_columns() -> None:
    emulator, _, ids = seeded()
    q = """
        SELECT t.id, t.TranId AS InvoiceNo, BUILTIN.DF(t.entity) AS vendor_name, v.email,
               tl.expenseaccount, a.acctnumber, tl.amount, tl.department, tl.memo,
               BUILTIN.CF(t.status) AS cf, BUILTIN.DF(t.approvalstatus) approval
        FROM transaction t
        INNER JOIN transactionline tl ON tl.transaction = t.id
        JOIN vendor v ON v.id = t.entity
        LEFT OUTER JOIN account a ON a.id = tl.expenseaccount
        WHERE t.type = 'VendBill' AND tl.mainline = 'F' AND (t.approvalstatus = 2 OR t.status = 'D')
          AND t.status IN ('A', 'F') AND NOT t.voided = 'T' AND tl.taxline = 'F'
        ORDER BY t.id, tl.linesequencenumber DESC
    """
    async with client(emulator) as http:
        auth = await login(emulator, http)
        answer = await suiteql(http, auth, q)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["count"] == 2
    assert body["totalResults"] == 2
    assert body["hasMore"] is False
    first = body["items"][0]
    assert first["links"] == []
    assert first["invoiceno"] == "INV-1"
    assert first["vendor_name"] == "Acme Supply"
    assert first["acctnumber"] == "6100"
    assert first["cf"] == "VendBill:A"
    assert first["approval"] == "Approved"
    assert first["memo"] == "Pens"
    assert "department" not in first
    assert body["items"][1]["department"] == str(ids["dept"])


async def test_suiteql_dates_and_to_timestamp() -> None:
    emulator, clock, ids = seeded()
    clock.advance(timedelta(hours=2))
    emulator.update_bill(ids["bill"], memo="changed")
    q = (
        "SELECT t.id, TO_CHAR(t.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lastmodified, "
        "t.trandate FROM transaction t WHERE t.type = 'VendBill' AND t.lastmodifieddate > "
        "TO_TIMESTAMP('{}', 'YYYY-MM-DD HH24:MI:SS') AND t.trandate BETWEEN "
        "TO_DATE('2026-01-01', 'YYYY-MM-DD') AND TO_DATE('2026-01-31', 'YYYY-MM-DD') "
        "ORDER BY t.lastmodifieddate, t.id"
    )
    async with client(emulator) as http:
        auth = await login(emulator, http)
        hit = await suiteql(http, auth, q.format("2026-01-05 10:00:00"))
        miss = await suiteql(http, auth, q.format("2026-01-05 11:00:00"))
    assert hit.json()["items"][0]["lastmodified"] == "2026-01-05 11:00:00"
    assert hit.json()["items"][0]["trandate"] == "1/5/2026"
    assert miss.json()["totalResults"] == 0


async def test_suiteql_subsidiary_is_on_transactionline() -> None:
    emulator, _, _ = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        wrong = await suiteql(http, auth, "SELECT t.subsidiary FROM transaction t")
        right = await suiteql(
            http, auth, "SELECT tl.subsidiary FROM transactionline tl WHERE tl.mainline = 'T'"
        )
    assert wrong.status_code == 400
    detail = wrong.json()["o:errorDetails"][0]
    assert detail["o:errorCode"] == "INVALID_PARAMETER"
    assert "subsidiary" in detail["detail"]
    assert right.json()["items"] == [{"links": [], "subsidiary": "1"}]


@pytest.mark.parametrize(
    "q",
    [
        "SELECT id FROM nosuchtable",
        "SELECT nosuchcolumn FROM vendor",
        "SELECT id FROM vendor WHERE",
        "SELECT id vendor",
        "SELECT v.id FROM vendor x",
    ],
)
async def test_suiteql_errors(q: str) -> None:
    emulator, _, _ = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        answer = await suiteql(http, auth, q)
    assert answer.status_code == 400
    assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"


async def test_suiteql_paging_has_more_and_offset_rules() -> None:
    emulator, _ = make()
    for n in range(7):
        emulator.add_vendor(f"Vendor {n}")
    async with client(emulator) as http:
        auth = await login(emulator, http)
        pages = []
        offset = 0
        while True:
            body = (
                await suiteql(
                    http,
                    auth,
                    "SELECT id, companyname FROM vendor ORDER BY id",
                    limit=3,
                    offset=offset,
                )
            ).json()
            pages.append(body)
            if not body["hasMore"]:
                break
            assert any(link["rel"] == "next" for link in body["links"])
            offset += 3
        assert [p["count"] for p in pages] == [3, 3, 1]
        assert all(p["totalResults"] == 7 for p in pages)
        assert [i["companyname"] for p in pages for i in p["items"]] == [
            f"Vendor {n}" for n in range(7)
        ]
        misaligned = await suiteql(http, auth, "SELECT id FROM vendor", limit=3, offset=4)
        assert misaligned.status_code == 400
        ceiling = await suiteql(http, auth, "SELECT id FROM vendor", limit=1000, offset=100_000)
        assert ceiling.status_code == 400
        assert ceiling.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"
        capped = await suiteql(http, auth, "SELECT id FROM vendor", limit=5000)
        assert capped.status_code == 200
        assert capped.json()["count"] == 7


async def test_payment_links_in_suiteql() -> None:
    emulator, _, ids = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        await pay(http, auth, emulator, ids, "PAY-1", Decimal("20"))
        answer = await suiteql(
            http,
            auth,
            "SELECT p.id, p.externalid, l.previousdoc, l.foreignamount FROM transaction p "
            "JOIN previoustransactionlinelink l ON l.nextdoc = p.id WHERE p.type = 'VendPymt'",
        )
    item = answer.json()["items"][0]
    assert item["externalid"] == "PAY-1"
    assert item["previousdoc"] == str(ids["bill"])
    assert item["foreignamount"] == "20"


# --- Record API (§5, §7) ----------------------------------------------------------------------


async def test_vendor_bill_record_and_expand_sub_resources() -> None:
    emulator, _, ids = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        plain = (await http.get(f"{RECORD}/vendorBill/{ids['bill']}", headers=auth)).json()
        full = (
            await http.get(
                f"{RECORD}/vendorBill/{ids['bill']}",
                params={"expandSubResources": "true"},
                headers=auth,
            )
        ).json()
        missing = await http.get(f"{RECORD}/vendorBill/999999", headers=auth)
        vendor = (await http.get(f"{RECORD}/vendor/{ids['vendor']}", headers=auth)).json()
    assert plain["tranId"] == "INV-1"
    assert plain["approvalStatus"] == {
        "id": "2",
        "refName": "Approved",
    }
    assert plain["status"] == {"id": "A", "refName": "Open"}
    assert plain["entity"]["refName"] == "Acme Supply"
    assert "items" not in plain["expense"]
    lines = full["expense"]["items"]
    assert [line["amount"] for line in lines] == [100.0, 25.5]
    assert lines[0]["department"]["id"] == str(ids["dept"])
    assert missing.status_code == 404
    assert missing.json()["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"
    assert vendor["companyName"] == "Acme Supply"


def payment_body(
    emulator: NetSuiteEmulator, ids: dict[str, int], amount: Decimal, **drop: bool
) -> dict[str, Any]:
    settings = emulator.settings(BASE)
    body: dict[str, Any] = {
        "entity": {"id": str(ids["vendor"])},
        "subsidiary": {"id": settings["subsidiary_id"]},
        "apAcct": {"id": settings["ap_account_id"]},
        "account": {"id": settings["bank_account_id"]},
        "tranDate": "2026-01-05",
        "memo": "BILL payment",
        "apply": {
            "items": [{"doc": {"id": str(ids["bill"])}, "apply": True, "amount": float(amount)}]
        },
    }
    for name in drop:
        body.pop(name)
    return body


async def pay(
    http: httpx.AsyncClient,
    auth: dict[str, str],
    emulator: NetSuiteEmulator,
    ids: dict[str, int],
    eid: str,
    amount: Decimal,
    **drop: bool,
) -> httpx.Response:
    return await http.put(
        f"{RECORD}/vendorPayment/eid:{eid}",
        json=payment_body(emulator, ids, amount, **drop),
        headers=auth,
    )


async def test_payment_upsert_by_external_id_is_idempotent() -> None:
    emulator, _, ids = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        first = await pay(http, auth, emulator, ids, "BILL-PAY-1", Decimal("50"))
        again = await pay(http, auth, emulator, ids, "BILL-PAY-1", Decimal("50"))
        assert first.status_code == again.status_code == 204
        assert first.content == b""
        assert first.headers["location"] == again.headers["location"]
        assert first.headers["location"].startswith(
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/record/v1/vendorPayment/"
        )
        assert [p["amount"] for p in emulator.payments_for(ids["bill"])] == [Decimal("50")]
        rest = await pay(http, auth, emulator, ids, "BILL-PAY-2", Decimal("75.50"))
        assert rest.status_code == 204
        bill = (await http.get(f"{RECORD}/vendorBill/{ids['bill']}", headers=auth)).json()
        assert bill["status"]["id"] == "B"
        unpaid = await suiteql(
            http, auth, f"SELECT foreignamountunpaid FROM transaction WHERE id = {ids['bill']}"
        )
        assert unpaid.json()["items"][0]["foreignamountunpaid"] == "0"
        too_much = await pay(http, auth, emulator, ids, "BILL-PAY-3", Decimal("1"))
        assert too_much.status_code == 400
    assert emulator.payments_carrying("BILL-PAY-1") == {("Acme Supply", "INV-1"): 1}
    assert emulator.payments_posted() == {("Acme Supply", "INV-1"): 2}
    assert emulator.payments_unfinished() == set()


@pytest.mark.parametrize(
    ("missing", "path"),
    [("subsidiary", "subsidiary"), ("apAcct", "apAcct"), ("account", "account")],
)
async def test_oneworld_payment_needs_subsidiary_and_accounts(missing: str, path: str) -> None:
    emulator, _, ids = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        answer = await pay(http, auth, emulator, ids, "X-1", Decimal("1"), **{missing: True})
    assert answer.status_code == 400
    detail = answer.json()["o:errorDetails"][0]
    assert detail["o:errorCode"] == "USER_ERROR"
    assert detail["o:errorPath"] == path
    assert emulator.payments_for(ids["bill"]) == []


async def test_without_oneworld_only_the_bank_account_is_needed() -> None:
    emulator, _ = make(oneworld=False)
    vendor = emulator.add_vendor("Solo")
    expense = emulator.add_account("6100", "Supplies")
    bill = emulator.add_bill(vendor, [{"account": expense, "amount": Decimal("10")}])
    ids = {"vendor": vendor, "bill": bill}
    assert emulator.settings(BASE)["subsidiary_id"] is None
    async with client(emulator) as http:
        auth = await login(emulator, http)
        body = payment_body(emulator, ids, Decimal("10"))
        del body["subsidiary"], body["apAcct"]
        answer = await http.put(f"{RECORD}/vendorPayment/eid:P1", json=body, headers=auth)
    assert answer.status_code == 204


async def test_payment_refused_for_unapproved_bill_and_bad_eid() -> None:
    emulator, _, ids = seeded()
    emulator.update_bill(ids["bill"], approved=False, status="D")
    async with client(emulator) as http:
        auth = await login(emulator, http)
        assert (await pay(http, auth, emulator, ids, "P-1", Decimal("1"))).status_code == 400
        assert (await pay(http, auth, emulator, ids, "a|b", Decimal("1"))).status_code == 400


# --- Limits and faults (§3, §4) ---------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 400])
async def test_concurrency_limit(status: int) -> None:
    emulator, _ = make(concurrency_limit=2, concurrency_status=status)
    emulator.add_vendor("A")
    async with client(emulator) as http:
        auth = await login(emulator, http)
        emulator.hold_requests()
        held = [asyncio.create_task(suiteql(http, auth, "SELECT id FROM vendor")) for _ in range(2)]
        while emulator.gate.peak < 2:  # noqa: ASYNC110 - yields to the held tasks, no clock
            await asyncio.sleep(0)
        refused = await suiteql(http, auth, "SELECT id FROM vendor")
        emulator.release_requests()
        done = await asyncio.gather(*held)
    assert refused.status_code == status
    body = refused.json()
    assert body["title"] == "Bad Request"
    assert body["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert "retry-after" not in refused.headers
    assert [r.status_code for r in done] == [200, 200]


async def test_injected_faults() -> None:
    emulator, _, _ = seeded()
    async with client(emulator) as http:
        auth = await login(emulator, http)
        kinds = [("session", 401), ("throttled", 429), ("malformed", 200), ("server", 503)]
        for kind, status in kinds:
            emulator.faults.add(
                FaultAction(status=status, kind=kind, retry_after=0),
                method="POST",
                path_contains=SUITEQL,
            )
            answer = await suiteql(http, auth, "SELECT id FROM vendor")
            assert answer.status_code == status
            if kind == "session":
                assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
            if kind == "throttled":
                assert answer.headers["retry-after"] == "0"
                assert (
                    answer.json()["o:errorDetails"][0]["o:errorCode"]
                    == "CONCURRENCY_LIMIT_EXCEEDED"
                )
            if kind == "malformed":
                assert answer.headers["content-type"].startswith("text/html")


# --- Demo -----------------------------------------------------------------------------------


async def test_demo_source() -> None:
    emulator = create_emulator(EmulatorOptions(clock=ManualClock(START)))
    assert isinstance(emulator, DemoSource)
    emulator.seed_demo(6, seed=3)
    eligible = emulator.eligible_bills()
    assert len(eligible) == 6
    held = emulator.held_bill_keys()
    assert len(held) == 5
    assert not held & eligible
    assert len(emulator.unmapped_bills()) == 1
    assert emulator.unmapped_account() in emulator.account_numbers()
    key = sorted(eligible)[0]
    before = emulator.bill_totals()[key]
    emulator.change_bill(key)
    assert emulator.bill_totals()[key] == before + 1
    assert emulator.change_vendor(key[0]).startswith("206-555-")
    entered = emulator.enter_bill(key, "SOAK-1", Decimal("12.34"))
    assert entered == (key[0], "SOAK-1")
    assert entered in emulator.eligible_bills()
    assert emulator.bill_totals()[entered] == Decimal("12.34")
