"""Server-side sessions and tokens that expire after idle time, as real APIs' do."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Session", "SessionStore"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Session:
    """One signed-in client."""

    token: str
    principal: str
    created_at: datetime
    last_used: datetime
    data: dict[str, Any] = field(default_factory=dict)


class SessionStore:
    """Tokens with a sliding idle timeout (each use renews) and an optional absolute lifetime.

    Args:
        idle: How long a session lives without use (BILL: 35 minutes).
        lifetime: How long it lives at most, whatever the use (OAuth access tokens).
        clock: The current time; tests move it instead of waiting.
        prefix: Prepended to generated tokens, so they look like the system's.
    """

    def __init__(
        self,
        idle: timedelta | None,
        *,
        lifetime: timedelta | None = None,
        clock: Callable[[], datetime] = _utcnow,
        prefix: str = "",
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self.prefix = prefix
        self._sessions: dict[str, Session] = {}
        self.created = 0

    def create(self, principal: str, **data: Any) -> Session:
        """Start a session for ``principal``."""
        now = self.clock()
        token = self.prefix + secrets.token_urlsafe(24)
        session = Session(token, principal, now, now, dict(data))
        self._sessions[token] = session
        self.created += 1
        return session

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of ``token``, or ``None`` if unknown or expired (then forgotten)."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self.clock()
        idle_out = self.idle is not None and now - session.last_used >= self.idle
        life_out = self.lifetime is not None and now - session.created_at >= self.lifetime
        if idle_out or life_out:
            del self._sessions[token]
            return None
        if touch:
            session.last_used = now
        return session

    def end(self, token: str | None) -> bool:
        """End a session (logout); whether it existed."""
        return token is not None and self._sessions.pop(token, None) is not None

    def expire_all(self) -> None:
        """Forget every session, as a server restart or a forced expiry does."""
        self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)
