"""A transport that holds one of the core's request slots while a request is out.

A system's cap on requests in flight (BILL: 3 per organisation) is about requests: the server
counts one from its first byte to its answer's last. Held around a whole hook call, a slot also
covers the call's own work before the request (building it) and after the answer (parsing it),
time in which the server could already be serving the next request. Held here, around the
transport, it covers the request on the wire and no more: the answer is read in full before the
slot is given back, so the server never sees one request more than the cap.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx

__all__ = ["RequestSlot", "SlotTransport"]

RequestSlot = Callable[[], AbstractAsyncContextManager[None]]
"""Makes the context manager that holds one slot (the core's limiter for the system's scope)."""


class SlotTransport(httpx.AsyncBaseTransport):
    """Sends each request through ``inner`` while holding a slot from ``slot``.

    The response's body is read while the slot is held, so a streamed response arrives whole.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, slot: RequestSlot) -> None:
        self._inner = inner
        self._slot = slot

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Hold a slot, send, read the whole answer, give the slot back."""
        async with self._slot():
            response = await self._inner.handle_async_request(request)
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            try:
                # The stream itself, not aiter_raw(): a body the inner transport already holds
                # (httpx reads a ByteStream at once) counts as consumed but iterates again.
                body = b"".join([part async for part in stream])
            finally:
                await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
