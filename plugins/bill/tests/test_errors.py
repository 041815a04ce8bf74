"""BILL's answers mapped onto the core's errors, limits, and secrets kept out of every text."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from plugins.bill.tests.support import draft, make_context, make_emulator, vendor

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRecordError,
    NotFoundError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.models import ChangeWindow
from ml_connector.testing import ManualClock
from ml_connector_bill import plugin
from ml_connector_bill.client import BillClient, RecordRef
from ml_connector_bill.emulator import BillEmulator
from ml_connector_bill.schemas import BillCredentials, BillSettings

WINDOW = ChangeWindow(since=None, until=datetime(2030, 1, 1, tzinfo=UTC))
CREDENTIALS = BillCredentials.model_validate(
    {"username": "ap@acme.example", "password": "pa55-w0rd-secret", "dev_key": "dev-key-secret"}
)
SETTINGS = BillSettings.model_validate(
    {
        "organization_id": "00801ACME",
        "environment": "custom",
        "base_url": "https://bill.test/connect",
    }
)


def scripted(
    answers: dict[str, Any], *, clock: datetime | None = None
) -> tuple[BillClient, list[httpx.Request]]:
    """A client over a MockTransport: a login that works, then ``answers`` by path.

    An answer is ``(status, body)`` or ``(status, body, headers)``, or a list of them used in
    turn, or an exception to raise.
    """
    seen: list[httpx.Request] = []
    queues = {path: list(a) if isinstance(a, list) else [a] for path, a in answers.items()}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/v3/login"):
            return httpx.Response(
                200, json={"sessionId": "sess-secret-1", "organizationId": "00801ACME"}
            )
        queue = queues[request.url.path]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        status, body, *rest = answer
        headers = rest[0] if rest else {}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)

    http = httpx.AsyncClient(base_url=SETTINGS.api_url, transport=httpx.MockTransport(handler))
    fixed = clock or datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    return BillClient(http, SETTINGS, CREDENTIALS, clock=lambda: fixed), seen


def bdc(code: Any, message: str = "message") -> list[dict[str, Any]]:
    return [{"timestamp": "2025-03-01T09:00:00.000+00:00", "code": code, "severity": "ERROR",
             "category": "REQUEST", "message": message}]  # fmt: skip


PATH = "/connect/v3/vendors/00901X"


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (429, bdc("BDC_1322"), ThrottledError, "BDC_1322"),
        (400, bdc("BDC_1322"), ThrottledError, "BDC_1322"),  # status undocumented (§8)
        (503, bdc("BDC_1322"), ThrottledError, "BDC_1322"),
        (400, bdc(1322), ThrottledError, "BDC_1322"),  # a code as a number
        (400, bdc("1144"), ThrottledError, "BDC_1144"),  # or as a digit string
        (429, b"", ThrottledError, "BDC_1322"),  # 429 alone throttles too
        (500, bdc("BDC_1001", "System error occurred."), TransientError, "BDC_1001"),
        (502, b"<html>Bad Gateway</html>", TransientError, None),
        (400, bdc("BDC_1002", "Unknown error occurred."), TransientError, "BDC_1002"),
        (401, bdc("BDC_1102", "Developer key is invalid."), AuthenticationError, "BDC_1102"),
        (403, bdc("BDC_4711", "Not allowed."), AuthenticationError, "BDC_4711"),
        (404, bdc("BDC_1121", "API not supported."), NotFoundError, "BDC_1121"),
        (409, bdc("BDC_4712", "Changed."), ConflictError, "BDC_4712"),
        (400, bdc("BDC_1143", "name: must not be blank"), UpstreamError, "BDC_1143"),
    ],
)
async def test_codes_map_onto_the_core_tree(
    status: int, body: Any, expected: type[Exception], code: str | None
) -> None:
    client, _ = scripted({PATH: (status, body)})
    with pytest.raises(expected) as raised:
        await client.call("PATCH", "/v3/vendors/00901X", body={})
    error = raised.value
    assert getattr(error, "code", None) == code
    assert getattr(error, "status", None) == status
    assert not isinstance(error, SessionExpiredError)


async def test_a_404_record_is_none_but_a_404_path_is_an_error() -> None:
    client, _ = scripted(
        {
            "/connect/v3/bills/00nX": (404, bdc("BDC_1205", "Record not found.")),
            "/connect/v3/bills/00nY": (404, bdc("BDC_1121", "API not supported.")),
        }
    )
    assert await client.get_bill("00nX") is None
    with pytest.raises(NotFoundError):
        await client.get_bill("00nY")


async def test_a_write_refusal_names_record_and_field() -> None:
    client, _ = scripted(
        {
            "/connect/v3/bills": [
                (400, bdc("BDC_1143", "invoice.invoiceNumber: must not be blank")),
                (422, bdc("BDC_1151", "Invalid entity data. dueDate.")),
                (400, bdc("BDC_1143", "Something is off")),
            ]
        }
    )
    record = RecordRef("payable", "AP-1")
    fields = []
    for _ in range(3):
        with pytest.raises(InvalidRecordError) as raised:
            await client.create_bill({}, record)
        assert (raised.value.record_type, raised.value.record_id) == ("payable", "AP-1")
        fields.append(raised.value.field)
    assert fields == ["invoice.invoiceNumber", "dueDate", None]


async def test_hourly_limit_waits_until_the_next_full_hour() -> None:
    client, _ = scripted(
        {PATH: (400, bdc("BDC_1144"))}, clock=datetime(2025, 3, 1, 9, 59, 30, tzinfo=UTC)
    )
    with pytest.raises(ThrottledError) as raised:
        await client.call("GET", "/v3/vendors/00901X")
    assert raised.value.retry_after == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7.0), ("Sat, 01 Mar 2025 09:15:20 GMT", 20.0)]
)
async def test_retry_after_is_honoured_when_sent(header: str, seconds: float) -> None:
    client, _ = scripted({PATH: (429, bdc("BDC_1322"), {"Retry-After": header})})
    with pytest.raises(ThrottledError) as raised:
        await client.call("GET", "/v3/vendors/00901X")
    assert raised.value.retry_after == pytest.approx(seconds)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
    ],
)
async def test_network_failures_are_transient(failure: Exception) -> None:
    client, _ = scripted({PATH: failure})
    with pytest.raises(TransientError):
        await client.call("GET", "/v3/vendors/00901X")


async def test_a_body_that_is_not_json_is_an_upstream_error() -> None:
    client, _ = scripted({PATH: (200, b"<html>oops</html>")})
    with pytest.raises(UpstreamError) as raised:
        await client.call("GET", "/v3/vendors/00901X")
    assert type(raised.value) is UpstreamError


async def test_throttle_status_option_is_tolerated(clock: ManualClock) -> None:
    # UNCONFIRMED (bill.md §8): the emulator can answer BDC_1322 with another status.
    emulator = make_emulator(clock, throttle_status=400)
    ctx = make_context(emulator)
    await plugin.authenticate(ctx)
    emulator.faults.add(FaultAction(400, kind="throttled"), path_contains="/v3/payments")
    with pytest.raises(ThrottledError):
        await plugin.list_changed_payments(ctx, WINDOW, None)
    await plugin.close_connection(ctx)


# --- Limits against the emulator -----------------------------------------------------------------


async def test_the_fourth_concurrent_request_is_refused(
    ctx: ConnectionContext, emulator: BillEmulator
) -> None:
    await plugin.authenticate(ctx)
    held = emulator.hold("gate")
    calls = [asyncio.create_task(plugin.find_vendor(ctx, vendor(str(i)))) for i in range(4)]
    # three hold their slot; the fourth is turned away at once
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    assert held.waiting == 3
    emulator.release()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, ThrottledError)]
    assert len(refused) == 1
    assert refused[0].code == "BDC_1322"
    assert refused[0].status == 429
    assert [o for o in outcomes if not isinstance(o, Exception)] == [None, None, None]
    assert emulator.gate.peak == 4
    assert emulator.throttled["BDC_1322"] == 1


async def test_the_hourly_budget(clock: ManualClock) -> None:
    emulator = make_emulator(clock, requests_per_hour=3)
    ctx = make_context(emulator)
    await plugin.authenticate(ctx)  # sign-ins have their own budget
    for _ in range(3):
        await plugin.find_vendor(ctx, vendor())
    with pytest.raises(ThrottledError) as raised:
        await plugin.find_vendor(ctx, vendor())
    assert raised.value.code == "BDC_1144"
    assert raised.value.retry_after is not None
    assert 0 < raised.value.retry_after <= 3600
    clock.set(datetime(2025, 3, 1, 9, 59, 59, tzinfo=UTC))
    with pytest.raises(ThrottledError):  # a clock hour, not a rolling one (§4)
        await plugin.find_vendor(ctx, vendor())
    clock.set(datetime(2025, 3, 1, 10, 0, 1, tzinfo=UTC))
    await plugin.find_vendor(ctx, vendor())
    await plugin.close_connection(ctx)


async def test_sign_ins_have_their_own_hourly_budget(clock: ManualClock) -> None:
    emulator = make_emulator(clock, logins_per_hour=2)
    for expected_ok in (True, True, False):
        ctx = make_context(emulator)
        if expected_ok:
            await plugin.authenticate(ctx)
        else:
            with pytest.raises(ThrottledError):
                await plugin.authenticate(ctx)
        await plugin.close_connection(ctx)


async def test_declared_limits() -> None:
    limits = plugin.describe_plugin().limits
    assert (limits.max_in_flight, limits.scope_setting) == (3, "organization_id")
    assert (limits.requests_per_hour, limits.batch_size) == (20_000, 200)


# --- Secrets -------------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture, emulator: BillEmulator
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = make_context(emulator)
    secrets = [emulator.config.password, emulator.config.dev_key]
    texts: list[str] = []
    await plugin.authenticate(ctx)
    client = ctx.state["bill.client"]
    secrets.append(client._session)
    emulator.expire_sessions()
    await plugin.upsert_vendor(ctx, vendor(), None)
    for kind, status in (("throttled", 429), ("server", 500), ("validation", 400)):
        emulator.faults.add(FaultAction(status, kind=kind), path_contains="/v3/bills")
        with pytest.raises(Exception) as raised:  # noqa: PT011 - each kind has its own class
            await plugin.create_bill(ctx, draft("009X", "INV-1", account_id="0ca"))
        texts += [str(raised.value), repr(raised.value)]
    emulator.reject_logins = True
    emulator.expire_sessions()
    with pytest.raises(AuthenticationError) as auth:
        await plugin.find_vendor(ctx, vendor())
    texts.append(str(auth.value))
    await plugin.close_connection(ctx)
    texts += [r.getMessage() for r in caplog.records]
    texts.append(repr(ctx.credentials))
    assert caplog.records, "the client logs what it does"
    for text in texts:
        for secret in secrets:
            assert secret not in text
