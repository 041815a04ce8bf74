"""``ml-connector serve``: scheduled runs, the webhook receiver, health and metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from core.tests.engine.harness import FAST_RETRY, World

from ml_connector.engine import SyncOptions
from ml_connector.service import Service, ServiceOptions
from ml_connector.testing import SIGNATURE_HEADER, SeedSpec, reset_fakes
from ml_connector.vault import Vault

SPEC = SeedSpec(seed=8, vendors=3, payables=24, unmapped_account=True)
PUBLIC = "https://connector.example"


@pytest.fixture
def world(tmp_path: Path):
    reset_fakes()
    world, data = World.create(tmp_path, SPEC)
    yield world, data
    reset_fakes()


def service(world: World, **options: object) -> Service:
    return Service(
        world.store,
        Vault.from_environment(),
        world.registry,
        ServiceOptions(sync=SyncOptions(retry=FAST_RETRY), **options),  # type: ignore[arg-type]
    )


def client(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://svc")


async def test_a_scheduled_round_runs_every_connection_and_subscribes(world) -> None:
    world, data = world
    svc = service(world, public_url=PUBLIC)
    results = await svc.run_all_once()
    assert results["acme"]["status"] == "succeeded"
    world.assert_exactly_once(data)
    (sub,) = world.sink.subscriptions.values()
    assert sub.notification_url == f"{PUBLIC}/webhooks/acme"
    async with client(svc) as http:
        health = (await http.get("/health")).json()
        metrics = (await http.get("/metrics")).text
    assert health["connections"]["acme"]["last_run"]["status"] == "succeeded"
    assert health["connections"]["acme"]["open_exceptions"] == len(data.unmapped_ids)
    assert f"ml_connector_bills_created_total {len(data.ready_ids)}" in metrics


async def test_webhook_deliveries_are_verified_then_recorded_once(world) -> None:
    world, data = world
    svc = service(world, public_url=PUBLIC)
    await svc.run_all_once()
    paid = data.ready_ids[0]
    world.sink.pay_bill(world.sink.bill_for_payable(paid)[0].id)
    delivery = world.sink.outbox[-1]
    headers, body = delivery.headers, delivery.body
    async with client(svc) as http:
        accepted = await http.post("/webhooks/acme", headers=headers, content=body)
        assert accepted.status_code == 200
        await svc.drain()
        again = await http.post("/webhooks/acme", headers=headers, content=body)
        await svc.drain()
        forged = dict(headers, **{SIGNATURE_HEADER: "AAAA"})
        refused = await http.post("/webhooks/acme", headers=forged, content=body)
        unknown = await http.post("/webhooks/nobody", headers=headers, content=b"{}")
    assert again.status_code == 200
    assert refused.status_code == 401
    assert unknown.status_code == 404
    assert len(world.erp.payments_for(paid)) == 1
    assert svc.metrics["payments_recorded"] == 1
    assert svc.metrics["webhooks_refused"] == 1


async def test_the_scheduler_repeats_each_interval(world) -> None:
    world, _ = world
    svc = service(world, interval=timedelta(minutes=5))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt  # stop the loop after two rounds

    with pytest.raises(KeyboardInterrupt):
        await svc.schedule(sleep)
    assert waits == [300.0, 300.0]
    assert svc.metrics["runs_succeeded"] == 2
