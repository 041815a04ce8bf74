"""Webhook fuzz: thousands of hostile deliveries through ``ml-connector serve``'s app.

The app is driven in process (httpx's ASGI transport), for a connection whose sink is the
reference sink and for one whose sink is the BILL plugin against its emulator. Forged, mangled,
oversized, deeply nested, non-UTF-8, lone-surrogate and huge-number bodies are all refused
(401, or 413 above the size cap): none accepted, none answered 500, the slowest well under 50 ms.
Signed deliveries the connector cannot use are answered 200 and listed in the exception queue;
a genuine delivery replayed many times is recorded exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from ml_connector.connections import SideInput, create_connection
from ml_connector.description import PluginInfo
from ml_connector.emulation import EmulatorOptions
from ml_connector.engine import RetryPolicy, SyncOptions, WebhookReceiver
from ml_connector.registry import Registry
from ml_connector.service import Service, ServiceOptions
from ml_connector.store import ExceptionItemRow, Store, WebhookEventRow, open_store
from ml_connector.testing import (
    SIGNATURE_HEADER,
    FakeErp,
    FakeSink,
    SeedSpec,
    generate_data,
    reference_erp,
    reference_sink,
    reset_fakes,
    seed_erp,
    seed_pair,
    sign,
)
from ml_connector.vault import Vault
from ml_connector_bill import PLUGIN_INFO
from ml_connector_bill import plugin as bill_plugin
from ml_connector_bill.emulator import BillEmulator

PUBLIC = "https://connector.example"
NAME = "acme"
REFERENCE_ORG = "00801ACME"


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)
SEED = 15
HOSTILE = 1250  # per sink (2,500 in all); 1.5 to 3 ms each
SLOWEST = 0.050  # seconds: the bound for any one delivery
CAP = 1 << 20  # the service's default body cap

Sent = tuple[dict[str, Any], bytes | Callable[[], AsyncIterator[bytes]]]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A temporary home (the vault's key file) and fresh reference fakes for every test."""
    monkeypatch.setenv("ML_CONNECTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEY", raising=False)
    monkeypatch.delenv("ML_CONNECTOR_DB", raising=False)
    reset_fakes()
    yield
    reset_fakes()


@dataclass
class Rig:
    """A served connection with a stored subscription, and one genuine delivery of a payment."""

    svc: Service
    store: Store
    key: str  # the subscription's signing key, to sign deliveries the connector cannot use
    organization: str
    subscription_id: str
    headers: dict[str, str]  # the genuine delivery
    body: bytes
    event_id: str
    payments: Callable[[], int]  # ERP payments against the paid bill

    def signed(self, body: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(body, self.key), "content-type": "application/json"}

    def event(self, event_type: str, entity: dict[str, Any] | None, **metadata: Any) -> bytes:
        """A delivery body in the sink's shape (bill.md §6), minified."""
        meta = {
            "eventId": "evt-set-aside",
            "subscriptionId": self.subscription_id,
            "organizationId": self.organization,
            "eventType": event_type,
            "version": "1",
        } | metadata
        payload: dict[str, Any] = {"metadata": {k: v for k, v in meta.items() if v is not None}}
        if entity is not None:
            payload[event_type.split(".")[0]] = entity
        return json.dumps(payload, separators=(",", ":")).encode()


def _registry(sink: Any, info: dict[str, Any], **extra: str) -> Registry:
    found = Registry(path=[])
    found.add(reference_erp.PLUGIN, PluginInfo.model_validate(reference_erp.PLUGIN_INFO))
    found.add(sink, PluginInfo.model_validate(info), **extra)
    return found


_ERP = SideInput(
    "reference_erp",
    {"instance": "acme-erp", "page_size": 25},
    {"username": "ap-bot", "password": "erp-pw"},
)


def _service(store: Store, registry: Registry, **options: Any) -> Service:
    return Service(
        store,
        Vault.from_environment(),
        registry,
        ServiceOptions(sync=SyncOptions(retry=FAST_RETRY), public_url=PUBLIC, **options),
    )


