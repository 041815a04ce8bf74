"""The cursor rules, against the reference plugins, with the engine's clock pinned.

Each run reads every stream over the half-open window ``[cursor - lookback, run start)`` (from the
beginning on a first run), and moves the stream's cursor to the run's start only once the whole
window went through. So:

- the cursor never moves past the run's start, whatever change times the source holds;
- a record committed late, with a change time inside ``[cursor - lookback, cursor)``, is read by
  the next run;
- a record changed exactly at the window's upper bound is read by the next run, not this one;
- a failed or killed run leaves the cursors where they were;
- keyset paging over ``(change time, id)`` loses and repeats nothing at a page boundary, even
  between records with equal change times, and a record that changes while its window is being
  read is read again, never skipped.

A spy extension wraps both listing hooks and records every call (window, page token) and what
each page returned.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from core.tests.engine.harness import World
from sqlmodel import select

from ml_connector import hookimpl
from ml_connector.engine import RunSummary
from ml_connector.models import ChangeWindow, PayablePage, PaymentPage
from ml_connector.store import CursorRow, RunRow, RunStatus
from ml_connector.testing import (
    ErpPayable,
    ErpStatus,
    FakeErp,
    FaultKind,
    ManualClock,
    SeedData,
    SeedSpec,
)

PAYABLES, PAYMENTS = "payables", "payments"

#: The seed's change times fall in [T0, T0 + 1 day); the first run starts well after them.
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=2)
T2 = T1 + timedelta(hours=1)
T3 = T2 + timedelta(hours=1)
LOOKBACK = timedelta(minutes=10)
TICK = timedelta(microseconds=1)


# --- The spy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One listing call: which stream, the window and token asked for, and what came back."""

    stream: str
    window: ChangeWindow
    token: str | None
    ids: tuple[str, ...]
    rejected: tuple[str, ...]
    next_token: str | None


@dataclass
class WindowSpy:
    """An extension that wraps ``list_changed_payables`` and ``list_changed_payments``.

    Attributes:
        calls: Every answered call, in order.
        after_payables_page: Awaited with each payables page before the engine gets it (so a test
            can change the source between two pages of one window).
    """

    calls: list[Call] = field(default_factory=list)
    after_payables_page: Callable[[PayablePage], Awaitable[None]] | None = None

    @hookimpl(wrapper=True)
    def list_changed_payables(
        self, ctx: object, window: ChangeWindow, page_token: str | None
    ) -> Any:
        inner: Awaitable[PayablePage] = yield

        async def spied() -> PayablePage:
            page = await inner
            self.calls.append(
                Call(
                    PAYABLES,
                    window,
                    page_token,
                    tuple(p.source_id for p in page.items),
                    tuple(r.record_id or "" for r in page.rejected),
                    page.next_page_token,
                )
            )
            if self.after_payables_page is not None:
                await self.after_payables_page(page)
            return page

        return spied()

    @hookimpl(wrapper=True)
    def list_changed_payments(
        self, ctx: object, window: ChangeWindow, page_token: str | None
    ) -> Any:
        inner: Awaitable[PaymentPage] = yield

        async def spied() -> PaymentPage:
            page = await inner
            self.calls.append(
                Call(
                    PAYMENTS,
                    window,
                    page_token,
                    tuple(p.sink_id for p in page.items),
                    (),
                    page.next_page_token,
                )
            )
            return page

        return spied()

    def take(self) -> list[Call]:
        """The calls since the last ``take``."""
        calls, self.calls = self.calls, []
        return calls


def windows(calls: list[Call], stream: str) -> set[ChangeWindow]:
    return {c.window for c in calls if c.stream == stream}


def read_ids(calls: list[Call], stream: str = PAYABLES) -> list[str]:
    """Every record id the stream's pages returned, in order, valid or rejected."""
    return [i for c in calls if c.stream == stream for i in (*c.ids, *c.rejected)]


# --- The world ---------------------------------------------------------------------------------


