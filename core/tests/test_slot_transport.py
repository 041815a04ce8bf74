"""A request slot held per HTTP request: from before the request leaves until its answer is in."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel

from ml_connector import ConnectionContext, Role
from ml_connector._slot_transport import SlotTransport
from ml_connector.description import ConcurrencyLimits
from ml_connector.engine import RequestLimiter


class Server:
    """Counts requests in flight as a server does: from arrival to the answer's last byte."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.events: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0)
        return httpx.Response(200, content=self._body(request.url.path))

    async def _body(self, path: str) -> AsyncIterator[bytes]:
        try:
            for part in (b"a", b"b", b"c"):
                await asyncio.sleep(0)
                yield part
        finally:
            self.in_flight -= 1
            self.events.append(f"body {path} done")


async def test_never_more_requests_out_than_slots_and_each_answer_is_read_inside_its_slot() -> None:
    server = Server()
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=2))

    transport = SlotTransport(httpx.MockTransport(server.handle), limiter.slot)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        answers = await asyncio.gather(*(client.get(f"/{i}") for i in range(7)))
    assert [a.text for a in answers] == ["abc"] * 7
    assert server.peak == 2
    assert limiter.peak_in_flight == 2
    assert limiter.in_flight == 0  # every slot given back
    assert len(server.events) == 7


async def test_the_answer_keeps_its_encoding_for_httpx_to_decode_once() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=1))
    packed = gzip.compress(b'{"ok": true}')
    inner = httpx.MockTransport(
        lambda _: httpx.Response(200, headers={"content-encoding": "gzip"}, content=packed)
    )
    async with httpx.AsyncClient(transport=SlotTransport(inner, limiter.slot)) as client:
        assert (await client.get("http://x/")).json() == {"ok": True}


async def test_a_failed_request_gives_its_slot_back() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=1))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = SlotTransport(httpx.MockTransport(refuse), limiter.slot)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):  # a slot kept by the first would hang the second
            with pytest.raises(httpx.ConnectError):
                await client.get("http://x/")
    assert limiter.in_flight == 0


class _Nothing(BaseModel):
    pass


async def test_a_context_with_a_request_slot_gates_its_clients() -> None:
    limiter = RequestLimiter(ConcurrencyLimits(max_in_flight=3))
    seen: list[int] = []

    def answer(_: httpx.Request) -> httpx.Response:
        seen.append(limiter.in_flight)
        return httpx.Response(204)

    context = ConnectionContext(
        "acme", "bill", Role.SINK, _Nothing(), _Nothing(), transport=httpx.MockTransport(answer)
    )
    async with context.http_client("http://x") as client:
        await client.get("/")
    context.request_slot = limiter.slot
    async with context.http_client("http://x") as client:
        await client.get("/")
    assert seen == [0, 1]
