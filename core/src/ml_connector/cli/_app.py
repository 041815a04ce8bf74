"""The CLI's shared state and its error policy.

Exit codes: 0 ok, 1 the job failed, 2 usage or bad input. Errors print as one line on stderr; the
traceback only with ``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ml_connector.errors import (
    ConfigurationError,
    ConnectorError,
    InvalidRecordError,
    PluginNotFoundError,
)

if TYPE_CHECKING:
    from ml_connector.registry import Registry
    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "AppContext", "MlConnectorGroup", "fail", "pass_app"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class AppContext:
    """What every command may need, built lazily so ``--help`` and ``--version`` stay instant."""

    db: str | None = None
    debug: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release the database connections, if a command opened the store."""
        if "store" in self.__dict__:
            self.store.dispose()

    @cached_property
    def store(self) -> Store:
        """The state store, migrated to the current schema."""
        from ml_connector.store import open_store

        return open_store(self.db)

    @cached_property
    def vault(self) -> Vault:
        """The credential vault (master key from the environment or the key file)."""
        from ml_connector.vault import Vault

        return Vault.from_environment()

    @cached_property
    def registry(self) -> Registry:
        """The installed plugins."""
        from ml_connector.registry import Registry

        return Registry()


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class MlConnectorGroup(click.Group):
    """A click group that turns the project's errors into one line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, mapping errors to exit codes."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (ConfigurationError, InvalidRecordError, PluginNotFoundError) as exc:
            self._report(ctx, exc, EXIT_USAGE)
        except ConnectorError as exc:
            self._report(ctx, exc, EXIT_FAILURE)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_FAILURE)
        except Exception as exc:  # the one place unexpected errors become one line
            self._report(ctx, exc, EXIT_FAILURE, internal=True)

    @staticmethod
    def _report(ctx: click.Context, exc: BaseException, code: int, internal: bool = False) -> None:
        app = ctx.find_object(AppContext)
        debug = (app.debug if app else False) or bool(os.environ.get("ML_CONNECTOR_DEBUG"))
        if debug:
            logging.getLogger("ml_connector").exception("command failed")
        text = f"{type(exc).__name__}: {exc}" if internal else str(exc)
        hint = "" if debug or not internal else " (run with --debug for the traceback)"
        fail(f"{text}{hint}", code)
