"""``ml-connector exceptions list|show|retry|resolve|ignore``: the exception queue.

A record lands in the queue when it cannot be synced as it is (an unmapped account, a rejected
field, retries run out). One entry per record; it stays until someone acts on it or the engine
syncs the record:

- ``retry``: the next ``sync run`` re-drives it (or ``replay`` does at once);
- ``resolve``: done by hand (e.g. fixed in BILL); it leaves the queue and nothing is sent;
- ``ignore``: "do not sync this change": the engine skips the record while its content digest
  is unchanged; once the record changes in the source, it is synced again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._audit import CORRELATION, audit_row, with_correlation
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.store import (
    ExceptionStatus,
    ObjectType,
    get_exception,
    list_audit_events,
    list_exceptions,
    set_exception_status,
)

if TYPE_CHECKING:
    from ml_connector.store import ExceptionItemRow

__all__ = ["register"]

COLUMNS = (
    "id",
    "connection",
    "type",
    "source_id",
    "field",
    "reason",
    "status",
    "attempts",
    "last_seen",
)
#: What ``exceptions list`` shows without ``--status``: what still needs someone.
PENDING = (ExceptionStatus.OPEN.value, ExceptionStatus.RETRYING.value)
#: How many of a record's audit events ``exceptions show`` prints.
RECENT_AUDIT = 5


def exception_json(item: ExceptionItemRow, connection: str) -> dict[str, Any]:
    """An exception queue entry as JSON-ready data."""
    return {
        "id": item.id,
        "connection": connection,
        "type": item.object_type,
        "source_id": item.source_id,
        "field": item.field,
        "reason": item.reason,
        "status": item.status,
        "attempts": item.attempts,
        "correlation_id": item.correlation_id,
        "run": item.run_id,
        "payload_digest": item.payload_digest,
        "first_seen": item.first_seen.isoformat(),
        "last_seen": item.last_seen.isoformat(),
    }


def register(main: click.Group) -> None:
    """Add the ``exceptions`` group to ``main``."""
    main.add_command(exceptions)


@click.group()
def exceptions() -> None:
    """The exception queue: records that cannot be synced until someone acts."""


@exceptions.command("list")
@click.argument("connection", required=False)
@click.option(
    "--status",
    type=click.Choice([*(s.value for s in ExceptionStatus), "all"]),
    help="Only entries in this status (default: open and retrying).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(app: AppContext, connection: str | None, status: str | None, as_json: bool) -> None:
    """List exceptions of CONNECTION, or of every connection, most recently seen first."""
    connection_id = app.store.get_connection(connection).id if connection is not None else None
    statuses = None if status == "all" else (status,) if status else PENDING
    with app.store.session(read_only=True) as session:
        found = list_exceptions(session, connection_id, statuses)
    if as_json:
        echo_json([exception_json(item, name) for item, name in found])
        return
    rows = [
        {**exception_json(item, name), "last_seen": item.last_seen.isoformat(timespec="seconds")}
        for item, name in found
    ]
    echo_table(rows, COLUMNS, "No exceptions." if status else "No open exceptions.")


@exceptions.command("show")
@click.argument("item_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_app
def show(app: AppContext, item_id: int, as_json: bool) -> None:
    """Show exception ID, with the latest audit events of its record.

    A failure a system answered shows its correlation (request) id, for a support ticket.
    """
    with app.store.session(read_only=True) as session:
        item, connection = get_exception(session, item_id)
        events = list_audit_events(
            session,
            item.connection_id,
            source_id=item.source_id,
            object_type=item.object_type,
            limit=RECENT_AUDIT,
        )
    data = exception_json(item, connection)
    if as_json:
        echo_json({**data, "recent_audit": [audit_row(e) for e in events]})
        return
    width = max(len(key) for key in data)
    for key, value in data.items():
        if key == CORRELATION and value is None:
            continue  # a line only when a system gave one
        click.echo(f"{key.ljust(width)}  {'' if value is None else value}")
    click.echo("")
    click.echo("recent audit events of this record:")
    rows = [audit_row(e) for e in events]
    echo_table(
        rows,
        with_correlation(("at", "run", "action", "outcome", "sink_id", "error"), rows),
        "  (none)",
    )


def _move(
    app: AppContext, item_id: int, status: ExceptionStatus
) -> tuple[ExceptionItemRow, str] | None:
    """Set the status and say so; ``None`` (and say so) if it already was."""
    with app.store.session() as session:
        item, connection = get_exception(session, item_id)
        if item.status == status.value:
            click.echo(f"Exception {item_id} is already {status.value}; nothing changed.")
            return None
        previous, _ = set_exception_status(session, item_id, status.value)
    click.echo(
        f"Exception {item_id} ({item.object_type} {item.source_id} of {connection}): "
        f"{previous} -> {status.value}."
    )
    return item, connection


@exceptions.command()
@click.argument("item_id", metavar="ID", type=int)
@pass_app
def retry(app: AppContext, item_id: int) -> None:
    """Mark exception ID for retry: the next `sync run` re-drives its record."""
    moved = _move(app, item_id, ExceptionStatus.RETRYING)
    if moved is None:
        return
    item, connection = moved
    click.echo(f"The next `ml-connector sync run {connection}` re-drives it.")
    if item.object_type == ObjectType.BILL.value:
        click.echo(
            f"To re-drive it now: `ml-connector replay {connection} --record {item.source_id}`."
        )


@exceptions.command()
@click.argument("item_id", metavar="ID", type=int)
@pass_app
def resolve(app: AppContext, item_id: int) -> None:
    """Mark exception ID resolved (e.g. fixed by hand in BILL); nothing is sent anywhere."""
    if _move(app, item_id, ExceptionStatus.RESOLVED) is not None:
        click.echo("It leaves the queue; the engine reopens it only if the record fails again.")


@exceptions.command()
@click.argument("item_id", metavar="ID", type=int)
@pass_app
def ignore(app: AppContext, item_id: int) -> None:
    """Do not sync this change: skip the record of exception ID while its content is unchanged.

    Once the record changes in the source, it is synced again (and queued again if it still
    fails).
    """
    moved = _move(app, item_id, ExceptionStatus.IGNORED)
    if moved is None:
        return
    item, _ = moved
    click.echo(
        "The engine skips this record while its content is unchanged; "
        "once it changes in the source, it is synced again."
    )
    if item.payload_digest is None:
        click.echo(
            "note: this entry has no content digest (the record could not be read), so the "
            "engine cannot recognise it: if the source returns it again, it is queued again.",
            err=True,
        )
