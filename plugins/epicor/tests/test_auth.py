"""Identity: the API key on every call, the three auth modes, token expiry, the three 401s."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from plugins.epicor.tests.helpers import (
    Chart,
    Recording,
    client,
    context,
    emulator,
    read_all,
    window,
)

from ml_connector.errors import AuthenticationError, ConfigurationError
from ml_connector.models import PaymentPosting
from ml_connector.settings import validate_section
from ml_connector_epicor import plugin
from ml_connector_epicor.emulator import EpicorEmulator
from ml_connector_epicor.schemas import EpicorCredentials

API = "/KineticDemo/api/v2/odata/EPIC06/"


def _seeded(**extra: object) -> tuple[EpicorEmulator, Chart]:
    emu = emulator(**extra)
    chart = Chart(emu)
    for amount in ("10.00", "20.00", "30.00"):
        chart.invoice(amount)
    return emu, chart


async def test_basic_auth_sends_the_api_key_on_every_call() -> None:
    emu, _ = _seeded()
    recording = Recording(emu.transport())
    ctx = context(emu, transport=recording, auth="basic", page_size=2)
    await plugin.authenticate(ctx)
    items, _ = await read_all(ctx, window(emu))
    await plugin.list_accounts(ctx)
    assert len(items) == 3
    calls = recording.v2()
    assert len(calls) >= 4
    for request in calls:
        assert request.headers["x-api-key"] == EpicorEmulator.API_KEY
        assert request.headers["authorization"].startswith("Basic ")
    assert emu.tokens.created == 0


async def test_token_resource_gets_one_token_and_sends_it_with_the_key() -> None:
    emu, _ = _seeded()
    recording = Recording(emu.transport())
    ctx = context(emu, transport=recording)
    result = await plugin.authenticate(ctx)
    items, _ = await read_all(ctx, window(emu))
    assert len(items) == 3
    assert result.principal == "ap.integration@EPIC06"
    assert result.expires_at is not None
    assert emu.tokens.created == 1
    assert recording.requests[0].url.path == "/KineticDemo/TokenResource.svc/"
    for request in recording.v2():
        assert request.headers["x-api-key"] == EpicorEmulator.API_KEY
        assert request.headers["authorization"].startswith("Bearer eyJ")


async def test_token_resource_answering_xml_is_understood() -> None:
    emu, _ = _seeded(token_answer="xml")
    ctx = context(emu)
    await plugin.authenticate(ctx)
    items, _ = await read_all(ctx, window(emu))
    assert len(items) == 3


async def test_oauth_client_credentials_bearer() -> None:
    emu, _ = _seeded()
    recording = Recording(emu.transport())
    ctx = context(
        emu,
        transport=recording,
        credentials=emu.oauth_credentials(),
        auth="oauth",
        token_url="https://login.epicor.example/idp/connect/token",
    )
    result = await plugin.authenticate(ctx)
    items, _ = await read_all(ctx, window(emu))
    assert len(items) == 3
    assert result.principal == "ml-connector-ap@EPIC06"
    assert recording.requests[0].url.path == "/idp/connect/token"
    assert all(r.headers["authorization"].startswith("Bearer ") for r in recording.v2())


@pytest.mark.parametrize("status", [401, 410])
async def test_a_token_expiring_mid_run_is_renewed_once_and_the_call_replayed(
    status: int,
) -> None:
    emu, _ = _seeded(token_lifetime_seconds=600, expired_token_status=status)
    ctx = context(emu, page_size=1)
    await plugin.authenticate(ctx)
    win = window(emu)
    first = await plugin.list_changed_payables(ctx, win, None)
    emu.options.clock.advance(timedelta(minutes=11))  # type: ignore[attr-defined]
    token = first.next_page_token
    seen = list(first.items)
    while token is not None:
        page = await plugin.list_changed_payables(ctx, win, token)
        seen += page.items
        token = page.next_page_token
    assert len(seen) == 3
    assert emu.tokens.created == 2
    assert [r.status for r in emu.log.records].count(status) == 1


async def test_a_token_is_renewed_before_it_expires() -> None:
    emu, _ = _seeded(token_lifetime_seconds=600)
    clock = emu.options.clock
    api = client(context(emu), clock=clock)
    await api.sign_in()
    clock.advance(timedelta(seconds=600 - 30))  # type: ignore[attr-defined]  # inside the margin
    await api.gl_accounts()
    await api.close()
    assert emu.tokens.created == 2
    assert all(r.status < 400 for r in emu.log.records)


async def test_concurrent_callers_share_one_renewal() -> None:
    emu, _ = _seeded()
    api = client(context(emu))
    await api.sign_in()
    emu.expire_tokens()
    results = await asyncio.gather(*(api.gl_accounts() for _ in range(5)))
    await api.close()
    assert all(len(r) == 4 for r in results)
    assert emu.tokens.created == 2


@pytest.mark.parametrize("blank", ["", "   "])
async def test_a_missing_api_key_is_a_clear_error_and_nothing_is_sent(blank: str) -> None:
    emu, _ = _seeded()
    credentials = emu.credentials() | {"api_key": blank}
    ctx = context(emu, credentials=credentials)
    with pytest.raises(ConfigurationError, match=r"no API key configured \(credentials.api_key\)"):
        await plugin.authenticate(ctx)
    with pytest.raises(ConfigurationError, match="API key"):
        await plugin.list_changed_payables(ctx, window(emu), None)
    payable = (await read_all(context(emu), window(emu)))[0][0]
    emu.log.clear()
    posting = PaymentPosting(payment_sink_id="stp01X", payable=payable, amount=payable.total,
                             paid_on=payable.due_date, reference="stp01X")  # fmt: skip
    with pytest.raises(ConfigurationError):
        await plugin.record_payment(ctx, posting)
    assert emu.log.records == []
    assert emu.books.checks == {}


def test_the_credentials_schema_requires_an_api_key() -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        validate_section(
            EpicorCredentials, {"username": "u", "password": "p"}, "source credentials (epicor)"
        )


@pytest.mark.parametrize(
    ("auth", "missing"),
    [("basic", "password"), ("token_resource", "username"), ("oauth", "client_secret")],
)
async def test_an_auth_mode_without_its_credentials_is_refused(auth: str, missing: str) -> None:
    emu, _ = _seeded()
    credentials = emu.credentials() | emu.oauth_credentials()
    credentials[missing] = None
    ctx = context(emu, credentials=credentials, auth=auth, token_url="https://idp.example/t")
    with pytest.raises(ConfigurationError, match=f"credentials.{missing}"):
        await plugin.authenticate(ctx)
    assert emu.log.records == []


async def test_the_emulator_refuses_v2_calls_without_the_key_even_with_a_token() -> None:
    emu, _ = _seeded()
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://epicor") as http:
        token = (
            await http.post(
                "/KineticDemo/TokenResource.svc/",
                data={"username": emu.USER, "password": emu.PASSWORD},
            )
        ).json()["AccessToken"]
        answer = await http.get(
            API + "Erp.BO.APInvoiceSvc/APInvoices", headers={"Authorization": f"Bearer {token}"}
        )
        other = await http.get(
            "/KineticDemo/api/v2/odata/OTHER/Erp.BO.APInvoiceSvc/APInvoices",
            headers={"Authorization": f"Bearer {token}", "X-API-Key": emu.API_KEY},
        )
    assert answer.status_code == 401
    body = answer.json()
    assert body["ErrorType"] == "System.UnauthorizedAccessException"
    assert body["ErrorMessage"] == "Invalid API Key."
    assert other.status_code == 401
    assert other.json()["ErrorMessage"] == f"Invalid API Key {emu.API_KEY}.\r\nCompany OTHER."


async def _refusal(ctx_args: dict[str, object], setup: str) -> tuple[AuthenticationError, int]:
    emu, _ = _seeded()
    if setup == "deny":
        emu.deny(emu.USER, "Erp.BO.APInvoice.GetRows")
    ctx = context(emu, **ctx_args)  # type: ignore[arg-type]

    async def sign_in_and_read() -> None:
        await plugin.authenticate(ctx)
        await plugin.list_changed_payables(ctx, window(emu), None)

    with pytest.raises(AuthenticationError) as caught:
        await sign_in_and_read()
    return caught.value, emu.tokens.created


@pytest.mark.parametrize("auth", ["basic", "token_resource"])
async def test_the_three_401s_are_told_apart(auth: str) -> None:
    wrong_password = {"credentials": EpicorEmulator().credentials() | {"password": "nope-nope"}}
    wrong_key = {"credentials": EpicorEmulator().credentials() | {"api_key": "llave-invalida"}}
    bad_password, _ = await _refusal({"auth": auth, **wrong_password}, "")
    bad_key, tokens_after_bad_key = await _refusal({"auth": auth, **wrong_key}, "")
    denied, tokens_after_denied = await _refusal({"auth": auth}, "deny")

    assert bad_password.code == "invalid_credentials"
    assert "user name or password" in str(bad_password)
    assert bad_key.code == "invalid_api_key"
    assert "refused the API key for company EPIC06" in str(bad_key)
    assert "llave-invalida" not in str(bad_key)  # Kinetic echoes the key; it is scrubbed
    assert denied.code == "access_denied"
    assert "Access denied (Erp.BO.APInvoice.GetRows)" in str(denied)
    for error in (bad_password, bad_key, denied):
        assert error.status == 401
        assert not error.retryable
    if auth == "token_resource":
        # a refused key or missing rights is never "cured" by a new token
        assert tokens_after_bad_key == tokens_after_denied == 1


async def test_a_refused_oauth_client_is_reported() -> None:
    emu, _ = _seeded()
    credentials = emu.oauth_credentials() | {"client_secret": "wrong-secret"}
    ctx = context(
        emu,
        credentials=credentials,
        auth="oauth",
        token_url="https://idp.example/idp/connect/token",
    )
    with pytest.raises(AuthenticationError) as caught:
        await plugin.authenticate(ctx)
    assert caught.value.code == "invalid_client"
    assert "client id or secret" in str(caught.value)


async def test_revoked_credentials_fail_after_one_renewal() -> None:
    emu, _ = _seeded()
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.revoke_credentials()
    with pytest.raises(AuthenticationError) as caught:
        await plugin.list_changed_payables(ctx, window(emu), None)
    assert caught.value.code == "invalid_credentials"
    assert emu.tokens.created == 1
