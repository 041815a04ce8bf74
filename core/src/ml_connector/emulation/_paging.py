"""Paging helpers: opaque page tokens and OData-style $top/$skip slices."""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["decode_page_token", "encode_page_token"]


def encode_page_token(state: dict[str, Any]) -> str:
    """An opaque token carrying ``state`` (URL-safe, no padding)."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any] | None:
    """The state in a token, or ``None`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None
