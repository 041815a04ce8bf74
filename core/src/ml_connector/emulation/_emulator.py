"""The base of every system's emulator: an ASGI app with latency, faults and a request log.

A plugin's ``emulator.py`` subclasses :class:`Emulator`, lists its routes (Starlette) and says how
its system words an error. Tests talk to it in process (:meth:`Emulator.transport`); the demo and
``ml-connector emulate`` serve it on loopback (:func:`~ml_connector.emulation.serve_in_thread`).
"""

from __future__ import annotations

import abc
import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from starlette.applications import Starlette

from ml_connector.emulation._faults import HttpFaults
from ml_connector.emulation._log import RequestLog

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import Message, Receive, Scope, Send

__all__ = ["ARRIVAL", "Emulator", "EmulatorOptions"]

ARRIVAL = "ml_connector.arrival"
"""The ASGI scope extension a server puts the request's arrival in: ``{"monotonic": seconds}``."""

# A path segment with a digit is an id ("/bills/00n123" -> "/bills/{id}"), except API versions.
_ID_SEGMENT = re.compile(r"/(?!v\d+(?:/|$))[^/]*\d[^/]*")


# An event loop's timers count whole milliseconds (uvloop's from the start of the loop's turn)
# and can end a millisecond and more early; a thread's sleep is exact to tens of microseconds.
_TIMER_SLACK = 0.002


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``, never less.

    The loop's timers wait all but the last stretch, which is slept in a thread.
    """
    while (left := deadline - time.monotonic()) > 0:
        if left > _TIMER_SLACK:
            await asyncio.sleep(left - _TIMER_SLACK)
        else:
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, left)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class EmulatorOptions:
    """Knobs every emulator has.

    Attributes:
        latency: Seconds every request spends in the emulator (the network and the server),
            its handling included: the request is handled on arrival and answered once the
            latency is over (or once the handling is, if that takes longer). Served on loopback,
            it counts from the request's first bytes; in process, from the ASGI call.
        seed: Seeds generated data and random faults, so runs are reproducible.
        clock: The emulator's "now" (session expiry, change times); tests move a fake clock.
        session_idle_seconds: Overrides the system's session idle timeout (seconds in tests).
        extra: System-specific options (documented by each emulator).
    """

    latency: float = 0.0
    seed: int = 0
    clock: Callable[[], datetime] = _utcnow
    session_idle_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator(abc.ABC):
    """A protocol-faithful fake of one system's API.

    Attributes:
        system: The plugin's system key.
        base_path: Appended to the server's root to make the connection's base URL (e.g.
            ``"/connect"`` for BILL), so clients use the paths they use in production.
        faults: Scripted HTTP faults (see :class:`~ml_connector.emulation.HttpFaults`).
        log: Every request served.
    """

    system: ClassVar[str]
    base_path: ClassVar[str] = ""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self.latency = self.options.latency
        self.faults = HttpFaults(self.options.seed)
        self.log = RequestLog()
        self._app = Starlette(routes=self.routes())

    # --- What a system provides ----------------------------------------------------------------

    @abc.abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The system's routes, with the paths the real service uses."""

    @abc.abstractmethod
    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """An error as the system words it (``kind``: server, throttled, session, …)."""

    @abc.abstractmethod
    def credentials(self) -> dict[str, str]:
        """Credentials a connection can use as they are."""

    @abc.abstractmethod
    def settings(self, base_url: str) -> dict[str, Any]:
        """A connection's settings for an emulator served at ``base_url``."""

    # --- Serving -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The emulator's current time."""
        return self.options.clock()

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls this emulator in process."""
        return httpx.ASGITransport(app=self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: latency, faults, the route, the request log."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        arrival = scope.get("extensions", {}).get(ARRIVAL, {}).get("monotonic")
        answer_at = (time.monotonic() if arrival is None else float(arrival)) + self.latency
        action = self.faults.match(method, path)
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The latency is the whole time a request spends here, its handling included:
                # the answer leaves when it is over (or when the handling is, if that is longer).
                await _sleep_until(answer_at)
            await send(message)

        async def discarding_send(message: Message) -> None:
            return None

        if action is not None:
            if action.after_apply:
                await self._app(scope, receive, discarding_send)
                if action.hang:
                    await self.faults.hold()
            response = self.error_response(
                action.status, action.kind, "injected fault", action.retry_after
            )
            await response(scope, receive, recording_send)
        else:
            await self._app(scope, receive, recording_send)
        self.log.add(method, path, status, _ID_SEGMENT.sub("/{id}", path))
