"""The accounting guards (engine/_guards.py): what a payable must be before it becomes a bill.

Unit tests of :func:`check_payable`, then the engine against the reference ERP and sink: a bad
payable is queued naming its field, before any write, on the listing, on an exception retry and
on a replay, while every good payable arrives.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from core.tests.engine.harness import World
from sqlmodel import select

from ml_connector import hookimpl
from ml_connector.engine._guards import check_payable
from ml_connector.errors import InvalidRecordError
from ml_connector.models import Address, BillDraft, Payable, PayableLine, Vendor
from ml_connector.store import ExceptionItemRow, RunStatus
from ml_connector.testing import ErpLine, SeedData, SeedSpec

# --- check_payable -----------------------------------------------------------------------------

VENDOR = Vendor(source_id="V-1", name="Northwind Supplies")


def payable(*amounts: str, currency: str = "USD", total: str | None = None) -> Payable:
    lines = tuple(
        PayableLine(line_id=str(i + 1), amount=Decimal(a), account_id="6100")
        for i, a in enumerate(amounts)
    )
    return Payable(
        source_id="AP-1",
        document_number="AP-1",
        invoice_number="INV-1",
        vendor=VENDOR,
        invoice_date=date(2025, 2, 1),
        due_date=date(2025, 3, 3),
        currency=currency,
        total=Decimal(total) if total is not None else sum(map(Decimal, amounts), Decimal(0)),
        lines=lines,
        modified_at="2025-02-01T00:00:00Z",  # type: ignore[arg-type]
    )


def refused(item: Payable) -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as raised:
        check_payable(item)
    assert raised.value.record_type == "payable"
    assert raised.value.record_id == item.source_id
    assert raised.value.system is None  # the connector's rule, not a remote system's refusal
    return raised.value


@pytest.mark.parametrize(
    ("amounts", "currency"),
    [
        (("100.00", "28.99"), "USD"),
        (("10.500",), "USD"),  # trailing zeros are exact cents
        (("150.00", "-50.00"), "USD"),  # a discount line on a positive bill
        (("1200",), "JPY"),
        (("1.125", "0.375"), "KWD"),
        (("0.01",), "USD"),
    ],
)
def test_a_good_payable_passes(amounts: tuple[str, ...], currency: str) -> None:
    check_payable(payable(*amounts, currency=currency))


def test_a_negative_total_is_a_credit_not_a_bill() -> None:
    error = refused(payable("-120.00"))
    assert error.field == "total"
    assert "-120.00 USD is negative" in error.reason
    assert "credit memo or debit adjustment" in error.reason
    assert "vendor credit" in error.reason
    assert "does not sync yet" in error.reason


def test_a_zero_total_is_a_zero_document() -> None:
    error = refused(payable("50.00", "-50.00"))
    assert error.field == "total"
    assert "is zero" in error.reason
    assert "vendor credit" in error.reason


def test_the_sign_is_reported_before_the_precision() -> None:
    assert refused(payable("-10.125")).field == "total"


@pytest.mark.parametrize(
    ("amounts", "currency", "field", "said"),
    [
        (
            ("100.00", "10.125"),
            "USD",
            "lines.1.amount",
            "10.125 has 3 decimal places, but USD has 2",
        ),
        (("100.5",), "JPY", "lines.0.amount", "100.5 has 1 decimal places, but JPY has 0"),
        (("1.1255",), "KWD", "lines.0.amount", "1.1255 has 4 decimal places, but KWD has 3"),
    ],
)
def test_an_amount_finer_than_its_currency_is_refused_never_rounded(
    amounts: tuple[str, ...], currency: str, field: str, said: str
) -> None:
    item = payable(*amounts, currency=currency)
    before = item.model_dump()
    error = refused(item)
    assert error.field == field
    assert said in error.reason
    assert "never rounds" in error.reason
    assert item.model_dump() == before  # nothing was changed to make it pass


def test_a_total_finer_than_its_currency_is_refused() -> None:
    # Only an unvalidated payable can get here: validated lines that add up carry the precision.
    good = payable("10.00")
    item = Payable.model_construct(**{**dict(good), "total": Decimal("10.001")})
    error = refused(item)
    assert error.field == "total"
    assert "10.001 has 3 decimal places" in error.reason


def test_lines_that_do_not_add_up_are_refused_even_unvalidated() -> None:
    good = payable("60.00", "40.00")
    item = Payable.model_construct(**{**dict(good), "total": Decimal("110.00")})
    error = refused(item)
    assert error.field == "total"
    assert "total 110.00 USD does not equal the sum of the lines 100.00" in error.reason


def test_the_model_refuses_lines_that_do_not_add_up() -> None:
    # What a source plugin meets first: Payable itself refuses the mismatch.
    with pytest.raises(ValueError, match=r"total 110.00 does not equal the sum of the lines 100"):
        payable("60.00", "40.00", total="110.00")


# --- The engine applies the guards -------------------------------------------------------------

GUARD_VENDOR = Vendor(
    source_id="V-GUARD",
    name="Guarded Credits Ltd",
    address=Address(line1="1 Main St", city="Seattle", state="WA", postal_code="98101"),
)


def exceptions(world: World) -> dict[str, ExceptionItemRow]:
    with world.store.session(read_only=True) as session:
        return {row.source_id: row for row in session.exec(select(ExceptionItemRow))}


class Writes:
    """Spies on the sink's writes (declines them, so the reference sink answers)."""

    def __init__(self) -> None:
        self.vendors: list[str] = []
        self.bills: list[str] = []

    @hookimpl(tryfirst=True)
    def upsert_vendor(self, ctx: object, vendor: Vendor, existing_sink_id: str | None) -> None:
        self.vendors.append(vendor.source_id)

    @hookimpl(tryfirst=True)
    def create_bill(self, ctx: object, draft: BillDraft) -> None:
        self.bills.append(draft.payable.source_id)

    @hookimpl(tryfirst=True)
    def create_bills(self, ctx: object, drafts: list[BillDraft]) -> None:
        self.bills.extend(d.payable.source_id for d in drafts)


