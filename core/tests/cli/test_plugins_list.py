"""``ml-connector plugins list``: in-process, and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from core.tests.registry.fake_dists import RAISES_ON_IMPORT, FakeDists, plugin_code

from ml_connector.cli import main
from ml_connector.cli._app import AppContext
from ml_connector.registry import DISABLE_ENV, LOAD_ENV, Registry

KEYS = {"name", "distribution", "version", "role", "contract", "status", "error", "warnings"}
OPEN = (
    "contract range '>=1.0' is open: end it before the next major contract (e.g. '>=1.2,<2'), "
    "which may change or remove any hook"
)
PAST_NEXT_MAJOR = (
    "contract range '>=1.0,<3' reaches contract 2: a major contract changes or removes hooks, so "
    "no plugin can claim it before it exists (end the range at <2)"
)


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


def test_warnings_in_json(dists) -> None:
    dists.write("acme", contract=">=1.0")
    dists.write("paybox", role="sink", contract=">=1.2,<2")
    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert (rows["acme"]["status"], rows["acme"]["error"], rows["acme"]["warnings"]) == (
        "ok",
        None,
        [OPEN],
    )
    assert (rows["paybox"]["status"], rows["paybox"]["warnings"]) == ("ok", [])


def test_warnings_in_the_table(dists, monkeypatch) -> None:
    dists.write("acme", contract=">=1.0")
    dists.write("zeta", contract=">=0.9,<3")
    dists.write("legacy", contract=">=1.0,<3")
    dists.write("paybox", role="sink", contract=">=1.2,<2")
    monkeypatch.setenv(DISABLE_ENV, "legacy")
    result = CliRunner().invoke(main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split()[5:] for line in lines if line and line[0] != " "}
    assert rows["acme"] == ["ok", "(1", "warning)"]
    assert rows["zeta"] == ["ok", "(2", "warnings)"]
    assert rows["legacy"] == ["ok", "(disabled,", "1", "warning)"]
    assert rows["paybox"] == ["ok"]
    # The warnings follow the table, after a blank line, one line each.
    blank = lines.index("")
    assert all(line.split()[0] in rows for line in lines[1:blank])
    assert lines[blank + 1 :] == [
        f"warning: acme: {OPEN}",
        f"warning: legacy: {PAST_NEXT_MAJOR}",
        "warning: zeta: contract range '>=0.9,<3' starts at 0.9, before the first contract 1.0: "
        "no such contract exists",
        "warning: zeta: contract range '>=0.9,<3' reaches contract 2: a major contract changes "
        "or removes hooks, so no plugin can claim it before it exists (end the range at <2)",
    ]


def test_no_warnings_no_warning_lines(dists) -> None:
    dists.write("paybox", role="sink", contract=">=1.2,<2")
    result = CliRunner().invoke(main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert "" not in result.stdout.splitlines()
    assert "warning" not in result.stdout


def test_a_hook_above_the_lower_bound_is_listed_as_broken(dists) -> None:
    extra = """
    @hookimpl
    async def find_payment(ctx, posting):
        return None
    """
    dists.write("acme", plugin_source=plugin_code("acme", "source", extra))
    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [row for row in json.loads(result.stdout) if row["name"] == "acme"]
    assert (row["status"], row["warnings"]) == ("broken", [])
    assert row["error"].startswith(
        "uses hook find_payment (added in contract 1.2) but declares contract >=1.0,<2, whose "
        "lower bound 1.0 lacks it: declare >=1.2"
    )


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
