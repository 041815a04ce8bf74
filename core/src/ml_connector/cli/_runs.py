"""``ml-connector runs list|show``: what each sync run did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.store import get_run, list_runs

if TYPE_CHECKING:
    from datetime import datetime

    from ml_connector.store import RunRow

__all__ = ["register"]

#: The tallies of ``runs list`` (column -> the run counts it adds up).
KEY_COUNTS: dict[str, tuple[str, ...]] = {
    "created": ("bills_created",),
    "updated": ("bills_updated",),
    "unchanged": ("bills_unchanged",),
    "failed": ("bills_failed", "payables_rejected", "payments_failed", "payments_rejected"),
    "payments": ("payments_recorded",),
}
LIST_COLUMNS = ("id", "connection", "started", "finished", "status", *KEY_COUNTS)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _tally(counts: dict[str, Any], keys: tuple[str, ...]) -> int:
    return sum(int(counts.get(key) or 0) for key in keys)


def run_json(run: RunRow, connection: str) -> dict[str, Any]:
    """A run as JSON-ready data."""
    duration = None
    if run.finished_at is not None:
        duration = round((run.finished_at - run.started_at).total_seconds(), 3)
    return {
        "id": run.id,
        "connection": connection,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
        "duration_seconds": duration,
        "counts": dict(sorted(run.counts.items())),
        "error": run.error,
    }


def register(main: click.Group) -> None:
    """Add the ``runs`` group to ``main``."""
    main.add_command(runs)


@click.group()
def runs() -> None:
    """Past and current sync runs."""


@runs.command("list")
@click.argument("connection", required=False)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show at most N runs (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(app: AppContext, connection: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first: of CONNECTION, or of every connection.

    CREATED, UPDATED and UNCHANGED count bills; FAILED counts records sent to the exception
    queue; PAYMENTS counts payments recorded in the source.
    """
    connection_id = app.store.get_connection(connection).id if connection is not None else None
    with app.store.session(read_only=True) as session:
        found = list_runs(session, connection_id, limit or None)
    if as_json:
        echo_json([run_json(run, name) for run, name in found])
        return
    rows = [
        {
            "id": run.id,
            "connection": name,
            "started": _time(run.started_at),
            "finished": _time(run.finished_at),
            "status": run.status,
            **{column: _tally(run.counts, keys) for column, keys in KEY_COUNTS.items()},
        }
        for run, name in found
    ]
    echo_table(rows, LIST_COLUMNS, "No runs yet: start one with `ml-connector sync run`.")


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_app
def show(app: AppContext, run_id: int, as_json: bool) -> None:
    """Show run RUN_ID: status, times, every count and the error, if any."""
    with app.store.session(read_only=True) as session:
        run, connection = get_run(session, run_id)
    data = run_json(run, connection)
    if as_json:
        echo_json(data)
        return
    click.echo(f"run {run.id} of {connection}: {run.status}")
    click.echo(f"  started   {_time(run.started_at)}")
    finished = _time(run.finished_at) or "-"
    if data["duration_seconds"] is not None:
        finished += f"  ({data['duration_seconds']:.1f} s)"
    click.echo(f"  finished  {finished}")
    counts: dict[str, Any] = data["counts"]
    if counts:
        click.echo("  counts:")
        width = max(len(key) for key in counts)
        for key, value in counts.items():
            click.echo(f"    {key.ljust(width)}  {value}")
    else:
        click.echo("  counts:   none")
    if run.error:
        click.echo(f"  error     {run.error}")
