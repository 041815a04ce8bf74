"""The client over a scripted transport: error bodies, throttling, paging past 100,000 rows."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ml_connector import Capability
from ml_connector.errors import (
    AuthenticationError,
    InvalidRecordError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UpstreamError,
)

from ml_connector_netsuite import _bills, plugin
from ml_connector_netsuite.client import (
    OFFSET_CEILING,
    SUITEQL,
    TOKEN_PATH,
    NetSuiteClient,
    _dumps,
)
from ml_connector_netsuite.schemas import Credentials, Settings

ERROR_TYPE = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"
Handler = Callable[[httpx.Request], httpx.Response]


def _key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


KEY = _key()


def _client(handler: Handler, **settings: Any) -> NetSuiteClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": "3600"})
        return handler(request)

    config = Settings.model_validate({"account_id": "1234567", **settings})
    http = httpx.AsyncClient(transport=httpx.MockTransport(route), base_url=config.rest_url)
    creds = Credentials.model_validate(
        {"client_id": "c", "certificate_id": "k", "private_key": KEY}
    )
    return NetSuiteClient(http, config, creds)


def _error(status: int, code: str, detail: str, **extra: str) -> httpx.Response:
    item = {"detail": detail, "o:errorCode": code, **extra}
    body = {"type": ERROR_TYPE, "title": "Bad Request", "status": status, "o:errorDetails": [item]}
    return httpx.Response(
        status, json=body, headers={"Content-Type": "application/vnd.oracle.resource+json"}
    )


@pytest.mark.parametrize("status", [429, 400])
async def test_the_concurrency_error_is_throttling_whatever_the_status(status: int) -> None:
    client = _client(
        lambda _: _error(status, "CONCURRENCY_LIMIT_EXCEEDED", "Concurrent request limit exceeded.")
    )
    with pytest.raises(ThrottledError) as caught:
        await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert caught.value.code == "CONCURRENCY_LIMIT_EXCEEDED"
    assert caught.value.retry_after is None  # NetSuite sends no Retry-After


async def test_a_retry_after_is_honoured_if_sent() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        response = _error(429, "CONCURRENCY_LIMIT_EXCEEDED", "blocked")
        response.headers["Retry-After"] = "7"
        return response

    with pytest.raises(ThrottledError) as caught:
        await _client(handler).suiteql("SELECT t.id FROM transaction t", limit=1)
    assert caught.value.retry_after == 7


async def test_a_refused_record_names_the_field() -> None:
    client = _client(
        lambda _: _error(
            400, "USER_ERROR", "Please enter value(s) for: Account", **{"o:errorPath": "account"}
        )
    )
    with pytest.raises(InvalidRecordError) as caught:
        await client.request(
            "PUT", "/services/rest/record/v1/vendorPayment/eid:x", record=("vendorPayment", "x")
        )
    assert caught.value.field == "account"
    assert "USER_ERROR: Please enter value(s) for: Account (at account)" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "INSUFFICIENT_PERMISSION", AuthenticationError),
        (404, "NONEXISTENT_ID", NotFoundError),
        (500, "UNEXPECTED_ERROR", TransientError),
        (503, "UNEXPECTED_ERROR", TransientError),
        (400, "INVALID_PARAMETER", UpstreamError),
    ],
)
async def test_error_answers_map_onto_the_core_errors(
    status: int, code: str, error: type[Exception]
) -> None:
    client = _client(lambda _: _error(status, code, "it went wrong"))
    with pytest.raises(error) as caught:
        await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert not isinstance(caught.value, InvalidRecordError)
    assert f"{code}: it went wrong" in str(caught.value)


async def test_a_body_that_is_not_json_is_an_upstream_error() -> None:
    client = _client(lambda _: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(UpstreamError, match="unexpected answer"):
        await client.suiteql("SELECT t.id FROM transaction t", limit=1)


async def test_a_second_401_is_an_authentication_error() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        return _error(401, "INVALID_LOGIN", "Invalid login attempt.")

    with pytest.raises(AuthenticationError, match="Invalid login attempt"):
        await _client(handler).suiteql("SELECT t.id FROM transaction t", limit=1)
    assert len(calls) == 2


async def test_suiteql_sends_prefer_transient_and_reads_money_as_decimal() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = b'{"items":[{"links":[],"foreigntotal":0.1}],"hasMore":false,"count":1}'
        return httpx.Response(200, content=body)

    page = await _client(handler).suiteql("SELECT 1", limit=5000)
    assert page.items[0]["foreigntotal"] == Decimal("0.1")
    (request,) = seen
    assert request.headers["Prefer"] == "transient"
    assert request.url.params["limit"] == "1000"  # at most 1000 rows per page
    assert request.url.params["offset"] == "0"
    assert json.loads(request.content) == {"q": "SELECT 1"}


async def test_the_client_never_asks_past_the_offset_ceiling() -> None:
    client = _client(lambda _: httpx.Response(200, json={"items": []}))
    with pytest.raises(UpstreamError, match="100,000"):
        await client.suiteql("SELECT 1", limit=1000, offset=OFFSET_CEILING)


def test_decimals_are_written_from_their_digits() -> None:
    body = {"amount": Decimal("1234567890.12"), "memo": "a", "n": [Decimal("0.10")]}
    assert _dumps(body) == b'{"amount":1234567890.12,"memo":"a","n":[0.10]}'


async def test_keyset_paging_reads_past_100000_rows() -> None:
    """250,000 bills in one window: every one once, no request past offset 0."""
    total = 250_000
    offsets: list[int] = []
    last_seen = re.compile(r"t\.id > (\d+)")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == SUITEQL
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        offsets.append(offset)
        query = json.loads(request.content)["q"]
        found = last_seen.search(query)
        start = int(found.group(1)) + 1 if found else 1
        ids = range(start, min(start + limit, total + 1))
        items = [{"links": [], "id": str(i)} for i in ids]
        return httpx.Response(
            200,
            json={"items": items, "hasMore": ids.stop <= total, "count": len(items)},
        )

    client = _client(handler)
    settings = client.settings
    rows = await client.keyset(lambda last: _bills.bill_query(None, settings, last))
    assert [int(r["id"]) for r in rows] == list(range(1, total + 1))
    assert set(offsets) == {0}
    assert len(offsets) == total // 1000


async def test_requests_in_flight_stay_within_the_concurrency_limit() -> None:
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json={"items": [], "hasMore": False})

    config = Settings(account_id="1234567", concurrency_limit=2)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=config.rest_url)
    creds = Credentials.model_validate(
        {"client_id": "c", "certificate_id": "k", "private_key": KEY}
    )
    client = NetSuiteClient(http, config, creds)
    await client.sign_in()
    calls = [asyncio.create_task(client.suiteql("SELECT 1", limit=1)) for _ in range(6)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert most == 2
    release.set()
    await asyncio.gather(*calls)
    assert most == 2


def test_the_plugin_declares_the_accounts_concurrency() -> None:
    description = plugin.describe_plugin()
    assert description.limits.max_in_flight == 5
    assert description.limits.scope_setting == "account_id"
    assert Capability.DIMENSIONS in description.capabilities
