"""The event loop runs go on: uvloop where installed, asyncio's own on request."""

import asyncio
import gc
import sys

import pytest

from ml_connector.engine import run_async
from ml_connector.engine._loop import LOOP_VARIABLE


async def loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not exist on Windows")
def test_runs_go_on_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert run_async(loop_module()).startswith("uvloop")


def test_asyncios_own_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_VARIABLE, "asyncio")
    assert run_async(loop_module()).startswith("asyncio")


def test_an_error_comes_out_as_from_asyncio_run() -> None:
    async def fail() -> None:
        raise LookupError("no such record")

    with pytest.raises(LookupError, match="no such record"):
        run_async(fail())


def test_the_objects_alive_at_the_start_wait_out_the_run_outside_the_collector() -> None:
    assert gc.get_freeze_count() == 0

    async def frozen() -> int:
        return gc.get_freeze_count()

    assert run_async(frozen()) > 0
    assert gc.get_freeze_count() == 0
