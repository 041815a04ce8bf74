"""``ml-connector sync run`` and ``ml-connector replay``: the engine, from the command line."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import EXIT_FAILURE, AppContext, pass_app
from ml_connector.cli._output import echo_json
from ml_connector.engine import RunSummary, SyncOptions, open_engine, run_async
from ml_connector.store import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["register"]

#: The tallies of the end-of-run summary, in the order people read them.
SUMMARY_ROWS = (
    ("payables read", "payables_read"),
    ("vendors created", "vendors_created"),
    ("bills created", "bills_created"),
    ("bills updated", "bills_updated"),
    ("bills unchanged", "bills_unchanged"),
    ("bills paid, not updated", "bills_paid_unchanged"),
    ("failed (exception queue)", "bills_failed"),
    ("rejected by the source", "payables_rejected"),
    ("payments recorded", "payments_recorded"),
    ("payments failed", "payments_failed"),
)


#: Tallies of the startup sweep (interrupted writes), shown only when there were any.
RECOVERY_ROWS = (
    ("interrupted writes found", "intents_reconciled"),
    ("interrupted writes not sent", "intents_not_created"),
    ("undecided (state show)", "intents_undecided"),
)


class PlainObserver:
    """Structured log lines for logs and pipes: one line per stage, none per record."""

    def __init__(self, connection: str) -> None:
        self._connection = connection

    def stage(self, name: str) -> None:
        """Announce a stage."""
        click.echo(f"connection={self._connection} stage={name}", err=True)

    def count(self, key: str, n: int = 1) -> None:
        """Counts are reported in the summary."""

    def wait(self, what: str, waited: float, limit: float) -> None:
        """Say what the run waits for, so a wait never looks like a hang."""
        click.echo(
            f"connection={self._connection} waiting_for={what!r} "
            f"waited={waited:.0f}s limit={limit:.0f}s",
            err=True,
        )


class ProgressObserver:
    """A live rich display of the stage and the main tallies, for terminals."""

    def __init__(self, connection: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
        )
        self._task = self._progress.add_task(f"{connection}: starting", total=None)
        self._connection = connection
        self._stage = "starting"
        self._waiting = ""
        self._counts: dict[str, int] = {}

    def __enter__(self) -> ProgressObserver:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _refresh(self) -> None:
        shown = ", ".join(
            f"{label} {self._counts[key]}" for label, key in SUMMARY_ROWS if self._counts.get(key)
        )
        self._progress.update(
            self._task,
            description=f"{self._connection}: {self._stage}  {self._waiting or shown}".rstrip(),
        )

    def stage(self, name: str) -> None:
        """Show the new stage."""
        self._stage = name
        self._waiting = ""
        self._refresh()

    def count(self, key: str, n: int = 1) -> None:
        """Show the tally (the run is moving again: any wait is over)."""
        self._counts[key] = self._counts.get(key, 0) + n
        self._waiting = ""
        self._refresh()

    def wait(self, what: str, waited: float, limit: float) -> None:
        """Show what the run waits for, for how long so far, and the most it will wait."""
        self._waiting = f"waiting for {what}: {waited:.0f} s (gives up after {limit:.0f} s)"
        self._refresh()


def summary_lines(summary: RunSummary) -> Iterator[str]:
    """The end-of-run summary as aligned text lines."""
    width = max(len(label) for label, _ in SUMMARY_ROWS)
    yield f"run {summary.run_id}: {summary.status.value}"
    for label, key in SUMMARY_ROWS:
        yield f"  {label.ljust(width)}  {summary.counts.get(key, 0)}"
    for label, key in RECOVERY_ROWS:  # only after an interruption
        if summary.counts.get(key):
            yield f"  {label.ljust(width)}  {summary.counts[key]}"
    if summary.error:
        yield f"  error: {summary.error}"


async def _run(app: AppContext, name: str, options: SyncOptions, observer: Any) -> RunSummary:
    async with open_engine(
        app.store, app.vault, app.registry, name, options=options, observer=observer
    ) as engine:
        return await engine.run()


def register(main: click.Group) -> None:
    """Add ``sync run`` and ``replay`` to ``main``."""

    @main.group()
    def sync() -> None:
        """Run the sync of a connection."""

    @sync.command("run")
    @click.argument("name")
    @click.option(
        "--lookback",
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="Minutes to re-read before the stored cursor (clock skew, late commits).",
    )
    @click.option("--workers", type=click.IntRange(min=0), default=0, help="Records at once.")
    @click.option("--no-bulk", is_flag=True, help="Create bills one by one.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    @pass_app
    def run(
        app: AppContext, name: str, lookback: int, workers: int, no_bulk: bool, as_json: bool
    ) -> None:
        """Sync connection NAME: accounts, vendors and bills in, payments back."""
        options = SyncOptions(
            lookback=timedelta(minutes=lookback), workers=workers, bulk=not no_bulk
        )
        if sys.stderr.isatty() and not as_json:
            with ProgressObserver(name) as observer:
                summary = run_async(_run(app, name, options, observer))
        else:
            summary = run_async(_run(app, name, options, PlainObserver(name)))
        if as_json:
            echo_json(
                {
                    "run_id": summary.run_id,
                    "status": summary.status.value,
                    "counts": summary.counts,
                    "error": summary.error,
                }
            )
        else:
            for line in summary_lines(summary):
                click.echo(line)
        if summary.status is not RunStatus.SUCCEEDED:
            sys.exit(EXIT_FAILURE)

    @main.command()
    @click.argument("name")
    @click.option("--record", "record", required=True, help="The payable's source id.")
    @pass_app
    def replay(app: AppContext, name: str, record: str) -> None:
        """Re-drive one payable of connection NAME now, whatever the cursor says."""

        async def go() -> dict[str, int]:
            async with open_engine(app.store, app.vault, app.registry, name) as engine:
                return await engine.replay_payable(record)

        counts = run_async(go())
        done = {k: v for k, v in counts.items() if v and k.startswith(("bills_", "vendors_"))}
        click.echo(
            f"replayed {record}: "
            + (", ".join(f"{k} {v}" for k, v in done.items()) or "nothing to do")
        )