@dataclass
class Setup:
    world: World
    data: SeedData
    spy: WindowSpy

    async def sync(self, at: datetime, **options: Any) -> RunSummary:
        """One run whose clock reads ``at``."""
        options.setdefault("lookback", LOOKBACK)
        return await self.world.sync(now=lambda: at, **options)

    def cursor(self, stream: str) -> datetime | None:
        """The stream's stored cursor (``None``: no row, or from the beginning)."""
        with self.world.store.session(read_only=True) as session:
            rows = list(session.exec(select(CursorRow).where(CursorRow.stream == stream)))
        assert len(rows) <= 1
        return rows[0].position if rows else None

    def last_run(self) -> RunRow:
        with self.world.store.session(read_only=True) as session:
            return max(session.exec(select(RunRow)), key=lambda r: r.id or 0)

    def put(self, *payables: ErpPayable) -> None:
        self.world.erp.put_payables(payables)

    def new_payable(self, tag: str, modified_at: datetime) -> ErpPayable:
        """An approved payable like a ready seeded one, under a new id and invoice number."""
        template = self.data.payable(self.data.ready_ids[0])
        return replace(
            template,
            source_id=f"LATE-{tag}",
            document_number=f"LATE-{tag}",
            invoice_number=f"INV-LATE-{tag}",
            lines=list(template.lines),
            modified_at=modified_at,
        )

    def in_sink(self, source_id: str) -> int:
        return len(self.world.sink.bill_for_payable(source_id))


_OPENED: list[World] = []


@pytest.fixture(autouse=True)
def _close_worlds() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def make_setup(folder: Path, *, page_size: int = 25, payables: int = 12) -> Setup:
    """The harness's world, with the reference ERP's page size chosen by the test."""
    spec = SeedSpec(seed=7, vendors=3, payables=payables, start=T0, span=timedelta(days=1))
    # Payments get exact, distinct change times from the sink's manual clock.
    world, data = World.create(
        folder, spec, page_size=page_size, sink_clock=ManualClock(T0, tick=TICK)
    )
    _OPENED.append(world)
    spy = WindowSpy()
    world.registry.add_extension(spy, "window-spy")
    return Setup(world, data, spy)


def approved_ids(erp: FakeErp, before: datetime) -> set[str]:
    """The ERP's approved payables changed before ``before``: what a window up to it must read."""
    return {
        p.source_id
        for p in erp.payables.values()
        if p.status is ErpStatus.APPROVED and p.modified_at < before
    }


# --- The window each run reads -----------------------------------------------------------------


async def test_a_first_run_reads_everything_before_its_start(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, page_size=5)
    summary = await setup.sync(T1)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    calls = setup.spy.take()
    full = ChangeWindow(since=None, until=T1)
    assert windows(calls, PAYABLES) == {full}  # every page of the run asks the same window
    assert windows(calls, PAYMENTS) == {full}
    assert len([c for c in calls if c.stream == PAYABLES]) > 1, "expected several pages"
    assert sorted(read_ids(calls)) == sorted(approved_ids(setup.world.erp, T1))
    assert setup.cursor(PAYABLES) == setup.cursor(PAYMENTS) == T1


async def test_each_window_starts_lookback_before_the_cursor_and_ends_at_the_run_start(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path)
    await setup.sync(T1)
    setup.spy.take()
    summary = await setup.sync(T2)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    calls = setup.spy.take()
    expected = ChangeWindow(since=T1 - LOOKBACK, until=T2)
    assert windows(calls, PAYABLES) == windows(calls, PAYMENTS) == {expected}
    assert setup.cursor(PAYABLES) == setup.cursor(PAYMENTS) == T2

    # The lookback is the run's option, not a stored one.
    await setup.sync(T3, lookback=timedelta(hours=2))
    calls = setup.spy.take()
    assert windows(calls, PAYABLES) == {ChangeWindow(since=T2 - timedelta(hours=2), until=T3)}


async def test_a_window_never_starts_after_it_ends(tmp_path: Path) -> None:
    """A clock that went back behind ``cursor - lookback`` reads an empty window, not a bad one."""
    setup = make_setup(tmp_path)
    await setup.sync(T2)
    setup.spy.take()
    earlier = T1  # an hour before the cursor, more than the lookback
    summary = await setup.sync(earlier)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    calls = setup.spy.take()
    assert windows(calls, PAYABLES) == {ChangeWindow(since=earlier, until=earlier)}
    assert read_ids(calls) == []
    # The cursor follows the run's start, back too: the next window re-reads, which costs no
    # write, rather than skipping anything.
    assert setup.cursor(PAYABLES) == earlier


# --- Never past the run's start ----------------------------------------------------------------


