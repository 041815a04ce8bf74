"""Error bodies onto the core's error tree, with the record named and the correlation id kept;
and no secret in any log line or error."""

from __future__ import annotations

import logging
import re
from decimal import Decimal

import httpx
import pytest
from plugins.epicor.tests.helpers import SECRETS, Chart, client, context, emulator, read_all, window

from ml_connector.context import ConnectionContext
from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    InvalidRecordError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.models import PaymentPosting
from ml_connector_epicor import plugin
from ml_connector_epicor.emulator import EpicorEmulator

UUID = re.compile(r"correlation id [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


def _body(status: int, message: str, error_type: str, **extra: object) -> dict[str, object]:
    return {"HttpStatus": status, "ReasonPhrase": "REST API Exception", "ErrorMessage": message,
            "ErrorType": error_type, "CorrelationId": "abc-123", **extra}  # fmt: skip


ERROR_SHAPES = [
    (404, {"json": _body(404, "Record not found.", "Ice.Common.RecordNotFoundException")},
     NotFoundError),
    (409, {"json": _body(409, "Record already exists.", "Ice.Common.DuplicateRecordException")},
     ConflictError),
    (429, {"json": _body(429, "Slow down.", "x"), "headers": {"Retry-After": "7"}},
     ThrottledError),
    (503, {"text": "Service Unavailable"}, TransientError),
    (500, {"json": _body("500", "Boom.", "System.Exception") | {"ReasonPhrase":
                                                                 "REST Api Exception"}},
     TransientError),
    (400, {"json": {"error": {"code": "ODataError", "message": "Bad query."}}}, UpstreamError),
    (400, {"content": b"<ErrorResponse><HttpStatus>400</HttpStatus><ErrorMessage>Line is "
           b"closed.</ErrorMessage><ErrorType>Ice.BLException</ErrorType><ErrorDetails>"
           b"<ErrorDetail><Message>Line is closed.</Message><Type>Error</Type><Table>APInvDtl"
           b"</Table><Field>InvoiceLine</Field></ErrorDetail></ErrorDetails><CorrelationId>"
           b"abc-123</CorrelationId></ErrorResponse>",
           "headers": {"Content-Type": "application/xml"}}, InvalidRecordError),
]  # fmt: skip


@pytest.mark.parametrize(("status", "response", "expected"), ERROR_SHAPES)
async def test_every_error_shape_maps_onto_the_core_tree(
    status: int, response: dict[str, object], expected: type[Exception]
) -> None:
    api = client(context(emulator(), auth="basic"))
    answer = httpx.Response(status, **response)  # type: ignore[arg-type]
    error = api._error(answer, ("payable", "101:INV-7"))
    await api.close()
    assert type(error) is expected
    assert "payable 101:INV-7" in str(error)
    if isinstance(error, UpstreamError) and "json" in response and "error" not in response["json"]:  # type: ignore[operator]
        assert error.correlation_id == "abc-123"
        assert "correlation id abc-123" in str(error)
    if isinstance(error, ThrottledError):
        assert error.retry_after == 7
    if isinstance(error, InvalidRecordError):
        assert (error.record_type, error.record_id, error.field) == (
            "payable", "101:INV-7", "APInvDtl.InvoiceLine",
        )  # fmt: skip
        assert error.reason == "Line is closed. (correlation id abc-123)"
        assert error.correlation_id == "abc-123", "kept for the exception row's own column"


async def test_a_business_error_names_the_record_the_field_and_the_correlation_id() -> None:
    emu = emulator()
    chart = Chart(emu)
    chart.invoice("100.00")
    ctx = context(emu)
    (payable,), _ = await read_all(ctx, window(emu))
    posting = PaymentPosting(payment_sink_id="stp01OVER", payable=payable,
                             amount=Decimal("100.01"), paid_on=payable.due_date,
                             reference="BILL stp01OVER")  # fmt: skip
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, posting)
    error = caught.value
    assert error.record_type == "payment"
    assert error.record_id == f"stp01OVER for payable {payable.source_id}"
    assert error.field == "APTran.DocTranAmt"
    assert "exceeds the invoice balance 100.00" in error.reason
    assert UUID.search(error.reason), error.reason
    assert error.correlation_id is not None
    assert error.correlation_id in error.reason
    assert emu.books.checks == {}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultAction(429, kind="throttled", retry_after=3), ThrottledError),
        (FaultAction(503), TransientError),
        (FaultAction(502), TransientError),
        (FaultAction(500), TransientError),
    ],
)
async def test_injected_faults_map_onto_the_core_tree(
    fault: FaultAction, expected: type[Exception]
) -> None:
    emu = emulator()
    Chart(emu).invoice()
    ctx = context(emu)
    await plugin.authenticate(ctx)
    # a 500 on an OData read is the known quirk (GetRows takes over), so fail GetRows too
    emu.faults.add(fault, path_contains="/api/v2/", times=2)
    with pytest.raises(expected) as caught:
        await plugin.list_changed_payables(ctx, window(emu), None)
    if isinstance(caught.value, ThrottledError):
        assert caught.value.retry_after == 3
    if fault.status != 502:
        assert isinstance(caught.value, UpstreamError)
        assert caught.value.correlation_id is not None


async def test_a_page_that_is_not_json_is_an_upstream_error() -> None:
    emu = emulator()
    Chart(emu).invoice()
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.malform_next()
    with pytest.raises(UpstreamError, match="not JSON"):
        await plugin.list_changed_payables(ctx, window(emu), None)


def _leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s in text]


async def test_secrets_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad_key = "llave-invalida-8c1d0e"
    secrets = (*SECRETS, bad_key)
    errors: list[ConnectorError] = []
    emu = emulator()
    chart = Chart(emu)
    chart.invoice("40.00")
    # a full run with token renewals and a payment
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.expire_tokens()
    (payable,), _ = await read_all(ctx, window(emu))
    posting = PaymentPosting(payment_sink_id="stp01OK", payable=payable, amount=payable.total,
                             paid_on=payable.due_date, reference="stp01OK")  # fmt: skip
    await plugin.record_payment(ctx, posting)
    await plugin.close_connection(ctx)
    # every refusal: the key echoed back by Kinetic, a wrong password, a wrong client secret
    for credentials, settings in (
        (emu.credentials() | {"api_key": bad_key}, {}),
        (emu.credentials() | {"api_key": bad_key}, {"auth": "basic"}),
        (emu.credentials() | {"password": "Wr0ng-Passw0rd!"}, {"auth": "basic"}),
        (emu.oauth_credentials() | {"client_secret": EpicorEmulator.PASSWORD},
         {"auth": "oauth", "token_url": "https://idp.example/idp/connect/token"}),
    ):  # fmt: skip
        bad = context(emu, credentials=credentials, **settings)

        async def sign_in_and_read(ctx: ConnectionContext = bad) -> None:
            await plugin.authenticate(ctx)
            await plugin.list_changed_payables(ctx, window(emu), None)

        with pytest.raises(AuthenticationError) as caught:
            await sign_in_and_read()
        errors.append(caught.value)
        await plugin.close_connection(bad)
    texts = [caplog.text] + [f"{e!s} {e!r} {e.args}" for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert len(caplog.records) > 10  # the client did log what it did
    for text in texts:
        assert _leaks(text, (*secrets, "Wr0ng-Passw0rd!")) == [], text
