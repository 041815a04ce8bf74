"""What the engine remembers about one connection: cursors, links, intents, audit, exceptions.

Every method is one short transaction. The order of writes is what makes a run safe to kill:

1. :meth:`Ledger.begin_intent` is committed *before* a create is sent to the other system;
2. :meth:`Ledger.complete` records the other system's id, the fingerprint, the closed intent and
   the audit event in *one* transaction after the create answered;
3. a cursor moves only after every record of its window went through 2 or into the exception
   queue.

A crash between 1 and 2 leaves an open intent, which the next attempt at the same record finds and
reconciles by looking the record up in the other system before creating anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from ml_connector.models import AccountMapping, MappingMethod
from ml_connector.store import (
    AccountMappingRow,
    AuditEventRow,
    CursorRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    RecordLinkRow,
    RunRow,
    RunStatus,
    WriteIntentRow,
)
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from sqlmodel import Session

    from ml_connector.store import Store

__all__ = ["AuditRecord", "Ledger"]


@dataclass(frozen=True)
class AuditRecord:
    """One audit event before it is written."""

    object_type: str
    action: str
    outcome: str
    source_id: str | None = None
    sink_id: str | None = None
    error: str | None = None
    payload_digest: str | None = None


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
    _pending_audit: list[AuditRecord] = field(default_factory=list)

    # --- Runs --------------------------------------------------------------------------------

    def start_run(self) -> int:
        """Open a run; runs left ``running`` by a killed process are marked ``interrupted``."""
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
        self.flush_audit()
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
        with self.store.session() as session:
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
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(RecordLinkRow)
                .where(RecordLinkRow.connection_id == self.connection_id)
                .where(RecordLinkRow.object_type == object_type)
                .where(RecordLinkRow.source_id == source_id)
            ).first()

    def link_by_sink_id(self, object_type: str, sink_id: str) -> RecordLinkRow | None:
        """The source record behind a sink record, if this connection made it."""
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(RecordLinkRow)
                .where(RecordLinkRow.connection_id == self.connection_id)
                .where(RecordLinkRow.object_type == object_type)
                .where(RecordLinkRow.sink_id == sink_id)
            ).first()

    def open_intent(self, object_type: str, source_id: str) -> WriteIntentRow | None:
        """An unfinished create for this record, left by an earlier attempt."""
        with self.store.session(read_only=True) as session:
            return session.exec(
                select(WriteIntentRow)
                .where(WriteIntentRow.connection_id == self.connection_id)
                .where(WriteIntentRow.object_type == object_type)
                .where(WriteIntentRow.source_id == source_id)
                .where(WriteIntentRow.status == IntentStatus.OPEN.value)
            ).first()

    def open_intents(self) -> list[WriteIntentRow]:
        """Every unfinished create of this connection."""
        with self.store.session(read_only=True) as session:
            return list(
                session.exec(
                    select(WriteIntentRow)
                    .where(WriteIntentRow.connection_id == self.connection_id)
                    .where(WriteIntentRow.status == IntentStatus.OPEN.value)
                )
            )

    def _intent_key(self, object_type: str, source_id: str, version: str) -> str:
        return f"{self.connection_id}:{object_type}:{source_id}:{version}"

    def begin_intents(self, object_type: str, items: Sequence[tuple[str, str]]) -> None:
        """Record that creates of ``(source_id, content_version)`` are about to be sent.

        Committed before the call; an intent that already exists counts one more attempt.
        """
        with self.store.session() as session:
            for source_id, version in items:
                key = self._intent_key(object_type, source_id, version)
                row = session.exec(select(WriteIntentRow).where(WriteIntentRow.key == key)).first()
                if row is None:
                    row = WriteIntentRow(
                        key=key,
                        connection_id=self.connection_id,
                        object_type=object_type,
                        source_id=source_id,
                        content_version=version,
                    )
                row.status = IntentStatus.OPEN.value
                row.attempts += 1
                session.add(row)

    def complete(
        self,
        object_type: str,
        source_id: str,
        sink_id: str,
        fingerprint: str,
        audit: AuditRecord,
    ) -> None:
        """Record a finished write: link, closed intents, audit event and resolved exception."""
        with self.store.session() as session:
            self._write_link(session, object_type, source_id, sink_id, fingerprint)
            session.execute(
                update(WriteIntentRow)
                .where(col(WriteIntentRow.connection_id) == self.connection_id)
                .where(col(WriteIntentRow.object_type) == object_type)
                .where(col(WriteIntentRow.source_id) == source_id)
                .where(col(WriteIntentRow.status) == IntentStatus.OPEN.value)
                .values(status=IntentStatus.DONE.value, sink_id=sink_id, updated_at=utcnow())
            )
            self._resolve_exception(session, object_type, source_id)
            session.add(self._audit_row(audit))

    def _write_link(
        self, session: Session, object_type: str, source_id: str, sink_id: str, fingerprint: str
    ) -> None:
        row = session.exec(
            select(RecordLinkRow)
            .where(RecordLinkRow.connection_id == self.connection_id)
            .where(RecordLinkRow.object_type == object_type)
            .where(RecordLinkRow.source_id == source_id)
        ).first()
        if row is None:
            row = RecordLinkRow(
                connection_id=self.connection_id,
                object_type=object_type,
                source_id=source_id,
                sink_id=sink_id,
                fingerprint=fingerprint,
            )
        row.sink_id = sink_id
        row.fingerprint = fingerprint
        row.updated_at = utcnow()
        session.add(row)

    # --- Exceptions --------------------------------------------------------------------------

    def known(
        self, object_type: str, source_ids: Collection[str]
    ) -> dict[str, tuple[RecordLinkRow | None, bool]]:
        """For a page of records at once: each one's link, and whether it has an open intent.

        One read instead of two per record: on a page of a hundred records this is most of the
        store's work for an unchanged rerun.
        """
        ids = list(source_ids)
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
        with self.store.session(read_only=True) as session:
            return list(
                session.exec(
                    select(ExceptionItemRow)
                    .where(ExceptionItemRow.connection_id == self.connection_id)
                    .where(ExceptionItemRow.status == ExceptionStatus.RETRYING.value)
                    .order_by(col(ExceptionItemRow.id))
                )
            )

    def add_exception(
        self,
        object_type: str,
        source_id: str,
        field_path: str | None,
        reason: str,
        payload_digest: str | None,
    ) -> None:
        """Put a record in the exception queue (one entry per record) and audit the failure."""
        now = utcnow()
        with self.store.session() as session:
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
            row.status = ExceptionStatus.OPEN.value
            row.last_seen = now
            row.attempts += 1
            session.add(row)
            session.add(
                self._audit_row(
                    AuditRecord(
                        object_type=object_type,
                        source_id=source_id,
                        action="failed",
                        outcome="exception_queued",
                        error=reason if field_path is None else f"{field_path}: {reason}",
                        payload_digest=payload_digest,
                    )
                )
            )

    def _exception(
        self, session: Session, object_type: str, source_id: str
    ) -> ExceptionItemRow | None:
        return session.exec(
            select(ExceptionItemRow)
            .where(ExceptionItemRow.connection_id == self.connection_id)
            .where(ExceptionItemRow.object_type == object_type)
            .where(ExceptionItemRow.source_id == source_id)
        ).first()

    def _resolve_exception(self, session: Session, object_type: str, source_id: str) -> None:
        session.execute(
            update(ExceptionItemRow)
            .where(col(ExceptionItemRow.connection_id) == self.connection_id)
            .where(col(ExceptionItemRow.object_type) == object_type)
            .where(col(ExceptionItemRow.source_id) == source_id)
            .where(col(ExceptionItemRow.status).in_(["open", "retrying"]))
            .values(status=ExceptionStatus.RESOLVED.value, last_seen=utcnow())
        )

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

    def _audit_row(self, record: AuditRecord) -> AuditEventRow:
        return AuditEventRow(
            run_id=self.run_id,
            connection_id=self.connection_id,
            object_type=record.object_type,
            source_id=record.source_id,
            sink_id=record.sink_id,
            action=record.action,
            outcome=record.outcome,
            error=record.error,
            payload_digest=record.payload_digest,
            plugin_versions=self.plugin_versions,
        )

    def audit(self, record: AuditRecord) -> None:
        """Queue an informational audit event (fetched, skipped); written in batches."""
        self._pending_audit.append(record)
        if len(self._pending_audit) >= 500:
            self.flush_audit()

    def audit_now(self, record: AuditRecord) -> None:
        """Write one audit event at once."""
        with self.store.session() as session:
            session.add(self._audit_row(record))

    def flush_audit(self) -> None:
        """Write the queued audit events in one transaction."""
        if not self._pending_audit:
            return
        pending, self._pending_audit = self._pending_audit, []
        with self.store.session() as session:
            session.add_all([self._audit_row(r) for r in pending])
