"""Reading a change window of ``PurchaseInvoices``, page by page, losing nothing.

The query is ``PurchaseInvoices?$filter=UpdateDate ge '<since's day>'&$orderby=DocEntry``:

- The Service Layer filters dates by the day only (sapb1.md §6), so the server's answer starts
  at the day of ``since`` (in the company's zone) and the window is cut on ``UpdateDate`` +
  ``UpdateTime`` here, both ends: ``[since, until)``.
- Nothing else is filtered on the server. ``UpdateDate`` only moves forward and an added A/P
  invoice is never deleted, so the filtered set only grows while it is paged: a record changed
  meanwhile stays in it (or joins it), and records only move to later positions. The server's
  ``$skip`` paging (its next link) therefore skips nothing; at worst it shows a record twice.
  Filtering on status (open, approved) on the server would let a record that is paid while the
  read goes on leave the set, and the record after it would be skipped; so readiness is
  checked on the rows (:func:`~ml_connector_sapb1._documents.not_ready`).
- Rows come in ``DocEntry`` order (stable: the key), and each page token carries the highest
  ``DocEntry`` already seen: a record seen again because the set grew ahead of the position is
  dropped. A server that does not keep the order is reported rather than trusted.

The page token is opaque to the engine: the server's next link, the query's options (a link
that lost them gets them back) and the highest ``DocEntry`` seen, tied to its window.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_connector.errors import UpstreamError

from ml_connector_sapb1.schemas import SYSTEM

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from ml_connector.models import ChangeWindow

    from ml_connector_sapb1.client import SapB1Client

__all__ = ["ENTITY_SET", "Page", "read_changed"]

ENTITY_SET = "PurchaseInvoices"
_ORDER = {"$orderby": "DocEntry"}


@dataclass(frozen=True)
class _Token:
    link: str
    options: dict[str, str]
    high: int


@dataclass
class Page:
    """What one page of the window gave: records to consider, rows without a key, the token."""

    rows: list[dict[str, Any]]
    keyless: list[dict[str, Any]]
    next_token: str | None


def _window_key(window: ChangeWindow) -> list[str | None]:
    return [window.since.isoformat() if window.since else None, window.until.isoformat()]


def _encode(window: ChangeWindow, token: _Token) -> str:
    state = {"w": _window_key(window), "l": token.link, "o": token.options, "h": token.high}
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str, window: ChangeWindow) -> _Token:
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        token = _Token(str(state["l"]), {str(k): str(v) for k, v in state["o"].items()},
                       int(state["h"]))  # fmt: skip
        same_window = state["w"] == _window_key(window)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise UpstreamError(f"{SYSTEM}: not a page token of this plugin", system=SYSTEM) from None
    if not same_window:
        raise UpstreamError(f"{SYSTEM}: the page token belongs to another window", system=SYSTEM)
    return token


async def read_changed(
    client: SapB1Client, window: ChangeWindow, token: str | None, zone: ZoneInfo
) -> Page:
    """One page of ``PurchaseInvoices`` that may hold changes of ``window``.

    Returns:
        The page's records not seen on an earlier page (in ``DocEntry`` order, not yet cut to
        the window), the records without a ``DocEntry`` (to reject), and the next token.

    Raises:
        UpstreamError: The page could not be read, or the server broke the order.
    """
    if token is None:
        day = None if window.since is None else window.since.astimezone(zone).date()
        rows, link, options = await client.first_page_by_date(ENTITY_SET, day, _ORDER)
        high = 0
    else:
        state = _decode(token, window)
        options, high = state.options, state.high
        rows, link = await client.page(client.follow(state.link, options))
    keyed = [r for r in rows if isinstance(r.get("DocEntry"), int)]
    keyless = [r for r in rows if not isinstance(r.get("DocEntry"), int)]
    keys = [int(r["DocEntry"]) for r in keyed]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise UpstreamError(
            f"{ENTITY_SET}: the Service Layer did not answer in DocEntry order "
            f"($orderby=DocEntry), so paging could lose records; keys {keys[:10]}",
            system=SYSTEM,
        )
    fresh = [r for r in keyed if int(r["DocEntry"]) > high]
    if keys:
        high = max(high, keys[-1])
    next_token = None if link is None else _encode(window, _Token(link, dict(options), high))
    return Page(fresh, keyless, next_token)
