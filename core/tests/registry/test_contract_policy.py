"""The contract range rule in the registry (issue #16).

A range that breaks the rule (open, past the next major, before the first contract) still loads,
with warnings; a plugin that uses a hook or capability newer than its range's lower bound is
broken, unless the hook is marked ``optionalhook=True``.
"""

from __future__ import annotations

import logging
import sys

import pytest
from core.tests.registry.fake_dists import RAISES_ON_IMPORT, plugin_code

from ml_connector import IncompatiblePluginError, PluginError, PluginInfo, Role
from ml_connector.registry import DISABLE_ENV, LoadedPlugin, PluginStatus, Registry

OPEN = (
    "contract range '>=1.0' is open: end it before the next major contract (e.g. '>=1.2,<2'), "
    "which may change or remove any hook"
)
PAST_NEXT_MAJOR = (
    "contract range '>=1.0,<3' reaches contract 2: a major contract changes or removes hooks, so "
    "no plugin can claim it before it exists (end the range at <2)"
)
BEFORE_FIRST = (
    "contract range '>=0.9,<2' starts at 0.9, before the first contract 1.0: no such contract "
    "exists"
)
FIND_PAYMENT_ABOVE_1_0 = (
    "uses hook find_payment (added in contract 1.2) but declares contract >=1.0,<2, whose lower "
    "bound 1.0 lacks it: declare >=1.2, or mark the hook @hookimpl(optionalhook=True) if the "
    "plugin works without it"
)

FIND_PAYMENT = """
@hookimpl
async def record_payment(ctx, posting):
    return None


@hookimpl
async def find_payment(ctx, posting):
    return None
"""

OPTIONAL_FIND_PAYMENT = """
@hookimpl
async def record_payment(ctx, posting):
    return None


@hookimpl(optionalhook=True)
async def find_payment(ctx, posting):
    return None
"""


def record(registry: Registry, name: str) -> dict:
    (row,) = [r.as_json() for r in registry.plugins() if r.name == name]
    return row


@pytest.mark.parametrize(
    ("contract", "warning"),
    [
        pytest.param(">=1.0", OPEN, id="open"),
        pytest.param(">=1.0,<3", PAST_NEXT_MAJOR, id="past-the-next-major"),
        pytest.param(">=0.9,<2", BEFORE_FIRST, id="before-the-first-contract"),
    ],
)
def test_a_range_that_breaks_the_rule_loads_with_a_warning(
    fake_dists, registry_for, caplog, contract: str, warning: str
) -> None:
    fake_dists.write("acme", contract=contract)
    registry = registry_for()

    with caplog.at_level(logging.WARNING, logger="ml_connector.registry"):
        row = record(registry, "acme")
        registry.plugins()  # checked once: listed again, nothing new is logged
        loaded = registry.load("acme", Role.SOURCE)

    assert (row["status"], row["error"], row["warnings"]) == ("ok", None, [warning])
    assert [r.as_json()["warnings"] for r in registry.plugins()] == [[warning]]
    assert isinstance(loaded, LoadedPlugin)
    assert loaded.warnings == (warning,)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert logged == [(logging.WARNING, f"plugin 'acme': {warning}")]


def test_a_range_that_keeps_the_rule_has_no_warning(fake_dists, registry_for, caplog) -> None:
    fake_dists.write("acme", contract=">=1.2,<2", plugin_source=plugin_code("acme", "source"))
    registry = registry_for()

    with caplog.at_level(logging.WARNING, logger="ml_connector.registry"):
        row = record(registry, "acme")
    assert (row["status"], row["error"], row["warnings"]) == ("ok", None, [])
    assert registry.load("acme", Role.SOURCE).warnings == ()
    assert caplog.records == []


def test_a_hook_newer_than_the_lower_bound_is_broken(fake_dists, registry_for) -> None:
    fake_dists.write("acme", plugin_source=plugin_code("acme", "source", FIND_PAYMENT))
    fake_dists.write("paybox", role="sink")
    registry = registry_for()

    row = record(registry, "acme")
    assert (row["status"], row["error"], row["warnings"]) == (
        "broken",
        FIND_PAYMENT_ABOVE_1_0,
        [],
    )
    with pytest.raises(PluginError) as caught:
        registry.load("acme", Role.SOURCE)
    assert type(caught.value) is PluginError
    assert str(caught.value) == f"plugin 'acme' is broken: {FIND_PAYMENT_ABOVE_1_0}"
    assert registry.load("paybox", Role.SINK).system == "paybox"  # one never hides another


def test_an_optional_hook_newer_than_the_lower_bound_is_ok(fake_dists, registry_for) -> None:
    fake_dists.write("acme", plugin_source=plugin_code("acme", "source", OPTIONAL_FIND_PAYMENT))
    registry = registry_for()

    row = record(registry, "acme")
    assert (row["status"], row["error"], row["warnings"]) == ("ok", None, [])
    assert registry.load("acme", Role.SOURCE).system == "acme"


