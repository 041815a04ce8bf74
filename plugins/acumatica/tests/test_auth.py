"""Signing in: OAuth with refresh, cookie sessions with logout, one re-login on 401."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from plugins.acumatica.tests.support import (
    BASE_URL,
    context,
    credentials,
    emulator,
    requests_to,
    settings,
)
from pydantic import SecretStr

from ml_connector.errors import AuthenticationError, ConfigurationError
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin
from ml_connector_acumatica.client import AcumaticaClient


async def test_oauth_password_grant_signs_in_with_a_bearer_token(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    result = await plugin.authenticate(ctx)
    assert result.principal == "api-bot@Acme"
    catalog = await plugin.list_accounts(ctx)
    assert catalog.accounts
    assert emu.logins == 1
    assert requests_to(emu, "POST", "/entity/auth/login") == 0
    assert emu.live_sessions() == 1
    await plugin.close_connection(ctx)
    assert emu.live_sessions() == 0, "the OAuth session must be signed out too"


async def test_oauth_token_is_refreshed_before_it_expires(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    client = AcumaticaClient(
        ctx.http_client(BASE_URL), settings(emu), credentials(emu), clock=emu.now
    )
    await client.sign_in()
    clock.advance(timedelta(seconds=3590))  # inside the refresh margin, not yet expired
    await client.list_page("Account", top=1)
    assert emu.refreshes == 1
    assert emu.logins == 1
    assert not [r for r in emu.log.records if r.status == 401], "refreshed ahead, never refused"
    await client.close()


async def test_expired_token_is_renewed_once_and_the_call_replayed(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    clock.advance(timedelta(hours=2))  # the client's own clock did not move: it learns by 401
    catalog = await plugin.list_accounts(ctx)
    assert catalog.accounts
    assert [r.status for r in emu.log.records if r.status == 401] == [401]
    assert emu.refreshes == 1, "the refresh token renews the session (same licence slot)"
    assert emu.live_sessions() == 1


async def test_refused_refresh_falls_back_to_the_password(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    clock.advance(timedelta(days=31))  # the refresh chain ended too
    await plugin.list_accounts(ctx)
    assert (emu.logins, emu.refreshes) == (2, 0)


async def test_cookie_session_logs_in_and_out(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode="cookie")
    result = await plugin.authenticate(ctx)
    assert result.expires_at is not None
    await plugin.list_accounts(ctx)
    assert emu.live_sessions() == 1
    assert requests_to(emu, "POST", "/identity/connect/token") == 0
    await plugin.close_connection(ctx)
    assert emu.live_sessions() == 0
    logout = [r for r in emu.log.records if r.path.endswith("/entity/auth/logout")]
    assert [r.status for r in logout] == [204], "Content-Length: 0 is sent (IIS answers 411)"


async def test_cookie_session_expiry_means_one_new_login(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode="cookie")
    await plugin.authenticate(ctx)
    clock.advance(timedelta(minutes=21))  # idle timeout
    await plugin.list_accounts(ctx)
    assert emu.logins == 2
    assert emu.live_sessions() == 1


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_relogin_is_tried_once_then_the_error_stands(clock: ManualClock, mode: str) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode=mode)
    await plugin.authenticate(ctx)
    emu.credentials_valid = False  # the password was changed in Acumatica
    emu.expire_sessions()
    with pytest.raises(AuthenticationError):
        await plugin.list_accounts(ctx)
    attempts = requests_to(emu, "POST", "/identity/connect/token") + requests_to(
        emu, "POST", "/entity/auth/login"
    )
    assert attempts <= 3, "one sign-in, then one renewal (a refresh may precede the password)"
    assert requests_to(emu, "GET", "/Account") == 1, "the call is not replayed after a failure"


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_concurrent_calls_share_one_relogin(clock: ManualClock, mode: str) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode=mode)
    await plugin.authenticate(ctx)
    emu.expire_sessions()
    await asyncio.gather(*(plugin.list_accounts(ctx) for _ in range(5)))
    assert emu.logins + emu.refreshes == 2


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_wrong_password_is_an_authentication_error(clock: ManualClock, mode: str) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode=mode, creds=credentials(emu, password="not-the-password"))
    with pytest.raises(AuthenticationError) as caught:
        await plugin.authenticate(ctx)
    assert "not-the-password" not in str(caught.value)


async def test_unknown_tenant_is_named(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode="cookie", tenant="Globex")
    with pytest.raises(AuthenticationError, match="tenant 'Globex' is not known"):
        await plugin.authenticate(ctx)


async def test_oauth_client_id_must_name_the_same_tenant(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, tenant="AcmeSandbox")
    with pytest.raises(ConfigurationError, match="differs from the tenant setting"):
        await plugin.authenticate(ctx)


async def test_oauth_client_id_without_tenant_gets_it(clock: ManualClock) -> None:
    emu = emulator(clock)
    guid = emu.config.client_id.split("@")[0]
    ctx = context(emu, creds=credentials(emu, client_id=guid))
    await plugin.authenticate(ctx)
    assert emu.logins == 1


async def test_oauth_without_client_secret_is_a_configuration_error(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, creds=credentials(emu, client_secret=None))
    with pytest.raises(ConfigurationError, match="client_id and client_secret"):
        await plugin.authenticate(ctx)


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_licence_user_limit_fails_clearly_when_no_wait_is_allowed(
    clock: ManualClock, mode: str
) -> None:
    emu = emulator(clock, max_sessions=1)
    first = context(emu, auth_mode=mode)
    second = context(emu, auth_mode=mode, login_wait_seconds=0)
    await plugin.authenticate(first)
    with pytest.raises(AuthenticationError, match="API-user licence slot") as caught:
        await plugin.authenticate(second)
    assert "API Login Limit" in str(caught.value)
    await plugin.close_connection(first)
    await plugin.authenticate(second)  # the slot came back with the logout
    await plugin.close_connection(second)


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_closed_connections_leak_no_licence_slots(clock: ManualClock, mode: str) -> None:
    emu = emulator(clock, max_sessions=1)
    for _ in range(5):
        ctx = context(emu, auth_mode=mode)
        await plugin.authenticate(ctx)
        await plugin.list_accounts(ctx)
        await plugin.close_connection(ctx)
    assert emu.live_sessions() == 0
    assert emu.logouts == 5


async def test_close_is_safe_unsigned_and_twice(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, auth_mode="cookie")
    await plugin.close_connection(ctx)
    await plugin.authenticate(ctx)
    await plugin.close_connection(ctx)
    await plugin.close_connection(ctx)
    assert requests_to(emu, "POST", "/logout") == 1


async def test_hooks_before_sign_in_are_refused(clock: ManualClock) -> None:
    ctx = context(emulator(clock))
    with pytest.raises(AuthenticationError, match="not signed in"):
        await plugin.list_accounts(ctx)


def test_credentials_repr_hides_secrets() -> None:
    emu = emulator()
    creds = credentials(emu)
    assert isinstance(creds.password, SecretStr)
    assert emu.config.password not in repr(creds)
    assert emu.config.client_secret not in repr(creds)
