"""The per-connection run lock: one holder at a time, across processes, released on exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_connector.store import ConnectionBusyError, open_store

HOLD_AND_REPORT = """
import sys, time
from ml_connector.store import open_store, ConnectionBusyError
store = open_store(sys.argv[1])
try:
    with store.connection_lock(1, "acme"):
        print("held", flush=True)
except ConnectionBusyError:
    print("busy", flush=True)
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "state.db")


def other_process(location: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", HOLD_AND_REPORT, location],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def test_a_held_lock_refuses_another_process_and_is_released(location: str) -> None:
    with open_store(location) as store:
        with store.connection_lock(1, "acme"):
            assert other_process(location) == "busy"
            with store.connection_lock(2, "globex"):  # other connections are independent
                pass
        assert other_process(location) == "held"


def test_the_same_process_cannot_take_it_twice(location: str) -> None:
    with open_store(location) as store, store.connection_lock(1, "acme"):  # noqa: SIM117 - order
        with pytest.raises(ConnectionBusyError, match="'acme'"), store.connection_lock(1, "acme"):
            pass