def test_a_lower_bound_at_the_hooks_contract_is_ok(fake_dists, registry_for) -> None:
    fake_dists.write(
        "acme", contract=">=1.2,<2", plugin_source=plugin_code("acme", "source", FIND_PAYMENT)
    )
    registry = registry_for()

    row = record(registry, "acme")
    assert (row["status"], row["error"], row["warnings"]) == ("ok", None, [])
    assert registry.load("acme", Role.SOURCE).system == "acme"


def test_a_capability_newer_than_the_lower_bound_is_broken(
    fake_dists, registry_for, monkeypatch
) -> None:
    from ml_connector import contract

    # Every capability today is 1.0: pretend webhooks came with 1.1 to see the registry ask.
    monkeypatch.setattr(
        contract, "CAPABILITIES_ADDED", {**contract.CAPABILITIES_ADDED, "webhooks": "1.1"}
    )
    source = plugin_code("paybox", "sink").replace(
        "credentials_model=Credentials,",
        "credentials_model=Credentials, capabilities=frozenset({'webhooks'}),",
    )
    assert "capabilities=" in source
    fake_dists.write("paybox", role="sink", plugin_source=source)

    row = record(registry_for(), "paybox")
    assert (row["status"], row["error"]) == (
        "broken",
        "uses capability webhooks (added in contract 1.1) but declares contract >=1.0,<2, whose "
        "lower bound 1.0 lacks it: declare >=1.1",
    )


def test_every_problem_is_reported(fake_dists, registry_for) -> None:
    fake_dists.write(
        "acme", contract=">=0.9", plugin_source=plugin_code("acme", "source", FIND_PAYMENT)
    )
    row = record(registry_for(), "acme")
    assert row["status"] == "broken"
    assert row["error"] == (
        "uses hook find_payment (added in contract 1.2) but declares contract >=0.9, whose lower "
        "bound 0.9 lacks it: declare >=1.2, or mark the hook @hookimpl(optionalhook=True) if the "
        "plugin works without it"
    )
    assert row["warnings"] == [
        "contract range '>=0.9' starts at 0.9, before the first contract 1.0: no such contract "
        "exists",
        "contract range '>=0.9' is open: end it before the next major contract (e.g. "
        "'>=1.2,<2'), which may change or remove any hook",
    ]


def test_an_incompatible_plugin_carries_no_warning(fake_dists, registry_for) -> None:
    future = fake_dists.write("future", contract=">=2", plugin_source=RAISES_ON_IMPORT)
    registry = registry_for()

    row = record(registry, "future")
    assert (row["status"], row["warnings"]) == ("incompatible", [])
    with pytest.raises(IncompatiblePluginError):
        registry.load("future", Role.SOURCE)
    assert future.plugin_module not in sys.modules


def test_a_disabled_plugin_still_shows_its_warnings(fake_dists, registry_for, monkeypatch) -> None:
    quiet = fake_dists.write("acme", contract=">=1.0", plugin_source=RAISES_ON_IMPORT)
    monkeypatch.setenv(DISABLE_ENV, "acme")

    row = record(registry_for(), "acme")
    assert (row["status"], row["disabled"], row["warnings"]) == ("ok", True, [OPEN])
    assert quiet.plugin_module not in sys.modules


def test_a_plugin_registered_in_code_is_checked_the_same_way(fake_dists, registry_for) -> None:
    from ml_connector.testing import reference_erp

    registry = registry_for()
    fake_dists.site()
    info = PluginInfo.model_validate({**reference_erp.PLUGIN_INFO, "contract": ">=1.0,<2"})
    registry.add(reference_erp.PLUGIN, info)

    (row,) = [r for r in registry.plugins() if r.name == reference_erp.SYSTEM]
    assert row.status is PluginStatus.BROKEN
    assert row.error is not None
    assert row.error.startswith("uses hook find_payment (added in contract 1.2)")


def test_the_reference_plugins_are_ok_without_warnings(fake_dists, registry_for) -> None:
    from ml_connector.testing import reference_erp, reference_sink

    fake_dists.site()
    registry = registry_for()
    for module in (reference_erp, reference_sink):
        registry.add(module.PLUGIN, PluginInfo.model_validate(module.PLUGIN_INFO))

    rows = {r.name: (r.status, r.error, r.warnings) for r in registry.plugins()}
    assert rows == {
        "reference_erp": (PluginStatus.OK, None, ()),
        "reference_sink": (PluginStatus.OK, None, ()),
    }


@pytest.mark.parametrize("system", ["acumatica", "epicor", "bill"])
def test_the_installed_plugins_are_ok_without_warnings(system: str) -> None:
    registry = Registry()
    rows = [r for r in registry.plugins() if r.name == system]
    if not rows:
        pytest.skip(f"the {system} plugin is not installed in this environment")
    (row,) = rows
    assert (row.status, row.error, row.warnings) == (PluginStatus.OK, None, ())
