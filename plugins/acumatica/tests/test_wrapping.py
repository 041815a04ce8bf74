"""Field values on the wire: wrapped, as the contract-based endpoint takes them (acumatica.md §5).

General fields are ``{"value": …}``; linked entities are objects of such fields; detail entities
are arrays of them; system fields (``id``, ``rowNumber``, ``delete``, …) are bare; ``note`` is
written like a general field (IDG "Representation of a Record in JSON Format"). The emulator
refuses a bare value, so the client's wrapping is tested by every write it makes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from plugins.acumatica.tests.support import (
    BASE_URL,
    ReferenceSink,
    RoundTrip,
    context,
    credentials,
    emulator,
    no_sleep,
    settings,
)

from ml_connector.engine import RetryPolicy
from ml_connector.errors import InvalidRecordError
from ml_connector.models import PaymentPosting
from ml_connector.store import RunStatus
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin
from ml_connector_acumatica.client import AcumaticaClient
from ml_connector_acumatica.emulator import AcumaticaEmulator, wrapping_problems
from ml_connector_acumatica.schemas import wrap

V = "entity/Default/24.200.001"


@pytest.fixture
def emu(clock: ManualClock) -> AcumaticaEmulator:
    return emulator(clock)


@pytest.fixture
async def http(emu: AcumaticaEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=BASE_URL, transport=emu.transport()) as client:
        signed_in = await client.post(
            "entity/auth/login",
            json={"name": emu.config.username, "password": emu.config.password, "tenant": "Acme"},
        )
        assert signed_in.status_code == 204
        yield client


def open_ref(emu: AcumaticaEmulator, vendor: str) -> str:
    return next(
        b["ReferenceNbr"] for b in emu.books.ordered("Bill")
        if b["Vendor"] == vendor and b["Type"] == "Bill" and b["Status"] == "Open"
    )  # fmt: skip


BILL = {
    "Type": {"value": "Bill"},
    "Vendor": {"value": "DATAFLOW"},
    "VendorRef": {"value": "DF-WRAP-1"},
    "Hold": {"value": True},
    "note": {"value": "entered by the API"},
    "Details": [{"Account": {"value": "67000"}, "Amount": {"value": 10}}],
}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"VendorRef": "DF-WRAP-1"}, "VendorRef"),
        ({"Hold": False}, "Hold"),
        ({"note": "entered by the API"}, "note"),
        ({"Details": [{"Account": "67000", "Amount": {"value": 10}}]}, "Details[0].Account"),
        ({"Details": [{"Account": {"value": "67000"}, "Amount": 10}]}, "Details[0].Amount"),
        ({"Details": ["67000"]}, "Details[0]"),
        ({"VendorRef": {"value": {"value": "DF-WRAP-1"}}}, "VendorRef"),
        ({"id": {"value": "b6410d82-9476-ef11-8c65-ac198e472cfe"}}, "id"),
    ],
)
async def test_a_bare_value_is_refused_with_400_naming_the_field(
    http: httpx.AsyncClient, emu: AcumaticaEmulator, change: dict, path: str
) -> None:
    before = len(emu.books.records["Bill"])
    refused = await http.put(f"{V}/Bill", json={**BILL, **change})
    assert refused.status_code == 400
    body = refused.json()
    assert body["message"] == "The request is invalid."
    assert list(body["modelState"]) == [path]
    assert len(emu.books.records["Bill"]) == before, "nothing stored"


async def test_wrapped_values_linked_entities_and_system_fields_are_taken(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    created = await http.put(f"{V}/Bill", json=BILL)
    assert created.status_code == 200, created.text
    vendor = {
        "VendorID": {"value": "WRAPCO"},
        "VendorName": {"value": "Wrap Co"},
        "MainContact": {"Email": {"value": "ap@wrap.example"},
                        "Address": {"City": {"value": "Reno"}, "State": {}}},
        "custom": {"Vendor": {"UsrRating": {"type": "CustomStringField", "value": "A"}}},
    }  # fmt: skip
    assert (await http.put(f"{V}/Vendor", json=vendor)).status_code == 200
    bare_linked = {**vendor, "MainContact": {"Email": "ap@wrap.example"}}
    refused = await http.put(f"{V}/Vendor", json=bare_linked)
    assert refused.status_code == 400
    assert list(refused.json()["modelState"]) == ["MainContact.Email"]


async def test_an_action_with_bare_keys_is_refused_and_does_nothing(
    http: httpx.AsyncClient, emu: AcumaticaEmulator
) -> None:
    created = (await http.put(f"{V}/Bill", json={**BILL, "Hold": {"value": False}})).json()
    number = created["ReferenceNbr"]["value"]
    bare = {"entity": {"Type": "Bill", "ReferenceNbr": number}, "parameters": {}}
    refused = await http.post(f"{V}/Bill/ReleaseBill", json=bare)
    assert refused.status_code == 400
    assert sorted(refused.json()["modelState"]) == ["entity.ReferenceNbr", "entity.Type"]
    bare_parameter = {"entity": {"id": created["id"]}, "parameters": {"Force": True}}
    assert (await http.post(f"{V}/Bill/ReleaseBill", json=bare_parameter)).status_code == 400
    assert emu.bill(number)["Status"] == "Balanced", "not released"
    released = await http.post(f"{V}/Bill/ReleaseBill", json={"entity": {"id": created["id"]}})
    assert released.status_code == 202, "by id (a system field, bare), it runs"


class Recording(httpx.AsyncBaseTransport):
    """The emulator's transport, keeping every JSON body the client sends to the endpoint."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.bodies: list[tuple[str, str, object]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        if content and "/entity/Default/" in request.url.path:
            self.bodies.append((request.method, request.url.path, json.loads(content)))
        return await self.inner.handle_async_request(request)


