"""Fresh virtualenvs, rendered plugins and built wheels, for tests that install like a user.

The template round trip (``core/tests/template``) and the isolated installs (``core/tests/release``)
use these. Everything goes through ``uv`` (its cache keeps it fast); nothing touches the
workspace's own environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ml_connector.description import Role
from ml_connector.registry import DISABLE_ENV, LOAD_ENV
from ml_connector.template import TemplateSpec, render

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "core"
PLUGINS = REPO / "plugins"
REFERENCE_PLUGIN = Path(__file__).resolve().parent / "template" / "reference_plugin.py"

# Variables that would point a subprocess at the workspace instead of the fresh environment.
_LEAKY = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "UV_PROJECT_ENVIRONMENT",
    DISABLE_ENV,
    LOAD_ENV,
)


def uv() -> str:
    """The uv executable (``uv run`` says where it is); the test is skipped without one."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.skip("uv is not installed: it creates the fresh environments")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without what would leak the workspace into a subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra)
    return env


def run(
    args: list[str | Path], *, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command with a clean environment and capture its output (never raises on exit)."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout; fails the test with its output if it did not exit 0."""
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output(result)}"
    return result.stdout


def output(result: subprocess.CompletedProcess[str]) -> str:
    """Stdout and stderr together, for assertions and failure messages."""
    return f"{result.stdout}\n{result.stderr}"


@dataclass(frozen=True)
class Venv:
    """A virtualenv created by ``uv venv`` with the interpreter running the tests."""

    path: Path

    @classmethod
    def create(cls, path: Path) -> Venv:
        """Create an empty environment (no pip, nothing installed)."""
        check(run([uv(), "venv", "--quiet", "--python", sys.executable, path]))
        return cls(path)

    @property
    def python(self) -> Path:
        """Its interpreter."""
        return self.bin("python")

    def bin(self, name: str) -> Path:
        """A script of the environment, e.g. ``ml-connector``."""
        scripts = self.path / ("Scripts" if os.name == "nt" else "bin")
        return scripts / (f"{name}.exe" if os.name == "nt" else name)

    def install(self, *requirements: str | Path, editable: Path | None = None) -> None:
        """``uv pip install`` into this environment (paths, wheels or names)."""
        args: list[str | Path] = [uv(), "pip", "install", "--quiet", "--python", self.python]
        args += list(requirements)
        if editable is not None:
            args += ["--editable", editable]
        check(run(args))

    def plugins(self) -> list[dict[str, Any]]:
        """What ``ml-connector plugins list --json`` says in this environment."""
        listed: list[dict[str, Any]] = json.loads(
            check(run([self.bin("ml-connector"), "plugins", "list", "--json"]))
        )
        return listed


def render_plugin(parent: Path, system: str, *, contract: str | None = None) -> Path:
    """Render the source template for ``system`` into ``parent``; optionally edit its contract."""
    target = parent / f"ml-connector-{system}"
    render(TemplateSpec(system, Role.SOURCE, system.title()), target)
    if contract is not None:
        init = target / "src" / f"ml_connector_{system}" / "__init__.py"
        edited = re.sub(r'"contract": "[^"]*"', f'"contract": "{contract}"', init.read_text())
        assert contract in edited
        init.write_text(edited)
    return target


def build_wheel(out_dir: Path, *, project: Path | None = None, package: str | None = None) -> Path:
    """Build one distribution's wheel (and sdist) into ``out_dir``; return the wheel.

    Either a project directory, or a workspace package by name (``uv build --package``).
    """
    before = set(out_dir.glob("*.whl")) if out_dir.exists() else set()
    if package is not None:
        check(run([uv(), "build", "--quiet", "--package", package, "--out-dir", out_dir], cwd=REPO))
    else:
        assert project is not None
        check(run([uv(), "build", "--quiet", "--wheel", "--out-dir", out_dir, project]))
    (wheel,) = set(out_dir.glob("*.whl")) - before
    return wheel


def project_name(folder: Path) -> str:
    """The distribution name a plugin folder's pyproject declares."""
    name: str = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"]
    return name


def copy_workspace(target: Path) -> Path:
    """A copy of this uv workspace to change freely, without the tests; returns ``target``.

    The root's ``pyproject.toml``, ``uv.lock`` and ``conftest.py``, and each member's folder
    (``core``, ``plugins/*``) without its ``tests`` and caches: what ``uv lock``, ``uv sync``,
    ruff and mypy read, and a plugin added in ``plugins/`` is tested under.
    """
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock", "conftest.py"):
        shutil.copy2(REPO / name, target / name)
    caches = shutil.ignore_patterns("__pycache__", ".*_cache", "*.egg-info")
    members = [CORE, *(p for p in sorted(PLUGINS.iterdir()) if (p / "pyproject.toml").is_file())]
    for member in members:
        copy = target / member.relative_to(REPO)
        copy.mkdir(parents=True)
        for item in member.iterdir():
            if item.name in ("tests", "dist", "build") or caches(str(member), [item.name]):
                continue
            if item.is_dir():
                shutil.copytree(item, copy / item.name, ignore=caches)
            else:
                shutil.copy2(item, copy / item.name)
    return target


def add_to_workspace(root: Path, distribution: str) -> None:
    """Add a member's distribution to the root ``pyproject.toml``: the two lines the guide gives.

    ``"<distribution>",`` at the end of ``[project] dependencies`` (so ``uv sync`` and
    ``uv run`` install it), and ``<distribution> = { workspace = true }`` at the end of
    ``[tool.uv.sources]`` (so it comes from its folder, not from an index).
    """
    path = root / "pyproject.toml"
    lines = path.read_text().splitlines(keepends=True)
    start = lines.index("dependencies = [\n")
    lines.insert(lines.index("]\n", start), f'    "{distribution}",\n')
    sources = lines.index("[tool.uv.sources]\n")
    end = next(
        i for i in range(sources + 1, len(lines) + 1) if i == len(lines) or not lines[i].strip()
    )
    lines.insert(end, f"{distribution} = {{ workspace = true }}\n")
    path.write_text("".join(lines))
    edited = tomllib.loads(path.read_text())
    assert distribution in edited["project"]["dependencies"]
    assert edited["tool"]["uv"]["sources"][distribution] == {"workspace": True}


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Each test's outcome (passed, failure, error, skipped) and message, from a JUnit report."""
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problems = [c for c in case if c.tag in ("failure", "error", "skipped")]
        kind = problems[0].tag if problems else "passed"
        message = " ".join(f"{p.get('message', '')} {p.text or ''}" for p in problems)
        found[case.attrib["name"]] = (kind, message)
    return found
