"""A failing system's correlation (request) id reaches the exception queue and the audit trail.

The fakes give every error they raise an id, ``"<system>:<hook>:<call>"``, as BILL, Epicor or
Acumatica give a request id; the engine keeps it on the queue entry and on the ``failed`` audit
event of the record, so an operator can quote it in a support ticket.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from core.tests.engine.harness import World
from sqlmodel import col, select

from ml_connector.engine import WebhookReceiver, ensure_subscription
from ml_connector.engine._ledger import Ledger, correlation_id_of, storable_correlation_id
from ml_connector.errors import (
    InvalidRecordError,
    TransientError,
    UndecidedWriteError,
    UpstreamError,
)
from ml_connector.store import AuditEventRow, ExceptionItemRow, RunStatus, Store
from ml_connector.store._tables import CORRELATION_ID_MAX
from ml_connector.testing import FaultKind, SeedSpec
from ml_connector.vault import Vault

SPEC = SeedSpec(seed=5, vendors=3, payables=8, held_share=0.0)
SINK_CREATE = re.compile(r"^reference_sink:create_bill:\d+$")
SINK_LOOKUP = re.compile(r"^reference_sink:find_bill:\d+$")
ERP_POSTING = re.compile(r"^reference_erp:record_payment:\d+$")


def queue(store: Store, object_type: str) -> dict[str, ExceptionItemRow]:
    with store.session(read_only=True) as session:
        rows = session.exec(
            select(ExceptionItemRow).where(ExceptionItemRow.object_type == object_type)
        )
        return {row.source_id: row for row in rows}


def events(store: Store, object_type: str, source_id: str) -> list[AuditEventRow]:
    """A record's audit events, oldest first."""
    with store.session(read_only=True) as session:
        return list(
            session.exec(
                select(AuditEventRow)
                .where(AuditEventRow.object_type == object_type)
                .where(AuditEventRow.source_id == source_id)
                .order_by(col(AuditEventRow.id))
            )
        )


def last_failure(store: Store, object_type: str, source_id: str) -> AuditEventRow:
    return [e for e in events(store, object_type, source_id) if e.action == "failed"][-1]


# --- Through the engine ------------------------------------------------------------------------


