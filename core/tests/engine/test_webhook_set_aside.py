"""Signed deliveries the connector cannot use go to the exception queue, not back to the sink."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.tests.engine.harness import World
from sqlmodel import select

from ml_connector.engine import WebhookReceiver, ensure_subscription
from ml_connector.errors import InvalidRecordError
from ml_connector.store import ExceptionItemRow, RunRow
from ml_connector.testing import SIGNATURE_HEADER, SeedSpec, sign
from ml_connector.vault import Vault

URL = "https://connector.example/webhooks/acme"
SPEC = SeedSpec(seed=2, vendors=3, payables=6)


async def subscribed(tmp_path: Path) -> tuple[World, str]:
    world, _ = World.create(tmp_path, SPEC)
    async with world.engine() as engine:
        row = await ensure_subscription(world.store, Vault.from_environment(), engine, URL)
    return world, world.sink.subscriptions[row.sink_id].security_key


def queue(world: World) -> dict[str, ExceptionItemRow]:
    with world.store.session(read_only=True) as session:
        rows = session.exec(
            select(ExceptionItemRow).where(ExceptionItemRow.object_type == "webhook")
        )
        return {row.source_id: row for row in rows}


async def test_a_signed_event_it_cannot_use_is_listed_not_raised(tmp_path: Path) -> None:
    world, key = await subscribed(tmp_path)
    other = (
        b'{"metadata":{"eventId":"evt-x","eventType":"payment.updated",'
        b'"organizationId":"someone-else"},"payment":{"id":"stp1"}}'
    )
    garbage = b"[" * 10_000
    async with world.engine() as engine:
        receiver = WebhookReceiver(world.store, Vault.from_environment(), engine)
        first = await receiver.receive({SIGNATURE_HEADER: sign(other, key)}, other)
        again = await receiver.receive({SIGNATURE_HEADER: sign(other, key)}, other)
        unreadable = await receiver.receive({SIGNATURE_HEADER: sign(garbage, key)}, garbage)
    digest = hashlib.sha256(garbage).hexdigest()
    assert (first.set_aside, again.set_aside) == (["evt-x"], ["evt-x"])
    assert unreadable.set_aside == [f"sha256:{digest}"]
    listed = queue(world)
    assert set(listed) == {"evt-x", f"sha256:{digest}"}
    assert (listed["evt-x"].field, listed["evt-x"].attempts) == ("metadata.organizationId", 2)
    assert "another organization" in listed["evt-x"].reason
    assert "nested more than" in listed[f"sha256:{digest}"].reason
    assert listed[f"sha256:{digest}"].payload_digest == digest
    # the queue's retry leaves it for a person: a delivery cannot be re-read on its own
    summary = await world.sync()
    assert summary.status.value == "succeeded"
    assert "evt-x" in queue(world)


async def test_what_a_plugin_says_is_stored_as_the_store_can_hold_it(tmp_path: Path) -> None:
    world, _ = await subscribed(tmp_path)
    error = InvalidRecordError("webhook", "evt-\ud800", "f" * 400, "why \ud800" * 200)
    async with world.engine() as engine:
        receiver = WebhookReceiver(world.store, Vault.from_environment(), engine)
        source_id = receiver.set_aside(b"body", error)
    assert source_id == f"sha256:{hashlib.sha256(b'body').hexdigest()}"
    row = queue(world)[source_id]
    assert row.field is not None
    assert len(row.field) <= 255
    assert len(row.reason) <= 500
    row.reason.encode()  # no lone surrogate reached the store


async def test_a_replayed_delivery_opens_no_run(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    vault = Vault.from_environment()
    await world.sync()
    async with world.engine() as engine:
        await ensure_subscription(world.store, vault, engine, URL)
    world.sink.pay_bill(world.sink.bill_for_payable(data.ready_ids[0])[0].id)
    delivery = world.sink.outbox[-1]

    def runs() -> int:
        with world.store.session(read_only=True) as session:
            return len(list(session.exec(select(RunRow))))

    async with world.engine() as engine:
        receiver = WebhookReceiver(world.store, vault, engine)
        first = await receiver.receive(delivery.headers, delivery.body)
        before = runs()
        replays = [await receiver.receive(delivery.headers, delivery.body) for _ in range(5)]
    assert first.payments_recorded == 1
    assert [(o.duplicates, o.payments_recorded) for o in replays] == [(1, 0)] * 5
    assert runs() == before
    assert len(world.erp.payments_for(data.ready_ids[0])) == 1
