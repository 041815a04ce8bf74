"""``ml-connector demo``: every available source, end to end, checked against the emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e_support import SOURCES

from ml_connector.demo import DemoOptions, run_demo
from ml_connector.errors import ConfigurationError


@pytest.mark.parametrize("source", SOURCES)
def test_the_demo_moves_everything_once(source: str) -> None:
    summary = run_demo(DemoOptions(source=source, bills=20, pay=5))
    assert summary["status"] == "succeeded", summary["errors"]
    assert (summary["duplicates"], summary["missing"], summary["unexpected"]) == (0, 0, 0)
    assert summary["bills_held"] > 0  # the seed has bills that must not move ...
    assert summary["held_moved"] == 0  # ... and none of them reached BILL
    assert summary["bills_created"] == summary["bills_eligible"] >= 20
    assert summary["exceptions"] == 1  # the deliberately unmapped account
    assert summary["payments_recorded"] == summary["bills_paid_in_bill"] == 5
    assert (summary["payments_posted_twice"], summary["payments_missing"]) == (0, 0)


@pytest.mark.slow
def test_the_console_command_prints_one_json_object(tmp_path: Path) -> None:
    state = tmp_path / "demo.db"
    result = subprocess.run(
        [sys.executable, "-m", "ml_connector", "demo", "--bills", "10", "--json",
         "--db", str(state)],
        capture_output=True, text=True, timeout=300, check=False, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    for key in ("source", "bills_eligible", "bills_created", "vendors_created", "exceptions",
                "payments_recorded", "duplicates", "missing", "bills_held", "held_moved",
                "seconds"):  # fmt: skip
        assert key in summary
    assert (summary["duplicates"], summary["missing"], summary["held_moved"]) == (0, 0, 0)
    assert state.exists()  # kept where asked, its key beside it
    assert Path(f"{state}.key").exists()


def test_the_demo_never_reuses_state(tmp_path: Path) -> None:
    existing = tmp_path / "old.db"
    existing.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="give a new file"):
        run_demo(DemoOptions(db=str(existing)))
