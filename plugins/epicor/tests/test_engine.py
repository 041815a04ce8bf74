"""The engine with the Epicor plugin over its emulator and the core's reference sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins.epicor.tests.helpers import emulator, manual_clock
from plugins.epicor.tests.world import ReferenceSink, World
from sqlmodel import select

from ml_connector.emulation import FaultAction
from ml_connector.models import DimensionKind
from ml_connector.store import ExceptionItemRow, ExceptionStatus, RunStatus
from ml_connector_epicor.client import EpicorClient
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
    assert not erp.payments_unfinished() & set(paid), "each payment is posted, not only saved"


async def test_a_lost_posting_answer_is_posted_once_in_the_same_run(world: World) -> None:
    """RunDirect applied, its answer lost: found unfinished, posted again, entered once."""
    erp, sink = world.erp, world.sink
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = sink.pay_bills(2)
    erp.faults.add(FaultAction(503), method="POST", path_contains="APPaymentPostSvc/RunDirect",
                   times=1)  # fmt: skip
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)
    assert not erp.payments_unfinished() & set(paid)


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


# --- Issue #17 ----------------------------------------------------------------------------------


def _open_exceptions(world: World) -> list[ExceptionItemRow]:
    return [e for e in _exceptions(world) if e.status == ExceptionStatus.OPEN.value]


async def _old_post_group(self: EpicorClient, group: str, record: tuple[str, str]) -> None:
    """The posting before issue #17, which Kinetic refuses: a POST to GetNewParameters."""
    data = await self.call("Erp.PROC.APPaymentPostSvc", "GetNewParameters", {}, record)
    await self.call("Erp.PROC.APPaymentPostSvc", "RunDirect", {"ds": data}, record)


async def test_payments_the_old_posting_left_unposted_are_posted_by_the_next_run_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    erp, sink = world.erp, world.sink
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = sink.pay_bills(3)
    with monkeypatch.context() as patch:
        patch.setattr(EpicorClient, "_post_group", _old_post_group)
        broken = await world.sync()
    assert broken.status is RunStatus.SUCCEEDED, broken.error
    assert broken.counts.get("payments_failed") == 3, broken.counts
    assert erp.payments_unfinished() == set(paid)  # saved in Epicor, never posted
    queued = [e for e in _open_exceptions(world) if e.object_type == "payment"]
    assert len(queued) == 3
    assert all("does not support http method 'POST'" in e.reason for e in queued)

    fixed = await world.sync()
    assert fixed.status is RunStatus.SUCCEEDED, fixed.error
    # The failed attempts left their write intents open: the next run's sweep asks find_payment,
    # hears "found, not finished" and lets record_payment post the group (no second payment).
    assert fixed.counts.get("intents_reconciled") == 3, fixed.counts
    assert fixed.counts.get("payments_recorded", 0) == 0, fixed.counts
    assert erp.payments_unfinished() == set()
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)  # never twice
    assert [e for e in _open_exceptions(world) if e.object_type == "payment"] == []
    again = await world.sync()
    assert again.counts.get("payments_recorded", 0) == 0
    assert erp.payments_posted() == posted


async def test_a_posting_that_fails_transiently_is_finished_by_the_next_run(world: World) -> None:
    """RunDirect unavailable after the payment was saved: the core does not take find_payment's
    "found, not finished" as done; the next run's sweep posts the group, once."""
    erp, sink = world.erp, world.sink
    assert (await world.sync()).status is RunStatus.SUCCEEDED
    paid = sink.pay_bills(2)
    erp.faults.add(FaultAction(503), method="POST", path_contains="RunDirect", times=20)
    failed = await world.sync()
    assert failed.counts.get("payments_failed") == 2, failed.counts
    assert erp.payments_unfinished() == set(paid)
    reasons = [e.reason for e in _open_exceptions(world) if e.object_type == "payment"]
    assert len(reasons) == 2
    assert all("503" in r for r in reasons), reasons
    erp.faults.clear()
    fixed = await world.sync()
    assert fixed.counts.get("intents_reconciled") == 2, fixed.counts
    assert erp.payments_unfinished() == set()
    posted = erp.payments_posted()
    assert {key: posted.get(key, 0) for key in paid} == dict.fromkeys(paid, 1)
    assert [e for e in _open_exceptions(world) if e.object_type == "payment"] == []


