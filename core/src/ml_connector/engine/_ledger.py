"""What the engine remembers about one connection: cursors, links, intents, audit, exceptions.

Every method is at most one short transaction. The order of writes is what makes a run safe to
kill:

1. :meth:`Ledger.begin_intents` is committed *before* a create is sent to the other system;
2. :meth:`Ledger.complete` records the other system's id, the fingerprint, the closed intent and
   the audit event together after the create answered;
3. a cursor moves only after every record of its window went through 2 or into the exception
   queue, in the same transaction as the last of them.

A crash between 1 and 2 leaves an open intent, which the next attempt at the same record finds and
reconciles by looking the record up in the other system before creating anything.

Completions are therefore written a little late: they wait in memory (at most ``_MAX_WAITING``)
and go with the next transaction the ledger makes anyway (the next intent, an exception, a cursor,
the page's audit events), so one bill costs one commit instead of two. A completion lost to a
crash is the case above; a read of links, intents or exceptions about a record with a waiting
completion writes it first, so the ledger reads what it was told.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from ml_connector.engine import _statements as statements
from ml_connector.models import AccountMapping, MappingMethod
from ml_connector.store import (
    AccountMappingRow,
    CursorRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    RecordLinkRow,
    RunRow,
    RunStatus,
    WriteIntentRow,
    WriteTransaction,
)
from ml_connector.store._tables import CORRELATION_ID_MAX
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

    from sqlmodel import Session

    from ml_connector.store import Store

__all__ = ["AuditRecord", "Ledger", "correlation_id_of", "storable_correlation_id"]

_UNRESOLVED = (ExceptionStatus.OPEN.value, ExceptionStatus.RETRYING.value)


def storable_correlation_id(value: object) -> str | None:
    """A system's correlation id as the store keeps it, or ``None`` if there is none.

    Kept as the system gave it (it is a request id, not a secret), trimmed of surrounding
    white space, made storable UTF-8 and cut to the column's length.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    # A lone surrogate (a plugin decoding a header badly) cannot be stored.
    text = text.encode("utf-8", "backslashreplace").decode()
    return text[:CORRELATION_ID_MAX]


def correlation_id_of(error: BaseException | None) -> str | None:
    """The correlation id a system gave with ``error``, or with the error it was raised from.

    :class:`~ml_connector.errors.UpstreamError` carries one; an error the engine or a plugin
    raises from it (``UndecidedWriteError``, an ``InvalidRecordError`` made from a system's
    answer) keeps it as its cause, so the chain is followed the way a traceback shows it.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = storable_correlation_id(getattr(error, "correlation_id", None))
        if found is not None:
            return found
        cause = error.__cause__
        if cause is None and not error.__suppress_context__:
            cause = error.__context__
        error = cause
    return None


@dataclass(frozen=True)
class AuditRecord:
    """One audit event before it is written.

    ``correlation_id`` is the failing system's request id (see :func:`correlation_id_of`).
    """

    object_type: str
    action: str
    outcome: str
    source_id: str | None = None
    sink_id: str | None = None
    error: str | None = None
    payload_digest: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class _Completion:
    object_type: str
    source_id: str
    sink_id: str
    fingerprint: str
    audit: AuditRecord
    at: datetime


@dataclass(frozen=True)
class _Waiting:
    completions: list[_Completion]
    audit: list[tuple[AuditRecord, datetime]]


@dataclass(frozen=True)
class _Rows:
    """One transaction's writes, as the statements take them."""

    links: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    intents: list[dict[str, Any]] = field(default_factory=list)

    def execute(self, transaction: WriteTransaction) -> None:
        statements.write_links(transaction, self.links)
        statements.close_intents(transaction, self.links)
        statements.resolve_exceptions(transaction, self.resolved)
        statements.insert_audit(transaction, self.audit)
        statements.open_intents(transaction, self.intents)


def _lookup_json(lookups: Mapping[str, Mapping[str, Any]] | None, source_id: str) -> str | None:
    # Encoded here: the statements take JSON columns encoded (see _statements).
    found = None if lookups is None else lookups.get(source_id)
    return None if found is None else json.dumps(found, sort_keys=True)


# Completions held before they are written on their own: bounds what a crash costs in
# reconciliation look-ups and what the ledger holds in memory.
_MAX_WAITING = 64


