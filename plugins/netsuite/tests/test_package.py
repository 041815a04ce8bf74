"""The distribution: light metadata, entry points, a plugin the registry accepts."""

from __future__ import annotations

import subprocess
import sys

from ml_connector.contract import contract_compatibility, range_problems
from ml_connector.description import Capability, PluginInfo, Role
from ml_connector.registry import PluginStatus, Registry

import ml_connector_netsuite
from ml_connector_netsuite import plugin
from ml_connector_netsuite.schemas import Credentials, Settings


def test_plugin_info_is_light_and_keeps_the_range_rule() -> None:
    info = PluginInfo.model_validate(ml_connector_netsuite.PLUGIN_INFO)
    assert (info.system, info.role, info.display_name) == (
        "netsuite", Role.SOURCE, "Oracle NetSuite"
    )  # fmt: skip
    # From contract 1.2: find_payment is a hook the plugin relies on.
    assert info.contract == ">=1.2,<2"
    assert contract_compatibility(info.contract) is None
    assert range_problems(info.contract) == []
    code = (
        "import sys, ml_connector_netsuite; "
        "heavy = [m for m in ('httpx', 'jwt', 'ml_connector_netsuite.plugin') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_installed_plugin_loads_through_the_registry() -> None:
    registry = Registry()
    loaded = registry.load("netsuite", Role.SOURCE)
    assert loaded.plugin is plugin
    assert loaded.distribution == "ml-connector-netsuite"
    [record] = [r for r in registry.plugins() if r.name == "netsuite"]
    assert record.status is PluginStatus.OK, record.error


def test_the_description() -> None:
    description = plugin.describe_plugin()
    assert description.settings_model is Settings
    assert description.credentials_model is Credentials
    assert description.limits.per_request is True
    assert description.capabilities == frozenset({Capability.DIMENSIONS})


def test_every_public_hook_is_exported() -> None:
    hooks = sorted(
        name for name in dir(plugin) if hasattr(getattr(plugin, name), "ml_connector_impl")
    )
    assert hooks == sorted(n for n in plugin.__all__ if n not in ("Credentials", "Settings"))
