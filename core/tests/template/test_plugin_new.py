"""``ml-connector plugin new``: what it writes, what it refuses, and the quality of its output."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import tomllib
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from core.tests.packaging_support import REFERENCE_PLUGIN, REPO, check, output, run
from core.tests.registry.fake_dists import FakeDists
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from ml_connector import __version__
from ml_connector.cli import main
from ml_connector.contract import contract_compatibility
from ml_connector.description import PluginInfo
from ml_connector.registry import PluginStatus, Registry
from ml_connector.template import MAX_DISPLAY_NAME, MAX_NAME, core_requirement

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import ModuleType

SOURCE_HOOKS = {
    "authenticate",
    "check_connection",
    "list_accounts",
    "close_connection",
    "list_changed_payables",
    "get_payable",
    "record_payment",
}
FILES = {
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "src/ml_connector_{name}/__init__.py",
    "src/ml_connector_{name}/py.typed",
    "src/ml_connector_{name}/plugin.py",
    "src/ml_connector_{name}/client.py",
    "src/ml_connector_{name}/schemas.py",
    "src/ml_connector_{name}/emulator.py",
    "tests/test_conformance.py",
}


def new(*args: str | Path) -> Any:
    return CliRunner().invoke(main, ["plugin", "new", *map(str, args)])


@pytest.fixture
def name() -> str:
    return f"tmpl{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rendered(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"ml-connector-{name}"
    result = new(name, "--dir", target, "--display-name", "Example ERP")
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture
def package(rendered: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The rendered package, imported in this process."""
    monkeypatch.syspath_prepend(str(rendered / "src"))
    yield importlib.import_module(f"ml_connector_{name}")
    for module in [m for m in sys.modules if m.startswith(f"ml_connector_{name}")]:
        del sys.modules[module]


def test_writes_the_standard_shape(rendered: Path, name: str) -> None:
    written = {p.relative_to(rendered).as_posix() for p in rendered.rglob("*") if p.is_file()}
    assert written == {f.format(name=name) for f in FILES}
    project = tomllib.loads((rendered / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == (f"ml-connector-{name}", "0.1.0")
    core = next(Requirement(d) for d in project["dependencies"] if d.startswith("ml-connector"))
    assert core.specifier == SpecifierSet(core_requirement())
    assert core.specifier.contains(__version__)
    groups = project["entry-points"]
    assert groups["ml_connector.plugin_info"] == {name: f"ml_connector_{name}:PLUGIN_INFO"}
    assert groups["ml_connector.plugins"] == {name: f"ml_connector_{name}.plugin"}
    assert groups["ml_connector.emulators"] == {
        name: f"ml_connector_{name}.emulator:create_emulator"
    }
    assert "## [0.1.0]" in (rendered / "CHANGELOG.md").read_text()
    assert "Example ERP" in (rendered / "README.md").read_text()


def test_default_directory_is_the_distribution_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = new(name)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"ml-connector-{name}" / "pyproject.toml").is_file()
    assert f"Created ml-connector-{name}" in result.output


def test_the_plugin_loads_and_every_hook_names_itself(package: ModuleType, name: str) -> None:
    info = PluginInfo.model_validate(package.PLUGIN_INFO)
    assert (info.system, info.display_name, info.role.value) == (name, "Example ERP", "source")
    assert contract_compatibility(info.contract) is None
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    registry = Registry(path=[])
    registry.add(plugin, info)
    (record,) = registry.plugins()
    assert record.status is PluginStatus.OK, record.error

    stubs = {
        n for n, f in inspect.getmembers(plugin, inspect.iscoroutinefunction) if n in SOURCE_HOOKS
    }
    assert stubs == SOURCE_HOOKS
    for hook in sorted(SOURCE_HOOKS):
        fn = getattr(plugin, hook)
        args = [None] * len(inspect.signature(fn).parameters)
        with pytest.raises(NotImplementedError) as raised:
            asyncio.run(fn(*args))
        message = str(raised.value)
        assert message.startswith(f"TODO(ml-connector-{name}): implement {hook}: "), message
        assert "docs/plugin-guide.md §4" in message


def test_the_emulator_serves_its_settings(package: ModuleType, name: str) -> None:
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    from ml_connector.emulation import EmulatorOptions

    emulator = emulator_module.create_emulator(EmulatorOptions(extra={"bills": 3}))
    assert emulator.system == name
    plugin.Settings.model_validate(emulator.settings("http://127.0.0.1:1/api/v1"))
    plugin.Credentials.model_validate(emulator.credentials())
    ready = [b for b in emulator.bills.values() if b.status == "approved" and not b.on_hold]
    assert len(ready) >= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme"], "invalid plugin name 'Acme'"),
        (["my-erp"], "invalid plugin name 'my-erp'"),
        (["1erp"], "invalid plugin name '1erp'"),
        (["erp_"], "no trailing or doubled underscores"),
        (["e" * 31], "at most 30 characters"),
        (["erp", "--display-name", "E" * 41], "at most 40 characters"),
        (["erp", "--role", "sink"], "not yet: sink templates are planned"),
        (["erp", "--display-name", 'My "ERP"'], "invalid display name"),
    ],
)
def test_refuses_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = new(*args, "--dir", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_refuses_an_existing_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / "taken").mkdir()
    result = new(name, "--dir", tmp_path / "taken")
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert list((tmp_path / "taken").iterdir()) == []


