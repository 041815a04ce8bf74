"""Each distribution builds on its own and installs next to the core with nothing else.

The core wheel (built with ``uv build --package ml-connector``, sdist and wheel) and plugin wheels
go into a fresh virtualenv one after another; ``ml-connector plugins list --json`` must show
exactly what was installed. The first plugin is ``plugins/bill`` when the repository has it,
otherwise a plugin rendered from the template; the second is always a rendered one; the third
declares a contract range this core does not implement and must be listed as incompatible while
the others stay ok.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from core.tests.packaging_support import (
    PLUGINS,
    Venv,
    build_wheel,
    project_name,
    render_plugin,
)

if TYPE_CHECKING:
    from pathlib import Path

INCOMPATIBLE_RANGE = ">=2,<3"


def first_plugin(tmp_path: Path, dist: Path) -> tuple[str, Path]:
    """The BILL plugin's wheel if the repository has it, else a rendered plugin's."""
    bill = PLUGINS / "bill"
    if (bill / "pyproject.toml").is_file():
        return "bill", build_wheel(dist, package=project_name(bill))
    return "tmplfirst", build_wheel(dist, project=render_plugin(tmp_path, "tmplfirst"))


def statuses(listed: list[dict[str, Any]]) -> dict[str, str]:
    return {row["name"]: row["status"] for row in listed}


@pytest.mark.slow
def test_plugins_install_one_by_one_next_to_the_core(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    core_wheel = build_wheel(dist, package="ml-connector")
    assert [p.name for p in dist.glob("ml_connector-*.tar.gz")], "an sdist beside the wheel"
    first, first_wheel = first_plugin(tmp_path, dist)
    second_wheel = build_wheel(dist, project=render_plugin(tmp_path, "tmplsecond"))
    old = render_plugin(tmp_path, "tmplold", contract=INCOMPATIBLE_RANGE)
    old_wheel = build_wheel(dist, project=old)

    venv = Venv.create(tmp_path / "venv")
    venv.install(core_wheel)
    assert venv.plugins() == []

    venv.install(first_wheel)
    listed = venv.plugins()
    assert statuses(listed) == {first: "ok"}, listed

    venv.install(second_wheel)
    listed = venv.plugins()
    assert statuses(listed) == {first: "ok", "tmplsecond": "ok"}, listed
    assert {row["distribution"] for row in listed} == {
        first_wheel.name.split("-")[0].replace("_", "-"),
        "ml-connector-tmplsecond",
    }

    venv.install(old_wheel)
    listed = venv.plugins()
    assert statuses(listed) == {first: "ok", "tmplsecond": "ok", "tmplold": "incompatible"}
    (row,) = [r for r in listed if r["name"] == "tmplold"]
    assert row["contract"] == INCOMPATIBLE_RANGE
    assert "install a release of ml-connector-tmplold that supports contract" in row["error"]