async def reference_rig(folder: Path) -> Rig:
    erp, sink = FakeErp.in_memory("acme-erp"), FakeSink.in_memory(REFERENCE_ORG)
    data = seed_pair(erp, sink, SeedSpec(seed=8, vendors=3, payables=6))
    registry = _registry(reference_sink.PLUGIN, reference_sink.PLUGIN_INFO)
    store = open_store(str(folder / "state.db"))
    credentials = {"username": "ap@acme.example", "password": "bill-pw", "dev_key": "dev"}
    create_connection(
        store,
        Vault.from_environment(),
        registry,
        NAME,
        _ERP,
        SideInput("reference_sink", {"organization_id": REFERENCE_ORG}, credentials),
    )
    svc = _service(store, registry)
    assert (await svc.run_all_once())[NAME]["status"] == "succeeded"
    ((sub_id, sub),) = sink.subscriptions.items()
    paid = data.ready_ids[0]
    sink.pay_bill(sink.bill_for_payable(paid)[0].id)
    delivery = sink.outbox[-1]
    return Rig(
        svc=svc,
        store=store,
        key=sub.security_key,
        organization=REFERENCE_ORG,
        subscription_id=sub_id,
        headers=dict(delivery.headers),
        body=delivery.body,
        event_id=json.loads(delivery.body)["metadata"]["eventId"],
        payments=lambda: len(erp.payments_for(paid)),
    )


async def bill_rig(folder: Path) -> Rig:
    erp = FakeErp.in_memory("acme-erp")
    data = generate_data(SeedSpec(seed=2, vendors=3, payables=6))
    seed_erp(erp, data)
    # Deliveries wait in the outbox until a test takes them (as the BILL plugin's tests do).
    bill = BillEmulator(
        EmulatorOptions(extra={"auto_deliver": False, "delivery_backoff_scale": 0.0})
    )
    registry = _registry(
        bill_plugin, PLUGIN_INFO, distribution="ml-connector-bill", version="0.1.0"
    )
    store = open_store(str(folder / "state.db"))
    create_connection(
        store,
        Vault.from_environment(),
        registry,
        NAME,
        _ERP,
        SideInput("bill", bill.settings("http://bill.emulator.test/connect"), bill.credentials()),
    )
    svc = _service(store, registry, transports={"bill": bill.transport()})
    assert (await svc.run_all_once())[NAME]["status"] == "succeeded"
    (sub_id,) = bill.subscriptions
    target = next(iter(bill.bills.values()))
    invoice = target["invoice"]["invoiceNumber"]
    (paid,) = [i for i in data.ready_ids if data.payable(i).invoice_number == invoice]
    bill.pay([target["id"]])
    delivery = bill.outbox[-1]
    return Rig(
        svc=svc,
        store=store,
        key=bill.security_key(sub_id),
        organization=bill.config.organization_id,
        subscription_id=sub_id,
        headers=dict(delivery.headers),
        body=delivery.body,
        event_id=delivery.event_id,
        payments=lambda: len(erp.payments_for(paid)),
    )


RIGS: dict[str, Callable[[Path], Awaitable[Rig]]] = {"reference": reference_rig, "bill": bill_rig}


@pytest.fixture(params=sorted(RIGS))
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    built = await RIGS[request.param](tmp_path)
    yield built
    await built.svc.drain()
    await built.svc.close()
    built.store.dispose()


def client(rig: Rig) -> httpx.AsyncClient:
    # An exception the app lets out is answered 500, as a server would, not raised in the test.
    transport = httpx.ASGITransport(app=rig.svc.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


async def post(http: httpx.AsyncClient, headers: dict[str, Any], body: Any) -> tuple[int, float]:
    """Send one delivery; its status and how long the app took to answer it."""
    content = body() if callable(body) else body
    started = time.perf_counter()
    response = await http.post(f"/webhooks/{NAME}", headers=headers, content=content)
    return response.status_code, time.perf_counter() - started


def rows(store: Store, table: Any) -> list[Any]:
    with store.session(read_only=True) as session:
        return list(session.exec(select(table)))


# --- Hostile deliveries --------------------------------------------------------------------------


def _digest(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(32)).decode()


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice([33, 100, 1_000, 10_000, 100_000, 500_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b"[{", b"}]")])
    tail = closer * depth if rng.random() < 0.5 else b""
    return opener * depth + b"1" + tail


