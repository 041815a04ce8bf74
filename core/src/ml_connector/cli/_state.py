"""``ml-connector state show|set|reset``: how far each stream of a connection has been read.

A cursor is the source change time up to which every record of a stream is durably recorded; the
next run reads from it (minus the look-back). Links are never touched here: a record whose content
did not change since it was written is recognised by its fingerprint and not written again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._output import echo_json
from ml_connector.store import (
    ExceptionStatus,
    ObjectType,
    count_exceptions,
    count_links,
    list_cursors,
    list_open_intents,
    running_run,
    save_cursor,
)
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from ml_connector.store import Store

__all__ = ["STREAMS", "register"]

#: The engine's streams: payables from the source, payments from the sink.
STREAMS = ("payables", "payments")
_BEGINNING = "from the beginning"


def aware_datetime(_ctx: click.Context, _param: click.Parameter, value: str) -> datetime:
    """Parse an ISO 8601 date and time with a time zone (``Z`` or an offset), into UTC.

    Raises:
        click.BadParameter: The value is unparseable or has no time zone (exit 2, naming it).
    """
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date and time; expected e.g. 2024-05-01T00:00:00Z "
            "or 2024-05-01T02:00:00+02:00"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no time zone; add one, e.g. {parsed.isoformat()}Z (UTC) or "
            f"{parsed.isoformat()}+02:00"
        )
    return parsed.astimezone(UTC)


def _connection_id(app: AppContext, name: str) -> int:
    connection_id = app.store.get_connection(name).id
    assert connection_id is not None
    return connection_id


def _show(value: datetime | None) -> str:
    return _BEGINNING if value is None else value.isoformat()


def _warn_if_running(store: Store, connection_id: int, name: str) -> None:
    with store.session(read_only=True) as session:
        run = running_run(session, connection_id)
    if run is not None:
        click.echo(
            f"note: run {run.id} of {name} (started {run.started_at.isoformat()}) is marked "
            "running; if it is still going, it moves the cursors again when it finishes",
            err=True,
        )


def state_json(store: Store, name: str, connection_id: int) -> dict[str, Any]:
    """Cursors, open intents, links and pending exceptions of a connection, as JSON-ready data."""
    with store.session(read_only=True) as session:
        stored = {c.stream: c for c in list_cursors(session, connection_id)}
        links = count_links(session, connection_id)
        intents = list_open_intents(session, connection_id)
        problems = count_exceptions(session, connection_id)
    cursors = {}
    for stream in sorted(set(STREAMS) | set(stored), key=lambda s: (s not in STREAMS, s)):
        row = stored.get(stream)
        cursors[stream] = {
            "position": None if row is None or row.position is None else row.position.isoformat(),
            "updated_at": None if row is None else row.updated_at.isoformat(),
        }
    known = {t.value: links.get(t.value, 0) for t in ObjectType}
    return {
        "connection": name,
        "cursors": cursors,
        "open_intents": len(intents),
        "open_intent_records": [
            {
                "object_type": i.object_type,
                "source_id": i.source_id,
                "attempts": i.attempts,
                "since": i.created_at.isoformat(),
                "last_error": i.last_error,
            }
            for i in intents
        ],
        "links": {**known, **links},
        "exceptions": {
            status: problems.get(status, 0)
            for status in (ExceptionStatus.OPEN.value, ExceptionStatus.RETRYING.value)
        },
    }


def register(main: click.Group) -> None:
    """Add the ``state`` group to ``main``."""
    main.add_command(state)


@click.group()
def state() -> None:
    """Cursors: how far each stream of a connection has been read."""


@state.command("show")
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_app
def show(app: AppContext, connection: str, as_json: bool) -> None:
    """Show CONNECTION's cursors, open write intents, links and pending exceptions."""
    data = state_json(app.store, connection, _connection_id(app, connection))
    if as_json:
        echo_json(data)
        return
    click.echo(f"connection {connection}")
    click.echo("cursors:")
    width = max(len(stream) for stream in data["cursors"])
    for stream, cursor in data["cursors"].items():
        click.echo(f"  {stream.ljust(width)}  {cursor['position'] or _BEGINNING}")
    click.echo(f"open write intents: {data['open_intents']}")
    for intent in data["open_intent_records"]:
        # Each is decided by the next run's sweep; one listed here after a run is undecided.
        click.echo(
            f"  {intent['object_type']} {intent['source_id']}: since {intent['since']}, "
            f"{intent['attempts']} attempt(s)"
        )
    click.echo("links: " + ", ".join(f"{kind} {n}" for kind, n in data["links"].items()))
    click.echo(
        "exceptions: " + ", ".join(f"{n} {status}" for status, n in data["exceptions"].items())
    )


@state.command("set")
@click.argument("connection")
@click.argument("stream", type=click.Choice(STREAMS))
@click.argument("position", metavar="ISO_DATETIME", callback=aware_datetime)
@pass_app
def set_(app: AppContext, connection: str, stream: str, position: datetime) -> None:
    """Set STREAM's cursor of CONNECTION to ISO_DATETIME (with a time zone, e.g. ...Z).

    The next run reads changes from that time on (minus the look-back). Moving it forward skips
    whatever changed before and is not yet synced; moving it back re-reads, and records that did
    not change are not written again. Stop the connection's runs while you change it.
    """
    if position > utcnow():
        raise click.BadParameter(
            f"{position.isoformat()} is in the future; the engine would skip every change made "
            "until then",
            param_hint="'ISO_DATETIME'",
        )
    connection_id = _connection_id(app, connection)
    _warn_if_running(app.store, connection_id, connection)
    with app.store.session() as session:
        previous = save_cursor(session, connection_id, stream, position)
    click.echo(f"{stream} cursor of {connection}: {_show(previous)} -> {_show(position)}")


@state.command("reset")
@click.argument("connection")
@click.argument("stream", type=click.Choice(STREAMS), required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def reset(app: AppContext, connection: str, stream: str | None, yes: bool) -> None:
    """Read STREAM (default: every stream) of CONNECTION from the beginning at the next run.

    Links are kept, so the full re-read writes nothing that is unchanged: each record's
    fingerprint matches its link and it is skipped. It costs reading time and API calls only.
    """
    connection_id = _connection_id(app, connection)
    streams = (stream,) if stream else STREAMS
    label = " and ".join(streams)
    if not yes:
        click.confirm(
            f"Re-read {label} of {connection} from the beginning at the next run?", abort=True
        )
    _warn_if_running(app.store, connection_id, connection)
    with app.store.session() as session:
        for name in streams:
            save_cursor(session, connection_id, name, None)
    click.echo(
        f"Reset the {label} cursor{'s' if len(streams) > 1 else ''} of {connection}: the next "
        "run reads from the beginning; links are kept, so unchanged records are not written again."
    )