async def test_a_sink_error_s_id_is_on_the_entry_and_its_audit_event(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    world.sink.faults.fail("create_bill", FaultKind.TRANSIENT, times=1000)

    summary = await world.sync(bulk=False)

    assert summary.status is RunStatus.SUCCEEDED, summary.error
    queued = queue(world.store, "bill")
    assert set(queued) == set(data.ready_ids)
    for source_id, entry in queued.items():
        assert entry.correlation_id is not None
        assert SINK_CREATE.match(entry.correlation_id), entry.correlation_id
        # the id is in its own column, not only somewhere in the reason
        assert entry.correlation_id not in entry.reason
        failed = last_failure(world.store, "bill", source_id)
        assert (failed.outcome, failed.correlation_id) == ("exception_queued", entry.correlation_id)
    # every failure was a different request
    assert len({e.correlation_id for e in queued.values()}) == len(queued)
    # events that are not failures carry none
    assert all(
        e.correlation_id is None
        for e in events(world.store, "bill", data.ready_ids[0])
        if e.action != "failed"
    )


async def test_a_failed_create_whose_look_up_failed_keeps_the_look_up_s_id(
    tmp_path: Path,
) -> None:
    world, _ = World.create(tmp_path, SPEC)
    world.sink.faults.apply_then_fail("create_bill", on_call=3)
    world.sink.faults.fail("find_bill", FaultKind.TRANSIENT, times=1000)

    first = await world.sync(bulk=False)

    assert first.status is RunStatus.SUCCEEDED, first.error
    [(source_id, entry)] = queue(world.store, "bill").items()
    assert "may have happened" in entry.reason  # the engine's UndecidedWriteError
    assert entry.correlation_id is not None
    assert SINK_LOOKUP.match(entry.correlation_id), entry.correlation_id
    assert last_failure(world.store, "bill", source_id).correlation_id == entry.correlation_id

    # The sweeps (before payments, and the next run's) cannot decide it either: each audit event
    # names the request of its own look-up.
    second = await world.sync(bulk=False)

    assert second.counts["intents_undecided"] >= 1
    undecided = [
        e.correlation_id
        for e in events(world.store, "bill", source_id)
        if e.action == "intent_undecided"
    ]
    assert len(undecided) >= 2
    assert all(c is not None and SINK_LOOKUP.match(c) for c in undecided), undecided
    assert len({*undecided, entry.correlation_id}) == len(undecided) + 1  # each another request


async def test_a_source_error_s_id_is_kept_for_a_payment(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    await world.sync()
    paid = data.ready_ids[0]
    world.sink.pay_bill(world.sink.bill_for_payable(paid)[0].id)
    world.erp.faults.fail("record_payment", FaultKind.TRANSIENT, times=1000)

    summary = await world.sync()

    assert summary.counts["payments_failed"] == 1
    [(key, entry)] = queue(world.store, "payment").items()
    assert entry.correlation_id is not None
    assert ERP_POSTING.match(entry.correlation_id), entry.correlation_id
    assert last_failure(world.store, "payment", key).correlation_id == entry.correlation_id


async def test_a_failure_without_an_id_clears_the_earlier_one(tmp_path: Path) -> None:
    world, data = World.create(tmp_path, SPEC)
    target = data.ready_ids[0]
    world.sink.faults.fail("create_bill", FaultKind.TRANSIENT, times=1000)
    await world.sync(bulk=False)
    assert queue(world.store, "bill")[target].correlation_id is not None

    # The same record fails again, this time on the engine's side: no system answered.
    async with world.engine() as engine:
        engine.ledger.add_exception("bill", target, None, "no sink account", None)

    entry = queue(world.store, "bill")[target]
    assert (entry.reason, entry.attempts, entry.correlation_id) == ("no sink account", 2, None)
    assert last_failure(world.store, "bill", target).correlation_id is None


async def test_a_set_aside_webhook_keeps_the_id_of_the_answer_it_came_from(
    tmp_path: Path,
) -> None:
    world, _ = World.create(tmp_path, SPEC)
    vault = Vault.from_environment()
    try:
        try:
            raise UpstreamError("no such event", system="bill", correlation_id="req-42")
        except UpstreamError as cause:
            raise InvalidRecordError("webhook", "evt-9", "eventId", "unknown event") from cause
    except InvalidRecordError as refused:
        error = refused
    async with world.engine() as engine:
        await ensure_subscription(world.store, vault, engine, "https://connector.example/wh")
        receiver = WebhookReceiver(world.store, vault, engine)
        assert receiver.set_aside(b"{}", error) == "evt-9"
        assert receiver.set_aside(b"{}", InvalidRecordError("webhook", "evt-8", None, "x")) == (
            "evt-8"
        )
    queued = queue(world.store, "webhook")
    assert queued["evt-9"].correlation_id == "req-42"
    assert last_failure(world.store, "webhook", "evt-9").correlation_id == "req-42"
    assert queued["evt-8"].correlation_id is None
    assert queued["evt-9"].payload_digest == hashlib.sha256(b"{}").hexdigest()


# --- What the ledger keeps ---------------------------------------------------------------------


def _undecided() -> None:
    raise UndecidedWriteError("undecided") from TransientError("look-up", correlation_id="L")


def _refused(*, hide_context: bool) -> None:
    try:
        raise TransientError("answer", correlation_id="C")
    except TransientError:
        if hide_context:
            raise InvalidRecordError("payable", "1", None, "bad") from None
        raise InvalidRecordError("payable", "1", None, "bad")  # noqa: B904 - the point


def _own_and_cause() -> None:
    cause = TransientError("inner", correlation_id="I")
    raise TransientError("outer", correlation_id="O") from cause


def test_the_id_is_found_on_the_error_or_the_error_it_came_from() -> None:
    assert correlation_id_of(TransientError("boom", correlation_id="abc")) == "abc"
    assert correlation_id_of(None) is None
    assert correlation_id_of(ValueError("x")) is None
    assert correlation_id_of(TransientError("boom")) is None

    # explicit cause: the engine raises UndecidedWriteError from the look-up's error
    with pytest.raises(UndecidedWriteError) as undecided:
        _undecided()
    assert correlation_id_of(undecided.value) == "L"

    # implicit context: a plugin raising while handling the system's answer...
    with pytest.raises(InvalidRecordError) as implicit:
        _refused(hide_context=False)
    assert correlation_id_of(implicit.value) == "C"
    # ...unless it said `from None`, which hides the context as a traceback does
    with pytest.raises(InvalidRecordError) as hidden:
        _refused(hide_context=True)
    assert correlation_id_of(hidden.value) is None

    # the error's own id wins over its cause's
    with pytest.raises(TransientError) as both:
        _own_and_cause()
    assert correlation_id_of(both.value) == "O"

    # a cycle ends
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert correlation_id_of(first) is None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("  req-1 \n", "req-1"),
        (12345, "12345"),
        ("x" * 500, "x" * CORRELATION_ID_MAX),
        ("id-\ud800", "id-\\ud800"),
    ],
)
def test_the_id_is_kept_as_given_within_the_column(given: object, kept: str | None) -> None:
    assert storable_correlation_id(given) == kept


def test_a_long_id_is_stored_cut_to_the_column(store: Store) -> None:
    row = store.add_connection(
        "acme",
        source_system="erp",
        sink_system="bill",
        source_credentials=b"s",
        sink_credentials=b"s",
    )
    assert row.id is not None
    ledger = Ledger(store, row.id)
    ledger.start_run()
    ledger.add_exception("bill", "INV-1", None, "boom", None, correlation_id="r" * 1000)
    entry = queue(store, "bill")["INV-1"]
    assert entry.correlation_id == "r" * CORRELATION_ID_MAX
    assert last_failure(store, "bill", "INV-1").correlation_id == "r" * CORRELATION_ID_MAX
