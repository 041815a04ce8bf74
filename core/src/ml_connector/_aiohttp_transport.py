"""httpx's transport interface over aiohttp's client.

Plugins speak httpx (its request and response models, its ``MockTransport`` and ``ASGITransport``
for tests). On the network, a request through httpx's own transport (httpcore, h11, anyio) costs
the client about twice the CPU of one through this adapter over aiohttp's C parser, httpx's
client layer included (``bench/http_transport.py``: 1.6 against 0.8 ms on the benchmark
machine). In a sync, the event loop's CPU is what keeps BILL's three slots busy.

What the adapter keeps of httpx's behaviour: cookies, redirects, auth, decoding and proxies stay
with the httpx client (aiohttp's own cookie jar, redirects and decompression are off, so a
cleared ``client.cookies`` is really cleared); timeouts come from the request; aiohttp's errors
become the httpx exceptions a plugin catches (:func:`_mapped`), every one a
``httpx.TransportError``.
"""

from __future__ import annotations

import functools
import ssl
from contextlib import contextmanager
from typing import TYPE_CHECKING

import aiohttp
import certifi
import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["AiohttpTransport"]


@functools.cache
def _certifi_context() -> ssl.SSLContext:
    # Loading the bundle takes 20-30 ms; every client verifying against it can share the result.
    return ssl.create_default_context(cafile=certifi.where())


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends requests with aiohttp.

    The aiohttp session is made on the first request, in the running event loop, and closed by
    :meth:`aclose` (closing the httpx client closes it). One transport serves one event loop.

    Args:
        verify: Verify TLS certificates against certifi's bundle (as httpx does), against the
            CA bundle at this path, with this SSL context, or (``False``) not at all.
        max_connections: Connections open at once, across hosts.
        keepalive_expiry: Seconds an idle connection is kept for reuse.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if verify is True:
            verify = _certifi_context()
        elif isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._ssl: ssl.SSLContext | bool = verify
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    keepalive_timeout=self._keepalive_expiry,
                    ssl=self._ssl,
                ),
                # The httpx client keeps the cookies; a second jar here would resend cookies
                # the plugin cleared (a logged-out session, say).
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response, its body still to be read."""
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        headers = request.headers.copy()
        # The body is sent whole, with its length: aiohttp sets Content-Length.
        headers.pop("transfer-encoding", None)
        with _mapped(request):
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """A response body, read as it arrives; closing it gives the connection back."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """Raise aiohttp's errors as the httpx exceptions httpx's own transport would raise."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a status line or header aiohttp cannot parse
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientOSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc
