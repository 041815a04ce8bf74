"""The sink template round trip, as CI runs it: render, install, fail clearly, implement, pass.

As ``test_template.py`` does for the source template: the core is installed from ``core/`` into
a fresh virtualenv, whose own ``ml-connector plugin new --role sink`` renders the plugin (so the
sink template ships in the wheel). The rendered tests must fail on the unimplemented hooks
(naming them) and pass once the reference ``plugin.py`` (``reference_sink_plugin.py`` here) is
dropped in; then the plugin is lint-clean and strictly typed under its own ``pyproject.toml``,
``plugins list`` shows it as a sink, and ``ml-connector emulate`` serves its emulator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from core.tests.packaging_support import (
    CORE,
    Venv,
    check,
    clean_env,
    outcomes,
    output,
    run,
)

NAME = "sinkcheck"
REFERENCE_SINK_PLUGIN = Path(__file__).resolve().parent / "reference_sink_plugin.py"
# The suite's tests that need no hook but describe_plugin, which the template implements.
NEEDS_NO_HOOK = {
    "test_metadata_and_contract_range",
    "test_schemas_keep_secrets_secret",
    "test_limits_are_declared",
}
# Capability tests the suite skips: the template declares no capability.
NOT_DECLARED = {"test_bulk_is_all_or_nothing", "test_webhooks_are_verified"}


@pytest.mark.slow
def test_rendered_sink_fails_clearly_then_passes_with_the_reference(tmp_path: Path) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.install(CORE, "pytest>=8.3", "pytest-asyncio>=0.24", "ruff>=0.8", "mypy>=1.13")

    target = tmp_path / f"ml-connector-{NAME}"
    new = [venv.bin("ml-connector"), "plugin", "new", NAME, "--role", "sink", "--dir", target]
    check(run(new))
    venv.install(editable=target)
    report = tmp_path / "report.xml"
    pytest_args = [venv.python, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]

    stubs = run(pytest_args, cwd=target)
    assert stubs.returncode == 1, output(stubs)
    assert f"TODO(ml-connector-{NAME}): implement authenticate" in output(stubs)
    results = outcomes(report)
    assert set(results) > NEEDS_NO_HOOK | NOT_DECLARED
    for test, (kind, message) in results.items():
        if test in NEEDS_NO_HOOK:
            assert kind == "passed", f"{test}: {message}"
        else:  # nothing passes vacuously: every other test stops at an unimplemented hook
            assert kind in ("failure", "error"), f"{test} {kind}, expected NotImplementedError"
            assert "NotImplementedError" in message, f"{test}: {message}"
            assert f"TODO(ml-connector-{NAME}): implement " in message, f"{test}: {message}"

    shutil.copyfile(REFERENCE_SINK_PLUGIN, target / "src" / f"ml_connector_{NAME}" / "plugin.py")
    implemented = run(pytest_args, cwd=target)
    assert implemented.returncode == 0, output(implemented)
    results = outcomes(report)
    skipped = {test for test, (kind, _) in results.items() if kind == "skipped"}
    assert skipped == NOT_DECLARED, results
    assert {kind for test, (kind, _) in results.items() if test not in skipped} == {"passed"}

    # lint-clean and strictly typed as it stands, under its own settings (pyproject.toml)
    check(run([venv.python, "-m", "ruff", "check", "--no-cache", "."], cwd=target))
    check(run([venv.python, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=target))
    mypy = run([venv.python, "-m", "mypy", "--cache-dir", tmp_path / ".mypy_cache"], cwd=target)
    assert mypy.returncode == 0, output(mypy)
    assert "Success: no issues found in 6 source files" in mypy.stdout

    listed = venv.plugins()
    assert [(p["name"], p["status"], p["role"]) for p in listed] == [(NAME, "ok", "sink")]
    assert (listed[0]["distribution"], listed[0]["version"]) == (f"ml-connector-{NAME}", "0.1.0")

    _emulate_serves_the_example_api(venv)


def _emulate_serves_the_example_api(venv: Venv) -> None:
    """``ml-connector emulate NAME`` prints settings a client signs in with, on loopback."""
    server = subprocess.Popen(
        [str(venv.bin("ml-connector")), "emulate", NAME],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        start = json.loads(server.stdout.readline())
        settings, credentials = start["settings"], start["credentials"]
        assert settings["base_url"] == start["base_url"]
        with httpx.Client(base_url=start["base_url"] + "/", timeout=10) as http:
            assert http.get("organization").json()["error"]["code"] == "session_expired"
            signed_in = http.post(
                "session", json={**credentials, "organization_id": settings["organization_id"]}
            )
            assert signed_in.status_code == 200, signed_in.text
            session = {"X-Session-Id": signed_in.json()["session_id"]}
            organization = http.get("organization", headers=session).json()
            assert organization["id"] == settings["organization_id"]
            assert http.get("accounts", headers=session).json()["data"]
    finally:
        server.terminate()
        server.communicate(timeout=30)
