"""The contract documents itself: every hookspec carries the sections partners read."""

import inspect
import re

import pluggy
import pytest

import ml_connector
from ml_connector import hookspecs
from ml_connector.contract import CONTRACT_VERSION, contract_compatibility

HOOKSPECS = [
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "ml_connector_spec")
]

DESIGN_CARD_HOOKS = {
    "authenticate",
    "list_changed_payables",
    "upsert_vendor",
    "create_bill",
    "record_payment",
    "map_accounts",
}


def test_the_design_cards_hooks_exist() -> None:
    assert set(HOOKSPECS) >= DESIGN_CARD_HOOKS


@pytest.mark.parametrize("name", HOOKSPECS)
def test_every_hookspec_is_documented(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    summary = doc.splitlines()[0] if doc else ""
    assert summary.endswith("."), f"{name}: needs a one-line summary"
    for section in ("Returns:", "Raises:"):
        assert section in doc, f"{name}: docstring lacks a {section} section"
    params = [p for p in inspect.signature(getattr(hookspecs, name)).parameters]
    if params:
        assert "Args:" in doc, f"{name}: docstring lacks an Args: section"
        for param in params:
            assert re.search(rf"^\s+{param}:", doc, re.M), f"{name}: argument {param} undocumented"
    assert re.search(r"\.\. versionadded:: \d+\.\d+", doc), f"{name}: no versionadded"


@pytest.mark.parametrize("name", HOOKSPECS)
def test_hooks_are_async_except_describe_plugin(name: str) -> None:
    fn = getattr(hookspecs, name)
    assert inspect.iscoroutinefunction(fn) == (name != "describe_plugin")


def test_hookspecs_register_cleanly() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    assert sorted(h for h in dir(pm.hook) if not h.startswith("_")) == sorted(HOOKSPECS)


def test_contract_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", CONTRACT_VERSION)


@pytest.mark.parametrize(
    ("declared", "compatible"),
    [(">=1.0,<2", True), ("~=1.0", True), (">=2,<3", False), ("<1", False)],
)
def test_contract_ranges(declared: str, compatible: bool) -> None:
    assert (contract_compatibility(declared) is None) is compatible


@pytest.mark.parametrize("declared", ["", "banana"])
def test_bad_contract_ranges_are_explained(declared: str) -> None:
    reason = contract_compatibility(declared)
    assert reason is not None
    assert "contract range" in reason


def test_public_api_is_sorted_and_complete() -> None:
    exported = ml_connector.__all__
    # constants, then classes, then functions: the order ruff's RUF022 keeps
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in exported:
        assert hasattr(ml_connector, name)
