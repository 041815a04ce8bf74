"""Kill -9 mid-run, at many points, then rerun: nothing duplicated, nothing lost.

The child process runs the real engine against file-backed fakes; the fake dies with SIGKILL right
after it applied and persisted a write, i.e. after the other system accepted a create but before
the engine could store its response.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from core.tests.engine.harness import World
from sqlmodel import select

from ml_connector.store import IntentStatus, RunRow, RunStatus, WriteIntentRow
from ml_connector.testing import SeedSpec

ROOT = Path(__file__).resolve().parents[3]
SPEC = SeedSpec(seed=11, vendors=6, payables=60, held_share=0.1)

pytestmark = pytest.mark.slow


def kill_run(folder: Path, side: str, hook: str, on_call: int, mode: str) -> None:
    child = subprocess.run(
        [sys.executable, "-m", "core.tests.engine.crash_child", str(folder), side, hook,
         str(on_call), mode],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


@pytest.mark.parametrize(
    ("hook", "on_call", "mode"),
    [
        ("upsert_vendor", 1, "single"),
        ("upsert_vendor", 4, "single"),
        ("create_bill", 1, "single"),
        ("create_bill", 9, "single"),
        ("create_bill", 33, "single"),
        ("create_bills", 1, "bulk"),
        ("create_bills", 2, "bulk"),
    ],
)
async def test_killed_after_a_sink_write_then_rerun(
    tmp_path: Path, hook: str, on_call: int, mode: str
) -> None:
    world, data = World.create(tmp_path, SPEC, persistent=True)
    world.close()
    kill_run(tmp_path, "sink", hook, on_call, mode)

    world = World.reopen(tmp_path)
    assert world.sink.faults.applied == {}  # a fresh process: counters start again
    summary = await world.sync(bulk=mode == "bulk")
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    assert_no_open_intents(world)
    with world.store.session(read_only=True) as session:
        statuses = [r.status for r in session.exec(select(RunRow).order_by(RunRow.id))]
    assert statuses == [RunStatus.INTERRUPTED.value, RunStatus.SUCCEEDED.value]
    world.close()


def assert_no_open_intents(world: World) -> None:
    with world.store.session(read_only=True) as session:
        query = select(WriteIntentRow).where(WriteIntentRow.status == IntentStatus.OPEN.value)
        assert list(session.exec(query)) == []


@pytest.mark.parametrize("on_call", [1, 4])
async def test_killed_while_recording_payments_then_rerun(tmp_path: Path, on_call: int) -> None:
    world, data = World.create(tmp_path, SPEC, persistent=True)
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = data.ready_ids[:6]
    for source_id in paid:
        # Part payments: a second posting of one would fit the open balance, so only the
        # engine's look-first (find_payment) keeps it from being posted twice.
        world.sink.pay_bill(world.sink.bill_for_payable(source_id)[0].id, Decimal("1.00"))
    world.close()
    kill_run(tmp_path, "erp", "record_payment", on_call, "single")

    world = World.reopen(tmp_path)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    for source_id in data.ready_ids:
        expected = 1 if source_id in paid else 0
        assert len(world.erp.payments_for(source_id)) == expected, source_id
    world.assert_exactly_once(data)
    assert_no_open_intents(world)
    world.close()


async def test_killed_while_creating_a_missing_account_then_rerun(tmp_path: Path) -> None:
    spec = SeedSpec(seed=11, vendors=6, payables=60, held_share=0.1, unmapped_account=True)
    world, data = World.create(tmp_path, spec, persistent=True)
    account = world.erp.accounts[data.unmapped_account_id]
    world.close()
    kill_run(tmp_path, "sink", "create_account", 1, "accounts")

    world = World.reopen(tmp_path)
    summary = await world.sync(create_missing_accounts=True)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert [a.name for a in world.sink.accounts.values()].count(account.name) == 1
    world.assert_exactly_once(data, {*data.ready_ids, *data.unmapped_ids})
    assert_no_open_intents(world)
    world.close()


@pytest.mark.parametrize(("hook", "on_call"), [("upsert_vendor", 1), ("create_bill", 2)])
async def test_killed_while_updating_then_rerun(tmp_path: Path, hook: str, on_call: int) -> None:
    world, data = World.create(tmp_path, SPEC, persistent=True)
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    changed = data.ready_ids[:3]
    vendor = world.erp.vendors[world.erp.payables[changed[0]].vendor_id]
    world.erp.add_vendors([vendor.model_copy(update={"email": "ap-new@example.com"})])
    for source_id in changed:
        world.erp.update_payable(source_id, description=f"changed {source_id}")
    world.close()
    kill_run(tmp_path, "sink", hook, on_call, "single")

    world = World.reopen(tmp_path)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    for source_id in changed:
        [bill] = world.sink.bill_for_payable(source_id)
        assert bill.description == f"changed {source_id}"
    assert [v.email for v in world.sink.find_vendors(vendor.name)] == ["ap-new@example.com"]
    assert_no_open_intents(world)
    world.close()
