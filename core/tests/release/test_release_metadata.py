"""Release checks for every plugin folder (``docs/releasing.md``), and for the template's output.

Each ``plugins/*/`` folder found at collection time is checked: its own static version, README.md
and CHANGELOG.md (which mentions that version), the three entry points pointing at modules that
exist, a ``PLUGIN_INFO`` whose contract range contains this core's ``CONTRACT_VERSION`` and keeps
the contract range rule (:func:`~ml_connector.contract.range_problems`), and a dependency on
ml-connector that admits this core. All of that is read from source, without importing the
plugin's code; only the last check imports its hook module, from the folder itself: every hook
and capability the plugin uses must exist in the contract its range's lower bound names
(:func:`~ml_connector.contract.features_above_lower_bound`). A plugin freshly rendered by
``ml-connector plugin new`` must pass the same checks, and a fabricated folder proves that the
contract checks refuse what they should.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pluggy
import pytest
from core.tests.packaging_support import PLUGINS, render_plugin
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ml_connector import __version__, hookspecs
from ml_connector.contract import (
    CONTRACT_VERSION,
    contract_compatibility,
    features_above_lower_bound,
    range_problems,
)
from ml_connector.description import PluginDescription, PluginInfo

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


def contract_range_problems(folder: Path) -> list[str]:
    """How the folder's contract range breaks the contract range rule (read from source)."""
    info = PluginInfo.model_validate(plugin_info(folder))
    return range_problems(info.contract)


@contextmanager
def hook_module(folder: Path) -> Iterator[object]:
    """The folder's ``ml_connector.plugins`` target, imported from the folder itself.

    The folder's ``src`` (or the folder) goes first on ``sys.path`` and any module already
    imported under the plugin's package name is set aside, so the code checked is the folder's,
    whether or not the plugin is installed (an installed copy may be another version). Afterwards
    the fresh modules are dropped and the set-aside ones restored.
    """
    (value,) = entry_points(folder)["ml_connector.plugins"].values()
    module_name, _, attribute = value.partition(":")
    package_dir(folder, module_name)  # fails clearly if the module is not in the folder
    root = folder / "src" if (folder / "src").is_dir() else folder
    top = module_name.split(".")[0]

    def ours(name: str) -> bool:
        return name == top or name.startswith(f"{top}.")

    set_aside = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in set_aside:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
        origin = Path(module.__file__ or "").resolve()
        assert origin.is_relative_to(root.resolve()), (
            f"{folder.name}: {module_name} was imported from {origin}, not from {root}"
        )
        target: object = module
        for part in filter(None, attribute.split(".")):
            target = getattr(target, part)
        yield target
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(set_aside)
        importlib.invalidate_caches()


def contract_feature_problems(folder: Path) -> list[str]:
    """Each hook or capability the folder's plugin uses that its range's lower bound lacks.

    Hooks are the plugin's own implementations as pluggy registers them (an
    ``optionalhook=True`` one is exempt, as the registry does it); capabilities are those its
    ``describe_plugin`` declares.
    """
    info = PluginInfo.model_validate(plugin_info(folder))
    with hook_module(folder) as plugin:
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin, name=info.system)
        hooks: set[str] = set()
        required: set[str] = set()
        for caller in pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin_name == info.system:
                    hooks.add(caller.name)
                    if not impl.optionalhook:
                        required.add(caller.name)
        description = pm.hook.describe_plugin()
    assert isinstance(description, PluginDescription), (
        f"{folder.name}: describe_plugin returned {description!r}"
    )
    capabilities = [capability.value for capability in description.capabilities]
    return features_above_lower_bound(
        info.contract, hooks, capabilities, optional_hooks=hooks - required
    )


def test_contract_range_keeps_the_rule(folder: Path) -> None:
    problems = contract_range_problems(folder)
    assert not problems, f"{folder.name}: " + "; ".join(problems)


def test_lower_bound_covers_every_hook_and_capability_used(folder: Path) -> None:
    problems = contract_feature_problems(folder)
    assert not problems, f"{folder.name}: " + "; ".join(problems)


