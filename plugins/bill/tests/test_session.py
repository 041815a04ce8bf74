"""Signing in, the session's life, and the one re-login with one replay (bill.md §2)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from plugins.bill.tests.support import make_context, vendor
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import AuthenticationError, SessionExpiredError
from ml_connector.testing import ManualClock
from ml_connector_bill import plugin
from ml_connector_bill.client import SESSION_REFRESH_IDLE, BillClient
from ml_connector_bill.emulator import ORGANIZATION_ID, BillEmulator


def logins(emulator: BillEmulator) -> int:
    return sum(1 for r in emulator.log.records if r.path.endswith("/v3/login"))


def client_of(ctx: ConnectionContext) -> BillClient:
    client = ctx.state["bill.client"]
    assert isinstance(client, BillClient)
    return client


async def test_sign_in_and_ping(ctx: ConnectionContext, emulator: BillEmulator) -> None:
    result = await plugin.authenticate(ctx)
    assert result.principal == f"{emulator.config.username}@{ORGANIZATION_ID}"
    check = await plugin.check_connection(ctx)
    assert check.ok
    assert ORGANIZATION_ID in check.detail
    # a second authenticate keeps the fresh session: BILL allows 200 sign-ins an hour (§4)
    await plugin.authenticate(ctx)
    assert logins(emulator) == 1


async def test_headers_carry_the_session_and_no_secret_is_in_a_url(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.find_vendor(ctx, vendor())
    secrets = (emulator.config.password, emulator.config.dev_key)
    session = client_of(ctx)._session
    assert session is not None
    for record in emulator.log.records:
        assert not any(s in record.path for s in (*secrets, session))


async def test_a_paths_url_is_parsed_once_and_the_most_used_are_kept(
    ctx: ConnectionContext,
) -> None:
    await plugin.authenticate(ctx)
    client = client_of(ctx)
    bills = client._url("/v3/bills")
    assert bills == client._http.build_request("POST", "/v3/bills").url
    for n in range(40):
        assert client._url("/v3/bills") is bills
        client._url(f"/v3/vendors/00901{n:09d}")
    assert len(client._urls) == 32
    assert "/v3/bills" in client._urls
    assert "/v3/vendors/00901000000000" not in client._urls


async def test_idle_expiry_mid_run_signs_in_once_and_replays(
    ctx: ConnectionContext, emulator: BillEmulator, clock: ManualClock
) -> None:
    created = await plugin.upsert_vendor(ctx, vendor("A"), None)
    clock.advance(timedelta(minutes=36))  # BILL ends a session after 35 idle minutes
    found = await plugin.find_vendor(ctx, vendor("A"))
    assert found is not None
    assert found.sink_id == created.sink_id
    assert logins(emulator) == 2
    refused = [r for r in emulator.log.records if r.status == 401]
    assert len(refused) == 1


async def test_sliding_expiry_keeps_a_busy_session(
    ctx: ConnectionContext, emulator: BillEmulator, clock: ManualClock
) -> None:
    for _ in range(4):
        clock.advance(timedelta(minutes=20))  # each call renews the 35 idle minutes
        await plugin.find_vendor(ctx, vendor())
    assert logins(emulator) == 1


async def test_a_write_refused_for_the_session_is_replayed_once(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    emulator.expire_sessions()
    result = await plugin.upsert_vendor(ctx, vendor("B"), None)
    assert result.created
    assert len(emulator.vendors) == 1  # the refused request had not been applied
    assert logins(emulator) == 2


async def test_re_login_happens_once_never_in_a_loop(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    emulator.faults.add(FaultAction(401, kind="session"), path_contains="/v3/vendors", times=5)
    with pytest.raises(SessionExpiredError):
        await plugin.find_vendor(ctx, vendor())
    assert logins(emulator) == 2
    assert emulator.faults.injected == 2  # the first try and exactly one replay


async def test_refused_credentials_after_expiry_fail_once(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    emulator.expire_sessions()
    emulator.reject_logins = True
    with pytest.raises(AuthenticationError) as raised:
        await plugin.find_vendor(ctx, vendor())
    assert raised.value.code == "BDC_1101"
    assert not isinstance(raised.value, SessionExpiredError)
    assert logins(emulator) == 2


async def test_session_codes_on_other_statuses_also_renew(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    # UNCONFIRMED (bill.md §8): BDC_1361 may come as 403; the code decides, once.
    await plugin.authenticate(ctx)
    emulator.faults.add(FaultAction(403, kind="session"), path_contains="/v3/vendors")
    assert await plugin.find_vendor(ctx, vendor()) is None
    assert logins(emulator) == 2


async def test_proactive_renewal_before_bill_ends_the_session(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    client = client_of(ctx)
    now = [1000.0]
    client._monotonic = lambda: now[0]
    client._last_used = now[0]
    now[0] += SESSION_REFRESH_IDLE + 1
    await plugin.find_vendor(ctx, vendor())
    assert logins(emulator) == 2
    assert not any(r.status == 401 for r in emulator.log.records)


async def test_concurrent_expiry_shares_one_re_login(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    emulator.expire_sessions()
    results = await asyncio.gather(*(plugin.find_vendor(ctx, vendor(str(i))) for i in range(3)))
    assert results == [None, None, None]
    assert logins(emulator) == 2


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [("dev_key", "not-the-key", "BDC_1102"), ("password", "wrong-password", "BDC_1101")],
)
async def test_wrong_credentials(emulator: BillEmulator, field: str, value: str, code: str) -> None:
    ctx = make_context(emulator)
    ctx.credentials = ctx.credentials.model_copy(update={field: SecretStr(value)})
    with pytest.raises(AuthenticationError) as raised:
        await plugin.authenticate(ctx)
    assert raised.value.code == code
    assert value not in str(raised.value)
    await plugin.close_connection(ctx)


async def test_another_organization_is_refused(emulator: BillEmulator) -> None:
    ctx = make_context(emulator, organization_id="00801SOMEONEELSE01")
    with pytest.raises(AuthenticationError):
        await plugin.authenticate(ctx)
    await plugin.close_connection(ctx)


async def test_close_logs_out_and_is_safe_twice(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    assert len(emulator.sessions) == 1
    await plugin.close_connection(ctx)
    assert len(emulator.sessions) == 0
    await plugin.close_connection(ctx)
    assert any(r.path.endswith("/v3/logout") for r in emulator.log.records)
