"""``Store.transaction`` and ``Store.write_in_thread``: write transactions on the driver."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from ml_connector.store import CursorRow, WriteTransaction

if TYPE_CHECKING:
    from core.tests.conftest import SlowCommits

    from ml_connector.store import Store

CURSOR = CursorRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
def connection_id(store: Store) -> int:
    row = store.add_connection(
        "acme", source_system="erp", sink_system="sink", source_credentials=b"s",
        sink_credentials=b"s",
    )  # fmt: skip
    assert row.id is not None
    return row.id


def cursors(store: Store) -> int:
    with store.session(read_only=True) as session:
        return int(session.execute(select(func.count()).select_from(CURSOR)).scalar_one())


def add_cursor(transaction: WriteTransaction, connection_id: int, stream: str) -> None:
    """Insert a cursor row the way the ledger writes: SQL on the transaction's DB-API cursor."""
    mark = "?" if transaction.dialect.paramstyle == "qmark" else "%s"
    cursor = transaction.cursor()
    cursor.execute(
        f"INSERT INTO {CURSOR.name} (connection_id, stream, updated_at) "
        f"VALUES ({mark}, {mark}, {mark})",
        (connection_id, stream, "2026-12-01T00:00:00+00:00"),
    )
    cursor.close()


def write(store: Store, connection_id: int, stream: str, *, fail: bool = False) -> None:
    """Add one cursor row in a transaction; ``fail`` raises before the commit."""
    with store.transaction() as transaction:
        add_cursor(transaction, connection_id, stream)
        if fail:
            raise RuntimeError("boom")


async def write_async(store: Store, connection_id: int, stream: str, *, fail: bool = False) -> None:
    """:func:`write` through ``write_in_thread``."""

    def statements(transaction: WriteTransaction) -> None:
        add_cursor(transaction, connection_id, stream)
        if fail:
            raise RuntimeError("boom")

    await asyncio.shield(store.write_in_thread(statements))


def test_a_transaction_commits_at_the_end_of_its_block(store: Store, connection_id: int) -> None:
    write(store, connection_id, "a")
    assert cursors(store) == 1


def test_a_transaction_that_raises_writes_nothing(store: Store, connection_id: int) -> None:
    with pytest.raises(RuntimeError):
        write(store, connection_id, "a", fail=True)
    assert cursors(store) == 0
    write(store, connection_id, "b")  # the pooled connection came back with no transaction open
    assert cursors(store) == 1


async def test_a_transaction_in_a_thread_runs_and_commits_off_the_loop(
    store: Store, connection_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    commit, cursor = WriteTransaction.commit, WriteTransaction.cursor

    def noting_commit(self: WriteTransaction) -> None:
        threads.append(threading.current_thread().name)
        commit(self)

    def noting_cursor(self: WriteTransaction) -> Any:
        threads.append(threading.current_thread().name)
        return cursor(self)

    monkeypatch.setattr(WriteTransaction, "commit", noting_commit)
    monkeypatch.setattr(WriteTransaction, "cursor", noting_cursor)
    await write_async(store, connection_id, "a")
    assert len(threads) == 2
    assert threading.current_thread().name not in threads
    assert cursors(store) == 1


async def test_a_transaction_in_a_thread_that_raises_writes_nothing(
    store: Store, connection_id: int
) -> None:
    with pytest.raises(RuntimeError):
        await write_async(store, connection_id, "a", fail=True)
    assert cursors(store) == 0
    await write_async(store, connection_id, "b")
    assert cursors(store) == 1


async def test_a_caller_cancelled_during_the_commit_leaves_it_to_finish(
    store: Store, connection_id: int, slow_commits: SlowCommits
) -> None:
    task = asyncio.create_task(write_async(store, connection_id, "a"))
    assert await asyncio.to_thread(slow_commits.committing.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(slow_commits.committed.wait, 10)
    assert cursors(store) == 1
    await write_async(store, connection_id, "b")  # the store goes on
    assert cursors(store) == 2


async def test_a_writer_on_the_loop_waits_for_the_transaction_in_the_thread(
    store: Store, connection_id: int
) -> None:
    task = asyncio.create_task(write_async(store, connection_id, "a"))
    await asyncio.sleep(0)  # the transaction started in its thread and may hold the write lock
    # Synchronous, on the loop: it must get the lock once the thread commits, which it can
    # only do if the thread got going without waiting for the loop's next turn.
    write(store, connection_id, "b")
    await task
    assert cursors(store) == 2
