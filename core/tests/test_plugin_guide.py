"""docs/plugin-guide.md stays in step with the contract."""

import inspect
import re
from pathlib import Path

from ml_connector import Capability, hookspecs

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-guide.md"


def hookspec_names() -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "ml_connector_spec")
    }


def test_every_hook_has_a_section_and_every_section_is_a_hook() -> None:
    sections = set(re.findall(r"^### `(\w+)`", GUIDE.read_text(), re.M))
    assert sections == hookspec_names()


def test_every_hook_named_in_the_guide_exists() -> None:
    named = set(re.findall(r"`(\w+)`", GUIDE.read_text()))
    verbs = "list|get|find|create|upsert|record|map|ensure|parse|check|close|describe"
    hook_like = {n for n in named if re.fullmatch(rf"({verbs})_\w+", n)}
    capabilities = {c.value for c in Capability}
    unknown = hook_like - hookspec_names() - capabilities - {"match_catalogs"}
    assert not unknown, f"the guide names hooks the contract lacks: {unknown}"
