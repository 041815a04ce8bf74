"""Small HTTP helpers every plugin's client needs, so each does not write them again.

.. versionadded:: 1.0
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from ml_connector._aiohttp_transport import AiohttpTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["AiohttpTransport", "retry_after_seconds"]


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait a response's ``Retry-After`` header asks for, in seconds.

    RFC 9110 allows seconds or an HTTP date; a date without a zone is read as UTC.

    Args:
        response: The answer (typically a 429 or 503).
        now: The current time, for a date value (default: the wall clock).

    Returns:
        Seconds to wait (never negative), or ``None`` if the header is absent or unreadable.
    """
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
