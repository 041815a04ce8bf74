"""``ml-connector plugin new``: write a new plugin distribution from the template."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import click

from ml_connector.cli._app import EXIT_USAGE, fail
from ml_connector.description import Role
from ml_connector.registry import PLUGIN_INFO_GROUP
from ml_connector.template import (
    TemplateError,
    TemplateSpec,
    default_display_name,
    render,
    validate_name,
)

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add the ``plugin`` group to the ``ml-connector`` command."""
    main.add_command(plugin)


@click.group()
def plugin() -> None:
    """Write your own plugin."""


@plugin.command("new")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.SOURCE.value,
    show_default=True,
    help="source: an ERP the bills come from; sink: the payables system they go to.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="The directory to create. Default: ./ml-connector-NAME.",
)
@click.option("--display-name", help="The system's name for people. Default: NAME, titled.")
def new(name: str, role: str, directory: Path | None, display_name: str | None) -> None:
    """Write a new plugin distribution ml-connector-NAME for system key NAME.

    It holds pyproject.toml (version 0.1.0, the three entry points, ruff and mypy settings),
    README.md, CHANGELOG.md, the package (PLUGIN_INFO, plugin.py with every hook of the role to
    fill in, a working client.py and schemas.py for an example REST API, an ERP's for a source, a
    payables system's for a sink, and emulator.py, that API's emulator) and
    tests/test_conformance.py, which runs the role's conformance suite against the emulator: it
    fails, naming each hook, until the hooks are implemented. See docs/plugin-guide.md.
    """
    try:
        spec = TemplateSpec(
            validate_name(name), Role(role), display_name or default_display_name(name)
        )
        taken = [ep for ep in entry_points(group=PLUGIN_INFO_GROUP) if ep.name == name]
        if taken:
            owner = taken[0].dist.name if taken[0].dist else "an installed distribution"
            raise TemplateError(
                f"system key {name!r} is already provided by {owner}; choose another name"
            )
        target = directory if directory is not None else Path(spec.distribution)
        written = render(spec, target)
    except TemplateError as exc:
        fail(str(exc), EXIT_USAGE)
    click.echo(f"Created {spec.distribution} in {target}:")
    for path in written:
        click.echo(f"  {path.as_posix()}")
    click.echo(
        "\nNext:\n"
        f"  cd {target}\n"
        "  pip install -e . pytest pytest-asyncio   # where ml-connector is installed\n"
        "  pytest                                   # fails, naming each hook to implement\n"
        f"  then fill in src/{spec.package}/plugin.py (docs/plugin-guide.md §4)\n"
        "Inside the ml-connector repository, add it to the workspace instead: two root lines,\n"
        "then uv lock (docs/plugin-guide.md §10)."
    )
