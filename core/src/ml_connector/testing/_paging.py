"""Keyset paging over change times: a sorted change index and opaque page tokens.

Records are read in the stable order ``(changed_at, id)``; a page token remembers the last key a
page covered, so the next page starts right after it. A record that changes while a window is
being read moves to its new change time: it is read again later in the window, or in the next
window, and never skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import UTC, datetime

from ml_connector.errors import UpstreamError
from ml_connector.models import ChangeWindow

__all__ = ["ChangeIndex", "Key", "decode_token", "encode_token"]

Key = tuple[datetime, str]
"""A record's position: its change time, then its id."""


class ChangeIndex:
    """Record ids sorted by ``(changed_at, id)``, cheap to update.

    A change appends the new key; the old one stays behind as stale and is skipped on reads.
    Appends in time order (the usual case: a write stamped "now") keep the list sorted; an
    out-of-order append or too many stale keys trigger one sort-and-compact before the next read.
    """

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._current: dict[str, datetime] = {}
        self._stale = 0
        self._dirty = False

    def __len__(self) -> int:
        return len(self._current)

    def put(self, record_id: str, changed_at: datetime) -> None:
        """Set a record's change time (adding the record if it is new)."""
        old = self._current.get(record_id)
        if old == changed_at:
            return
        if old is not None:
            self._stale += 1
        self._current[record_id] = changed_at
        key = (changed_at, record_id)
        if self._keys and key < self._keys[-1]:
            self._dirty = True
        self._keys.append(key)

    def remove(self, record_id: str) -> None:
        """Forget a record."""
        if self._current.pop(record_id, None) is not None:
            self._stale += 1

    def scan(
        self,
        window: ChangeWindow,
        after: Key | None,
        limit: int,
        accept: Callable[[str], bool],
    ) -> tuple[list[str], Key | None]:
        """Read up to ``limit`` accepted ids in the window, after ``after``.

        Args:
            window: ``[since, until)``.
            after: The last key of the previous page, or ``None`` for the first page.
            limit: The page size.
            accept: Whether a record belongs in the result (e.g. its status qualifies); records it
                refuses are passed over and do not count toward ``limit``.

        Returns:
            The page's ids, and the key to continue after (``None`` when the window is done).
        """
        keys = self._sorted()
        if after is not None:
            i = bisect_right(keys, after)
        elif window.since is not None:
            i = bisect_left(keys, (window.since, ""))
        else:
            i = 0
        found: list[str] = []
        previous: Key | None = None
        end = len(keys)
        while i < end:
            key = keys[i]
            if key[0] >= window.until:
                break
            i += 1
            if key == previous or self._current.get(key[1]) != key[0]:
                continue  # a duplicate or a stale position
            previous = key
            if not accept(key[1]):
                continue
            found.append(key[1])
            if len(found) == limit:
                more = i < end and keys[i][0] < window.until
                return found, key if more else None
        return found, None

    def _sorted(self) -> list[Key]:
        if self._dirty or self._stale > max(1024, len(self._keys) // 2):
            live = {k for k in self._keys if self._current.get(k[1]) == k[0]}
            self._keys = sorted(live)
            self._stale = 0
            self._dirty = False
        return self._keys


def _window_tag(window: ChangeWindow) -> list[str | None]:
    return [window.since.isoformat() if window.since else None, window.until.isoformat()]


def encode_token(after: Key, window: ChangeWindow) -> str:
    """Make an opaque page token that continues after ``after`` within ``window``."""
    raw = json.dumps({"a": after[0].isoformat(), "i": after[1], "w": _window_tag(window)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, window: ChangeWindow, *, system: str) -> Key:
    """Read a page token back; it must belong to the same window.

    Raises:
        UpstreamError: The token is malformed or was issued for another window (HTTP 400).
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = datetime.fromisoformat(data["a"]).astimezone(UTC)
        record_id = data["i"]
        tag = data["w"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise UpstreamError("invalid page token", system=system, status=400) from exc
    if not isinstance(record_id, str) or tag != _window_tag(window):
        raise UpstreamError(
            "the page token belongs to another query (window)", system=system, status=400
        )
    return (after, record_id)
