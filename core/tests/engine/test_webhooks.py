"""Webhooks: the signing key stored encrypted at once, verified deliveries recorded once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from core.tests.engine.harness import World

from ml_connector.engine import WebhookReceiver, ensure_subscription
from ml_connector.errors import WebhookVerificationError
from ml_connector.testing import SIGNATURE_HEADER, SeedSpec
from ml_connector.vault import Vault

URL = "https://connector.example/webhooks/acme"
SPEC = SeedSpec(seed=2, vendors=3, payables=20)


async def test_the_signing_key_is_stored_encrypted_and_kept(tmp_path: Path) -> None:
    world, _ = World.create(tmp_path, SPEC)
    vault = Vault.from_environment()
    async with world.engine() as engine:
        row = await ensure_subscription(world.store, vault, engine, URL)
    sub = world.sink.subscriptions[row.sink_id]
    assert row.security_key is not None
    assert vault.decrypt(row.security_key).decode() == sub.security_key
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert sub.security_key.encode() not in (tmp_path / "state.db").read_bytes()

    # the sink disabled it after failed deliveries: ensuring again re-enables it, same key
    world.sink.disable_subscription(row.sink_id)
    async with world.engine() as engine:
        again = await ensure_subscription(world.store, vault, engine, URL)
    assert again.sink_id == row.sink_id
    assert world.sink.subscriptions[row.sink_id].enabled
    assert again.security_key is not None
    assert vault.decrypt(again.security_key) == vault.decrypt(row.security_key)
    assert len(world.sink.subscriptions) == 1


async def test_a_verified_payment_event_is_recorded_once(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    vault = Vault.from_environment()
    await world.sync()
    async with world.engine() as engine:
        await ensure_subscription(world.store, vault, engine, URL)
    paid = data.ready_ids[0]
    world.sink.pay_bill(world.sink.bill_for_payable(paid)[0].id)
    delivery = world.sink.outbox[-1]
    async with world.engine() as engine:
        receiver = WebhookReceiver(world.store, vault, engine)
        first = await receiver.receive(delivery.headers, delivery.body)
        again = await receiver.receive(delivery.headers, delivery.body)
    assert (first.payments_recorded, first.duplicates) == (1, 0)
    assert (again.payments_recorded, again.duplicates) == (0, 1)
    assert len(world.erp.payments_for(paid)) == 1
    # and the next poll does not record it a second time
    summary = await world.sync()
    assert summary.counts.get("payments_recorded", 0) == 0
    assert len(world.erp.payments_for(paid)) == 1


@pytest.mark.parametrize("tamper", ["forged", "truncated", "missing"])
async def test_a_bad_signature_is_refused_before_anything_is_read(
    tmp_path: Path, tamper: str
) -> None:
    world, data = World.create(tmp_path, SPEC)
    vault = Vault.from_environment()
    await world.sync()
    async with world.engine() as engine:
        await ensure_subscription(world.store, vault, engine, URL)
    world.sink.pay_bill(world.sink.bill_for_payable(data.ready_ids[0])[0].id)
    delivery = world.sink.outbox[-1]
    headers, body = dict(delivery.headers), delivery.body
    if tamper == "forged":
        body = body.replace(b'"payment.updated"', b'"payment.failed"')
    elif tamper == "truncated":
        headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER][:-4]
    else:
        del headers[SIGNATURE_HEADER]
    async with world.engine() as engine:
        with pytest.raises(WebhookVerificationError):
            await WebhookReceiver(world.store, vault, engine).receive(headers, body)
    assert world.erp.payments_for(data.ready_ids[0]) == []