def _huge_number(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b'{"a":1e999999999}',  # the 17-byte body of the issue
            b'{"a":-1e-999999999}',
            b'{"a":1E+99999}',
            b'{"metadata":{"eventId":"e"},"payment":{"id":"p","amount":'
            + b"9" * rng.randint(41, 200_000)
            + b"}}",
            b"[" + b",".join([b"1e99999"] * rng.randint(1, 2_000)) + b"]",
            b"0." + b"0" * rng.randint(41, 5_000) + b"1",
        ]
    )


def _lone_surrogate(rng: random.Random, genuine: bytes) -> bytes:
    escape = rng.choice([b"\\ud800", b"\\udfff", b"\\uDBFF", b"\\ud83d x"])
    return rng.choice(
        [
            b'"' + escape + b'"',
            genuine.replace(b'"eventId":"', b'"eventId":"' + escape, 1),
            b'{"' + escape + b'":1}',
        ]
    )


def _mangled(rng: random.Random, genuine: bytes) -> bytes:
    body = bytearray(genuine)
    for _ in range(rng.randint(1, 8)):
        kind = rng.randrange(4)
        at = rng.randrange(len(body))
        if kind == 0:
            body[at] = rng.randrange(256)
        elif kind == 1:
            del body[at : at + rng.randint(1, 20)]
        elif kind == 2:
            body[at:at] = rng.randbytes(rng.randint(1, 20))
        else:
            body = body[:at]
            if not body:
                body = bytearray(b"{")
    return bytes(body)


def _chunked(size: int) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = min(64 * 1024, size - sent)
            sent += piece
            yield b"[" * piece

    return chunks


def hostile(rig: Rig, count: int) -> Iterator[tuple[str, Sent]]:
    """``count`` deliveries that must all be refused, each with what kind it is."""
    rng = random.Random(SEED)
    genuine_sig = rig.headers[SIGNATURE_HEADER]
    for _ in range(count):
        kind = rng.choice(
            [
                "forged",
                "unsigned",
                "bad header",
                "mangled",
                "other key",
                "nested",
                "non-utf8",
                "surrogate",
                "huge number",
                "escaped nested",
                "empty",
                "oversized",
            ]
        )
        headers: dict[str, Any] = {SIGNATURE_HEADER: _digest(rng)}
        body: bytes | Callable[[], AsyncIterator[bytes]]
        if kind == "forged":
            body = rig.body
        elif kind == "unsigned":
            headers, body = {}, rig.body
        elif kind == "bad header":
            # latin-1 bytes as they come off the wire; any length, any character.
            headers = {SIGNATURE_HEADER: rng.randbytes(rng.randint(0, 300)).strip() or b"x"}
            body = rig.body
        elif kind == "mangled":
            headers, body = {SIGNATURE_HEADER: genuine_sig}, _mangled(rng, rig.body)
            if body == rig.body:
                body += b" x"
        elif kind == "other key":
            body = rig.body.replace(b'"version":"1"', b'"version":"2"')
            headers = {SIGNATURE_HEADER: sign(body, "someone-else's-key")}
        elif kind == "nested":
            body = _nested(rng)
        elif kind == "non-utf8":
            body = rng.randbytes(rng.randint(1, 4_000))
            if rng.random() < 0.5:
                body = rig.body[:40] + b"\xff\xfe" + body + rig.body[40:]
        elif kind == "surrogate":
            body = _lone_surrogate(rng, rig.body)
        elif kind == "huge number":
            body = _huge_number(rng)
        elif kind == "escaped nested":
            # bill.md §6: a payload may come JSON-escaped; the inner document is bounded too.
            body = json.dumps((_nested(rng) + _huge_number(rng)).decode()).encode()
        elif kind == "empty":
            body = b""
        elif rng.random() < 0.5:
            body = b"[" * (CAP + rng.randint(1, 4_096))  # declared too large: 413 unread
        else:
            body = _chunked(CAP + rng.randint(1, 300_000))  # no length: read up to the cap
        yield kind, (headers, body)


