"""Serving an emulator on loopback, in a background thread or in the foreground."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ml_connector.emulation._emulator import ARRIVAL

if TYPE_CHECKING:
    from ml_connector.emulation._emulator import Emulator

__all__ = ["RunningEmulator", "serve_in_thread"]

LOOPBACK = "127.0.0.1"


@dataclass
class RunningEmulator:
    """An emulator serving on loopback; ``stop()`` ends it."""

    emulator: Emulator
    root_url: str
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def base_url(self) -> str:
        """The URL a connection configures in place of the real service's base URL."""
        return self.root_url + self.emulator.base_path

    @property
    def alive(self) -> bool:
        """Whether the server thread still runs."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


class _ArrivalNotingProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol over httptools, noting in the scope when a request began to arrive.

    An emulator's latency is the whole time a request spends with it; counted from the ASGI
    call, it would leave out the parsing of the request.
    """

    def on_message_begin(self) -> None:
        """The parser met a request's first bytes: uvicorn starts its scope, we note the time."""
        super().on_message_begin()
        self.scope["extensions"] = {ARRIVAL: {"monotonic": time.monotonic()}}


def _config(
    emulator: Emulator, port: int, ssl_certfile: str | None = None, ssl_keyfile: str | None = None
) -> uvicorn.Config:
    return uvicorn.Config(
        emulator,
        host=LOOPBACK,
        port=port,
        http=_ArrivalNotingProtocol,
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def serve_in_thread(
    emulator: Emulator,
    port: int = 0,
    timeout: float = 10.0,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> RunningEmulator:
    """Serve ``emulator`` on ``127.0.0.1:port`` (0 = a free port) from a daemon thread.

    With ``ssl_certfile`` (PEM, the server's certificate chain) and ``ssl_keyfile`` (its key)
    it serves HTTPS, and ``root_url`` starts with ``https://``.

    Raises:
        RuntimeError: The server did not start within ``timeout`` seconds.
    """
    server = uvicorn.Server(_config(emulator, port, ssl_certfile, ssl_keyfile))
    thread = threading.Thread(target=server.run, name=f"emulator-{emulator.system}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the {emulator.system} emulator did not start on port {port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if ssl_certfile else "http"
    return RunningEmulator(emulator, f"{scheme}://{LOOPBACK}:{bound}", server, thread)