#: Each bad payable: its lines, its total, and the field the queue must name.
BAD: dict[str, tuple[tuple[str, ...], str, str]] = {
    "G-CREDIT": (("-120.00",), "-120.00", "total"),
    "G-ZERO": (("50.00", "-50.00"), "0.00", "total"),
    "G-PLACES": (("100.00", "10.125"), "110.125", "lines.1.amount"),
    "G-MISMATCH": (("60.00", "40.00"), "110.00", "total"),
}


def plant(
    world: World, data: SeedData, source_id: str, amounts: tuple[str, ...], total: str
) -> None:
    template = data.payable(data.ready_ids[0])
    account = template.lines[0].account_id
    world.erp.put_payables(
        [
            replace(
                template,
                source_id=source_id,
                document_number=source_id,
                invoice_number=f"INV-{source_id}",
                vendor_id=GUARD_VENDOR.source_id,
                total=Decimal(total),
                lines=[
                    ErpLine(line_id=str(i + 1), amount=Decimal(a), account_id=account)
                    for i, a in enumerate(amounts)
                ],
            )
        ]
    )


@pytest.fixture
def planted(tmp_path: Path) -> tuple[World, SeedData, Writes]:
    world, data = World.create(tmp_path, SeedSpec(seed=5, vendors=6, payables=60))
    world.erp.add_vendors([GUARD_VENDOR])
    for source_id, (amounts, total, _) in BAD.items():
        plant(world, data, source_id, amounts, total)
    writes = Writes()
    world.registry.add_extension(writes, "writes")
    return world, data, writes


def assert_queued(world: World, writes: Writes, attempts: int = 1) -> None:
    queued = exceptions(world)
    for source_id, (_, _, field) in BAD.items():
        entry = queued[source_id]
        assert (entry.status, entry.field, entry.attempts) == ("open", field, attempts), source_id
        assert entry.reason
    assert "credit memo" in queued["G-CREDIT"].reason
    assert "zero" in queued["G-ZERO"].reason
    assert "10.125 has 3 decimal places" in queued["G-PLACES"].reason
    # the reference ERP rejects the mismatch itself, with both numbers
    assert "110.00" in queued["G-MISMATCH"].reason
    assert "100.00" in queued["G-MISMATCH"].reason
    # nothing of them was written: no bill, not even their vendor
    assert not set(BAD) & set(writes.bills)
    assert GUARD_VENDOR.source_id not in writes.vendors
    assert not set(BAD) & set(world.bills_by_payable())
    assert all(v.name != GUARD_VENDOR.name for v in world.sink.vendors.values())


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_bad_payables_are_queued_and_the_good_ones_arrive(
    planted: tuple[World, SeedData, Writes], bulk: bool
) -> None:
    world, data, writes = planted
    summary = await world.sync(bulk=bulk)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    world.assert_exactly_once(data)
    assert set(data.ready_ids) <= set(writes.bills)  # the spy sees the writes
    assert_queued(world, writes)
    assert summary.counts["bills_failed"] == 3  # the guards'; the mismatch is a rejected record
    assert summary.counts["payables_rejected"] == 1


