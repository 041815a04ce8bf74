"""The ledger's writes on each supported database (the per-record paths are Core statements)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import select

from ml_connector.engine import _statements as statements
from ml_connector.engine._ledger import AuditRecord, Ledger
from ml_connector.store import (
    AuditEventRow,
    ExceptionItemRow,
    IntentStatus,
    RecordLinkRow,
    RunStatus,
    WriteIntentRow,
    WriteTransaction,
)

if TYPE_CHECKING:
    from core.tests.conftest import SlowCommits

    from ml_connector.store import Store


@pytest.fixture
def ledger(store: Store) -> Ledger:
    connection = store.add_connection(
        "acme",
        source_system="erp",
        sink_system="sink",
        source_credentials=b"sealed",
        sink_credentials=b"sealed",
    )
    assert connection.id is not None
    ledger = Ledger(store, connection.id, plugin_versions={"erp": "1.2.0"})
    ledger.start_run()
    return ledger


def _rows(store: Store, model: type) -> list:
    with store.session(read_only=True) as session:
        return list(session.exec(select(model)))


def _created(source_id: str, sink_id: str) -> AuditRecord:
    return AuditRecord("bill", "created", "ok", source_id, sink_id)


async def test_an_intent_begun_twice_is_one_row_counting_both_attempts(ledger: Ledger) -> None:
    await ledger.begin_intents("bill", [("B1", "v1"), ("B2", "v1")])
    await ledger.begin_intents("bill", [("B1", "v1")])

    intents = {row.source_id: row for row in _rows(ledger.store, WriteIntentRow)}
    assert {k: (r.status, r.attempts) for k, r in intents.items()} == {
        "B1": ("open", 2),
        "B2": ("open", 1),
    }
    assert sorted(i.source_id for i in ledger.open_intents()) == ["B1", "B2"]


async def test_complete_links_closes_the_intent_and_audits(ledger: Ledger) -> None:
    await ledger.begin_intents("bill", [("B1", "v1")])
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    ledger.flush()

    (intent,) = _rows(ledger.store, WriteIntentRow)
    assert (intent.status, intent.sink_id) == (IntentStatus.DONE.value, "00n1")
    (link,) = _rows(ledger.store, RecordLinkRow)
    assert (link.source_id, link.sink_id, link.fingerprint) == ("B1", "00n1", "fp1")
    (event,) = _rows(ledger.store, AuditEventRow)
    assert (event.action, event.source_id, event.sink_id) == ("created", "B1", "00n1")
    assert event.run_id == ledger.run_id
    assert event.plugin_versions == {"erp": "1.2.0"}
    assert event.at.tzinfo is not None


async def test_a_completion_waits_for_the_next_transaction(ledger: Ledger) -> None:
    await ledger.begin_intents("bill", [("B1", "v1"), ("B2", "v1")])
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    assert _rows(ledger.store, RecordLinkRow) == []

    # The next intent is committed together with the completion before it.
    await ledger.begin_intents("bill", [("B3", "v1")])

    assert [r.source_id for r in _rows(ledger.store, RecordLinkRow)] == ["B1"]
    statuses = {r.source_id: r.status for r in _rows(ledger.store, WriteIntentRow)}
    assert statuses == {"B1": "done", "B2": "open", "B3": "open"}


@pytest.mark.parametrize(
    "read",
    [
        lambda ledger: ledger.link("bill", "B1"),
        lambda ledger: ledger.link_by_sink_id("bill", "00n1"),
        lambda ledger: ledger.open_intent("bill", "B1"),
        lambda ledger: ledger.open_intents(),
        lambda ledger: ledger.known("bill", ["B1"]),
        lambda ledger: ledger.retrying_exceptions(),
    ],
    ids=["link", "link_by_sink_id", "open_intent", "open_intents", "known", "retrying"],
)
async def test_every_read_sees_the_waiting_completions(ledger: Ledger, read: Any) -> None:
    await ledger.begin_intents("bill", [("B1", "v1")])
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))

    read(ledger)

    (link,) = _rows(ledger.store, RecordLinkRow)
    assert link.sink_id == "00n1"
    assert ledger.open_intent("bill", "B1") is None


def test_the_cursor_moves_in_the_same_transaction_as_the_waiting_completions(
    ledger: Ledger,
) -> None:
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    ledger.set_cursor("payables", datetime(2026, 11, 1, tzinfo=UTC))

    assert [r.source_id for r in _rows(ledger.store, RecordLinkRow)] == ["B1"]


def test_completions_are_written_on_their_own_when_many_wait(ledger: Ledger) -> None:
    for n in range(200):
        ledger.complete("bill", f"B{n}", f"00n{n}", "fp", _created(f"B{n}", f"00n{n}"))

    written = len(_rows(ledger.store, RecordLinkRow))
    assert 0 < written < 200
    ledger.finish_run(RunStatus.SUCCEEDED, {}, None)
    assert len(_rows(ledger.store, RecordLinkRow)) == 200


def test_a_failed_write_keeps_the_waiting_completions(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))

    def refuse(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(statements, "insert_audit", refuse)
    with pytest.raises(RuntimeError):
        ledger.flush()
    assert _rows(ledger.store, RecordLinkRow) == []
    monkeypatch.undo()

    ledger.flush()
    assert [r.source_id for r in _rows(ledger.store, RecordLinkRow)] == ["B1"]
    assert len(_rows(ledger.store, AuditEventRow)) == 1


def test_completing_again_updates_the_one_link(ledger: Ledger) -> None:
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    ledger.complete("bill", "B1", "00n1", "fp2", AuditRecord("bill", "updated", "ok", "B1"))
    ledger.flush()

    (link,) = _rows(ledger.store, RecordLinkRow)
    assert link.fingerprint == "fp2"


async def test_a_new_version_reopens_nothing_of_the_old_one(ledger: Ledger) -> None:
    await ledger.begin_intents("bill", [("B1", "v1")])
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    await ledger.begin_intents("bill", [("B1", "v2")])

    statuses = {r.content_version: r.status for r in _rows(ledger.store, WriteIntentRow)}
    assert statuses == {"v1": "done", "v2": "open"}


def test_complete_resolves_the_records_open_exception_only(ledger: Ledger) -> None:
    ledger.add_exception("bill", "B1", "lines[0].account", "unmapped", None)
    ledger.add_exception("bill", "B2", None, "vendor invalid", None)

    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    ledger.flush()

    statuses = {r.source_id: r.status for r in _rows(ledger.store, ExceptionItemRow)}
    assert statuses == {"B1": "resolved", "B2": "open"}


def test_an_exception_from_an_earlier_run_is_resolved(store: Store, ledger: Ledger) -> None:
    ledger.add_exception("bill", "B1", None, "sink refused", None)
    later = Ledger(store, ledger.connection_id)
    later.start_run()

    later.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    later.flush()

    (row,) = _rows(store, ExceptionItemRow)
    assert row.status == "resolved"


def test_an_exception_queued_again_after_a_success_is_resolved_again(ledger: Ledger) -> None:
    ledger.add_exception("bill", "B1", None, "sink refused", None)
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    ledger.add_exception("bill", "B1", None, "sink refused again", None)
    ledger.complete("bill", "B1", "00n1", "fp2", _created("B1", "00n1"))
    ledger.flush()

    (row,) = _rows(ledger.store, ExceptionItemRow)
    assert (row.status, row.attempts) == ("resolved", 2)


def test_queued_audit_events_are_written_on_flush_with_their_own_time(ledger: Ledger) -> None:
    ledger.audit(AuditRecord("bill", "fetched", "ok", "B1"))
    ledger.audit(AuditRecord("bill", "skipped_unchanged", "ok", "B1", "00n1"))
    assert _rows(ledger.store, AuditEventRow) == []

    ledger.flush()

    events = sorted(_rows(ledger.store, AuditEventRow), key=lambda e: e.id)
    assert [e.action for e in events] == ["fetched", "skipped_unchanged"]
    assert events[0].at <= events[1].at


async def test_a_failed_intent_commit_keeps_the_waiting_completions(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))

    def refuse(self: WriteTransaction) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(WriteTransaction, "commit", refuse)
        with pytest.raises(OSError, match="disk full"):
            await ledger.begin_intents("bill", [("B2", "v1")])
    assert _rows(ledger.store, RecordLinkRow) == []
    assert _rows(ledger.store, WriteIntentRow) == []

    await ledger.begin_intents("bill", [("B2", "v1")])
    assert [r.source_id for r in _rows(ledger.store, RecordLinkRow)] == ["B1"]
    assert [r.source_id for r in _rows(ledger.store, WriteIntentRow)] == ["B2"]


async def test_an_intent_caller_cancelled_during_its_commit_writes_the_completions_once(
    ledger: Ledger, slow_commits: SlowCommits
) -> None:
    ledger.complete("bill", "B1", "00n1", "fp1", _created("B1", "00n1"))
    task = asyncio.create_task(ledger.begin_intents("bill", [("B2", "v1")]))
    assert await asyncio.to_thread(slow_commits.committing.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(slow_commits.committed.wait, 10)
    await asyncio.sleep(0)  # the transaction's outcome reaches the ledger

    ledger.flush()
    assert [r.source_id for r in _rows(ledger.store, WriteIntentRow)] == ["B2"]
    assert [e.source_id for e in _rows(ledger.store, AuditEventRow)] == ["B1"]