@dataclass
class Ledger:
    """The engine's view of the store for one connection and one run.

    Args:
        store: The state store.
        connection_id: The connection's row id.
        plugin_versions: System key to plugin version, stamped on every audit event.
        run_id: The current run, once started.
    """

    store: Store
    connection_id: int
    plugin_versions: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    _pending_audit: list[tuple[AuditRecord, datetime]] = field(default_factory=list)
    _completions: list[_Completion] = field(default_factory=list)
    _write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    # Per object type, the records that had an open or retrying exception this run (read once,
    # then added to): a finished write resolves its record's exception, and most never had one.
    _unresolved: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Stamped on every audit row, encoded once (the statements take JSON columns encoded).
        self._versions_json = json.dumps(self.plugin_versions)

    # --- Runs --------------------------------------------------------------------------------

    def start_run(self) -> int:
        """Open a run; runs left ``running`` by a killed process are marked ``interrupted``."""
        self._unresolved.clear()
        with self.store.session() as session:
            session.execute(
                update(RunRow)
                .where(col(RunRow.connection_id) == self.connection_id)
                .where(col(RunRow.status) == RunStatus.RUNNING.value)
                .values(status=RunStatus.INTERRUPTED.value, finished_at=utcnow())
            )
            run = RunRow(connection_id=self.connection_id)
            session.add(run)
            session.flush()
            assert run.id is not None
            self.run_id = run.id
        return self.run_id

    def finish_run(self, status: RunStatus, counts: dict[str, Any], error: str | None) -> None:
        """Close the current run with its tallies."""
        self.flush()
        with self.store.session() as session:
            run = session.get(RunRow, self.run_id)
            if run is None:  # pragma: no cover - the run row is ours
                return
            run.status = status.value
            run.counts = counts
            run.error = error
            run.finished_at = utcnow()
            session.add(run)

    # --- Cursors -----------------------------------------------------------------------------

    def cursor(self, stream: str) -> datetime | None:
        """How far ``stream`` is durably read, or ``None`` from the beginning."""
        with self.store.session(read_only=True) as session:
            row = session.exec(
                select(CursorRow)
                .where(CursorRow.connection_id == self.connection_id)
                .where(CursorRow.stream == stream)
            ).first()
            return row.position if row else None

    def set_cursor(self, stream: str, position: datetime | None) -> None:
        """Move ``stream``'s cursor (only once its whole window is recorded)."""
        # In the cursor's own transaction: the window is recorded when the cursor moves.
        with self._waiting() as waiting, self.store.session() as session:
            transaction = WriteTransaction.within(session.connection())
            self._rows(waiting).execute(transaction)
            row = session.exec(
                select(CursorRow)
                .where(CursorRow.connection_id == self.connection_id)
                .where(CursorRow.stream == stream)
            ).first()
            if row is None:
                row = CursorRow(connection_id=self.connection_id, stream=stream)
            row.position = position
            row.updated_at = utcnow()
            session.add(row)

    # --- Links and intents -------------------------------------------------------------------

    def link(self, object_type: str, source_id: str) -> RecordLinkRow | None:
        """The sink counterpart of a source record, if this connection made one."""
        self._flush_waiting_for(object_type, {source_id})
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(RecordLinkRow)
                .where(RecordLinkRow.connection_id == self.connection_id)
                .where(RecordLinkRow.object_type == object_type)
                .where(RecordLinkRow.source_id == source_id)
            ).first()

    def link_by_sink_id(self, object_type: str, sink_id: str) -> RecordLinkRow | None:
        """The source record behind a sink record, if this connection made it."""
        if any(c.object_type == object_type and c.sink_id == sink_id for c in self._completions):
            self.flush()
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(RecordLinkRow)
                .where(RecordLinkRow.connection_id == self.connection_id)
                .where(RecordLinkRow.object_type == object_type)
                .where(RecordLinkRow.sink_id == sink_id)
            ).first()

    def open_intent(self, object_type: str, source_id: str) -> WriteIntentRow | None:
        """An unfinished create for this record, left by an earlier attempt."""
        self._flush_waiting_for(object_type, {source_id})
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(WriteIntentRow)
                .where(WriteIntentRow.connection_id == self.connection_id)
                .where(WriteIntentRow.object_type == object_type)
                .where(WriteIntentRow.source_id == source_id)
                .where(WriteIntentRow.status == IntentStatus.OPEN.value)
            ).first()

    def open_intents(self, object_type: str | None = None) -> list[WriteIntentRow]:
        """Every unfinished create of this connection (of one object type), oldest first."""
        self.flush()
        query = (
            select(WriteIntentRow)
            .where(WriteIntentRow.connection_id == self.connection_id)
            .where(WriteIntentRow.status == IntentStatus.OPEN.value)
            .order_by(col(WriteIntentRow.id))
        )
        if object_type is not None:
            query = query.where(WriteIntentRow.object_type == object_type)
        with self.store.session(read_only=True) as session:
            return list(session.exec(query))

    def close_not_created(self, object_type: str, source_id: str, reason: str) -> None:
        """Close a record's open intents as ``failed``: the other system holds no such record.

        The look-up after an interruption found nothing, so nothing was created; the record
        comes again through its stream (whose cursor did not move past it) or the exception
        queue, and is created then.
        """
        now = utcnow()
        with self._waiting() as waiting, self.store.session() as session:
            transaction = WriteTransaction.within(session.connection())
            self._rows(waiting).execute(transaction)
            session.execute(
                update(WriteIntentRow)
                .where(col(WriteIntentRow.connection_id) == self.connection_id)
                .where(col(WriteIntentRow.object_type) == object_type)
                .where(col(WriteIntentRow.source_id) == source_id)
                .where(col(WriteIntentRow.status) == IntentStatus.OPEN.value)
                .values(status=IntentStatus.FAILED.value, last_error=reason, updated_at=now)
            )
            record = AuditRecord(
                object_type, "intent_closed", "not_created", source_id, error=reason
            )
            statements.insert_audit(transaction, [self._audit_values(record, now)])

    def _intent_key(self, object_type: str, source_id: str, version: str) -> str:
        return f"{self.connection_id}:{object_type}:{source_id}:{version}"

    async def begin_intents(
        self,
        object_type: str,
        items: Sequence[tuple[str, str]],
        lookups: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Record that creates of ``(source_id, content_version)`` are about to be sent.

        Committed before it returns, so before the call; an intent that already exists counts
        one more attempt. The rows are made on the event loop and written in a worker thread
        (see :meth:`~ml_connector.store.Store.write_in_thread`), one transaction at a time.

        Args:
            object_type: What is created.
            items: Each record's source id and content version.
            lookups: Per source id, what finding the record in the other system takes (kept on
                the intent for the startup sweep).
        """
        async with self._write_lock():
            now = utcnow()
            waiting = self._take_waiting()
            rows = self._rows(waiting)
            rows.intents.extend(
                {
                    "p_key": self._intent_key(object_type, source_id, version),
                    "p_connection": self.connection_id,
                    "p_type": object_type,
                    "p_source": source_id,
                    "p_version": version,
                    "p_lookup": _lookup_json(lookups, source_id),
                    "p_now": now,
                }
                for source_id, version in items
            )
            written = self.store.write_in_thread(rows.execute)

            def settled(future: asyncio.Future[None]) -> None:
                # Decided by the transaction, not by its caller: a caller cancelled while the
                # thread commits must not have the completions written a second time.
                if future.cancelled() or future.exception() is not None:
                    self._give_back(waiting)

            written.add_done_callback(settled)
            await asyncio.shield(written)

    def _write_lock(self) -> asyncio.Lock:
        # One per event loop: an asyncio lock must not outlive the loop it was used on (the
        # demo runs the same connection in two loops, one after the other).
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            lock = self._write_locks[loop] = asyncio.Lock()
        return lock

    def complete(
        self,
        object_type: str,
        source_id: str,
        sink_id: str,
        fingerprint: str,
        audit: AuditRecord,
    ) -> None:
        """Record a finished write: link, closed intents, audit event and resolved exception.

        Written with the ledger's next transaction (see the module's docstring); :meth:`flush`
        writes it now.
        """
        self._completions.append(
            _Completion(object_type, source_id, sink_id, fingerprint, audit, utcnow())
        )
        if len(self._completions) >= _MAX_WAITING:
            self.flush()

    def _flush_waiting_for(self, object_type: str, source_ids: set[str]) -> None:
        """Write the waiting completions first if any of them is about these records.

        A read of other records needs no write: the ones waiting cannot change its answer.
        """
        waiting = self._completions
        if any(c.object_type == object_type and c.source_id in source_ids for c in waiting):
            self.flush()

    def _take_waiting(self) -> _Waiting:
        """Take the waiting completions and audit events for the next transaction."""
        waiting = _Waiting(self._completions, self._pending_audit)
        self._completions, self._pending_audit = [], []
        return waiting

    def _give_back(self, waiting: _Waiting) -> None:
        """Return taken completions and events whose transaction failed, ahead of newer ones."""
        self._completions[:0] = waiting.completions
        self._pending_audit[:0] = waiting.audit

    @contextmanager
    def _waiting(self) -> Iterator[_Waiting]:
        """Take the waiting completions and audit events for the transaction in the block.

        If the block raises (a statement or the commit failed), nothing of it is committed and
        they wait for the next transaction again, ahead of any that came meanwhile.
        """
        waiting = self._take_waiting()
        try:
            yield waiting
        except BaseException:
            self._give_back(waiting)
            raise

    def _rows(self, waiting: _Waiting) -> _Rows:
        """The rows that write taken completions and audit events."""
        cid = self.connection_id
        rows = _Rows()
        for done in waiting.completions:
            row = {
                "p_connection": cid,
                "p_type": done.object_type,
                "p_source": done.source_id,
                "p_sink": done.sink_id,
                "p_fingerprint": done.fingerprint,
                "p_now": done.at,
            }
            rows.links.append(row)
            if done.source_id in self._unresolved_ids(done.object_type):
                rows.resolved.append(row)
        rows.audit.extend(self._audit_values(done.audit, done.at) for done in waiting.completions)
        rows.audit.extend(self._audit_values(record, at) for record, at in waiting.audit)
        return rows

    # --- Exceptions --------------------------------------------------------------------------

    def known(
        self, object_type: str, source_ids: Collection[str]
    ) -> dict[str, tuple[RecordLinkRow | None, bool]]:
        """For a page of records at once: each one's link, and whether it has an open intent.

        One read instead of two per record: on a page of a hundred records this is most of the
        store's work for an unchanged rerun.
        """
        ids = list(source_ids)
        self._flush_waiting_for(object_type, set(ids))
        with self.store.session(read_only=True) as session:
            links = {
                row.source_id: row
                for row in session.exec(
                    select(RecordLinkRow)
                    .where(RecordLinkRow.connection_id == self.connection_id)
                    .where(RecordLinkRow.object_type == object_type)
                    .where(col(RecordLinkRow.source_id).in_(ids))
                )
            }
            open_ids = set(
                session.exec(
                    select(WriteIntentRow.source_id)
                    .where(WriteIntentRow.connection_id == self.connection_id)
                    .where(WriteIntentRow.object_type == object_type)
                    .where(WriteIntentRow.status == IntentStatus.OPEN.value)
                    .where(col(WriteIntentRow.source_id).in_(ids))
                )
            )
        return {i: (links.get(i), i in open_ids) for i in ids}

    def ignored_digests(self, object_type: str) -> dict[str, str | None]:
        """Every record of a type an operator chose not to sync, with the content ignored."""
        with self.store.session(read_only=True) as session:
            return {
                row.source_id: row.payload_digest
                for row in session.exec(
                    select(ExceptionItemRow)
                    .where(ExceptionItemRow.connection_id == self.connection_id)
                    .where(ExceptionItemRow.object_type == object_type)
                    .where(ExceptionItemRow.status == ExceptionStatus.IGNORED.value)
                )
            }

    def ignored_digest(self, object_type: str, source_id: str) -> str | None:
        """The content an operator chose not to sync for this record, if any."""
        with self.store.session(read_only=True) as session:
            row = self._exception(session, object_type, source_id)
            if row is not None and row.status == ExceptionStatus.IGNORED.value:
                return row.payload_digest
            return None

    def retrying_exceptions(self) -> list[ExceptionItemRow]:
        """Queue entries an operator sent back for another try (``exceptions retry``)."""
        self.flush()
        with self.store.session(read_only=True) as session:
            return list(
                session.exec(
                    select(ExceptionItemRow)
                    .where(ExceptionItemRow.connection_id == self.connection_id)
                    .where(ExceptionItemRow.status == ExceptionStatus.RETRYING.value)
                    .order_by(col(ExceptionItemRow.id))
                )
            )

    def _unresolved_ids(self, object_type: str) -> set[str]:
        ids = self._unresolved.get(object_type)
        if ids is None:
            with self.store.session(read_only=True) as session:
                ids = set(
                    session.exec(
                        select(ExceptionItemRow.source_id)
                        .where(ExceptionItemRow.connection_id == self.connection_id)
                        .where(ExceptionItemRow.object_type == object_type)
                        .where(col(ExceptionItemRow.status).in_(_UNRESOLVED))
                    )
                )
            self._unresolved[object_type] = ids
        return ids

    def add_exception(
        self,
        object_type: str,
        source_id: str,
        field_path: str | None,
        reason: str,
        payload_digest: str | None,
        *,
        retry: bool = False,
        correlation_id: str | None = None,
    ) -> None:
        """Put a record in the exception queue (one entry per record) and audit the failure.

        With ``retry`` the entry is ``retrying``: the next run re-drives it by itself, as if an
        operator had sent it back (for records that wait on something the engine resolves).
        ``correlation_id`` is the failing system's request id (:func:`correlation_id_of`); it
        goes on the entry and its audit event, replacing the one of an earlier failure.
        """
        now = utcnow()
        correlation_id = storable_correlation_id(correlation_id)
        with self._waiting() as waiting, self.store.session() as session:
            transaction = WriteTransaction.within(session.connection())
            self._rows(waiting).execute(transaction)
            row = self._exception(session, object_type, source_id)
            if row is None:
                row = ExceptionItemRow(
                    connection_id=self.connection_id,
                    object_type=object_type,
                    source_id=source_id,
                    reason=reason,
                    attempts=0,
                    first_seen=now,
                )
            row.run_id = self.run_id
            row.field = field_path
            row.reason = reason
            row.payload_digest = payload_digest
            row.status = (ExceptionStatus.RETRYING if retry else ExceptionStatus.OPEN).value
            row.last_seen = now
            row.attempts += 1
            row.correlation_id = correlation_id
            session.add(row)
            failed = AuditRecord(
                object_type=object_type,
                source_id=source_id,
                action="failed",
                outcome="exception_queued",
                error=reason if field_path is None else f"{field_path}: {reason}",
                payload_digest=payload_digest,
                correlation_id=correlation_id,
            )
            statements.insert_audit(transaction, [self._audit_values(failed, now)])
        self._unresolved_ids(object_type).add(source_id)

    def _exception(
        self, session: Session, object_type: str, source_id: str
    ) -> ExceptionItemRow | None:
        return session.exec(
            select(ExceptionItemRow)
            .where(ExceptionItemRow.connection_id == self.connection_id)
            .where(ExceptionItemRow.object_type == object_type)
            .where(ExceptionItemRow.source_id == source_id)
        ).first()

    # --- Account mappings --------------------------------------------------------------------

    def manual_mappings(self) -> list[AccountMapping]:
        """The mappings an operator set for this connection."""
        with self.store.session(read_only=True) as session:
            rows = session.exec(
                select(AccountMappingRow)
                .where(AccountMappingRow.connection_id == self.connection_id)
                .where(AccountMappingRow.method == MappingMethod.MANUAL.value)
            )
            return [
                AccountMapping(
                    source_kind=r.source_kind,
                    source_id=r.source_id,
                    sink_kind=r.sink_kind,
                    sink_id=r.sink_id,
                    method=MappingMethod.MANUAL,
                )
                for r in rows
            ]

    def save_mappings(self, mappings: Iterable[AccountMapping]) -> None:
        """Replace the derived mappings, keeping the manual ones as they are."""
        with self.store.session() as session:
            existing = {
                (r.source_kind, r.source_id): r
                for r in session.exec(
                    select(AccountMappingRow).where(
                        AccountMappingRow.connection_id == self.connection_id
                    )
                )
            }
            seen: set[tuple[str, str]] = set()
            for mapping in mappings:
                key = (mapping.source_kind, mapping.source_id)
                seen.add(key)
                row = existing.get(key)
                if row is None:
                    row = AccountMappingRow(
                        connection_id=self.connection_id,
                        source_kind=mapping.source_kind,
                        source_id=mapping.source_id,
                        sink_kind=mapping.sink_kind,
                        sink_id=mapping.sink_id,
                        method=mapping.method.value,
                    )
                elif row.method == MappingMethod.MANUAL.value:
                    continue
                row.sink_kind, row.sink_id = mapping.sink_kind, mapping.sink_id
                row.method = mapping.method.value
                session.add(row)
            for key, row in existing.items():
                if key not in seen and row.method != MappingMethod.MANUAL.value:
                    session.delete(row)

    # --- Audit -------------------------------------------------------------------------------

    def _audit_values(self, record: AuditRecord, at: datetime) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "connection_id": self.connection_id,
            "at": at,
            "object_type": record.object_type,
            "source_id": record.source_id,
            "sink_id": record.sink_id,
            "action": record.action,
            "outcome": record.outcome,
            "error": record.error,
            "payload_digest": record.payload_digest,
            "plugin_versions": self._versions_json,
            "correlation_id": storable_correlation_id(record.correlation_id),
        }

    def audit(self, record: AuditRecord) -> None:
        """Queue an informational audit event (fetched, skipped); written in batches."""
        self._pending_audit.append((record, utcnow()))
        if len(self._pending_audit) >= 500:
            self.flush()

    def audit_now(self, record: AuditRecord) -> None:
        """Write one audit event at once."""
        self.audit(record)
        self.flush()

    def flush(self) -> None:
        """Write every waiting completion and queued audit event in one transaction."""
        if not self._completions and not self._pending_audit:
            return
        with self._waiting() as waiting, self.store.transaction() as transaction:
            self._rows(waiting).execute(transaction)