async def test_a_guarded_payable_sent_back_for_retry_is_guarded_again(
    planted: tuple[World, SeedData, Writes],
) -> None:
    world, data, writes = planted
    await world.sync()
    guarded = [s for s in BAD if s != "G-MISMATCH"]
    with world.store.session() as session:
        for source_id in guarded:
            item = exceptions(world)[source_id]
            item.status = "retrying"
            session.add(item)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert summary.counts["exceptions_retried"] == len(guarded)
    queued = exceptions(world)
    for source_id in guarded:
        assert (queued[source_id].status, queued[source_id].attempts) == ("open", 2)
        assert queued[source_id].field == BAD[source_id][2]
    assert not set(BAD) & set(writes.bills)
    world.assert_exactly_once(data)


@pytest.mark.parametrize("source_id", sorted(set(BAD) - {"G-MISMATCH"}))
async def test_a_replayed_payable_is_guarded(
    planted: tuple[World, SeedData, Writes], source_id: str
) -> None:
    world, _, writes = planted
    async with world.engine() as engine:
        counts: dict[str, Any] = await engine.replay_payable(source_id)
    assert counts["bills_failed"] == 1
    entry = exceptions(world)[source_id]
    assert (entry.status, entry.field) == ("open", BAD[source_id][2])
    assert writes.bills == []
    assert writes.vendors == []


async def test_a_replayed_payable_the_source_rejects_is_queued_with_the_reason(
    planted: tuple[World, SeedData, Writes],
) -> None:
    world, _, writes = planted
    async with world.engine() as engine:
        with pytest.raises(InvalidRecordError) as refused:
            await engine.replay_payable("G-MISMATCH")
    entry = exceptions(world)["G-MISMATCH"]
    assert (entry.status, entry.field, entry.reason) == ("open", "total", refused.value.reason)
    assert writes.bills == []


async def test_an_ignored_credit_stays_ignored_until_it_changes(
    planted: tuple[World, SeedData, Writes],
) -> None:
    world, _, writes = planted
    await world.sync()
    with world.store.session() as session:
        item = exceptions(world)["G-CREDIT"]
        item.status = "ignored"
        session.add(item)
    summary = await world.sync(lookback=timedelta(days=3650))
    assert summary.counts["bills_ignored"] == 1
    assert exceptions(world)["G-CREDIT"].status == "ignored"
    assert "G-CREDIT" not in writes.bills


async def test_a_corrected_payable_leaves_the_queue(
    planted: tuple[World, SeedData, Writes],
) -> None:
    world, data, _ = planted
    await world.sync()
    account = data.payable(data.ready_ids[0]).lines[0].account_id
    world.erp.update_payable(
        "G-PLACES",
        total=Decimal("110.13"),
        lines=[
            ErpLine(line_id="1", amount=Decimal("100.00"), account_id=account),
            ErpLine(line_id="2", amount=Decimal("10.13"), account_id=account),
        ],
    )
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert exceptions(world)["G-PLACES"].status == "resolved"
    (bill,) = world.sink.bill_for_payable("G-PLACES")
    assert sum(line.amount for line in bill.lines) == Decimal("110.13")


async def test_a_rejected_payable_sent_back_for_retry_stops_nothing_else(
    planted: tuple[World, SeedData, Writes],
) -> None:
    world, data, _ = planted
    await world.sync()
    with world.store.session() as session:
        item = exceptions(world)["G-MISMATCH"]
        item.status = "retrying"
        session.add(item)
    summary = await world.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    entry = exceptions(world)["G-MISMATCH"]
    assert (entry.status, entry.field, entry.attempts) == ("open", "total", 2)
    world.assert_exactly_once(data)
