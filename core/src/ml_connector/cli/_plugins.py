"""``ml-connector plugins``: what is installed, and whether it can run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.registry import PluginKind

if TYPE_CHECKING:
    from ml_connector.registry import PluginRecord

__all__ = ["register"]

COLUMNS = ("name", "distribution", "version", "role", "contract", "status", "error")


def register(main: click.Group) -> None:
    """Add the ``plugins`` group to the ``ml-connector`` command."""
    main.add_command(plugins)


@click.group()
def plugins() -> None:
    """Installed plugins and extensions."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_app
def list_plugins(app: AppContext, as_json: bool) -> None:
    """List installed plugins and whether they can run.

    Every plugin is checked (metadata, contract range, import, hook implementations,
    describe_plugin); a broken or incompatible one is reported, not fatal, so the command exits 0.
    A contract range that breaks the range rule (open, past the next major) is a warning: the
    status says how many, and the warnings follow the table.
    """
    records = app.registry.plugins()
    if as_json:
        echo_json([record.as_json() for record in records])
        return
    echo_table([_row(record) for record in records], COLUMNS, empty="No plugins installed.")
    warned = [record for record in records if record.warnings]
    if warned:
        click.echo()
        for record in warned:
            for warning in record.warnings:
                click.echo(f"warning: {record.name}: {warning}")


def _row(record: PluginRecord) -> dict[str, Any]:
    row = record.as_json()
    if record.kind is PluginKind.EXTENSION:
        row["role"] = "(extension)"
    notes = ["disabled"] if record.disabled else []
    if record.warnings:
        count = len(record.warnings)
        notes.append(f"{count} warning{'' if count == 1 else 's'}")
    if notes:
        row["status"] = f"{record.status.value} ({', '.join(notes)})"
    return row
