"""``ml-connector plugins list``: in-process, and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from core.tests.registry.fake_dists import RAISES_ON_IMPORT, FakeDists

from ml_connector.cli import main
from ml_connector.cli._app import AppContext
from ml_connector.registry import DISABLE_ENV, LOAD_ENV, Registry

KEYS = {"name", "distribution", "version", "role", "contract", "status", "error"}


@pytest.fixture(autouse=True)
def _no_plugin_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(LOAD_ENV, raising=False)


@pytest.fixture
def dists(tmp_path, monkeypatch: pytest.MonkeyPatch):
    made = FakeDists(tmp_path / "sites", on_new_site=lambda p: monkeypatch.syspath_prepend(p))
    before = set(sys.modules)
    yield made
    for name in set(sys.modules) - before:
        if name.startswith("mlc_fake_"):
            del sys.modules[name]


def install_mixed(dists: FakeDists) -> set[str]:
    dists.write("acme", role="source", version="2.3.0")
    dists.write("paybox", role="sink", distribution="paybox-connector")
    dists.write("crashy", plugin_source="import mlc_no_such_module_anywhere\n")
    dists.write("legacyerp", contract=">=2,<3", plugin_source=RAISES_ON_IMPORT)
    return {"acme", "paybox", "crashy", "legacyerp"}


def check_mixed(rows: list[dict], names: set[str]) -> None:
    mine = {row["name"]: row for row in rows if row["name"] in names}
    assert set(mine) == names
    for row in rows:
        assert set(row) >= KEYS
    assert {name: row["status"] for name, row in mine.items()} == {
        "acme": "ok",
        "paybox": "ok",
        "crashy": "broken",
        "legacyerp": "incompatible",
    }
    assert mine["acme"]["error"] is None
    assert (mine["acme"]["distribution"], mine["acme"]["version"]) == ("ml-connector-acme", "2.3.0")
    assert mine["paybox"]["role"] == "sink"
    assert "ModuleNotFoundError" in mine["crashy"]["error"]
    assert "install a release of ml-connector-legacyerp" in mine["legacyerp"]["error"]


def test_no_plugins(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(AppContext, "registry", property(lambda self: Registry(path=[tmp_path])))
    runner = CliRunner()

    result = runner.invoke(main, ["plugins", "list", "--json"])
    assert (result.exit_code, json.loads(result.output)) == (0, [])

    result = runner.invoke(main, ["plugins", "list"])
    assert (result.exit_code, result.output) == (0, "No plugins installed.\n")


def test_lists_every_plugin_and_exits_0_when_some_are_broken(dists) -> None:
    names = install_mixed(dists)
    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    check_mixed(json.loads(result.output), names)


def test_table(dists, monkeypatch) -> None:
    dists.write("acme", role="source", version="2.3.0")
    dists.write("legacy")
    monkeypatch.setenv(DISABLE_ENV, "legacy")
    result = CliRunner().invoke(main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "NAME",
        "DISTRIBUTION",
        "VERSION",
        "ROLE",
        "CONTRACT",
        "STATUS",
        "ERROR",
    ]
    assert ["acme", "ml-connector-acme", "2.3.0", "source", ">=1.0,<2", "ok"] in [
        line.split() for line in lines
    ]
    assert ["legacy", "ml-connector-legacy", "1.0.0", "source", ">=1.0,<2", "ok", "(disabled)"] in [
        line.split() for line in lines
    ]


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("ml-connector")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ml_connector"]


def run_cli(*args: str, pythonpath: list[Path], cache_home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (DISABLE_ENV, LOAD_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env["XDG_CACHE_HOME"] = str(cache_home)
    return subprocess.run(
        [*console_script(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_console_script(tmp_path) -> None:
    dists = FakeDists(tmp_path / "sites")
    names = install_mixed(dists)
    cache_home = tmp_path / "cache"

    baseline = run_cli("plugins", "list", "--json", pythonpath=[], cache_home=cache_home)
    result = run_cli("plugins", "list", "--json", pythonpath=dists.sites, cache_home=cache_home)

    assert baseline.returncode == 0, baseline.stderr
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    check_mixed(rows, names)
    # Without the fake site, only what the environment has installed (nothing, in a bare core).
    assert json.loads(baseline.stdout) == [row for row in rows if row["name"] not in names]
    # stevedore's on-disk entry-point cache is neither read nor written.
    assert not (cache_home / "python-entrypoints").exists()
