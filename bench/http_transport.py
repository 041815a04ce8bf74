"""CPU per request of a plugin's HTTP client: httpx's own transport against AiohttpTransport.

A server in a child process (uvicorn, one small JSON answer per request, no latency) takes
``--requests`` POSTs of a bill-sized JSON body, 3 at a time as BILL allows, from an
``httpx.AsyncClient`` on each transport in turn, on the event loop ``run_async`` picks. What is
measured is this process's CPU per request: the client side of every BILL call, which runs on the
same event loop that keeps BILL's slots busy. The server is the same for both and not measured.

    uv run python bench/http_transport.py

Prints one JSON line on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulated import cpu_seconds
from _world import emit, machine, progress

from ml_connector.engine import run_async
from ml_connector.http import AiohttpTransport

IN_FLIGHT = 3
BODY = {
    "vendorId": "00901ABCDEFGHIJKLMNO",
    "invoice": {"invoiceNumber": "INV-000123", "invoiceDate": "2026-11-02"},
    "dueDate": "2026-12-02",
    "billLineItems": [
        {"amount": "125.40", "chartOfAccountId": "0ca01ABCDEFGHIJKLMNO", "description": "Toner"}
        for _ in range(3)
    ],
}


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"id": "00n01ABCDEFGHIJKLMNO", "received": size, "archived": False})
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(_answer, host="127.0.0.1", port=port, log_level="error")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _measure(url: str, transport: httpx.AsyncBaseTransport, requests: int) -> float:
    """CPU microseconds per request, after a warm-up."""
    async with httpx.AsyncClient(base_url=url, transport=transport) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                answer = await client.post("/v3/bills", json=BODY)
                answer.json()

        await worker(50)
        started = cpu_seconds()
        await asyncio.gather(*(worker(requests // IN_FLIGHT) for _ in range(IN_FLIGHT)))
        return (cpu_seconds() - started) / (requests // IN_FLIGHT * IN_FLIGHT) * 1e6


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000, help="requests per transport")
    args = parser.parse_args()
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url)
        figures: dict[str, float] = {}
        for name, make in (("httpx", httpx.AsyncHTTPTransport), ("aiohttp", AiohttpTransport)):
            progress(f"{args.requests} requests through {name}")
            figures[name] = round(run_async(_measure(url, make(), args.requests)), 1)
    finally:
        server.terminate()
        server.join()
    emit(
        {
            "benchmark": "http_transport",
            "requests": args.requests,
            "in_flight": IN_FLIGHT,
            "cpu_us_per_request": figures,
            "httpx_over_aiohttp": round(figures["httpx"] / figures["aiohttp"], 2),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