async def test_no_hostile_delivery_is_accepted_answered_500_or_slow(rig: Rig) -> None:
    statuses: dict[str, set[int]] = {}
    results: list[tuple[int, float, str]] = []
    async with client(rig) as http:
        # Heap objects from the whole test session are not what is measured: frozen out of
        # the collector's scans, so a full collection mid-loop does not pause one request.
        gc.collect()
        gc.freeze()
        try:
            for kind, (headers, body) in hostile(rig, HOSTILE):
                status, took = await post(http, headers, body)
                statuses.setdefault(kind, set()).add(status)
                results.append((status, took, kind))
        finally:
            gc.unfreeze()
    await rig.svc.drain()
    answered = set().union(*statuses.values())
    assert answered <= {401, 413}, statuses
    assert statuses["oversized"] == {413}
    assert len(statuses) == 12, sorted(statuses)  # every kind was sent
    assert rig.svc.metrics["webhooks_accepted"] == 0
    assert rig.svc.metrics["webhooks_set_aside"] == 0
    answers = Counter(status for status, _, _ in results)
    assert rig.svc.metrics["webhooks_refused"] == answers[401]
    assert rig.svc.metrics["webhooks_too_large"] == answers[413]
    assert rows(rig.store, WebhookEventRow) == []
    assert [r for r in rows(rig.store, ExceptionItemRow) if r.object_type == "webhook"] == []
    assert rig.payments() == 0
    _, slowest, kind = max(results, key=lambda r: r[1])
    assert slowest < SLOWEST, f"a {kind} delivery took {slowest * 1000:.1f} ms"


# --- Signed but unusable -------------------------------------------------------------------------


def unusable(rig: Rig) -> dict[str, tuple[bytes, str | None, str]]:
    """Signed bodies the connector cannot use: body, event id (None: none), the field named."""
    payment = {"id": "stp-unusable", "amount": 12.5}
    return {
        "unknown event type": (
            rig.event("invoice.created", {"id": "inv1"}, eventId="evt-invoice"),
            "evt-invoice",
            "metadata.eventType",
        ),
        "another organization": (
            rig.event("payment.updated", payment, eventId="evt-other", organizationId="00801X"),
            "evt-other",
            "metadata.organizationId",
        ),
        "payment without id": (
            rig.event("payment.updated", {"amount": 1}, eventId="evt-no-id"),
            "evt-no-id",
            "payment",
        ),
        "no payment at all": (
            rig.event("payment.failed", None, eventId="evt-empty"),
            "evt-empty",
            "payment",
        ),
        "no event id": (rig.event("payment.updated", payment, eventId=None), None, "eventId"),
        "not json": (b"this is not json", None, ""),
        "empty": (b"", None, ""),
        "nested": (b"[" * 5_000 + b"]" * 5_000, None, ""),
        "huge number": (b'{"a":1e999999999}', None, ""),
        "lone surrogate": (b'{"metadata":{"eventId":"\\ud800"}}', None, ""),
        "non-utf8": (b'{"metadata":{"eventId":"\xff"}}', None, ""),
    }


