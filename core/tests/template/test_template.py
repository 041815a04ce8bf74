"""The template round trip, as CI runs it: render, install, fail clearly, implement, pass.

The core is installed from a wheel built from ``core/`` into a fresh virtualenv, and that
environment's own ``ml-connector plugin new`` renders the plugin: so the templates ship in the
wheel. The rendered tests must fail on the unimplemented hooks (naming them), and pass once the
reference ``plugin.py`` (``reference_plugin.py`` here) is dropped in.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest
from core.tests.packaging_support import (
    CORE,
    REFERENCE_PLUGIN,
    Venv,
    check,
    outcomes,
    output,
    run,
)

if TYPE_CHECKING:
    from pathlib import Path

NAME = "tmplcheck"
# The suite's tests that need no hook but describe_plugin, which the template implements.
NEEDS_NO_HOOK = {"test_metadata_and_contract_range", "test_schemas_keep_secrets_secret"}


@pytest.mark.slow
def test_rendered_plugin_fails_clearly_then_passes_with_the_reference(tmp_path: Path) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.install(CORE, "pytest>=8.3", "pytest-asyncio>=0.24")

    target = tmp_path / f"ml-connector-{NAME}"
    check(run([venv.bin("ml-connector"), "plugin", "new", NAME, "--dir", target]))
    venv.install(editable=target)
    report = tmp_path / "report.xml"
    pytest_args = [venv.python, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]

    stubs = run(pytest_args, cwd=target)
    assert stubs.returncode == 1, output(stubs)
    assert f"TODO(ml-connector-{NAME}): implement authenticate" in output(stubs)
    results = outcomes(report)
    assert len(results) > len(NEEDS_NO_HOOK)
    for test, (kind, message) in results.items():
        if test in NEEDS_NO_HOOK:
            assert kind == "passed", f"{test}: {message}"
        else:  # nothing passes vacuously: every other test stops at an unimplemented hook
            assert kind in ("failure", "error"), f"{test} {kind}, expected NotImplementedError"
            assert "NotImplementedError" in message, f"{test}: {message}"
            assert f"TODO(ml-connector-{NAME}): implement " in message, f"{test}: {message}"

    shutil.copyfile(REFERENCE_PLUGIN, target / "src" / f"ml_connector_{NAME}" / "plugin.py")
    implemented = run(pytest_args, cwd=target)
    assert implemented.returncode == 0, output(implemented)
    results = outcomes(report)
    assert {kind for kind, _ in results.values()} == {"passed"}, results

    listed = json.loads(check(run([venv.bin("ml-connector"), "plugins", "list", "--json"])))
    assert [(p["name"], p["status"], p["role"]) for p in listed] == [(NAME, "ok", "source")]
    assert listed[0]["distribution"] == f"ml-connector-{NAME}"
    assert listed[0]["version"] == "0.1.0"
