"""``ml-connector demo``: the main job on emulators, for a newcomer to watch."""

from __future__ import annotations

import sys
from typing import Any

import click

from ml_connector.cli._app import EXIT_FAILURE
from ml_connector.cli._output import echo_json
from ml_connector.cli._sync import PlainObserver, ProgressObserver
from ml_connector.demo import DEFAULT_SOURCE, DemoOptions, check_problems, run_demo

__all__ = ["register"]

_LINES = (
    ("bills eligible in the ERP", "bills_eligible"),
    ("bills that must not move (held, unapproved, POs)", "bills_held"),
    ("accounts mapped", "accounts_mapped"),
    ("vendors created in BILL", "vendors_created"),
    ("bills created in BILL", "bills_created"),
    ("exceptions queued", "exceptions"),
    ("bills paid in BILL", "bills_paid_in_bill"),
    ("payments recorded back in the ERP", "payments_recorded"),
    ("duplicates found", "duplicates"),
    ("missing bills", "missing"),
    ("bills in BILL that must not have moved", "held_moved"),
)


def _print_summary(summary: dict[str, Any]) -> None:
    width = max(len(label) for label, _ in _LINES)
    click.echo(f"\n{summary['source']} -> BILL, {summary['seconds']} s ({summary['status']})")
    for label, key in _LINES:
        click.echo(f"  {label.ljust(width)}  {summary[key]}")
    for item in summary["exception_queue"][:5]:
        where = f"{item['record']}" + (f", field {item['field']}" if item["field"] else "")
        click.echo(f"  exception: {item['type']} {where}: {item['reason']}")
    for error in summary["errors"]:
        click.echo(f"  error: {error}")
    problems = check_problems(summary)
    if problems:
        click.echo(f"Check: FAILED. {'; '.join(problems)}.")
    else:
        click.echo("Check: nothing duplicated, nothing missing, nothing moved that must not.")


def register(main: click.Group) -> None:
    """Add ``demo`` to ``main``."""

    @main.command()
    @click.option("--source", default=DEFAULT_SOURCE, show_default=True, help="The ERP to emulate.")
    @click.option("--bills", type=click.IntRange(1, 100_000), default=50, show_default=True)
    @click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Per request.")
    @click.option("--seed", type=int, default=7, show_default=True, help="Seeds the data.")
    @click.option(
        "--db",
        "state",
        metavar="PATH",
        help="Keep the demo's state in this SQLite file (default: a temporary one; the global "
        "--db and ML_CONNECTOR_DB are ignored, so the demo never touches real state).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
    def demo(
        source: str, bills: int, latency_ms: float, seed: int, state: str | None, as_json: bool
    ) -> None:
        """Sync an emulated ERP with an emulated BILL on loopback, and back; check the result.

        State goes to a temporary SQLite file (kept with --db), credentials are encrypted with a
        temporary key, and nothing leaves this machine.
        """
        options = DemoOptions(
            source=source, bills=bills, latency=latency_ms / 1000, seed=seed, db=state
        )
        if as_json or not sys.stderr.isatty():
            summary = run_demo(options, None if as_json else PlainObserver("demo"))
        else:
            with ProgressObserver("demo") as observer:
                summary = run_demo(options, observer)
        if as_json:
            echo_json(summary)
        else:
            _print_summary(summary)
        if summary["status"] != "succeeded" or check_problems(summary):
            sys.exit(EXIT_FAILURE)
