"""The distribution: light metadata, entry points, a plugin the registry accepts."""

from __future__ import annotations

import subprocess
import sys

import ml_connector_acumatica
from ml_connector.contract import contract_compatibility
from ml_connector.description import Capability, PluginInfo, Role
from ml_connector.registry import PluginStatus, Registry
from ml_connector_acumatica import plugin
from ml_connector_acumatica.schemas import AcumaticaCredentials, AcumaticaSettings


def test_plugin_info_is_light_and_compatible() -> None:
    info = PluginInfo.model_validate(ml_connector_acumatica.PLUGIN_INFO)
    assert (info.system, info.role, info.display_name) == ("acumatica", Role.SOURCE, "Acumatica")
    assert contract_compatibility(info.contract) is None
    assert ml_connector_acumatica.__all__ == ["PLUGIN_INFO"]
    code = (
        "import sys, ml_connector_acumatica; "
        "heavy = [m for m in ('httpx', 'ml_connector_acumatica.plugin') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_installed_plugin_loads_through_the_registry() -> None:
    registry = Registry()
    loaded = registry.load("acumatica", Role.SOURCE)
    assert loaded.plugin is plugin
    assert loaded.distribution == "ml-connector-acumatica"
    assert loaded.version == "0.1.0"
    [record] = [r for r in registry.plugins() if r.name == "acumatica"]
    assert record.status is PluginStatus.OK, record.error


def test_description() -> None:
    description = plugin.describe_plugin()
    assert description.settings_model is AcumaticaSettings
    assert description.credentials_model is AcumaticaCredentials
    assert description.limits.max_in_flight == 3
    assert description.limits.scope_setting == "instance_url"
    assert Capability.DIMENSIONS in description.capabilities
    assert "instance_url" in AcumaticaSettings.model_fields


def test_every_public_hook_is_exported() -> None:
    hooks = sorted(
        name for name in dir(plugin) if hasattr(getattr(plugin, name), "ml_connector_impl")
    )
    assert hooks == sorted(plugin.__all__)
