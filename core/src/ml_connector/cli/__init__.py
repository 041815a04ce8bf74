"""The ``ml-connector`` command."""

from __future__ import annotations

import logging

import click

from ml_connector import __version__
from ml_connector.cli._app import AppContext, MlConnectorGroup
from ml_connector.contract import CONTRACT_VERSION

__all__ = ["main"]


@click.group(cls=MlConnectorGroup)
@click.version_option(
    __version__,
    prog_name="ml-connector",
    message=f"%(prog)s %(version)s (contract {CONTRACT_VERSION})",
)
@click.option(
    "--db",
    envvar="ML_CONNECTOR_DB",
    metavar="PATH_OR_URL",
    help="State database: a SQLite file path or a SQLAlchemy URL (postgresql+psycopg://…). "
    "Default: ml-connector.db in the user data dir. Env: ML_CONNECTOR_DB.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, db: str | None, debug: bool) -> None:
    """Sync approved ERP bills to BILL, and BILL payments back to the ERP."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = AppContext(db=db, debug=debug)
    ctx.call_on_close(ctx.obj.close)


def _register_commands() -> None:
    from ml_connector.cli import (
        _audit,
        _connections,
        _demo,
        _emulate,
        _exceptions,
        _keys,
        _mapping,
        _plugin_new,
        _plugins,
        _runs,
        _serve,
        _state,
        _sync,
    )

    for module in (
        _plugins,
        _plugin_new,
        _connections,
        _keys,
        _sync,
        _runs,
        _audit,
        _exceptions,
        _state,
        _mapping,
        _emulate,
        _serve,
        _demo,
    ):
        module.register(main)


_register_commands()
