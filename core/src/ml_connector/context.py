"""The per-connection context every hook receives.

.. versionadded:: 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ml_connector.description import Role

__all__ = ["ConnectionContext"]


@dataclass
class ConnectionContext:
    """One side of one connection, as a plugin sees it.

    The core builds one context per side per run and passes it to every hook, so a plugin keeps no
    global state: whatever it caches (a logged-in client, a session id) goes in :attr:`state`.

    Attributes:
        connection: The connection's name, e.g. ``"acme-acumatica"``.
        system: The system key of the plugin serving this side.
        role: Source or sink.
        settings: The connection's settings, an instance of the plugin's ``settings_model``.
        credentials: The decrypted credentials, an instance of the plugin's
            ``credentials_model`` (secret fields are ``SecretStr``: call
            ``get_secret_value()`` only where the secret goes on the wire).
        transport: An httpx transport to use instead of the network. Tests and the demo set it to
            an in-process emulator; plugins must pass it to every client they build.
        state: Plugin-private storage for this side of this connection (e.g. the API client).
    """

    connection: str
    system: str
    role: Role
    settings: BaseModel
    credentials: BaseModel
    transport: httpx.AsyncBaseTransport | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def http_client(self, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
        """Build an ``httpx.AsyncClient`` that honours :attr:`transport`.

        Args:
            base_url: The system's base URL.
            **kwargs: Passed on to ``httpx.AsyncClient`` (headers, timeout, …).

        Returns:
            A client; the plugin owns it and closes it in ``close_connection``.
        """
        kwargs.setdefault("timeout", httpx.Timeout(30.0, connect=10.0))
        if self.transport is not None:
            kwargs["transport"] = self.transport
        return httpx.AsyncClient(base_url=base_url, **kwargs)
