"""The engine with the Epicor plugin over its emulator and the core's reference sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins.epicor.tests.helpers import emulator, manual_clock
from plugins.epicor.tests.world import ReferenceSink, World
from sqlmodel import select

from ml_connector.emulation import FaultAction
from ml_connector.store import ExceptionItemRow, RunStatus
from ml_connector_epicor.emulator import EpicorEmulator


@pytest.fixture
def erp() -> EpicorEmulator:
    # The emulator's clock starts in the past, so every seeded change is before the run.
    clock = manual_clock()
    emu = emulator(clock)
    emu.seed_demo(bills=30, seed=11)
    return emu


@pytest.fixture
def world(tmp_path: Path, erp: EpicorEmulator) -> Iterator[World]:
    created = World.create(tmp_path, erp, ReferenceSink(clock=erp.now))
    yield created
    created.close()


def _exceptions(world: World) -> list[ExceptionItemRow]:
    with world.store.session(read_only=True) as session:
        return list(session.exec(select(ExceptionItemRow)))


async def test_bills_are_created_once_and_payments_recorded_back_once(world: World) -> None:
    erp, sink = world.erp, world.sink
    first = await world.sync()
    assert first.status is RunStatus.SUCCEEDED, first.error
    eligible = erp.eligible_bills()
    assert sink.bills_by_key() == dict.fromkeys(eligible, 1)
    assert first.counts["bills_created"] == len(eligible) == 30
    # the invoice on the account BILL's chart lacks waits in the exception queue, naming it
    (queued,) = _exceptions(world)
    assert queued.field is not None
    assert queued.field.endswith("account_id")

    reads = ("TokenResource", "GetRows")  # POSTs that write nothing
    writes = erp.log.writes(exclude=reads)
    for key in sorted(erp.seeded.eligible)[:4]:
        erp.books.touch(key)  # saved again in Epicor, nothing BILL shows changed
    again = await world.sync()
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert again.counts.get("bills_created", 0) == 0
    # The engine's fingerprint includes the change time, so a re-save is an (identical) update
    # of the BILL bill rather than no write; see the plugin's README, "Limits".
    touched = again.counts.get("bills_updated", 0) + again.counts.get("bills_unchanged", 0)
    assert touched == 4
    assert erp.log.writes(exclude=reads) == writes  # nothing written to Epicor either

    paid = sink.pay_bills(7)
    third = await world.sync()
    assert third.status is RunStatus.SUCCEEDED, third.error
    assert third.counts["payments_recorded"] == 7
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)
    assert sum(posted.values()) == 7

    fourth = await world.sync()
    assert fourth.status is RunStatus.SUCCEEDED, fourth.error
    assert fourth.counts.get("payments_recorded", 0) == 0
    assert erp.payments_posted() == posted
    assert sink.bills_by_key() == dict.fromkeys(eligible, 1)


async def test_a_token_expiring_mid_run_is_renewed(world: World) -> None:
    erp = world.erp
    # the server reports the token expired while the first page's vendors are read
    erp.faults.add(FaultAction(401, kind="session"), path_contains="/Vendors", times=1)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert world.sink.bills_by_key() == dict.fromkeys(erp.eligible_bills(), 1)
    assert erp.tokens.created == 2


async def test_a_lost_payment_response_is_not_posted_twice(world: World) -> None:
    erp, sink = world.erp, world.sink
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = sink.pay_bills(2)
    erp.faults.add(FaultAction(500, after_apply=True), method="POST",
                   path_contains="PaymentEntrySvc/Update")  # fmt: skip
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)


async def test_occasional_odata_500s_change_nothing(world: World) -> None:
    world.erp.set_odata_500(0.4)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert world.sink.bills_by_key() == dict.fromkeys(world.erp.eligible_bills(), 1)


async def test_a_missing_api_key_fails_the_run_clearly_and_writes_nothing(
    tmp_path: Path, erp: EpicorEmulator
) -> None:
    sink = ReferenceSink()
    world = World.create(tmp_path, erp, sink, credentials=erp.credentials() | {"api_key": " "})
    try:
        summary = await world.sync()
    finally:
        world.close()
    assert summary.status is RunStatus.FAILED
    assert summary.error is not None
    assert "no API key configured (credentials.api_key)" in summary.error
    assert erp.log.records == []
    assert sink.bills_by_key() == {}
    assert sink.fake.vendors == {}
