"""Content fingerprints: equal content, equal digest, so unchanged records cost no write."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["canonical_json", "digest", "fingerprint"]


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: equal data, equal text.

    A dict's text is its keys in order, each followed by its value's own canonical text, so the
    text of a dict can be assembled from texts already made for its values.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(canonical: str) -> str:
    """SHA-256 hex digest of a canonical text."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(model: BaseModel, exclude: Any = None) -> str:
    """SHA-256 hex digest of a model's canonical JSON (sorted keys, Decimals as text).

    Args:
        model: What to digest.
        exclude: Fields to leave out, as pydantic's ``model_dump(exclude=…)`` takes them.
    """
    return digest(canonical_json(model.model_dump(mode="json", exclude=exclude)))
