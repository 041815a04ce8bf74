"""Every ERP emulator -> engine -> BILL emulator -> payments back, through the real plugins."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from tests.e2e_support import SOURCES, Pair, make_emulators

from ml_connector.emulation import FaultAction, serve_in_thread
from ml_connector.store import RunStatus

pytestmark = pytest.mark.skipif(not SOURCES, reason="no ERP emulator installed")


@pytest.fixture(params=SOURCES)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    return Pair.create(tmp_path, request.param)


async def test_first_sync_then_an_unchanged_rerun(pair: Pair) -> None:
    summary = await pair.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    pair.assert_exactly_once()
    unmapped = [e for e in pair.exceptions() if "is not mapped" in e.reason]
    assert unmapped, "the deliberately unmapped account must reach the exception queue"
    assert unmapped[0].field is not None

    writes = pair.bill.log.writes(exclude=("/login", "/logout"))
    again = await pair.sync()
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert pair.bill.log.writes(exclude=("/login", "/logout")) == writes  # no write to BILL
    pair.assert_exactly_once()


async def test_a_bill_changed_after_it_was_sent_is_updated(pair: Pair) -> None:
    await pair.sync()
    changed = sorted(pair.erp.eligible_bills())[0]
    pair.erp.change_bill(changed)
    summary = await pair.sync()
    assert summary.counts.get("bills_updated") == 1, summary.counts
    pair.assert_exactly_once()


async def test_payments_are_recorded_back_exactly_once(pair: Pair) -> None:
    await pair.sync()
    paid = pair.bill.pay_bills(4)
    assert len(paid) == 4
    summary = await pair.sync()
    assert summary.counts.get("payments_recorded") == 4, summary.counts
    await pair.sync()
    posted = pair.erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)


async def test_sessions_expire_on_both_sides_mid_run(pair: Pair) -> None:
    pair.erp.faults.add(FaultAction(401, kind="session"), skip=3)
    pair.bill.faults.add(FaultAction(401, kind="session"), skip=5)
    summary = await pair.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    pair.assert_exactly_once()
    pair.erp.expire_sessions()
    pair.bill.expire_sessions()
    pair.erp.change_bill(sorted(pair.erp.eligible_bills())[1])
    again = await pair.sync()
    assert again.status is RunStatus.SUCCEEDED, again.error
    pair.assert_exactly_once()


async def test_throttle_storms_and_lost_responses(pair: Pair) -> None:
    for emulator in (pair.erp, pair.bill):
        emulator.faults.add(FaultAction(429, kind="throttled", retry_after=0.0), skip=2, times=6)
        emulator.faults.add(FaultAction(503), skip=4, times=3)
    pair.bill.faults.add(FaultAction(504, after_apply=True), method="POST", skip=6, times=3)
    summary = await pair.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    pair.assert_exactly_once()


async def test_interrupted_right_after_bill_accepted_a_create(pair: Pair) -> None:
    pair.bill.faults.add(FaultAction(504, after_apply=True, hang=True), method="POST", skip=8)
    run = asyncio.create_task(pair.sync(bulk=False))
    assert await asyncio.to_thread(pair.bill.faults.hanging.wait, 60), "no create reached BILL"
    run.cancel()  # the process "dies": BILL has the bill, the connector never heard back
    with pytest.raises(asyncio.CancelledError):
        await run
    pair.bill.faults.release()
    summary = await pair.sync(bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    pair.assert_exactly_once()


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
async def test_killed_with_sigkill_mid_run_then_rerun(tmp_path: Path, source: str) -> None:
    erp, bill = make_emulators(source, bills=30)
    bill.faults.add(FaultAction(504, after_apply=True, hang=True), method="POST", skip=10)
    servers = [serve_in_thread(erp), serve_in_thread(bill)]
    try:
        pair = Pair.create(
            tmp_path,
            source,
            urls=(servers[0].root_url, servers[1].root_url),
            emulators=(erp, bill),
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ml_connector", "--db", str(tmp_path / "state.db"),
            "sync", "run", "e2e", "--no-bulk",
            env=os.environ.copy(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            reached = await asyncio.to_thread(bill.faults.hanging.wait, 120)
        finally:
            child.send_signal(signal.SIGKILL)
            output, _ = await child.communicate()
        assert reached, f"no create reached BILL: {output.decode()[-2000:]}"
        assert child.returncode == -signal.SIGKILL
        bill.faults.release()
        summary = await pair.sync(bulk=False)
        assert summary.status is RunStatus.SUCCEEDED, summary.error
        pair.assert_exactly_once()
    finally:
        for server in servers:
            server.stop()