async def test_signed_deliveries_that_cannot_be_used_are_answered_200_and_listed(
    rig: Rig,
) -> None:
    cases = unusable(rig)
    times: list[float] = []
    async with client(rig) as http:
        for body, _, _ in cases.values():
            for _ in range(2):  # the same delivery twice: one entry, two attempts
                status, took = await post(http, rig.signed(body), body)
                assert status == 200, body[:80]
                times.append(took)
    await rig.svc.drain()
    assert max(times) < SLOWEST
    assert rig.svc.metrics["webhooks_set_aside"] == 2 * len(cases)
    assert rig.svc.metrics["webhooks_accepted"] == 0
    listed = {
        row.source_id: row
        for row in rows(rig.store, ExceptionItemRow)
        if row.object_type == "webhook"
    }
    assert len(listed) == len(cases)
    for name, (body, event_id, field) in cases.items():
        source_id = event_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
        row = listed[source_id]
        assert (row.status, row.attempts) == ("open", 2), name
        assert row.payload_digest == hashlib.sha256(body).hexdigest()
        assert field in (row.field or ""), (name, row.field)
        assert row.reason.startswith("signed webhook delivery not used: "), row.reason
        assert rig.key not in row.reason
    assert rows(rig.store, WebhookEventRow) == []


# --- The genuine delivery ------------------------------------------------------------------------


async def test_a_genuine_delivery_replayed_is_recorded_once(rig: Rig) -> None:
    async with client(rig) as http:
        first, _ = await post(http, rig.headers, rig.body)
        replays = [await post(http, rig.headers, rig.body) for _ in range(30)]
        together = await asyncio.gather(*(post(http, rig.headers, rig.body) for _ in range(30)))
        await rig.svc.drain()
        late = [await post(http, rig.headers, rig.body) for _ in range(10)]
        await rig.svc.drain()
    assert {first, *(s for s, _ in replays + list(together) + late)} == {200}
    assert rig.payments() == 1
    events = rows(rig.store, WebhookEventRow)
    assert [(e.event_id, e.processed_at is not None) for e in events] == [(rig.event_id, True)]
    assert rig.svc.metrics["payments_recorded"] == 1
    assert rig.svc.metrics["webhooks_accepted"] == 71


async def test_a_pretty_printed_genuine_delivery_still_verifies(tmp_path: Path) -> None:
    """BILL may sign the minified JSON (bill.md §6): a re-indented body keeps its signature."""
    rig = await bill_rig(tmp_path)
    pretty = json.dumps(json.loads(rig.body), indent=2, ensure_ascii=False)
    assert pretty.encode() != rig.body
    async with client(rig) as http:
        status, _ = await post(http, rig.headers, pretty.encode())
        await rig.svc.drain()
    await rig.svc.close()
    rig.store.dispose()
    assert status == 200
    assert rig.payments() == 1


# --- Failures that are not the body's ------------------------------------------------------------


async def test_a_failure_inside_answers_503_and_a_background_failure_is_logged(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_key(self: WebhookReceiver) -> Any:
        raise RuntimeError("the store went away")

    async def broken_act(self: WebhookReceiver, batch: Any) -> Any:
        raise RuntimeError("the ERP went away")

    async with client(rig) as http:
        with monkeypatch.context() as patch:
            patch.setattr(WebhookReceiver, "_key", broken_key)
            status, _ = await post(http, rig.headers, rig.body)
        assert status == 503  # not the body's fault: the sink may retry it
        with monkeypatch.context() as patch:
            patch.setattr(WebhookReceiver, "act", broken_act)
            status, _ = await post(http, rig.headers, rig.body)
            await rig.svc.drain()  # the failure stays in the background task
        assert status == 200
    assert rig.svc.metrics["webhooks_failed"] == 2
    assert rig.payments() == 0


async def test_a_declared_length_over_the_cap_is_refused_unread(rig: Rig) -> None:
    received: list[Any] = []

    async def receive() -> dict[str, Any]:
        received.append(1)  # 20 chunks of 64 KiB: all of them read would be over the cap
        return {"type": "http.request", "body": b"[" * 65536, "more_body": len(received) < 20}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/webhooks/{NAME}",
        "raw_path": f"/webhooks/{NAME}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"svc"),
            (b"content-length", str(10 * CAP).encode()),
            (SIGNATURE_HEADER.encode(), rig.headers[SIGNATURE_HEADER].encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("svc", 80),
    }
    await rig.svc.app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert received == []
