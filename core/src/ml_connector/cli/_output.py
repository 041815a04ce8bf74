"""How commands print: JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

__all__ = ["echo_json", "echo_table"]


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (dates and Decimals as strings)."""
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], empty: str) -> None:
    """Print rows as a plain aligned table, or ``empty`` when there are none."""
    if not rows:
        click.echo(empty)
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
