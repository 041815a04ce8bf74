"""The per-connection context every hook receives.

.. versionadded:: 1.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol

import httpx
from pydantic import BaseModel
from typing_extensions import TypeVar

from ml_connector._aiohttp_transport import AiohttpTransport
from ml_connector._slot_transport import RequestSlot, SlotTransport

if TYPE_CHECKING:
    from ml_connector.description import Role

__all__ = ["ConnectionContext", "CredentialsT", "SessionKeeper", "SettingsT"]

log = logging.getLogger("ml_connector")

SettingsT = TypeVar("SettingsT", bound=BaseModel, default=BaseModel)
"""The type of :attr:`ConnectionContext.settings`: a plugin's ``settings_model``."""
CredentialsT = TypeVar("CredentialsT", bound=BaseModel, default=BaseModel)
"""The type of :attr:`ConnectionContext.credentials`: a plugin's ``credentials_model``."""


class SessionKeeper(Protocol):
    """Where a plugin keeps a scarce server-side session from one process to the next.

    A run killed with ``kill -9`` never signs out, and a session it leaves behind can hold one
    of a licence's few API-user slots until it times out. A client that holds such a session
    saves what it needs to reuse it or to sign it out (cookies, tokens, a session id) after each
    sign-in, and on its next start loads it: it reuses the session if the server still knows it,
    or signs it out, before it opens a new one. It clears the saved session after a clean
    sign-out.

    The core keeps the data encrypted in the state store, one entry per connection side; it
    never logs it. Each method is one small, synchronous store transaction: call them at
    sign-in and sign-out, not per request.

    .. versionadded:: 1.2
    """

    def load(self) -> dict[str, Any] | None:
        """The data last saved, or ``None`` if there is none (or it can no longer be read)."""
        ...

    def save(self, data: dict[str, Any]) -> None:
        """Replace the saved data with ``data`` (JSON-ready: strings, numbers, lists, dicts)."""
        ...

    def clear(self) -> None:
        """Forget the saved data (after the session was signed out)."""
        ...


@dataclass
class ConnectionContext(Generic[SettingsT, CredentialsT]):
    """One side of one connection, as a plugin sees it.

    The core builds one context per side per run and passes it to every hook, so a plugin keeps no
    global state: whatever it caches (a logged-in client, a session id) goes in :attr:`state`.

    A plugin types its hooks with its own models, and reads its settings without a cast::

        async def authenticate(ctx: ConnectionContext[Settings, Credentials]) -> AuthResult:
            base_url = ctx.settings.base_url

    The core validates ``settings`` and ``credentials`` with the plugin's ``settings_model`` and
    ``credentials_model`` before any hook runs, so the parameters name what is there.
    Unparameterised, ``ConnectionContext`` means ``ConnectionContext[BaseModel, BaseModel]``.

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
        saved_session: Set by the core for a stored connection: where the plugin keeps a scarce
            server-side session across processes (see :class:`SessionKeeper`); ``None`` when
            nothing can be kept (a context built by hand).
        on_wait: Set by the core: told what :meth:`report_wait` reports, to show it on screen.
            Plugins call :meth:`report_wait`, not this.

    .. versionchanged:: 1.1
        ``request_slot``; clients reach the network through aiohttp.

    .. versionadded:: 1.2
        ``saved_session``, ``on_wait`` and :meth:`report_wait`; generic in the settings and
        credentials types.
    """

    connection: str
    system: str
    role: Role
    settings: SettingsT
    credentials: CredentialsT
    transport: httpx.AsyncBaseTransport | None = None
    state: dict[str, Any] = field(default_factory=dict)
    request_slot: RequestSlot | None = None
    saved_session: SessionKeeper | None = None
    on_wait: Callable[[str, float, float], None] | None = field(default=None, repr=False)

    def report_wait(self, what: str, waited: float, limit: float) -> None:
        """Say that the plugin is waiting, before each wait: logged, and shown on screen.

        A wait nobody sees looks like a hung run: call this whenever a call waits for something
        the system must free first (a licence slot, a session, a budget), with what, how long
        it has waited so far and the most it will wait. Never put a secret in ``what``.

        Args:
            what: What the plugin waits for, e.g. ``"a free Acumatica API-user licence slot"``.
            waited: Seconds waited so far (0 before the first wait).
            limit: Seconds after which the plugin gives up with an error.

        .. versionadded:: 1.2
        """
        log.warning(
            "connection %s (%s %s): waiting for %s: %.0f s so far, giving up after %.0f s",
            self.connection,
            self.system,
            self.role,
            what,
            waited,
            limit,
        )
        if self.on_wait is not None:
            try:
                self.on_wait(what, waited, limit)
            except Exception:  # a display that fails must not fail the plugin's call
                log.debug("the wait observer failed", exc_info=True)

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
