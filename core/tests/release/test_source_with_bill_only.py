"""Each source plugin installs and works with only the core and the BILL plugin beside it.

The three wheels go into a fresh virtualenv with nothing else; the demo then runs the whole job
there (the ERP's emulator and BILL's on loopback, sync, payments back) and checks itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from core.tests.packaging_support import PLUGINS, Venv, build_wheel, check, project_name, run

if TYPE_CHECKING:
    from pathlib import Path

SOURCES = sorted(
    p.name for p in PLUGINS.iterdir() if p.name != "bill" and (p / "pyproject.toml").is_file()
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PLUGINS / "bill" / "pyproject.toml").is_file(), reason="no BILL"),
]


@pytest.mark.parametrize("source", SOURCES)
def test_a_source_needs_only_the_core_and_bill(tmp_path: Path, source: str) -> None:
    dist = tmp_path / "dist"
    wheels = [
        build_wheel(dist, package="ml-connector"),
        build_wheel(dist, package=project_name(PLUGINS / "bill")),
        build_wheel(dist, package=project_name(PLUGINS / source)),
    ]
    venv = Venv.create(tmp_path / "venv")
    venv.install(*wheels)
    assert {row["name"]: row["status"] for row in venv.plugins()} == {
        "bill": "ok",
        source: "ok",
    }
    command = [venv.bin("ml-connector"), "demo", "--source", source, "--bills", "10", "--json"]
    demo = check(run(command, timeout=300))
    summary = json.loads(demo)
    assert summary["status"] == "succeeded", summary["errors"]
    assert (summary["duplicates"], summary["missing"]) == (0, 0)
    assert summary["payments_recorded"] == summary["bills_paid_in_bill"] > 0
