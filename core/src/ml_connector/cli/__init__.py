"""The ``ml-connector`` command.

Commands live in their own modules (``_sync``, ``_demo``, …) and are imported only when one of
them runs (or asks for its own ``--help``), so ``ml-connector --version`` and ``--help`` answer
at once: a command's module may import the store, the engine or the emulators at its top.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

import click

from ml_connector import __version__
from ml_connector.cli._app import AppContext, MlConnectorGroup
from ml_connector.contract import CONTRACT_VERSION

if TYPE_CHECKING:
    from click.formatting import HelpFormatter

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("_audit", "Show the audit trail of CONNECTION, newest first."),
    "connections": (
        "_connections",
        "Add, list, show and remove connections (an ERP paired with a BILL organisation).",
    ),
    "demo": (
        "_demo",
        "Sync an emulated ERP with an emulated BILL on loopback, and back; check the result.",
    ),
    "emulate": (
        "_emulate",
        "Serve SYSTEM's emulator on 127.0.0.1 until stopped (Ctrl-C or SIGTERM).",
    ),
    "exceptions": (
        "_exceptions",
        "The exception queue: records that cannot be synced until someone acts.",
    ),
    "keys": ("_keys", "Manage the master key that encrypts stored credentials."),
    "mapping": (
        "_mapping",
        "A connection's account and dimension mapping (source value -> sink entry).",
    ),
    "ping": (
        "_connections",
        "Sign in to both systems of connection NAME and make one cheap call on each.",
    ),
    "plugin": ("_plugin_new", "Write your own plugin."),
    "plugins": ("_plugins", "Installed plugins and extensions."),
    "replay": (
        "_sync",
        "Re-drive one payable of connection NAME now, whatever the cursor says.",
    ),
    "runs": ("_runs", "Past and current sync runs."),
    "serve": (
        "_serve",
        "Run every connection each interval; receive webhooks; report /health and /metrics.",
    ),
    "state": ("_state", "Cursors: how far each stream of a connection has been read."),
    "sync": ("_sync", "Run the sync of a connection."),
}
"""Each command: the module whose ``register(main)`` adds it, and its one-line help.

The help line is what ``ml-connector --help`` lists without importing the module; a test keeps
it equal to the command's own.
"""


class _LazyMain(MlConnectorGroup):
    """The top-level group: commands are imported from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, loaded or not."""
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, after importing (and registering) its module if it is not loaded yet."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"ml_connector.cli.{COMMANDS[cmd_name][0]}")
            module.register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: HelpFormatter) -> None:
        """List the commands with their help lines, importing none of them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                text = loaded.get_short_help_str(limit)
            else:
                text = _shorten(COMMANDS[name][1], limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word to fit ``limit`` characters, marked with ``...`` as click does."""
    if len(text) <= limit:
        return text
    words: list[str] = []
    for word in text.split():
        if len(" ".join([*words, word])) + 3 > limit:
            break
        words.append(word)
    return " ".join(words).rstrip(",;:") + "..."


@click.group(cls=_LazyMain)
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