def test_refuses_a_system_key_already_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dists = FakeDists(tmp_path / "sites", on_new_site=lambda p: monkeypatch.syspath_prepend(p))
    dists.write("legacyerp", distribution="legacy-erp-connector")
    result = new("legacyerp", "--dir", tmp_path / "out")
    assert result.exit_code == 2
    assert "'legacyerp' is already provided by legacy-erp-connector" in result.output


def test_rendered_code_passes_the_project_linters(tmp_path: Path) -> None:
    """Partners start from code that ruff (the project's rules) finds clean and formatted."""
    longest = "erp_" + "x" * (MAX_NAME - 4)  # the longest names fit in 100 columns
    rendered = tmp_path / "plugin"
    result = new(longest, "--dir", rendered, "--display-name", "D" * MAX_DISPLAY_NAME)
    assert result.exit_code == 0, result.output
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    ruff = [sys.executable, "-m", "ruff"]
    options = ["--isolated", "--line-length", "100", "--target-version", "py311"]
    rules = [
        "--select",
        ",".join(lint["select"]),
        "--ignore",
        ",".join(lint["ignore"]),
        "--config",
        'lint.pydocstyle.convention="google"',
        "--config",
        'lint.per-file-ignores={"tests/**"=["D","S"]}',
    ]
    check(run([*ruff, "check", *options, *rules, "."], cwd=rendered))
    check(run([*ruff, "format", "--check", *options, "."], cwd=rendered))


@pytest.mark.slow
def test_rendered_code_and_the_reference_are_strictly_typed(rendered: Path, name: str) -> None:
    config = rendered.parent / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\npython_version = 3.11\nplugins = pydantic.mypy\n"
        "mypy_path = src\nexplicit_package_bases = True\n"
        "[mypy-stevedore.*]\nignore_missing_imports = True\n"
    )
    mypy = [sys.executable, "-m", "mypy", "--config-file", config]
    mypy += ["--cache-dir", rendered.parent / ".mypy_cache", f"src/ml_connector_{name}", "tests"]
    result = run(mypy, cwd=rendered)
    assert result.returncode == 0, output(result)
    (rendered / "src" / f"ml_connector_{name}" / "plugin.py").write_text(
        REFERENCE_PLUGIN.read_text()
    )
    result = run(mypy, cwd=rendered)
    assert result.returncode == 0, output(result)
