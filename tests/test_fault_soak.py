"""The fault soak (``bench/fault_soak.py``) in a short form: a few random kills per source.

The full run (100 kills over 1,000 bills per source) is a benchmark; its figures are in
BENCHMARKS.md. Here the script itself runs, as a user runs it, and must print 0 for every
figure and exit 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e_support import SOURCES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCES, reason="no ERP emulator installed"),
]

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "duplicates", "missing", "unexpected", "wrong_amounts", "vendor_duplicates",
    "account_duplicates", "payments_duplicated", "payments_missing", "payments_unexpected",
    "open_intents", "queued", "cursor_past_unwritten", "reruns_not_succeeded",
)  # fmt: skip


def test_random_kills_then_reruns_leave_nothing_doubled_or_lost() -> None:
    soak = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fault_soak.py"), "--bills", "60", "--kills", "8",
         "--seed", "15", "--timeout", "120", "--json"],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in soak.stdout.splitlines() if line.startswith("{")]
    assert [r["source"] for r in lines] == SOURCES, soak.stderr[-3000:]
    for result in lines:
        found = {f: result[f] for f in FIGURES if result[f]}
        why = {k: result.get(k) for k in ("source", "kills", "stuck", "examples", "kept")}
        assert (result["kills"], found) == (8, {}), json.dumps(why, indent=1)[-4000:]
    assert soak.returncode == 0, soak.stderr[-3000:]
