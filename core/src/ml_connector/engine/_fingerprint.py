"""Content fingerprints: equal content, equal digest, so unchanged records cost no write."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["fingerprint"]


def fingerprint(model: BaseModel, exclude: Any = None) -> str:
    """SHA-256 hex digest of a model's canonical JSON (sorted keys, Decimals as text).

    Args:
        model: What to digest.
        exclude: Fields to leave out, as pydantic's ``model_dump(exclude=…)`` takes them.
    """
    data = model.model_dump(mode="json", exclude=exclude)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
