"""Contract 1.2's context additions: ``saved_session`` and ``report_wait``, wired by the core."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from core.tests.engine.harness import NAME, World, registry
from pydantic import BaseModel

from ml_connector.cli._sync import PlainObserver, ProgressObserver
from ml_connector.connections import open_connection
from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.engine import LimiterPool, SyncEngine, open_engine
from ml_connector.testing import SeedSpec
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from pathlib import Path

WHAT = "a free licence slot"


class Nothing(BaseModel):
    """Stands in for the settings and credentials: report_wait reads none of them."""


def bare_context() -> ConnectionContext:
    return ConnectionContext(
        connection="acme",
        system="acumatica",
        role=Role.SOURCE,
        settings=Nothing(),
        credentials=Nothing(),
    )


class WaitingObserver:
    def __init__(self) -> None:
        self.waits: list[tuple[str, float, float]] = []

    def stage(self, name: str) -> None:
        pass

    def count(self, key: str, n: int = 1) -> None:
        pass

    def wait(self, what: str, waited: float, limit: float) -> None:
        self.waits.append((what, waited, limit))


class OldObserver:
    """An observer written before 1.2: no ``wait``."""

    def stage(self, name: str) -> None:
        pass

    def count(self, key: str, n: int = 1) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path):
    built, _ = World.create(tmp_path / "world", SeedSpec(seed=1, vendors=1, payables=2))
    yield built
    built.close()


def test_report_wait_logs_a_warning_and_tells_the_observer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = bare_context()
    seen: list[tuple[str, float, float]] = []
    ctx.on_wait = lambda what, waited, limit: seen.append((what, waited, limit))
    with caplog.at_level(logging.WARNING, logger="ml_connector"):
        ctx.report_wait(WHAT, 15.0, 300.0)
    assert seen == [(WHAT, 15.0, 300.0)]
    [record] = caplog.records
    assert record.name == "ml_connector"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "connection acme (acumatica source): waiting for a free licence slot: "
        "15 s so far, giving up after 300 s"
    )


def test_report_wait_without_an_observer_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    ctx = bare_context()
    with caplog.at_level(logging.WARNING, logger="ml_connector"):
        ctx.report_wait(WHAT, 0.0, 1.0)
    assert "waiting for a free licence slot" in caplog.text


def test_an_observer_that_fails_does_not_fail_the_wait() -> None:
    ctx = bare_context()

    def broken(what: str, waited: float, limit: float) -> None:
        raise RuntimeError("display gone")

    ctx.on_wait = broken
    ctx.report_wait(WHAT, 0.0, 1.0)  # no error


async def test_the_engine_hands_an_observers_wait_to_both_sides(world: World) -> None:
    observer = WaitingObserver()
    async with open_engine(
        world.store, Vault.from_environment(), world.registry, NAME,
        observer=observer, limiters=LimiterPool(),
    ) as engine:  # fmt: skip
        source, sink = engine.run_context.source.ctx, engine.run_context.sink.ctx
        source.report_wait(WHAT, 1.0, 2.0)
        sink.report_wait("a budget", 3.0, 4.0)
    assert observer.waits == [(WHAT, 1.0, 2.0), ("a budget", 3.0, 4.0)]


async def test_an_observer_without_wait_still_works(world: World) -> None:
    connection = open_connection(world.store, Vault.from_environment(), registry(), NAME)
    try:
        engine = SyncEngine(
            world.store, connection.id, connection.source, connection.sink,
            observer=OldObserver(), limiters=LimiterPool(),
        )  # fmt: skip
        assert engine.run_context.source.ctx.on_wait is None
        engine.run_context.source.ctx.report_wait(WHAT, 0.0, 1.0)
    finally:
        await connection.close()


async def test_each_side_of_a_stored_connection_gets_its_own_saved_session(
    world: World,
) -> None:
    first = open_connection(world.store, Vault.from_environment(), registry(), NAME)
    source, sink = first.source.ctx.saved_session, first.sink.ctx.saved_session
    assert source is not None
    assert sink is not None
    source.save({"cookie": "c1"})
    sink.save({"session_id": "s1"})
    await first.close()  # the reference plugins keep no session: what was saved stays

    second = open_connection(world.store, Vault.from_environment(), registry(), NAME)
    assert second.source.ctx.saved_session is not None
    assert second.sink.ctx.saved_session is not None
    assert second.source.ctx.saved_session.load() == {"cookie": "c1"}
    assert second.sink.ctx.saved_session.load() == {"session_id": "s1"}
    assert "c1" not in repr(second.source.ctx)
    await second.close()


def test_the_plain_observer_prints_the_wait(capsys: pytest.CaptureFixture[str]) -> None:
    PlainObserver("acme").wait(WHAT, 15.0, 300.0)
    assert capsys.readouterr().err == (
        "connection=acme waiting_for='a free licence slot' waited=15s limit=300s\n"
    )


def test_the_progress_observer_shows_the_wait_until_the_run_moves() -> None:
    observer = ProgressObserver("acme")
    observer.stage("accounts")
    observer.wait(WHAT, 15.0, 300.0)
    task = observer._progress.tasks[0]
    assert task.description == (
        "acme: accounts  waiting for a free licence slot: 15 s (gives up after 300 s)"
    )
    observer.stage("payables")
    assert observer._progress.tasks[0].description == "acme: payables"
