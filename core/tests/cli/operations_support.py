"""Helpers for the operator command tests (runs, audit, exceptions, state, mapping)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from ml_connector.cli import main
from ml_connector.engine._ledger import Ledger

if TYPE_CHECKING:
    from ml_connector.store import Store

#: Stands in for sealed credentials: no operator command may ever print it.
SEALED = b"SEALED-TOKEN-never-printed"


def add_connection(store: Store, name: str) -> Ledger:
    """A connection and the ledger a run of it writes with (rows as the engine writes them)."""
    row = store.add_connection(
        name,
        source_system="erp",
        sink_system="bill",
        source_credentials=SEALED,
        sink_credentials=SEALED,
    )
    assert row.id is not None
    return Ledger(store, row.id, plugin_versions={"erp": "1.2.0", "bill": "0.9.1"})


def run_cli(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    assert SEALED.decode() not in result.output
    return result


def one_line_error(result: Result, *fragments: str) -> None:
    """Exit 2 and a single ``Error:`` line on stderr that mentions every fragment."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