async def test_every_body_the_client_sends_is_wrapped(clock: ManualClock) -> None:
    emu = emulator(clock)
    recording = Recording(emu.transport())
    ctx = context(emu, transport=recording)
    await plugin.authenticate(ctx)
    ref = emu.add_bill("DATAFLOW", [("67000", "000-000", Decimal("80.00"), "hosting")])
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    posting = PaymentPosting(
        payment_sink_id="stp01WRAPPED", payable=payable, amount=payable.total,
        paid_on=emu.now().date(), reference="ACH 9",
    )  # fmt: skip
    assert (await plugin.record_payment(ctx, posting)).already_recorded is False
    sent = {(method, path.rsplit("/", 2)[-1]) for method, path, _ in recording.bodies}
    assert sent >= {("PUT", "Check"), ("POST", "ReleaseCheck")}
    for method, path, body in recording.bodies:
        entity = body.get("entity", body) if isinstance(body, dict) else body
        assert wrapping_problems(entity) == [], (method, path, body)
    assert not [r for r in emu.log.records if r.status == 400]
    assert emu.bill(ref)["Status"] == "Closed"
    await plugin.close_connection(ctx)


async def test_a_round_trip_through_the_engine_sends_nothing_bare(
    tmp_path: Path, clock: ManualClock
) -> None:
    emu = emulator(clock, bills=5)
    sink = ReferenceSink(clock=clock)
    sink.prepare_chart(
        {a["AccountCD"]: a["Description"] for a in emu.books.ordered("Account")},
        {s["SubaccountCD"]: s["Description"] for s in emu.books.ordered("Subaccount")},
    )
    trip = RoundTrip(tmp_path, emu, sink)
    retry = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, sleep=no_sleep)
    try:
        assert (await trip.sync(retry)).status is RunStatus.SUCCEEDED
        paid = [sink.pay(bill_id) for bill_id in sorted(sink.fake.bills)[:2]]
        assert len(paid) == 2
        clock.advance(timedelta(minutes=1))
        summary = await trip.sync(retry)
        assert summary.status is RunStatus.SUCCEEDED, summary.error
        assert summary.counts.get("payments_recorded") == 2, summary.counts
        assert not [r for r in emu.log.records if r.status == 400], "nothing refused as bare"
    finally:
        trip.close()


def test_the_client_wraps_note_like_a_general_field() -> None:
    # IDG: "You specify the value of the note field in the same way as you would any general
    # field"; CSC's fixtures carry "note": {"value": ""}.
    assert wrap({"note": "x", "id": "g", "Details": [{"note": "y", "delete": True}]}) == {
        "note": {"value": "x"},
        "id": "g",
        "Details": [{"note": {"value": "y"}, "delete": True}],
    }


async def test_a_refused_body_names_the_field_and_is_not_retried(clock: ManualClock) -> None:
    emu = emulator(clock)
    client = AcumaticaClient(
        context(emu).http_client(BASE_URL), settings(emu), credentials(emu),
        clock=emu.now, sleep=no_sleep,
    )  # fmt: skip
    await client.sign_in()
    with pytest.raises(InvalidRecordError) as caught:
        await client.request(
            "PUT", "Bill", body={"Type": {"value": "Bill"}, "VendorRef": "INV-1"},
            record=("payable", "INV-1"), wrapped=False,
        )  # fmt: skip
    assert caught.value.field == "VendorRef"
    assert "Error converting value" in caught.value.reason
    assert not caught.value.retryable
    await client.close()


@pytest.mark.parametrize(
    "answer",
    [
        # What a real instance might answer instead (UNCONFIRMED): each is a refused record.
        httpx.Response(400, json={"message": "The request is invalid.",
                                  "modelState": {"entity.Details[0].Account": ["bad"]}}),
        httpx.Response(500, json={"message": "An error has occurred.",
                                  "exceptionMessage": "Error converting value \"INV-1\" to type "
                                  "'PX.Api.ContractBased.Models.StringValue'. Path 'VendorRef'.",
                                  "exceptionType": "Newtonsoft.Json.JsonSerializationException"}),
        httpx.Response(422, json={"error": "Inserting 'Bill' record raised at least one error.",
                                  "VendorRef": {"error": "The value is not valid."}}),
    ],
)  # fmt: skip
async def test_the_client_copes_with_any_refusal_of_a_body(
    clock: ManualClock, answer: httpx.Response
) -> None:
    emu = emulator(clock)
    inner = emu.transport()

    async def answer_puts(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return answer
        return await inner.handle_async_request(request)

    client = AcumaticaClient(
        httpx.AsyncClient(base_url=BASE_URL, transport=httpx.MockTransport(answer_puts)),
        settings(emu), credentials(emu), clock=emu.now, sleep=no_sleep,
    )  # fmt: skip
    await client.sign_in()
    with pytest.raises(InvalidRecordError) as caught:
        await client.put("Bill", {"VendorRef": "INV-1"}, record=("payable", "INV-1"))
    assert caught.value.record_id == "INV-1"
    assert not caught.value.retryable
    await client.close()
