"""Release checks for every plugin folder (``docs/releasing.md``), and for the template's output.

Each ``plugins/*/`` folder found at collection time is checked without importing its code:
its own static version, README.md and CHANGELOG.md (which mentions that version), the three
entry points pointing at modules that exist, a ``PLUGIN_INFO`` whose contract range contains
this core's ``CONTRACT_VERSION``, and a dependency on ml-connector that admits this core. A plugin
freshly rendered by ``ml-connector plugin new`` must pass the same checks.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from core.tests.packaging_support import PLUGINS, render_plugin
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ml_connector import __version__
from ml_connector.contract import CONTRACT_VERSION, contract_compatibility
from ml_connector.description import PluginInfo

GROUPS = ("ml_connector.plugin_info", "ml_connector.plugins", "ml_connector.emulators")
TEMPLATE = "rendered-template"


def plugin_folders() -> list[Path]:
    if not PLUGINS.is_dir():
        return []
    return sorted(p for p in PLUGINS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


FOLDERS = plugin_folders()
PARAMS = [pytest.param(folder.name, id=folder.name) for folder in FOLDERS] or [
    pytest.param(
        None,
        id="no-plugin-folders",
        marks=pytest.mark.skip(reason=f"no plugin folders under {PLUGINS}: nothing to check"),
    )
]


@pytest.fixture(params=[*PARAMS, pytest.param(TEMPLATE, id=TEMPLATE)])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A plugin folder of the repository, or a plugin just rendered from the template."""
    if request.param == TEMPLATE:
        return render_plugin(tmp_path, "tmplrelease")
    path: Path = PLUGINS / request.param
    return path


def project(folder: Path) -> dict[str, Any]:
    pyproject = folder / "pyproject.toml"
    assert pyproject.is_file(), f"{folder.name} has no pyproject.toml"
    data: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return data


def package_dir(folder: Path, module: str) -> Path:
    """Where a dotted module lives in the folder's ``src`` layout (or at its top)."""
    for root in (folder / "src", folder):
        base = root.joinpath(*module.split("."))
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
    raise AssertionError(f"{folder.name}: module {module} does not exist")


def entry_points(folder: Path) -> dict[str, dict[str, str]]:
    declared = project(folder).get("entry-points", {})
    return {group: declared.get(group, {}) for group in GROUPS}


def plugin_info(folder: Path) -> dict[str, Any]:
    """``PLUGIN_INFO`` read from source (a literal dict), without importing the plugin."""
    (value,) = entry_points(folder)["ml_connector.plugin_info"].values()
    module, _, attribute = value.partition(":")
    tree = ast.parse(package_dir(folder, module).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
            info: dict[str, Any] = ast.literal_eval(value)
            return info
    raise AssertionError(f"{folder.name}: {module} has no literal {attribute} = {{...}}")


def test_has_its_own_version(folder: Path) -> None:
    data = project(folder)
    assert "version" not in data.get("dynamic", []), "the version is written in pyproject.toml"
    try:
        Version(data["version"])
    except (KeyError, InvalidVersion) as exc:
        pytest.fail(f"{folder.name}: no valid [project] version: {exc}")


def test_has_readme_and_changelog_for_this_version(folder: Path) -> None:
    assert (folder / "README.md").is_file(), f"{folder.name} has no README.md"
    changelog = folder / "CHANGELOG.md"
    assert changelog.is_file(), f"{folder.name} has no CHANGELOG.md"
    version = project(folder)["version"]
    mentioned = re.search(rf"(?<![\w.]){re.escape(version)}(?![\w.])", changelog.read_text())
    assert mentioned, f"{folder.name}: CHANGELOG.md has no entry for version {version}"


def test_entry_points_point_at_modules_that_exist(folder: Path) -> None:
    declared = entry_points(folder)
    names = {group: set(eps) for group, eps in declared.items()}
    for group, found in names.items():
        assert len(found) == 1, f"{folder.name}: expected one {group} entry point, got {found}"
    assert len(set.union(*names.values())) == 1, f"{folder.name}: one system key: {names}"
    for group, eps in declared.items():
        (value,) = eps.values()
        module = value.partition(":")[0]
        assert package_dir(folder, module).is_file(), f"{group} -> {value}"


def test_contract_range_contains_the_core_contract(folder: Path) -> None:
    raw = plugin_info(folder)
    info = PluginInfo.model_validate(raw)
    (system,) = entry_points(folder)["ml_connector.plugin_info"]
    assert info.system == system, "PLUGIN_INFO['system'] is the entry points' name"
    reason = contract_compatibility(info.contract)
    assert reason is None, f"{folder.name}: {reason} (core contract {CONTRACT_VERSION})"


def test_depends_on_a_core_range_that_admits_this_core(folder: Path) -> None:
    requirements = [Requirement(r) for r in project(folder).get("dependencies", [])]
    core = [r for r in requirements if canonicalize_name(r.name) == "ml-connector"]
    assert core, f"{folder.name} does not depend on ml-connector"
    assert core[0].specifier.contains(__version__, prereleases=True), (
        f"{folder.name} depends on ml-connector{core[0].specifier}, which excludes this core "
        f"({__version__})"
    )
