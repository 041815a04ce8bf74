"""``ml-connector audit CONNECTION``: what happened to each record, newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.store import ObjectType, list_audit_events

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ml_connector.store import AuditEventRow

__all__ = ["CORRELATION", "audit_json", "register", "with_correlation"]

COLUMNS = ("at", "run", "type", "source_id", "sink_id", "action", "outcome", "error")
#: The column of the failing system's request id, shown when an event listed has one.
CORRELATION = "correlation_id"


def with_correlation(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """``columns``, with :data:`CORRELATION` before ``error`` if any row has a correlation id."""
    shown = list(columns)
    if any(row.get(CORRELATION) for row in rows):
        at = shown.index("error") if "error" in shown else len(shown)
        shown.insert(at, CORRELATION)
    return shown


def audit_json(event: AuditEventRow) -> dict[str, Any]:
    """An audit event as JSON-ready data."""
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "run": event.run_id,
        "type": event.object_type,
        "source_id": event.source_id,
        "sink_id": event.sink_id,
        "action": event.action,
        "outcome": event.outcome,
        "error": event.error,
        "correlation_id": event.correlation_id,
        "payload_digest": event.payload_digest,
        "plugin_versions": event.plugin_versions,
    }


def audit_row(event: AuditEventRow) -> dict[str, Any]:
    """An audit event as a table row."""
    return {**audit_json(event), "at": event.at.isoformat(timespec="seconds")}


def register(main: click.Group) -> None:
    """Add the ``audit`` command to ``main``."""
    main.add_command(audit)


@click.command()
@click.argument("connection")
@click.option("--record", "source_id", metavar="SOURCE_ID", help="Only this record's events.")
@click.option(
    "--type",
    "object_type",
    type=click.Choice([t.value for t in ObjectType]),
    help="Only events about this kind of record.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Show at most N events (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def audit(
    app: AppContext,
    connection: str,
    source_id: str | None,
    object_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit trail of CONNECTION, newest first.

    Each event says what happened to one record (fetched, created, updated, skipped_unchanged,
    failed, …), in which run, and the sink id it got; a failure a system answered shows its
    correlation (request) id for a support ticket. --json adds the content digest and the
    plugin versions that did the work.
    """
    connection_id = app.store.get_connection(connection).id
    assert connection_id is not None
    with app.store.session(read_only=True) as session:
        events = list_audit_events(
            session,
            connection_id,
            source_id=source_id,
            object_type=object_type,
            limit=limit or None,
        )
    if as_json:
        echo_json([audit_json(e) for e in events])
        return
    rows = [audit_row(e) for e in events]
    echo_table(rows, with_correlation(COLUMNS, rows), "No audit events match.")