async def test_the_cursor_never_moves_past_the_run_start(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    ahead = setup.new_payable("ahead", T1 + timedelta(days=1))  # the ERP's clock runs ahead
    setup.put(ahead)
    await setup.sync(T1)
    assert setup.cursor(PAYABLES) == T1  # not the newest change time the source holds
    assert ahead.source_id not in read_ids(setup.spy.take())
    assert setup.in_sink(ahead.source_id) == 0

    await setup.sync(T2)  # still before its change time: still not read
    assert ahead.source_id not in read_ids(setup.spy.take())
    assert setup.cursor(PAYABLES) == T2

    later = T1 + timedelta(days=2)
    await setup.sync(later)
    assert ahead.source_id in read_ids(setup.spy.take())
    assert setup.in_sink(ahead.source_id) == 1
    assert setup.cursor(PAYABLES) == later


async def test_a_record_changed_during_the_run_after_its_start_waits_for_the_next_run(
    tmp_path: Path,
) -> None:
    """Stamped after the run started, it is outside this run's window, and the next reads it."""
    setup = make_setup(tmp_path, page_size=3)
    during = setup.new_payable("during", T1 + timedelta(seconds=1))

    async def commit_during_the_run(page: PayablePage) -> None:
        if during.source_id not in setup.world.erp.payables:
            setup.put(during)

    setup.spy.after_payables_page = commit_during_the_run
    await setup.sync(T1)
    assert during.source_id not in read_ids(setup.spy.take())
    assert setup.cursor(PAYABLES) == T1
    await setup.sync(T2)
    assert during.source_id in read_ids(setup.spy.take())
    assert setup.in_sink(during.source_id) == 1


async def test_a_record_at_the_window_upper_bound_is_read_next_run_not_this_one(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path)
    at_bound = setup.new_payable("bound", T1)
    just_before = setup.new_payable("before", T1 - TICK)
    setup.put(at_bound, just_before)
    await setup.sync(T1)
    first = read_ids(setup.spy.take())
    assert just_before.source_id in first
    assert at_bound.source_id not in first
    assert setup.in_sink(at_bound.source_id) == 0
    assert setup.in_sink(just_before.source_id) == 1

    await setup.sync(T2)
    second = read_ids(setup.spy.take())
    assert at_bound.source_id in second
    assert setup.in_sink(at_bound.source_id) == 1
    assert setup.in_sink(just_before.source_id) == 1


# --- The lookback ------------------------------------------------------------------------------


async def test_a_late_commit_inside_the_lookback_is_picked_up_by_the_next_run(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path)
    await setup.sync(T1)
    setup.spy.take()
    # Committed after the first run read its window, with change times from before its start
    # (a long transaction, or the ERP's clock behind ours).
    late = setup.new_payable("late", T1 - LOOKBACK + TICK)
    at_edge = setup.new_payable("edge", T1 - LOOKBACK)
    too_late = setup.new_payable("too-late", T1 - LOOKBACK - TICK)
    setup.put(late, at_edge, too_late)

    summary = await setup.sync(T2)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    second = read_ids(setup.spy.take())
    assert late.source_id in second
    assert at_edge.source_id in second  # the window's lower bound is inclusive
    assert setup.in_sink(late.source_id) == setup.in_sink(at_edge.source_id) == 1
    # The lookback is the tolerance: a commit later than that is not seen by the window
    # (only a reset of the cursor or a replay brings it).
    assert too_late.source_id not in second
    assert setup.in_sink(too_late.source_id) == 0


async def test_records_read_again_in_the_lookback_cost_no_write(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    recent = setup.new_payable("recent", T1 - timedelta(minutes=1))
    setup.put(recent)
    await setup.sync(T1)
    assert setup.in_sink(recent.source_id) == 1
    setup.spy.take()
    setup.world.sink.faults.reset_counters()

    summary = await setup.sync(T2)
    assert read_ids(setup.spy.take()) == [recent.source_id]
    assert summary.counts.get("bills_unchanged") == 1, summary.counts
    writes = ("upsert_vendor", "create_bill", "create_bills", "update_bill")
    assert setup.world.sink.faults.total_calls(writes) == 0
    assert setup.in_sink(recent.source_id) == 1


# --- Failed and killed runs --------------------------------------------------------------------


async def test_a_failed_first_run_leaves_no_cursor(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    setup.world.sink.faults.fail("create_bill", FaultKind.AUTHENTICATION, on_call=2)
    failed = await setup.sync(T1, bulk=False)
    assert failed.status is RunStatus.FAILED
    assert setup.cursor(PAYABLES) is None
    assert setup.cursor(PAYMENTS) is None
    setup.spy.take()
    setup.world.sink.faults.clear()

    summary = await setup.sync(T2, bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert windows(setup.spy.take(), PAYABLES) == {ChangeWindow(since=None, until=T2)}
    setup.world.assert_exactly_once(setup.data)


async def test_a_failed_run_leaves_the_cursors_where_they_were(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    await setup.sync(T1)
    new = [setup.new_payable(str(n), T1 + timedelta(minutes=n)) for n in range(1, 5)]
    setup.put(*new)
    setup.world.sink.faults.fail("create_bill", FaultKind.AUTHENTICATION, on_call=2)
    failed = await setup.sync(T2, bulk=False)
    assert failed.status is RunStatus.FAILED
    assert setup.cursor(PAYABLES) == setup.cursor(PAYMENTS) == T1
    setup.spy.take()
    setup.world.sink.faults.clear()

    summary = await setup.sync(T3, bulk=False)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert windows(setup.spy.take(), PAYABLES) == {ChangeWindow(since=T1 - LOOKBACK, until=T3)}
    assert [setup.in_sink(p.source_id) for p in new] == [1, 1, 1, 1]
    assert setup.cursor(PAYABLES) == setup.cursor(PAYMENTS) == T3


async def test_a_failure_in_the_payments_stage_leaves_only_the_payments_cursor(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path)
    await setup.sync(T1)
    bill = setup.world.sink.bill_for_payable(setup.data.ready_ids[0])[0]
    setup.world.sink.clock = ManualClock(T1 + timedelta(minutes=5))
    payment = setup.world.sink.pay_bill(bill.id)
    setup.world.sink.faults.fail("list_changed_payments", FaultKind.AUTHENTICATION)
    failed = await setup.sync(T2)
    assert failed.status is RunStatus.FAILED
    assert setup.cursor(PAYABLES) == T2  # its whole window went through
    assert setup.cursor(PAYMENTS) == T1
    setup.spy.take()
    setup.world.sink.faults.clear()

    summary = await setup.sync(T3)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    calls = setup.spy.take()
    assert windows(calls, PAYMENTS) == {ChangeWindow(since=T1 - LOOKBACK, until=T3)}
    assert payment.id in read_ids(calls, PAYMENTS)
    assert len(setup.world.erp.payments_for(setup.data.ready_ids[0])) == 1


async def test_a_killed_run_leaves_the_cursors_where_they_were(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, page_size=3)
    await setup.sync(T1)
    new = [setup.new_payable(str(n), T1 + timedelta(minutes=n)) for n in range(1, 8)]
    setup.put(*new)
    setup.spy.take()
    reached = asyncio.Event()

    async def hang_on_the_second_page(page: PayablePage) -> None:
        if len([c for c in setup.spy.calls if c.stream == PAYABLES]) == 2:
            reached.set()
            await asyncio.Event().wait()  # until cancelled

    setup.spy.after_payables_page = hang_on_the_second_page
    run = asyncio.create_task(setup.sync(T2))
    waiting = asyncio.create_task(reached.wait())
    await asyncio.wait({run, waiting}, return_when=asyncio.FIRST_COMPLETED)
    assert not run.done(), "the run ended before its second page"
    run.cancel()  # the process dies mid-window, the first page recorded
    with pytest.raises(asyncio.CancelledError):
        await run
    assert setup.cursor(PAYABLES) == setup.cursor(PAYMENTS) == T1
    assert setup.last_run().status == RunStatus.INTERRUPTED.value

    setup.spy.after_payables_page = None
    setup.spy.take()
    summary = await setup.sync(T3)
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    assert windows(setup.spy.take(), PAYABLES) == {ChangeWindow(since=T1 - LOOKBACK, until=T3)}
    assert [setup.in_sink(p.source_id) for p in new] == [1] * len(new)
    assert setup.world.sink.duplicate_bills() == {}


# --- Page boundaries ---------------------------------------------------------------------------


async def test_a_page_boundary_between_equal_change_times_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path, page_size=3, payables=30)
    erp = setup.world.erp
    # Every five payables (in id order, all statuses) share one change time, so groups of equal
    # times straddle the boundaries of pages of three; held ones are passed over in a page.
    ordered = sorted(erp.payables.values(), key=lambda p: p.source_id)
    setup.put(
        *(replace(p, modified_at=T0 + timedelta(minutes=i // 5)) for i, p in enumerate(ordered))
    )
    # The first window ends inside the data, the second starts exactly at an equal-time group
    # (the cursor minus the lookback), so both ends of a window meet equal times too.
    group = T0 + timedelta(minutes=2)
    first_run, lookback = group + timedelta(seconds=30), timedelta(seconds=30)
    pages: list[tuple[str, ...]] = []
    for at, since in ((first_run, None), (T1, group)):
        await setup.sync(at, lookback=lookback)
        calls = [c for c in setup.spy.take() if c.stream == PAYABLES]
        assert {c.window for c in calls} == {ChangeWindow(since=since, until=at)}
        ids = read_ids(calls)
        assert len(ids) == len(set(ids)), "a record was read twice"
        expected = {
            i
            for i in approved_ids(erp, at)
            if since is None or erp.payables[i].modified_at >= since
        }
        assert set(ids) == expected, "a record was lost"
        run_pages = [(*c.ids, *c.rejected) for c in calls]
        assert all(len(page) == 3 for page in run_pages[:-1])
        pages += run_pages
    straddling = [
        (before[-1], after[0])
        for before, after in itertools.pairwise(pages)
        if before
        and after
        and erp.payables[before[-1]].modified_at == erp.payables[after[0]].modified_at
    ]
    assert straddling, "no page boundary fell between two equal change times"
    setup.world.assert_exactly_once(setup.data)


async def test_a_record_changed_while_its_window_is_read_is_not_skipped(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, page_size=3, payables=30)
    erp = setup.world.erp
    moved: dict[str, datetime] = {}

    async def change_records_between_pages(page: PayablePage) -> None:
        if moved:
            return
        read = {p.source_id for p in page.items}
        unread = sorted(
            approved_ids(erp, T1) - read, key=lambda i: (erp.payables[i].modified_at, i)
        )
        # One already read moves later in the window, one not yet read moves later in the
        # window, and one not yet read moves past the window's end (the run's start).
        changes = {
            page.items[0].source_id: T1 - timedelta(minutes=2),
            unread[0]: T1 - timedelta(minutes=1),
            unread[1]: T1 + timedelta(minutes=1),
        }
        for source_id, when in changes.items():
            erp.update_payable(source_id, modified_at=when, description=f"changed {when}")
        moved.update(changes)

    setup.spy.after_payables_page = change_records_between_pages
    await setup.sync(T1)
    ids = read_ids(setup.spy.take())
    first, again_in_window, past_the_end = moved
    assert ids.count(first) == 2  # read, then again at its new change time
    assert ids.count(again_in_window) == 1  # read once, at its new change time
    assert past_the_end not in ids  # its change time is outside this window
    assert setup.cursor(PAYABLES) == T1
    assert setup.in_sink(first) == setup.in_sink(again_in_window) == 1

    setup.spy.after_payables_page = None
    await setup.sync(T2)
    assert past_the_end in read_ids(setup.spy.take())
    assert setup.in_sink(past_the_end) == 1
    setup.world.assert_exactly_once(setup.data)
    assert all(
        "changed" in (setup.world.sink.bill_for_payable(i)[0].description or "") for i in moved
    )


# --- Payments follow the same rules -------------------------------------------------------------


async def test_a_payment_at_the_window_upper_bound_is_recorded_next_run(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    await setup.sync(T1)
    sink = setup.world.sink
    bills = [sink.bill_for_payable(i)[0] for i in setup.data.ready_ids[:2]]
    sink.clock = ManualClock(T2 - TICK)
    before = sink.pay_bill(bills[0].id)
    sink.clock = ManualClock(T2)
    at_bound = sink.pay_bill(bills[1].id)
    setup.spy.take()

    await setup.sync(T2)
    read = read_ids(setup.spy.take(), PAYMENTS)
    assert before.id in read
    assert at_bound.id not in read
    assert len(setup.world.erp.payments_for(setup.data.ready_ids[0])) == 1
    assert setup.world.erp.payments_for(setup.data.ready_ids[1]) == []
    assert setup.cursor(PAYMENTS) == T2

    await setup.sync(T3)
    assert at_bound.id in read_ids(setup.spy.take(), PAYMENTS)
    assert len(setup.world.erp.payments_for(setup.data.ready_ids[1])) == 1
    assert len(setup.world.erp.payments_for(setup.data.ready_ids[0])) == 1
