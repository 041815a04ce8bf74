"""The Service Layer session: cookies, expiry, failed logins, logout, the saved session."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRecordError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.testing import ManualClock

from ml_connector_sapb1 import plugin
from ml_connector_sapb1.client import SapB1Client, parse_error
from ml_connector_sapb1.emulator import SapB1Emulator
from ml_connector_sapb1.schemas import Credentials

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import sapb1_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.sapb1.tests import sapb1_testkit as kit  # type: ignore[import-not-found,no-redef]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(kit.START)


@pytest.fixture
def emu(clock: ManualClock) -> SapB1Emulator:
    emu = kit.emulator(clock)
    company = kit.Company(emu)
    company.invoice("10.00")
    company.invoice("20.00")
    return emu


def _requests(emu: SapB1Emulator, method: str, fragment: str) -> list[int]:
    """The statuses of the requests the emulator served with that method and path fragment."""
    return [r.status for r in emu.log.records if r.method == method and fragment in r.path]


# --- Cookies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_the_session_cookies_go_in_an_explicit_header(
    emu: SapB1Emulator, version: str
) -> None:
    recording = kit.Recording(emu.transport())
    ctx = kit.context(emu, version, transport=recording)
    await plugin.authenticate(ctx)
    read = await kit.read_all(ctx, kit.window(emu))
    assert len(read.items) == 2
    login, *rest = recording.requests
    assert login.url.path == f"/b1s/{version}/Login"
    assert kit.json_body(login) == {
        "CompanyDB": "SBODEMOUS", "UserName": "manager", "Password": emu.password
    }  # fmt: skip
    for request in rest:
        cookie = request.headers["Cookie"]
        assert cookie.startswith("B1SESSION=")
        assert cookie.endswith("; ROUTEID=.node1")
        assert emu.password not in request.content.decode()
    assert len({r.headers["Cookie"] for r in rest}) == 1
    client = ctx.state["sapb1.client"]
    assert not client.http.cookies  # nothing kept in httpx's jar: only the header is sent
    await plugin.close_connection(ctx)
    logout = recording.requests[-1]
    assert (logout.method, logout.url.path) == ("POST", f"/b1s/{version}/Logout")
    assert logout.headers["Cookie"] == rest[0].headers["Cookie"]
    assert len(emu.sessions) == 0


async def test_a_login_answer_without_cookies_uses_its_session_id() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={"SessionId": "from-the-body", "SessionTimeout": 30})
        return httpx.Response(200, json={"value": []})

    emu = kit.emulator()
    ctx = kit.context(emu, transport=httpx.MockTransport(handle))
    await plugin.authenticate(ctx)
    await kit.read_all(ctx, kit.window(emu))
    assert seen[1].headers["Cookie"] == "B1SESSION=from-the-body"
    await plugin.close_connection(ctx)


# --- Expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_an_expired_session_is_renewed_once_and_the_request_replayed(
    emu: SapB1Emulator, version: str
) -> None:
    ctx = kit.context(emu, version)
    await plugin.authenticate(ctx)
    emu.expire_sessions()  # the idle timeout: the next request answers 401 code 301
    read = await kit.read_all(ctx, kit.window(emu))
    assert len(read.items) == 2
    assert emu.logins == 2
    assert _requests(emu, "GET", "PurchaseInvoices") == [401, 200]
    await plugin.close_connection(ctx)


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_a_second_401_right_after_a_new_login_is_an_authentication_error(
    emu: SapB1Emulator, version: str
) -> None:
    ctx = kit.context(emu, version)
    await plugin.authenticate(ctx)
    emu.faults.add(FaultAction(401, kind="session"), path_contains="PurchaseInvoices", times=2)
    with pytest.raises(AuthenticationError, match="right after a new login"):
        await kit.read_all(ctx, kit.window(emu))
    assert emu.logins == 2  # one renewal, never a loop
    await plugin.close_connection(ctx)


async def test_concurrent_requests_share_one_renewal(emu: SapB1Emulator) -> None:
    ctx = kit.context(emu)
    await plugin.authenticate(ctx)
    emu.expire_sessions()
    found = await asyncio.gather(*(plugin.get_payable(ctx, str(i)) for i in (1, 2, 1, 2)))
    assert all(p is not None for p in found)
    assert emu.logins == 2
    await plugin.close_connection(ctx)


async def test_a_session_idle_past_its_timeout_is_renewed_before_sending(
    emu: SapB1Emulator, clock: ManualClock
) -> None:
    settings = kit.settings(emu)
    http = httpx.AsyncClient(transport=emu.transport(), base_url=settings.service_url + "/")
    client = SapB1Client(http, settings, Credentials.model_validate(emu.credentials()), clock=clock)
    await client.sign_in()
    assert await client.get_entity("PurchaseInvoices", 1) is not None
    clock.advance(timedelta(minutes=31))  # SessionTimeout is 30 idle minutes
    assert await client.get_entity("PurchaseInvoices", 2) is not None
    assert client.logins == 2
    assert 401 not in _requests(emu, "GET", "PurchaseInvoices")  # no request into a dead session
    await client.close()


# --- Failed logins ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_refused_credentials_are_an_authentication_error_never_retried(
    emu: SapB1Emulator, version: str
) -> None:
    ctx = kit.context(emu, version, credentials={"username": "manager", "password": "wrong"})
    with pytest.raises(AuthenticationError) as caught:
        await plugin.authenticate(ctx)
    assert caught.value.status == 401
    assert caught.value.code == "-304"
    assert "wrong" not in str(caught.value)
    assert _requests(emu, "POST", "/Login") == [401]
    await plugin.close_connection(ctx)


async def test_any_answer_but_200_to_a_login_is_refused_without_retry(
    emu: SapB1Emulator,
) -> None:
    # sapb1.md §8: the failed-login status is unconfirmed; a retried bad password can lock the
    # user, so even a 500 is not retried.
    emu.faults.add(FaultAction(500, kind="server"), path_contains="/Login")
    ctx = kit.context(emu)
    with pytest.raises(AuthenticationError):
        await plugin.authenticate(ctx)
    assert _requests(emu, "POST", "/Login") == [500]
    await plugin.close_connection(ctx)


async def test_credentials_refused_mid_run_end_in_an_authentication_error(
    emu: SapB1Emulator,
) -> None:
    ctx = kit.context(emu)
    await plugin.authenticate(ctx)
    emu.fail_next("unauthorized")  # sessions end, and every login fails from now on
    with pytest.raises(AuthenticationError):
        await kit.read_all(ctx, kit.window(emu))
    assert _requests(emu, "POST", "/Login") == [200, 401]
    await plugin.close_connection(ctx)


# --- -5002 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", kit.VERSIONS)
async def test_a_business_error_is_an_invalid_record_never_an_expiry(
    emu: SapB1Emulator, version: str
) -> None:
    ctx = kit.context(emu, version, transfer_account="9999")  # no such G/L account
    await plugin.authenticate(ctx)
    payable = await plugin.get_payable(ctx, "1")
    assert payable is not None
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, kit.posting(payable, "stp01AAAAAAAAAAAAAAA"))
    assert caught.value.record_type == "payment"
    assert caught.value.record_id == "stp01AAAAAAAAAAAAAAA"
    assert "-5002" in caught.value.reason
    assert emu.logins == 1  # a 400 -5002 never signs in again
    assert emu.payments_for(1) == []
    await plugin.close_connection(ctx)


# --- Logout ------------------------------------------------------------------------------------


async def test_close_logs_out_forgets_the_saved_session_and_is_safe_twice(
    emu: SapB1Emulator,
) -> None:
    keeper = kit.MemoryKeeper()
    ctx = kit.context(emu, keeper=keeper)
    await plugin.authenticate(ctx)
    assert keeper.load() is not None
    await plugin.close_connection(ctx)
    await plugin.close_connection(ctx)
    assert _requests(emu, "POST", "/Logout") == [204]
    assert keeper.load() is None
    assert len(emu.sessions) == 0  # the licence seat is free


async def test_a_failed_logout_keeps_the_saved_session_for_the_next_run(
    emu: SapB1Emulator,
) -> None:
    keeper = kit.MemoryKeeper()
    ctx = kit.context(emu, keeper=keeper)
    await plugin.authenticate(ctx)
    emu.faults.add(FaultAction(503), path_contains="/Logout")
    await plugin.close_connection(ctx)  # never raises
    assert keeper.data is not None  # the next run ends it (or reuses it)


# --- The saved session (a run killed with kill -9) ---------------------------------------------


async def test_a_killed_run_s_session_is_reused_by_the_next_run(emu: SapB1Emulator) -> None:
    keeper = kit.MemoryKeeper()
    killed = kit.context(emu, keeper=keeper)
    await plugin.authenticate(killed)
    saved = keeper.load()
    assert saved is not None
    assert saved["owner"] == {
        "service_url": kit.root("v1"), "company_db": "SBODEMOUS", "user": "manager"
    }  # fmt: skip
    assert "password" not in str(saved).lower()
    assert emu.password not in str(saved)
    # …killed here: no close_connection, no logout. The next run:
    ctx = kit.context(emu, keeper=keeper)
    await plugin.authenticate(ctx)
    assert emu.logins == 1  # reused, no second seat
    assert len((await kit.read_all(ctx, kit.window(emu))).items) == 2
    await plugin.close_connection(ctx)
    assert keeper.data is None


async def test_a_saved_session_the_server_ended_is_replaced(emu: SapB1Emulator) -> None:
    keeper = kit.MemoryKeeper()
    await plugin.authenticate(kit.context(emu, keeper=keeper))
    old = keeper.load()
    emu.expire_sessions()  # it idled out meanwhile
    ctx = kit.context(emu, keeper=keeper)
    await plugin.authenticate(ctx)
    assert emu.logins == 2
    new = keeper.load()
    assert old is not None
    assert new is not None
    assert new["session_id"] != old["session_id"]
    await plugin.close_connection(ctx)


async def test_a_saved_session_that_answers_oddly_is_logged_out_then_replaced(
    emu: SapB1Emulator,
) -> None:
    keeper = kit.MemoryKeeper()
    await plugin.authenticate(kit.context(emu, keeper=keeper))
    emu.faults.add(FaultAction(503), path_contains="ChartOfAccounts")  # the probe
    ctx = kit.context(emu, keeper=keeper)
    await plugin.authenticate(ctx)
    assert _requests(emu, "POST", "/Logout") == [204]  # the old seat freed first
    assert emu.logins == 2
    await plugin.close_connection(ctx)


async def test_a_session_saved_for_other_settings_is_not_touched(emu: SapB1Emulator) -> None:
    keeper = kit.MemoryKeeper()
    await plugin.authenticate(kit.context(emu, keeper=keeper))
    ctx = kit.context(emu, "v2", keeper=keeper)  # another service root: another owner
    await plugin.authenticate(ctx)
    assert emu.logins == 2
    assert _requests(emu, "POST", "/Logout") == []
    await plugin.close_connection(ctx)


# --- Error bodies and statuses ------------------------------------------------------------------


def test_both_error_shapes_are_read() -> None:
    v1 = httpx.Response(
        401,
        json={"error": {"code": 301, "message": {"lang": "en-us", "value": "Invalid session."}}},
    )
    v2 = httpx.Response(401, json={"error": {"code": "301", "message": "Invalid session."}})
    for response in (v1, v2):
        info = parse_error(response)
        assert info is not None
        assert (info.code, info.message) == ("301", "Invalid session.")
    assert parse_error(httpx.Response(502, text="<html>Proxy Error</html>")) is None


def _answering(status: int, body: Any = None, **headers: str) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={"SessionId": "S", "SessionTimeout": 30})
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (429, {"error": {"code": -1, "message": "Too many"}}, {"Retry-After": "7"},
         ThrottledError),
        (503, {"error": {"code": -1, "message": {"value": "busy"}}}, {}, TransientError),
        (503, "", {"Retry-After": "3"}, ThrottledError),
        (502, "<html><title>502 Proxy Error</title></html>", {}, TransientError),
        (500, {"error": {"code": -1, "message": "boom"}}, {}, TransientError),
        (412, {"error": {"code": "-2039", "message": "modified"}}, {}, ConflictError),
        (403, {"error": {"code": -1, "message": "no rights"}}, {}, AuthenticationError),
        (404, {"error": {"code": -1, "message": "no such set"}}, {}, NotFoundError),
        (400, {"error": {"code": -1000, "message": "bad filter"}}, {}, UpstreamError),
        (200, "<html><body>a login page</body></html>", {}, UpstreamError),
    ],
)  # fmt: skip
async def test_answers_map_onto_the_core_errors(
    status: int, body: Any, headers: dict[str, str], expected: type[Exception]
) -> None:
    emu = kit.emulator()
    ctx = kit.context(emu, transport=_answering(status, body, **headers))
    await plugin.authenticate(ctx)
    with pytest.raises(expected) as caught:
        await kit.read_all(ctx, kit.window(emu))
    if expected is ThrottledError:
        assert isinstance(caught.value, ThrottledError)
        assert caught.value.retry_after == float(headers["Retry-After"])
    await plugin.close_connection(ctx)


async def test_a_missing_key_is_none_a_refused_write_names_record_and_property() -> None:
    answers = {
        "GET": (404, {"error": {"code": "-2028", "message": "No matching records found"}}),
        "POST": (400, {"error": {"code": -1000,
                                 "message": {"value": "Property 'TransferAcount' of 'Payment' "
                                                      "is invalid"}}}),
    }  # fmt: skip

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={"SessionId": "S"})
        status, body = answers[request.method]
        return httpx.Response(status, json=body)

    emu = kit.emulator()
    settings = kit.settings(emu)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url=settings.service_url)
    client = SapB1Client(http, settings, Credentials.model_validate(emu.credentials()))
    assert await client.get_entity("PurchaseInvoices", 12) is None
    with pytest.raises(InvalidRecordError) as caught:
        await client.create("VendorPayments", {"TransferSum": Decimal("1.00")},
                            record=("payment", "stp01X"))  # fmt: skip
    assert (caught.value.record_id, caught.value.field) == ("stp01X", "TransferAcount")
    await client.close()


async def test_an_unreachable_server_is_transient(emu: SapB1Emulator) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ctx = kit.context(emu, transport=httpx.MockTransport(handle))
    with pytest.raises(TransientError, match="cannot reach"):
        await plugin.authenticate(ctx)
    await plugin.close_connection(ctx)
