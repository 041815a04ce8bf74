"""The per-connection context every hook receives.

.. versionadded:: 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ml_connector._aiohttp_transport import AiohttpTransport
from ml_connector._slot_transport import RequestSlot, SlotTransport

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
        transport: An httpx transport to use instead of the network. Tests set it to an
            in-process emulator; plugins must pass it to every client they build. Without it,
            :meth:`http_client` reaches the network through
            :class:`~ml_connector.http.AiohttpTransport`.
        state: Plugin-private storage for this side of this connection (e.g. the API client).
        request_slot: Set by the core for a plugin whose limits are ``per_request``: every
            request of a client from :meth:`http_client` holds one of these slots.

    .. versionchanged:: 1.1
        ``request_slot``; clients reach the network through aiohttp.
    """

    connection: str
    system: str
    role: Role
    settings: BaseModel
    credentials: BaseModel
    transport: httpx.AsyncBaseTransport | None = None
    state: dict[str, Any] = field(default_factory=dict)
    request_slot: RequestSlot | None = None

    def http_client(self, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
        """Build an ``httpx.AsyncClient`` that honours :attr:`transport`.

        On the network the client sends through :class:`~ml_connector.http.AiohttpTransport`
        (half the CPU per request of httpx's own transport), unless ``transport`` is
        given here. With a :attr:`request_slot`, each request holds a slot while it is out.

        Args:
            base_url: The system's base URL.
            **kwargs: Passed on to ``httpx.AsyncClient`` (headers, timeout, …).

        Returns:
            A client; the plugin owns it and closes it in ``close_connection``.
        """
        kwargs.setdefault("timeout", httpx.Timeout(30.0, connect=10.0))
        if self.transport is not None:
            kwargs["transport"] = self.transport
        elif "transport" not in kwargs:
            kwargs["transport"] = AiohttpTransport(verify=kwargs.get("verify", True))
        if self.request_slot is not None:
            kwargs["transport"] = SlotTransport(kwargs["transport"], self.request_slot)
        return httpx.AsyncClient(base_url=base_url, **kwargs)