def test_depends_on_a_core_range_that_admits_this_core(folder: Path) -> None:
    requirements = [Requirement(r) for r in project(folder).get("dependencies", [])]
    core = [r for r in requirements if canonicalize_name(r.name) == "ml-connector"]
    assert core, f"{folder.name} does not depend on ml-connector"
    assert core[0].specifier.contains(__version__, prereleases=True), (
        f"{folder.name} depends on ml-connector{core[0].specifier}, which excludes this core "
        f"({__version__})"
    )


# --- The contract checks refuse what they should: a fabricated plugin folder ----------------------

FABRICATED_PLUGIN = """
from pydantic import BaseModel

from ml_connector import PluginDescription, Role, hookimpl


class Settings(BaseModel):
    pass


@hookimpl
def describe_plugin():
    return PluginDescription(
        system={system!r}, role=Role.SOURCE, settings_model=Settings, credentials_model=Settings
    )


@hookimpl
async def record_payment(ctx, posting):
    return None


@hookimpl{marker}
async def find_payment(ctx, posting):
    return None
"""


def fabricate(parent: Path, contract: str, *, optional: bool = False) -> Path:
    """A plugin folder laid out as ``plugins/*/`` are, under a package name unique to this call."""
    system = f"fab{uuid.uuid4().hex[:8]}"
    package = f"ml_connector_{system}"
    folder = parent / f"ml-connector-{system}"
    src = folder / "src" / package
    src.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "ml-connector-{system}"
            version = "0.1.0"
            dependencies = ["ml-connector"]

            [project.entry-points."ml_connector.plugin_info"]
            {system} = "{package}:PLUGIN_INFO"

            [project.entry-points."ml_connector.plugins"]
            {system} = "{package}.plugin"
            """
        )
    )
    info = {"system": system, "display_name": "Fab", "role": "source", "contract": contract}
    (src / "__init__.py").write_text(f"PLUGIN_INFO = {info!r}\n")
    marker = "(optionalhook=True)" if optional else ""
    (src / "plugin.py").write_text(FABRICATED_PLUGIN.format(system=system, marker=marker))
    return folder


def test_the_release_check_refuses_an_open_range(tmp_path: Path) -> None:
    folder = fabricate(tmp_path, ">=1.2")
    assert contract_range_problems(folder) == [
        "contract range '>=1.2' is open: end it before the next major contract (e.g. "
        "'>=1.2,<2'), which may change or remove any hook"
    ]
    assert contract_feature_problems(folder) == []


@pytest.mark.parametrize(
    ("contract", "problem"),
    [
        pytest.param(">=1.0,<3", "reaches contract 2", id="past-the-next-major"),
        pytest.param(">=0.9,<2", "starts at 0.9, before the first contract 1.0", id="early"),
    ],
)
def test_the_release_check_refuses_other_ranges_that_break_the_rule(
    tmp_path: Path, contract: str, problem: str
) -> None:
    (found,) = contract_range_problems(fabricate(tmp_path, contract, optional=True))
    assert problem in found


def test_the_release_check_refuses_a_hook_above_the_lower_bound(tmp_path: Path) -> None:
    folder = fabricate(tmp_path, ">=1.0,<2")
    assert contract_range_problems(folder) == []
    assert contract_feature_problems(folder) == [
        "uses hook find_payment (added in contract 1.2) but declares contract >=1.0,<2, whose "
        "lower bound 1.0 lacks it: declare >=1.2, or mark the hook @hookimpl(optionalhook=True) "
        "if the plugin works without it"
    ]


def test_the_release_check_passes_an_optional_hook_or_a_covering_lower_bound(
    tmp_path: Path,
) -> None:
    for folder in (
        fabricate(tmp_path, ">=1.0,<2", optional=True),
        fabricate(tmp_path, ">=1.2,<2"),
    ):
        assert (contract_range_problems(folder), contract_feature_problems(folder)) == ([], [])


def test_the_hook_module_is_imported_from_the_folder_and_set_aside_after(tmp_path: Path) -> None:
    folder = fabricate(tmp_path, ">=1.2,<2")
    (package,) = (p.name for p in (folder / "src").iterdir())
    stand_in = type(sys)(package)
    sys.modules[package] = stand_in
    try:
        with hook_module(folder) as plugin:
            assert Path(getattr(plugin, "__file__", "")).parent == folder / "src" / package
            assert sys.modules[package] is not stand_in
        assert sys.modules[package] is stand_in
        assert f"{package}.plugin" not in sys.modules
    finally:
        del sys.modules[package]
