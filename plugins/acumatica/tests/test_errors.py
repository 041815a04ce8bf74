"""Acumatica's errors on the core's tree: throttling, field errors, exception bodies, garbage."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from plugins.acumatica.tests.support import (
    BASE_URL,
    context,
    credentials,
    emulator,
    no_sleep,
    settings,
)

from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    InvalidRecordError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.models import ChangeWindow, PaymentPosting
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin
from ml_connector_acumatica.client import AcumaticaClient


def window(emu) -> ChangeWindow:
    return ChangeWindow(since=None, until=emu.now() + timedelta(seconds=1))


async def test_429_becomes_throttled_with_retry_after(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.faults.add(FaultAction(429, kind="throttled", retry_after=7), path_contains="/Bill")
    with pytest.raises(ThrottledError) as caught:
        await plugin.list_changed_payables(ctx, window(emu), None)
    assert caught.value.retry_after == 7
    assert caught.value.status == 429


async def test_a_full_queue_is_declined_with_429(clock: ManualClock) -> None:
    emu = emulator(clock, queue_limit=0)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    with pytest.raises(ThrottledError):
        await plugin.list_accounts(ctx)


async def test_422_names_the_record_and_the_field(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    ref = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("100.00"), "hosting")])
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    posting = PaymentPosting(
        payment_sink_id="stp01TOOMUCH",
        payable=payable,
        amount=Decimal("150.00"),
        paid_on=emu.now().date(),
        reference="ACH 1",
    )
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, posting)
    error = caught.value
    assert (error.record_type, error.record_id) == ("payment", "stp01TOOMUCH")
    assert error.field == "Details.0.AmountPaid"
    assert "cannot exceed the document balance" in error.reason
    assert error.system == "acumatica"
    assert emu.checks_for(ref) == []


async def test_422_without_a_vendor_default_names_the_payment_method(clock: ManualClock) -> None:
    emu = emulator(clock)
    vendor = emu.books.get("Vendor", "DATAFLOW")
    assert vendor is not None
    vendor["PaymentMethod"] = None
    ctx = context(emu)
    await plugin.authenticate(ctx)
    ref = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("100.00"), "hosting")])
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    posting = PaymentPosting(
        payment_sink_id="stp01NOMETHOD", payable=payable, amount=payable.total,
        paid_on=emu.now().date(), reference="ACH 2",
    )  # fmt: skip
    with pytest.raises(InvalidRecordError) as caught:
        await plugin.record_payment(ctx, posting)
    assert caught.value.field == "PaymentMethod"
    ctx_with_method = context(emu, payment_method="ACH")
    await plugin.authenticate(ctx_with_method)
    assert (await plugin.record_payment(ctx_with_method, posting)).already_recorded is False


async def test_500_business_error_names_the_record_and_the_field(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    client = ctx.state["acumatica.client"]
    with pytest.raises(InvalidRecordError) as caught:
        await client.put(
            "Bill",
            {"Type": "Bill", "Vendor": "DATAFLOW", "VendorRef": _existing_ref(emu, "DATAFLOW"),
             "Details": [{"Account": "67000", "Amount": Decimal("5")}]},
            record=("payable", "new"),
        )  # fmt: skip
    assert caught.value.record_id == "new"
    assert "raised at least one error" in caught.value.reason
    held = await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "DATAFLOW", "PaymentAmount": Decimal("1"), "Hold": True},
        record=("payment", "p1"),
    )
    with pytest.raises(InvalidRecordError, match="on hold"):
        await client.invoke(
            "Check", "ReleaseCheck",
            {"Type": "Payment", "ReferenceNbr": held["ReferenceNbr"]["value"]},
            record=("payment", "p1"),
        )  # fmt: skip


def _existing_ref(emu, vendor: str) -> str:
    return next(b["VendorRef"] for b in emu.books.ordered("Bill") if b["Vendor"] == vendor)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (FaultAction(500), TransientError),
        (FaultAction(503), TransientError),
        (FaultAction(500, kind="html"), TransientError),
        (FaultAction(200, kind="malformed"), UpstreamError),
    ],
)
async def test_server_failures_and_garbage(clock: ManualClock, action, expected) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.faults.add(action, path_contains="/Bill")
    with pytest.raises(expected) as caught:
        await plugin.list_changed_payables(ctx, window(emu), None)
    assert "<" not in str(caught.value), "HTML tags are stripped from messages"


async def test_network_failure_is_transient() -> None:
    emu = emulator()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ctx = context(emu, transport=httpx.MockTransport(refuse))
    with pytest.raises(TransientError, match="cannot reach"):
        await plugin.authenticate(ctx)


async def test_secrets_never_reach_logs_or_errors(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = emulator(clock, max_sessions=1)
    password, secret = emu.config.password, emu.config.client_secret
    errors: list[Exception] = []
    for mode in ("oauth", "cookie"):
        ctx = context(emu, auth_mode=mode)
        await plugin.authenticate(ctx)
        await plugin.list_accounts(ctx)
        emu.expire_sessions()
        await plugin.list_accounts(ctx)
        try:  # over the licence limit, and no wait for a slot
            await plugin.authenticate(context(emu, auth_mode=mode, login_wait_seconds=0))
        except AuthenticationError as exc:
            errors.append(exc)
        await plugin.close_connection(ctx)
    wrong = context(emu, creds=credentials(emu, password="Wr0ng-" + password))
    try:
        await plugin.authenticate(wrong)
    except Exception as exc:
        errors.append(exc)

    # A server that echoes the password in an error must not get it into our messages.
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"message": f"bad password {password} for {secret}"})

    echoing = context(emu, transport=httpx.MockTransport(echo))
    try:
        await plugin.authenticate(echoing)
    except Exception as exc:
        errors.append(exc)
    assert len(errors) == 4
    text = caplog.text + " ".join(f"{e} {e!r}" for e in errors)
    assert password not in text
    assert secret not in text
    assert "***" in str(errors[-1])
    tokens = [t for store in (emu.access_tokens, emu.cookies) for t in store._sessions]
    assert not any(t in text for t in tokens)


async def test_action_waits_for_the_session_and_others_wait_for_it(clock: ManualClock) -> None:
    """While a check is released the session's other requests are held back, not failed."""
    emu = emulator(clock, action_polls=3)
    ctx = context(emu)
    client = AcumaticaClient(
        ctx.http_client(BASE_URL), settings(emu), credentials(emu), clock=emu.now, sleep=no_sleep
    )
    await client.sign_in()
    check = await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "CITYPOWER", "PaymentAmount": Decimal("5"), "Hold": False,
         "Details": [{"DocType": "Bill", "ReferenceNbr": _open_ref(emu, "CITYPOWER"),
                      "AmountPaid": Decimal("5")}]},
        record=("payment", "x"),
    )  # fmt: skip
    keys = {"Type": "Payment", "ReferenceNbr": check["ReferenceNbr"]["value"]}
    await asyncio.gather(
        client.invoke("Check", "ReleaseCheck", keys, record=("payment", "x")),
        *(client.list_page("Account", top=2) for _ in range(4)),
    )
    assert not [r for r in emu.log.records if r.status >= 500]
    polls = [r for r in emu.log.records if "/status/" in r.path]
    assert [r.status for r in polls] == [202, 202, 202, 204]
    await client.close()


def _open_ref(emu, vendor: str) -> str:
    return next(
        b["ReferenceNbr"] for b in emu.books.ordered("Bill")
        if b["Vendor"] == vendor and b["Type"] == "Bill" and b["Status"] == "Open"
    )  # fmt: skip