async def test_a_vendor_on_payment_hold_moves_nothing_and_is_listed_until_lifted(
    world: World,
) -> None:
    erp, sink = world.erp, world.sink
    held_vendor = min(v for v, _ in erp.seeded.eligible)
    erp.books.vendors[held_vendor]["PayHold"] = True
    name = erp.books.vendors[held_vendor]["Name"]
    held = {k for k in erp.seeded.eligible if k[0] == held_vendor}
    assert held
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert sink.bills_by_key() == dict.fromkeys(erp.eligible_bills() - {
        (name, k[1]) for k in held}, 1)  # fmt: skip
    assert name not in {v.name for v in sink.fake.vendors.values()}  # no vendor upsert
    queued = {e.source_id: e for e in _open_exceptions(world) if e.field == "Vendor.PayHold"}
    assert set(queued) == {f"{v}:{i}" for v, i in held}
    vendor_id = erp.books.vendors[held_vendor]["VendorID"]
    assert all(
        e.reason.startswith(f"vendor {vendor_id} is on payment hold in Epicor")
        for e in queued.values()
    )
    again = await world.sync()  # nothing changed: the entries stay, one per bill
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert {e.source_id for e in _open_exceptions(world) if e.field == "Vendor.PayHold"} == set(
        queued
    )

    erp.books.vendors[held_vendor]["PayHold"] = False  # lifted; an operator retries the entries
    with world.store.session() as session:
        for row in session.exec(select(ExceptionItemRow)):
            if row.field == "Vendor.PayHold":
                row.status = ExceptionStatus.RETRYING.value
                session.add(row)
        session.commit()
    lifted = await world.sync()
    assert lifted.status is RunStatus.SUCCEEDED, lifted.error
    assert sink.bills_by_key() == dict.fromkeys(erp.eligible_bills(), 1)
    assert [e for e in _open_exceptions(world) if e.field == "Vendor.PayHold"] == []


async def test_segments_reach_bill_as_the_classifications_they_map_to(tmp_path: Path) -> None:
    erp = emulator(manual_clock())
    erp.seed_demo(bills=12, seed=5)
    sink = ReferenceSink(clock=erp.now)
    departments = {
        code: sink.fake.add_classification(DimensionKind.DEPARTMENT, name).id
        for code, name in (("00", "Company-wide"), ("10", "Administration"),
                           ("20", "Production"), ("30", "Sales"))
    }  # fmt: skip
    sink.fake.add_classification(DimensionKind.LOCATION, "Administration")  # another kind
    world = World.create(tmp_path, erp, sink, settings={"segment_dimensions": {"2": "department"}})
    try:
        summary = await world.sync()
    finally:
        world.close()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert sink.bills_by_key() == dict.fromkeys(erp.eligible_bills(), 1)
    checked = 0
    for bill in sink.fake.bills.values():
        assert bill.source_id is not None
        number, invoice = bill.source_id.split(":", 1)
        expenses = erp.books.invoices[(int(number), invoice)].expenses
        for line in bill.lines:
            if line.source_line_id == "tax":
                account = erp.books.accounts["6900|00"]
            else:
                seq = tuple(int(p) for p in (line.source_line_id or "").split("."))
                (exp,) = [e for e in expenses if (e["InvoiceLine"], e["InvExpSeq"]) == seq]
                account = erp.books.accounts[exp["GLAccount"]]
            department = departments[account["SegValue2"]]
            assert line.classifications == {DimensionKind.DEPARTMENT: department}, line
            checked += 1
    assert checked > 12


async def test_a_segment_value_bill_does_not_have_is_an_exception_naming_the_line(
    tmp_path: Path,
) -> None:
    erp = emulator(manual_clock())
    erp.seed_demo(bills=12, seed=5)
    sink = ReferenceSink(clock=erp.now)
    for name in ("Company-wide", "Administration", "Production"):  # no "Sales" (30) in BILL
        sink.fake.add_classification(DimensionKind.DEPARTMENT, name)
    world = World.create(tmp_path, erp, sink, settings={"segment_dimensions": {"2": "department"}})
    try:
        summary = await world.sync()
        queued = [e for e in _open_exceptions(world) if e.field and "dimensions" in e.field]
    finally:
        world.close()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    sales = {
        f"{v}:{i}"
        for (v, i), inv in erp.books.invoices.items()
        if (v, i) in erp.seeded.eligible
        and any(e["GLAccount"].endswith("|30") for e in inv.expenses)
    }
    assert sales, "the seed codes some lines to department 30"
    assert {e.source_id for e in queued} == sales
    assert all(e.field.endswith("dimensions.department") for e in queued if e.field)
    assert all("department 30 is not mapped" in e.reason for e in queued)
