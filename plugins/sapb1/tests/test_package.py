"""The distribution: light metadata, entry points, a plugin the registry accepts."""

from __future__ import annotations

import subprocess
import sys

from ml_connector.contract import contract_compatibility, range_problems
from ml_connector.description import Capability, PluginInfo, Role
from ml_connector.registry import PluginStatus, Registry

import ml_connector_sapb1
from ml_connector_sapb1 import plugin
from ml_connector_sapb1.schemas import Credentials, Settings


def test_plugin_info_is_light_and_keeps_the_range_rule() -> None:
    info = PluginInfo.model_validate(ml_connector_sapb1.PLUGIN_INFO)
    assert (info.system, info.role, info.display_name) == (
        "sapb1", Role.SOURCE, "SAP Business One"
    )  # fmt: skip
    # From contract 1.2: find_payment is a hook the plugin relies on (record_payment looks
    # first too, but the engine's look after a crash is the one that keeps a lost answer from
    # a second payment), and ctx.saved_session keeps a killed run's licence seat.
    assert info.contract == ">=1.2,<2"
    assert contract_compatibility(info.contract) is None
    assert range_problems(info.contract) == []
    assert ml_connector_sapb1.__all__ == ["PLUGIN_INFO"]
    code = (
        "import sys, ml_connector_sapb1; "
        "heavy = [m for m in ('httpx', 'ml_connector_sapb1.plugin') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_installed_plugin_loads_through_the_registry() -> None:
    registry = Registry()
    loaded = registry.load("sapb1", Role.SOURCE)
    assert loaded.plugin is plugin
    assert loaded.distribution == "ml-connector-sapb1"
    [record] = [r for r in registry.plugins() if r.name == "sapb1"]
    assert record.status is PluginStatus.OK, record.error


def test_the_description() -> None:
    description = plugin.describe_plugin()
    assert description.settings_model is Settings
    assert description.credentials_model is Credentials
    assert description.limits.max_in_flight == 3
    assert description.limits.scope_setting == "service_url"
    assert description.limits.per_request is True
    assert description.capabilities == frozenset({Capability.DIMENSIONS})


def test_every_public_hook_is_exported() -> None:
    hooks = sorted(
        name for name in dir(plugin) if hasattr(getattr(plugin, name), "ml_connector_impl")
    )
    assert hooks == sorted(n for n in plugin.__all__ if n not in ("Credentials", "Settings"))
