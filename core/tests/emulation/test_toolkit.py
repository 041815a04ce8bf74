"""The emulator toolkit: sessions, gates, windows, faults, the request log, serving."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.emulation import (
    ConcurrencyGate,
    Emulator,
    EmulatorOptions,
    FaultAction,
    RateWindow,
    SessionStore,
    _emulator,
    decode_page_token,
    encode_page_token,
    serve_in_thread,
)
from ml_connector.emulation._emulator import ARRIVAL, _sleep_until


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_sessions_slide_on_use_and_expire_when_idle() -> None:
    clock = Clock()
    store = SessionStore(timedelta(minutes=35), clock=clock, prefix="S-")
    session = store.create("ap@acme")
    assert session.token.startswith("S-")
    clock.now += timedelta(minutes=34)
    assert store.get(session.token) is session  # use renews it
    clock.now += timedelta(minutes=34)
    assert store.get(session.token) is session
    clock.now += timedelta(minutes=35)
    assert store.get(session.token) is None
    assert len(store) == 0


def test_sessions_have_an_absolute_lifetime_and_end_on_logout() -> None:
    clock = Clock()
    store = SessionStore(None, lifetime=timedelta(hours=1), clock=clock)
    token = store.create("client").token
    clock.now += timedelta(minutes=59)
    assert store.get(token) is not None
    clock.now += timedelta(minutes=1)
    assert store.get(token) is None
    other = store.create("client").token
    assert store.end(other) is True
    assert store.get(other) is None
    assert store.end(other) is False


def test_gate_refuses_the_request_over_the_limit_per_key() -> None:
    gate = ConcurrencyGate(3)
    assert all(gate.try_enter("org1") for _ in range(3))
    assert gate.try_enter("org1") is False
    assert gate.try_enter("org2") is True
    assert (gate.peak, gate.refused) == (4, 1)
    gate.leave("org1")
    assert gate.try_enter("org1") is True


def test_rate_window_counts_per_key_and_says_when_to_come_back() -> None:
    now = [0.0]
    window = RateWindow(2, 60, clock=lambda: now[0])
    assert window.allow("k")
    assert window.allow("k")
    assert window.allow("k") is False
    assert window.retry_after("k") == 60
    now[0] = 30
    assert window.retry_after("k") == 30
    now[0] = 60
    assert window.allow("k") is True


def test_page_tokens_round_trip_and_refuse_garbage() -> None:
    token = encode_page_token({"offset": 200, "filter": "x"})
    assert decode_page_token(token) == {"offset": 200, "filter": "x"}
    assert decode_page_token("%%%") is None
    assert decode_page_token(base64.urlsafe_b64encode(b"[1]").decode()) is None


class Counter(Emulator):
    """A tiny system: POST /api/items creates an item, GET /api/items lists them."""

    system = "counter"
    base_path = "/api"

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.items: list[str] = []
        super().__init__(options)

    def routes(self) -> list[BaseRoute]:
        async def create(request: Request) -> Response:
            self.items.append((await request.json())["name"])
            return JSONResponse({"id": len(self.items)}, status_code=201)

        async def listing(request: Request) -> Response:
            return JSONResponse(self.items)

        return [
            Route("/api/items", create, methods=["POST"]),
            Route("/api/items", listing, methods=["GET"]),
        ]

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        return JSONResponse({"error": kind, "message": message}, status, headers=headers)

    def credentials(self) -> dict[str, str]:
        return {"token": "t"}

    def settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url}


async def test_faults_before_and_after_apply_and_the_request_log() -> None:
    emulator = Counter()
    emulator.faults.add(FaultAction(503), method="POST", skip=1)
    emulator.faults.add(FaultAction(504, after_apply=True), method="POST")
    emulator.faults.add(FaultAction(429, kind="throttled", retry_after=7), method="GET")
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as client:
        assert (await client.post("/api/items", json={"name": "a"})).status_code == 201
        refused = await client.post("/api/items", json={"name": "b"})
        assert refused.status_code == 503
        lost = await client.post("/api/items", json={"name": "c"})
        assert lost.status_code == 504
        throttled = await client.get("/api/items")
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
        assert (await client.get("/api/items")).json() == ["a", "c"]  # c was applied
    assert emulator.faults.injected == 3
    assert [r.status for r in emulator.log.records] == [201, 503, 504, 429, 200]
    assert emulator.log.writes() == 3


async def test_random_faults_are_seeded() -> None:
    def pattern(seed: int) -> list[int]:
        emulator = Counter(EmulatorOptions(seed=seed))
        emulator.faults.random(0.5)
        return [int(emulator.faults.match("GET", "/x") is not None) for _ in range(40)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 5 < sum(pattern(1)) < 35


async def test_a_request_spends_the_latency_in_the_emulator() -> None:
    emulator = Counter(EmulatorOptions(latency=0.03))
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as client:
        started = time.monotonic()
        assert (await client.post("/api/items", json={"name": "a"})).status_code == 201
        assert time.monotonic() - started >= 0.03


async def test_the_latency_counts_from_the_requests_arrival(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answered_at: list[float] = []

    async def note(deadline: float) -> None:
        answered_at.append(deadline)

    monkeypatch.setattr(_emulator, "_sleep_until", note)
    emulator = Counter(EmulatorOptions(latency=0.5))
    arrival = time.monotonic() - 0.2

    async def server(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {ARRIVAL: {"monotonic": arrival}}
        await emulator(scope, receive, send)

    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
        await client.get("/api/items")
    assert answered_at == [arrival + 0.5]


def test_a_served_request_carries_its_arrival() -> None:
    waits: list[float] = []

    class Noting(Counter):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                waits.append(time.monotonic() - scope["extensions"][ARRIVAL]["monotonic"])
            await super().__call__(scope, receive, send)

    running = serve_in_thread(Noting())
    try:
        assert httpx.get(running.base_url + "/items").status_code == 200
    finally:
        running.stop()
    assert len(waits) == 1
    assert waits[0] >= 0


def test_the_latency_is_never_cut_short_by_uvloops_millisecond_timers() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def lateness() -> list[float]:
        late = []
        for step in range(40):
            # Deadlines between whole milliseconds, which uvloop rounds timers to.
            deadline = time.monotonic() + 0.001 + step * 0.00013
            await _sleep_until(deadline)
            late.append(time.monotonic() - deadline)
        return late

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert min(runner.run(lateness())) >= 0


def test_a_hung_response_is_held_until_released() -> None:
    emulator = Counter()
    emulator.faults.add(FaultAction(504, after_apply=True, hang=True), method="POST")
    running = serve_in_thread(emulator)
    try:
        with httpx.Client(base_url=running.base_url) as client:
            answers: list[int] = []
            thread = threading.Thread(
                target=lambda: answers.append(client.post("/items", json={"name": "x"}).status_code)
            )
            thread.start()
            assert emulator.faults.hanging.wait(timeout=10)
            assert emulator.items == ["x"]  # applied, not answered
            assert answers == []
            emulator.faults.release()
            thread.join(timeout=10)
            assert answers == [504]
    finally:
        running.stop()


def test_serving_on_loopback() -> None:
    running = serve_in_thread(Counter())
    try:
        assert running.base_url.startswith("http://127.0.0.1:")
        assert running.base_url.endswith("/api")
        response = httpx.post(running.base_url + "/items", json={"name": "x"})
        assert response.status_code == 201
        assert httpx.get(running.base_url + "/items").json() == ["x"]
    finally:
        running.stop()
    assert not running.alive


def test_an_unknown_emulator_is_a_clear_usage_error() -> None:
    from click.testing import CliRunner

    from ml_connector.cli import main

    result = CliRunner().invoke(main, ["emulate", "nope"])
    assert result.exit_code == 2
    assert "no emulator for 'nope'" in result.output


@pytest.mark.parametrize("bad_port", ["-1", "70000"])
def test_emulate_validates_the_port(bad_port: str) -> None:
    from click.testing import CliRunner

    from ml_connector.cli import main

    assert CliRunner().invoke(main, ["emulate", "x", "--port", bad_port]).exit_code == 2
