"""A partner's plugin written inside this repository passes its checks with no edit elsewhere.

The guide ("Add your plugin to this repository") promises: render the template into
``plugins/<name>``, add two lines to the root ``pyproject.toml``, run ``uv lock``, and the new
plugin passes what CI runs over the workspace (ruff, ruff format, mypy, pytest) and
``ml-connector demo --source <name>``, with nothing else changed. This does that, with uv, in a
copy of the workspace (``copy_workspace``), with the reference implementation as the partner's
``plugin.py``.
"""

from __future__ import annotations

import difflib
import json
import shutil
import sys
import tomllib
from typing import TYPE_CHECKING

import pytest
from core.tests.packaging_support import (
    REFERENCE_PLUGIN,
    add_to_workspace,
    check,
    copy_workspace,
    output,
    run,
    uv,
)
from ml_connector.description import Role
from ml_connector.template import TemplateSpec, render

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

NAME = "wsplugin"
SPEC = TemplateSpec(NAME, Role.SOURCE, "Workspace ERP")


def uv_offline_first(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``uv <args>`` from the cache alone if it can (it usually can), else from the index."""
    result = run([uv(), *args, "--offline"], cwd=cwd)
    if result.returncode != 0:
        result = run([uv(), *args], cwd=cwd)
    return result


@pytest.mark.slow
def test_a_new_plugin_passes_the_workspace_checks(tmp_path: Path) -> None:
    root = copy_workspace(tmp_path / "workspace")
    folder = root / "plugins" / NAME
    # What the partner does: render, implement, add the two root lines, lock.
    render(SPEC, folder)
    shutil.copyfile(REFERENCE_PLUGIN, folder / "src" / SPEC.package / "plugin.py")
    before = (root / "pyproject.toml").read_text().splitlines()
    add_to_workspace(root, SPEC.distribution)
    after = (root / "pyproject.toml").read_text().splitlines()
    changed = [line for line in difflib.ndiff(before, after) if line[:2] in ("+ ", "- ")]
    assert changed == [
        f'+     "{SPEC.distribution}",',
        f"+ {SPEC.distribution} = {{ workspace = true }}",
    ]
    check(uv_offline_first(["lock"], root))
    # The lock has it, as a member: so `uv sync --frozen` (CI) installs it, and no sync
    # uninstalls it.
    locked = {p["name"]: p for p in tomllib.loads((root / "uv.lock").read_text())["package"]}
    assert locked[SPEC.distribution]["source"] == {"editable": f"plugins/{NAME}"}
    assert {"name": SPEC.distribution} in locked["ml-connector-workspace"]["dependencies"]
    check(uv_offline_first(["sync", "--locked", "--python", sys.executable], root))

    # What CI runs over the workspace (scripts/test), on the new folder.
    def uv_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([uv(), "run", "--no-sync", *args], cwd=root, timeout=300)

    check(uv_run("ruff", "check", "--no-cache", f"plugins/{NAME}"))
    check(uv_run("ruff", "format", "--check", "--no-cache", f"plugins/{NAME}"))
    # the root's [tool.mypy] (strict, pydantic's plugin); its `files` name plugins/*/src
    typed = uv_run("mypy", "core/src", f"plugins/{NAME}/src")
    assert typed.returncode == 0, output(typed)
    listed = json.loads(check(uv_run("ml-connector", "plugins", "list", "--json")))
    assert {p["name"]: p["status"] for p in listed}.get(NAME) == "ok", listed
    # the suite as the partner runs it (the plugin's own pytest settings), and as CI does
    # (the root's: warnings are errors, imports by path, the isolated home of conftest.py)
    for config in ([], ["-c", "pyproject.toml"]):
        tested = uv_run("pytest", "-p", "no:cacheprovider", *config, f"plugins/{NAME}")
        assert tested.returncode == 0, output(tested)
        assert " passed" in tested.stdout
        assert " failed" not in tested.stdout

    demo = uv_run("ml-connector", "demo", "--source", NAME, "--bills", "20", "--json")
    assert demo.returncode == 0, output(demo)
    summary = json.loads(demo.stdout)
    assert summary["status"] == "succeeded", summary["errors"]
    checked = ("duplicates", "missing", "unexpected", "held_moved")
    checked += ("payments_posted_twice", "payments_missing")
    assert {key: summary[key] for key in checked} == dict.fromkeys(checked, 0), summary
    assert (summary["bills_eligible"], summary["bills_created"]) == (20, 20)
    assert summary["bills_held"] > 0
    # the one expected exception: the bill coded to the account BILL does not get
    assert summary["exceptions"] == 1, summary["exception_queue"]
