"""The CLI answers at once: ``--version`` and ``--help`` import no command module."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ml_connector.cli import COMMANDS, main

# What a command module may pull in at its top, and the top-level help must not.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "httpx", "aiohttp", "pydantic", "starlette")

PROBE = """
import json, sys
from click.testing import CliRunner
from ml_connector.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "modules": sorted(m for m in sys.modules if not m.startswith("_"))}))
"""


def _probe(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    found: dict[str, object] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    found = _probe(*args)
    assert found["exit"] == 0, found["output"]
    modules = found["modules"]
    assert isinstance(modules, list)
    heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    assert heavy == [], f"ml-connector {' '.join(args)} imported {heavy}"
    loaded = sorted(
        m for m in modules if m.startswith("ml_connector.cli._") and m != "ml_connector.cli._app"
    )
    assert loaded == [], f"command modules imported for {args}: {loaded}"


def test_help_lists_every_command_with_its_own_help_line() -> None:
    ctx = click.Context(main)
    for name, (_, line) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None, f"{name}: its module registers no such command"
        assert command.get_short_help_str(1000) == line, f"{name}: the help line drifted"
    registered = set(main.commands)
    assert registered == set(COMMANDS), (
        f"commands missing from COMMANDS: {registered - set(COMMANDS)}"
    )


def test_a_command_loads_its_module_when_it_runs() -> None:
    result = CliRunner().invoke(main, ["plugin", "--help"])
    assert result.exit_code == 0, result.output
    assert "Write your own plugin." in result.output
