"""httpx's client over aiohttp: what a plugin's client does on the network.

The peer is a raw asyncio server written here, so each test decides byte by byte what the
transport gets: an echo, cookies, a chunked or gzip body, silence, a dropped connection.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import BaseModel

from ml_connector import ConnectionContext, Role
from ml_connector.http import AiohttpTransport

Answer = Callable[[bytes, bytes], Awaitable[bytes | None]]
"""Given a request's head and body, the raw response (``None``: close without answering)."""


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


@asynccontextmanager
async def peer(answer: Answer) -> AsyncIterator[str]:
    """A server on a free loopback port answering every request with ``answer``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_request(reader)) is not None:
                response = await answer(*request)
                if response is None:
                    break
                writer.write(response)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def echo(head: bytes, body: bytes) -> bytes:
    request_line, *header_lines = head.decode().strip().split("\r\n")
    headers = [line.split(":", 1)[0].lower() for line in header_lines]
    cookie = [
        line.split(":", 1)[1].strip() for line in header_lines if line.lower().startswith("cookie:")
    ]
    data = {"line": request_line, "headers": headers, "cookie": cookie, "body": body.decode()}
    return response(
        json.dumps(data).encode(), "Content-Type: application/json", "X-Twice: 1", "X-Twice: 2"
    )


def client(base_url: str, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, transport=AiohttpTransport(), **kwargs)  # type: ignore[arg-type]


async def test_a_request_goes_out_as_httpx_built_it_and_the_answer_comes_back_whole() -> None:
    async with peer(echo) as url, client(url, headers={"devKey": "k"}) as http:
        answer = await http.post("/v3/bills", params={"max": "2"}, json={"amount": "12.50"})

    assert answer.status_code == 200
    assert answer.reason_phrase == "OK"
    assert answer.headers.get_list("x-twice") == ["1", "2"]
    sent = answer.json()
    assert sent["line"] == "POST /v3/bills?max=2 HTTP/1.1"
    assert json.loads(sent["body"]) == {"amount": "12.50"}
    assert {"devkey", "content-type", "content-length", "host"} <= set(sent["headers"])
    assert sent["headers"].count("content-length") == 1


def _by_name(url: str) -> str:
    """The peer's URL with a host name (cookie jars refuse cookies from IP addresses)."""
    return url.replace("127.0.0.1", "localhost")


async def test_cookies_are_the_httpx_clients_alone() -> None:
    """A session cookie the plugin cleared (a logout) is not sent again from a second jar."""
    calls = 0

    async def login_then_echo(head: bytes, body: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            return response(b"{}", "Set-Cookie: ASP.NET_SessionId=s1; Path=/")
        return await echo(head, body)

    async with peer(login_then_echo) as url, client(_by_name(url)) as http:
        await http.post("/login")
        assert (await http.get("/items")).json()["cookie"] == ["ASP.NET_SessionId=s1"]
        http.cookies.clear()
        assert (await http.get("/items")).json()["cookie"] == []


async def test_a_gzip_body_is_decoded_once_by_httpx() -> None:
    async def gzipped(head: bytes, body: bytes) -> bytes:
        return response(gzip.compress(b'{"ok": true}'), "Content-Encoding: gzip")

    async with peer(gzipped) as url, client(url) as http:
        assert (await http.get("/")).json() == {"ok": True}


async def test_a_chunked_body_streams() -> None:
    async def chunked(head: bytes, body: bytes) -> bytes:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b"first,", b"second"))
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"

    async with peer(chunked) as url, client(url) as http, http.stream("GET", "/") as streamed:
        received = b"".join([part async for part in streamed.aiter_bytes()])
    assert received == b"first,second"


async def test_silence_is_a_read_timeout() -> None:
    async def silent(head: bytes, body: bytes) -> bytes:
        await asyncio.sleep(5)
        return response(b"")

    async with peer(silent) as url, client(url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/")


async def test_a_connection_closed_without_an_answer_is_a_remote_protocol_error() -> None:
    async def hang_up(head: bytes, body: bytes) -> None:
        return None

    async with peer(hang_up) as url, client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")


async def test_nobody_listening_is_a_connect_error() -> None:
    async with peer(echo) as url:
        pass  # closed again: the port now refuses connections
    async with client(url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_every_failure_is_an_httpx_transport_error() -> None:
    """Plugins catch ``httpx.TransportError``; an unparsable status line must be one too."""

    async def garbage(head: bytes, body: bytes) -> bytes:
        return b"NOT HTTP AT ALL\r\n\r\n"

    async with peer(garbage) as url, client(url) as http:
        with pytest.raises(httpx.TransportError):
            await http.get("/")


async def test_closing_the_client_closes_the_session() -> None:
    transport = AiohttpTransport()
    async with peer(echo) as url:
        async with httpx.AsyncClient(base_url=url, transport=transport) as http:
            await http.get("/")
            session = transport._session
            assert session is not None
            assert not session.closed
        assert session.closed


class _Nothing(BaseModel):
    pass


async def test_a_context_without_a_transport_reaches_the_network_through_aiohttp() -> None:
    context = ConnectionContext("acme", "bill", Role.SINK, _Nothing(), _Nothing())
    async with peer(echo) as url, context.http_client(url) as http:
        assert isinstance(http._transport, AiohttpTransport)
        assert (await http.get("/ping")).json()["line"] == "GET /ping HTTP/1.1"


def test_certificates_are_checked_against_certifis_bundle_loaded_once() -> None:
    first, second = AiohttpTransport(), AiohttpTransport()
    context = first._ssl
    assert isinstance(context, ssl.SSLContext)
    assert context is second._ssl
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0
    assert AiohttpTransport(verify=False)._ssl is False
