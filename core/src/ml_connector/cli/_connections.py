"""``ml-connector connections add|list|show|remove`` and ``ml-connector ping``."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import EXIT_FAILURE, AppContext, pass_app
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.connections import SideInput, create_connection, open_connection
from ml_connector.description import Role
from ml_connector.engine import run_async
from ml_connector.errors import ConfigurationError, ConnectorError
from ml_connector.settings import describe_fields

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ml_connector.drivers import Driver
    from ml_connector.store import ConnectionRow

__all__ = ["register"]

_MASK = "********"


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        result[key.strip()] = value
    return result


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _flag(value: str) -> bool | str:
    """Options are mostly switches: read yes/no words as booleans, anything else as text."""
    word = value.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else value


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        # The parser's message can quote the file's text, which may be a secret: say where only.
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ConfigurationError(
            f"{path} is not valid {path.suffix[1:] or 'JSON'}{where}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold an object of field names and values")
    return data


def _gather(
    model: type[BaseModel], given: dict[str, Any], env_prefix: str, label: str
) -> dict[str, Any]:
    """Fill missing fields from ``<env_prefix><FIELD>`` variables, then prompts on a terminal."""
    values = dict(given)
    interactive = sys.stdin.isatty()
    for spec in describe_fields(model):
        if spec.name in values:
            continue
        env_value = os.environ.get(f"{env_prefix}{spec.name.upper()}")
        if env_value is not None:
            values[spec.name] = env_value
        elif interactive and spec.required:
            prompt = f"{label} {spec.name}" + (f" ({spec.description})" if spec.description else "")
            values[spec.name] = click.prompt(prompt, hide_input=spec.secret)
    return values


def _side(
    app: AppContext,
    role: Role,
    system: str,
    settings: dict[str, Any],
    credentials: dict[str, Any],
) -> SideInput:
    description = app.registry.load(system, role).description
    prefix = f"ML_CONNECTOR_{role.value.upper()}_"
    return SideInput(
        system=system,
        settings=_gather(description.settings_model, settings, prefix, f"{role.value} setting"),
        credentials=_gather(
            description.credentials_model, credentials, prefix, f"{role.value} credential"
        ),
    )


def _summary(row: ConnectionRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "source": row.source_system,
        "sink": row.sink_system,
        "created_at": row.created_at.isoformat(),
    }


def _credential_fields(app: AppContext, system: str, role: Role) -> dict[str, str] | str:
    try:
        model = app.registry.load(system, role).description.credentials_model
    except ConnectorError:
        return "stored encrypted (plugin not loadable)"
    return {spec.name: _MASK for spec in describe_fields(model)}


def register(main: click.Group) -> None:
    """Add the connection commands to ``main``."""

    @main.group()
    def connections() -> None:
        """Add, list, show and remove connections (an ERP paired with a BILL organisation)."""

    @connections.command("add")
    @click.argument("name")
    @click.option("--source", "source_system", required=True, help="Source (ERP) system key.")
    @click.option(
        "--sink", "sink_system", default="bill", show_default=True, help="Sink system key."
    )
    @click.option("--source-setting", multiple=True, metavar="KEY=VALUE", help="Source setting.")
    @click.option("--sink-setting", multiple=True, metavar="KEY=VALUE", help="Sink setting.")
    @click.option(
        "--source-settings",
        type=click.Path(path_type=Path, dir_okay=False),
        help="JSON/TOML file of source settings.",
    )
    @click.option(
        "--sink-settings",
        type=click.Path(path_type=Path, dir_okay=False),
        help="JSON/TOML file of sink settings.",
    )
    @click.option(
        "--source-credentials",
        type=click.Path(path_type=Path, dir_okay=False),
        help="JSON/TOML file of source credentials (else ML_CONNECTOR_SOURCE_<FIELD>, else a "
        "hidden prompt).",
    )
    @click.option(
        "--sink-credentials",
        type=click.Path(path_type=Path, dir_okay=False),
        help="JSON/TOML file of sink credentials (else ML_CONNECTOR_SINK_<FIELD>, else a "
        "hidden prompt).",
    )
    @click.option(
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Connection option, e.g. create_missing_accounts=true.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @pass_app
    def add(
        app: AppContext,
        name: str,
        source_system: str,
        sink_system: str,
        source_setting: tuple[str, ...],
        sink_setting: tuple[str, ...],
        source_settings: Path | None,
        sink_settings: Path | None,
        source_credentials: Path | None,
        sink_credentials: Path | None,
        options: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Add a connection NAME; credentials are validated, then stored encrypted."""
        source = _side(
            app,
            Role.SOURCE,
            source_system,
            {**_read_file(source_settings), **_pairs(source_setting, "--source-setting")},
            _read_file(source_credentials),
        )
        sink = _side(
            app,
            Role.SINK,
            sink_system,
            {**_read_file(sink_settings), **_pairs(sink_setting, "--sink-setting")},
            _read_file(sink_credentials),
        )
        parsed_options = {k: _flag(v) for k, v in _pairs(options, "--option").items()}
        row = create_connection(
            app.store, app.vault, app.registry, name, source, sink, parsed_options
        )
        if as_json:
            echo_json(_summary(row))
        else:
            click.echo(
                f"Added connection {row.name}: {row.source_system} -> {row.sink_system} "
                f"(credentials encrypted in {app.store.url})"
            )

    @connections.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
    @pass_app
    def list_(app: AppContext, as_json: bool) -> None:
        """List connections."""
        rows = [_summary(r) for r in app.store.list_connections()]
        if as_json:
            echo_json(rows)
        else:
            echo_table(
                rows,
                ["name", "source", "sink", "created_at"],
                "No connections yet: add one with `ml-connector connections add`.",
            )

    @connections.command("show")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
    @pass_app
    def show(app: AppContext, name: str, as_json: bool) -> None:
        """Show a connection's settings; credentials appear as ******** and are never printed."""
        row = app.store.get_connection(name)
        data = {
            **_summary(row),
            "options": row.options,
            "source_settings": row.source_settings,
            "sink_settings": row.sink_settings,
            "source_credentials": _credential_fields(app, row.source_system, Role.SOURCE),
            "sink_credentials": _credential_fields(app, row.sink_system, Role.SINK),
        }
        if as_json:
            echo_json(data)
            return
        for key, value in data.items():
            if isinstance(value, dict):
                click.echo(f"{key}:")
                for k, v in value.items():
                    click.echo(f"  {k}: {v}")
            else:
                click.echo(f"{key}: {value}")

    @connections.command("remove")
    @click.argument("name")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @pass_app
    def remove(app: AppContext, name: str, yes: bool) -> None:
        """Remove a connection with its cursors, links, audit and exceptions."""
        app.store.get_connection(name)
        if not yes:
            click.confirm(
                f"Remove {name} and all its sync state (links, cursors, audit)?", abort=True
            )
        app.store.remove_connection(name)
        click.echo(f"Removed connection {name}.")

    @main.command()
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
    @pass_app
    def ping(app: AppContext, name: str, as_json: bool) -> None:
        """Sign in to both systems of connection NAME and make one cheap call on each."""
        results = run_async(_ping(app, name))
        if as_json:
            echo_json(results)
        else:
            for item in results:
                state = "ok" if item["ok"] else "FAILED"
                click.echo(f"{item['role']} {item['system']}: {state} - {item['detail']}")
        if not all(item["ok"] for item in results):
            sys.exit(EXIT_FAILURE)


async def _ping(app: AppContext, name: str) -> list[dict[str, Any]]:
    connection = open_connection(app.store, app.vault, app.registry, name)
    try:
        return [await _check(connection.source), await _check(connection.sink)]
    finally:
        await connection.close()


async def _check(driver: Driver) -> dict[str, Any]:
    result: dict[str, Any] = {"role": driver.role.value, "system": driver.system}
    try:
        await driver.authenticate()
        check = await driver.check_connection()
    except ConnectorError as exc:
        return {**result, "ok": False, "detail": str(exc)}
    return {**result, "ok": check.ok, "detail": check.detail}
