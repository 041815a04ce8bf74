"""``Store.transaction`` and ``Store.transaction_async``: Core write transactions."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Transaction

from ml_connector.store import CursorRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

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


def add_cursor(connection: Connection, connection_id: int, stream: str) -> None:
    connection.execute(insert(CURSOR), {"connection_id": connection_id, "stream": stream})


def write(store: Store, connection_id: int, stream: str, *, fail: bool = False) -> None:
    """Add one cursor row in a transaction; ``fail`` raises before the commit."""
    with store.transaction() as connection:
        add_cursor(connection, connection_id, stream)
        if fail:
            raise RuntimeError("boom")


async def write_async(store: Store, connection_id: int, stream: str, *, fail: bool = False) -> None:
    """:func:`write` with ``transaction_async``."""
    async with store.transaction_async() as connection:
        add_cursor(connection, connection_id, stream)
        if fail:
            raise RuntimeError("boom")


def test_a_transaction_commits_at_the_end_of_its_block(store: Store, connection_id: int) -> None:
    write(store, connection_id, "a")
    assert cursors(store) == 1


def test_a_transaction_that_raises_writes_nothing(store: Store, connection_id: int) -> None:
    with pytest.raises(RuntimeError):
        write(store, connection_id, "a", fail=True)
    assert cursors(store) == 0


async def test_the_async_transaction_commits_in_another_thread(
    store: Store, connection_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    commit = Transaction.commit

    def noting(self: Transaction) -> None:
        threads.append(threading.current_thread().name)
        commit(self)

    monkeypatch.setattr(Transaction, "commit", noting)
    await write_async(store, connection_id, "a")
    assert threads
    assert threading.current_thread().name not in threads
    assert cursors(store) == 1


async def test_an_async_transaction_that_raises_writes_nothing(
    store: Store, connection_id: int
) -> None:
    with pytest.raises(RuntimeError):
        await write_async(store, connection_id, "a", fail=True)
    assert cursors(store) == 0


async def test_a_caller_cancelled_during_the_commit_leaves_it_to_finish(
    store: Store, connection_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    committing, committed = threading.Event(), threading.Event()
    commit = Transaction.commit

    def slow(self: Transaction) -> None:
        committing.set()
        time.sleep(0.2)  # the thread's commit outlives the cancelled caller
        commit(self)
        committed.set()

    monkeypatch.setattr(Transaction, "commit", slow)

    task = asyncio.create_task(write_async(store, connection_id, "a"))
    assert await asyncio.to_thread(committing.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()
    assert await asyncio.to_thread(committed.wait, 10)
    await asyncio.sleep(0)  # the commit's done-callback closes the connection
    assert cursors(store) == 1
    await write_async(store, connection_id, "b")  # the store goes on
    assert cursors(store) == 2


async def test_a_writer_on_the_loop_waits_only_for_the_commit_itself(
    store: Store, connection_id: int
) -> None:
    task = asyncio.create_task(write_async(store, connection_id, "a"))
    await asyncio.sleep(0)  # the task ran up to its commit, which holds SQLite's write lock
    # Synchronous, on the loop: it must get the lock once the thread commits, which it can
    # only do if the commit went to its thread before the loop's next turn.
    write(store, connection_id, "b")
    await task
    assert cursors(store) == 2
