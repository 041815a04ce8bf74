"""The client half of a reference plugin: a session kept in ``ctx.state``, renewed once on expiry.

Like a real client (bill.md §2: "on 401 or BDC_1109, re-login once and replay once"), a call that
finds its session expired signs in again and replays the call once; if the replay also fails, the
error goes to the caller. Concurrent calls that hit the same expiry share one new login.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ml_connector.errors import AuthenticationError, SessionExpiredError

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext
    from ml_connector.testing._state import FakeSystem

__all__ = ["SessionClient"]

T = TypeVar("T")


@dataclass
class _Session:
    token: str
    login: Callable[[], str]
    lock: asyncio.Lock


class SessionClient:
    """Signs a connection side in to a fake system and makes its calls.

    Args:
        system: The plugin's system key; names the ``ctx.state`` entry.
    """

    def __init__(self, system: str) -> None:
        self.system = system
        self._key = f"{system}.session"

    async def sign_in(
        self, ctx: ConnectionContext, fake: FakeSystem, login: Callable[[], str]
    ) -> None:
        """Log in (a request like any other) and keep the session in ``ctx.state``.

        Args:
            ctx: The connection side.
            fake: The system to sign in to.
            login: Performs the login against ``fake`` with the connection's credentials and
                returns the session token; kept to sign in again on expiry.
        """
        token = await fake.serve("authenticate", None, login)
        ctx.state[self._key] = _Session(token, login, asyncio.Lock())

    async def call(
        self, ctx: ConnectionContext, fake: FakeSystem, hook: str, op: Callable[[], T]
    ) -> T:
        """Make one request with the side's session, renewing it once if it expired.

        Raises:
            AuthenticationError: The side is not signed in, or signing in again failed.
            SessionExpiredError: The replay after a new login found the session expired again.
        """
        session = ctx.state.get(self._key)
        if not isinstance(session, _Session):
            raise AuthenticationError(
                "not signed in: call authenticate before other hooks", system=self.system
            )
        token = session.token
        try:
            return await fake.serve(hook, token, op)
        except SessionExpiredError:
            async with session.lock:
                if session.token == token:  # nobody renewed it meanwhile
                    session.token = await fake.serve("authenticate", None, session.login)
            return await fake.serve(hook, session.token, op)

    def sign_out(self, ctx: ConnectionContext, fake: FakeSystem | None) -> None:
        """Forget the side's session (and end it in ``fake``); never raises."""
        session = ctx.state.pop(self._key, None)
        if isinstance(session, _Session) and fake is not None:
            fake.logout(session.token)
