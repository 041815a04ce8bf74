"""``ml-connector mapping show|set|unset|export|import``: a connection's account mapping.

Each source account (or dimension value: subaccount, department, …) is coded to one sink entry.
Sync runs derive mappings by number or name; the ones set here are *manual*, and runs never
change them. Files are CSV or TOML with the fields ``source_kind``, ``source_id``, ``sink_kind``
and ``sink_id`` (an exported ``method`` is ignored on import)::

    source_kind,source_id,sink_kind,sink_id
    account,6100,account,0ca01ABC
    department,OPS,department,0cl02XYZ

    [[mapping]]
    source_kind = "account"
    source_id = "6100"
    sink_kind = "account"
    sink_id = "0ca01ABC"
"""

from __future__ import annotations

import csv
import io
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.cli._output import echo_json, echo_table
from ml_connector.default_account_matcher import ACCOUNT_KIND
from ml_connector.errors import ConfigurationError
from ml_connector.models import AccountMapping, DimensionKind, MappingMethod
from ml_connector.store import delete_mapping, list_mappings, upsert_mappings

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ml_connector.store import AccountMappingRow

__all__ = ["FIELDS", "KINDS", "parse_mapping_file", "register"]

#: What a mapping can map: accounts, and the values of every dimension.
KINDS = (ACCOUNT_KIND, *(kind.value for kind in DimensionKind))
#: The fields of a mapping file, in file order.
FIELDS = ("source_kind", "source_id", "sink_kind", "sink_id")
#: Exported beside the fields for the reader; ignored on import.
_INFORMATIONAL = ("method",)
_EXPORTED = (*FIELDS, *_INFORMATIONAL)
_TOML_TABLE = "mapping"
_MAX_ID = 255  # the store's column width for ids


# --- Reading files -----------------------------------------------------------------------------


def _csv_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(where, fields)`` per data row; structural problems raise at once."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra")
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        if not header:
            raise ConfigurationError(f"{path} is empty; expected the header {','.join(FIELDS)}")
        reader.fieldnames = header
        missing = [f for f in FIELDS if f not in header]
        unknown = [h for h in header if h not in _EXPORTED]
        problems = [
            *([f"missing column {', '.join(missing)}"] if missing else []),
            *([f"unknown column {', '.join(repr(u) for u in unknown)}"] if unknown else []),
        ]
        if problems:
            raise ConfigurationError(
                f"{path} line 1: {'; '.join(problems)}; expected the header {','.join(FIELDS)}"
            )
        entries = []
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if row.get("\0extra"):
                raise ConfigurationError(f"{where}: more fields than the header has")
            entries.append((where, row))
    except csv.Error as exc:
        raise ConfigurationError(f"{path} line {reader.line_num}: {exc}") from None
    return entries


def _toml_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    unknown = [key for key in data if key != _TOML_TABLE]
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown key {', '.join(repr(k) for k in unknown)}; "
            f"expected [[{_TOML_TABLE}]] tables only"
        )
    tables = data.get(_TOML_TABLE, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigurationError(f"{path}: {_TOML_TABLE} must be an array of tables [[mapping]]")
    entries = []
    for number, table in enumerate(tables, start=1):
        where = f"{path} [[{_TOML_TABLE}]] entry {number}"
        unknown = [key for key in table if key not in _EXPORTED]
        if unknown:
            raise ConfigurationError(f"{where}: unknown key {', '.join(repr(k) for k in unknown)}")
        entries.append((where, table))
    return entries


def _field(values: dict[str, Any], name: str) -> str:
    """One field, stripped; ``ValueError`` says what is wrong with it."""
    value = values.get(name)
    if value is None:
        raise ValueError(f"{name} is missing")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string (quote it)")
    value = value.strip()
    if not value:
        raise ValueError(f"{name} is empty")
    if name.endswith("_kind") and value not in KINDS:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(KINDS)}")
    if len(value) > _MAX_ID:
        raise ValueError(f"{name} is longer than {_MAX_ID} characters")
    return value


def _mapping(values: dict[str, Any]) -> AccountMapping:
    fields = {name: _field(values, name) for name in FIELDS}
    return AccountMapping(**fields, method=MappingMethod.MANUAL)


def parse_mapping_file(path: Path) -> list[AccountMapping]:
    """Read a CSV or TOML mapping file (by extension) as manual mappings.

    Every entry is checked before anything is returned.

    Raises:
        ConfigurationError: The file cannot be read, or an entry is malformed or a duplicate;
            the message names the first bad line (CSV) or entry (TOML) and its field, and how
            many more problems there are.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        entries = _csv_entries(path)
    elif suffix == ".toml":
        entries = _toml_entries(path)
    else:
        raise ConfigurationError(f"{path}: use a .csv or .toml file")
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    mappings = []
    for where, values in entries:
        try:
            mapping = _mapping(values)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        key = (mapping.source_kind, mapping.source_id)
        if key in seen:
            problems.append(
                f"{where}: source_id {mapping.source_id!r} ({mapping.source_kind}) is mapped "
                f"already at {seen[key].removeprefix(f'{path} ')}"
            )
            continue
        seen[key] = where
        mappings.append(mapping)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigurationError(f"{problems[0]}{more}; nothing was imported")
    return mappings


# --- Writing files -----------------------------------------------------------------------------

_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    """A TOML basic string (control characters escaped, everything else as it is)."""
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _row_values(row: AccountMappingRow) -> dict[str, str]:
    return {name: str(getattr(row, name)) for name in _EXPORTED}


def to_csv(rows: Iterable[AccountMappingRow]) -> str:
    """Mappings as CSV with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_EXPORTED, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_row_values(row) for row in rows)
    return buffer.getvalue()


def to_toml(rows: Iterable[AccountMappingRow]) -> str:
    """Mappings as TOML: one ``[[mapping]]`` table each."""
    parts = [
        "# Account mappings exported by `ml-connector mapping export`.\n"
        "# `ml-connector mapping import` makes every entry a manual mapping; `method` is ignored.\n"
    ]
    for row in rows:
        body = "".join(f"{k} = {_toml_string(v)}\n" for k, v in _row_values(row).items())
        parts.append(f"\n[[{_TOML_TABLE}]]\n{body}")
    return "".join(parts)


# --- Commands ----------------------------------------------------------------------------------


def _connection_id(app: AppContext, name: str) -> int:
    connection_id = app.store.get_connection(name).id
    assert connection_id is not None
    return connection_id


def _describe(row: AccountMappingRow) -> str:
    return f"{row.source_kind} {row.source_id} -> {row.sink_kind} {row.sink_id}"


def mapping_json(row: AccountMappingRow) -> dict[str, Any]:
    """A mapping as JSON-ready data."""
    return {**_row_values(row), "updated_at": row.updated_at.isoformat()}


def register(main: click.Group) -> None:
    """Add the ``mapping`` group to ``main``."""
    main.add_command(mapping)


@click.group()
def mapping() -> None:
    """A connection's account and dimension mapping (source value -> sink entry).

    Sync runs derive mappings by number or name; the ones set or imported here are manual, and
    runs never change them.
    """


@mapping.command("show")
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def show(app: AppContext, connection: str, as_json: bool) -> None:
    """Show CONNECTION's mappings and how each was decided (number, name, manual, …)."""
    connection_id = _connection_id(app, connection)
    with app.store.session(read_only=True) as session:
        rows = list_mappings(session, connection_id)
    if as_json:
        echo_json([mapping_json(row) for row in rows])
        return
    echo_table(
        [_row_values(row) for row in rows],
        _EXPORTED,
        f"No mappings for {connection} yet: a sync run derives them, or set one with "
        "`ml-connector mapping set`.",
    )


_KIND_HELP = "What SOURCE_ID is: an account or a dimension value."


@mapping.command("set")
@click.argument("connection")
@click.argument("source_id")
@click.argument("sink_id")
@click.option(
    "--kind", type=click.Choice(KINDS), default=ACCOUNT_KIND, show_default=True, help=_KIND_HELP
)
@click.option(
    "--sink-kind", type=click.Choice(KINDS), help="What SINK_ID is (default: the same as --kind)."
)
@pass_app
def set_(
    app: AppContext,
    connection: str,
    source_id: str,
    sink_id: str,
    kind: str,
    sink_kind: str | None,
) -> None:
    """Map SOURCE_ID of CONNECTION to SINK_ID, manually: sync runs keep it as it is."""
    try:
        new = _mapping(
            {
                "source_kind": kind,
                "source_id": source_id,
                "sink_kind": sink_kind or kind,
                "sink_id": sink_id,
            }
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    connection_id = _connection_id(app, connection)
    with app.store.session() as session:
        before = {
            (r.source_kind, r.source_id): (_describe(r), r.method)
            for r in list_mappings(session, connection_id)
        }.get((new.source_kind, new.source_id))
        (row,) = upsert_mappings(session, connection_id, [new])
    was = f" (was {before[0]}, {before[1]})" if before else ""
    click.echo(f"{connection}: {_describe(row)}, manual; sync runs keep it{was}.")


@mapping.command("unset")
@click.argument("connection")
@click.argument("source_id")
@click.option(
    "--kind", type=click.Choice(KINDS), default=ACCOUNT_KIND, show_default=True, help=_KIND_HELP
)
@pass_app
def unset(app: AppContext, connection: str, source_id: str, kind: str) -> None:
    """Remove the mapping of SOURCE_ID from CONNECTION.

    The next sync run maps it by number or name again, if it can.
    """
    connection_id = _connection_id(app, connection)
    with app.store.session() as session:
        row = delete_mapping(session, connection_id, kind, source_id.strip())
    click.echo(
        f"{connection}: removed {_describe(row)} ({row.method}); the next sync run maps "
        f"{row.source_kind} {row.source_id} by number or name again, if it can."
    )


@mapping.command("export")
@click.argument("connection")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "toml"]),
    help="File format (default: from the -o extension, else csv).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE instead of standard output.",
)
@pass_app
def export(app: AppContext, connection: str, file_format: str | None, output: Path | None) -> None:
    """Write CONNECTION's mappings as CSV or TOML, to standard output or -o FILE.

    Fields: source_kind, source_id, sink_kind, sink_id and method (informational).
    """
    connection_id = _connection_id(app, connection)
    with app.store.session(read_only=True) as session:
        rows = list_mappings(session, connection_id)
    if file_format is None:
        file_format = "toml" if output is not None and output.suffix.lower() == ".toml" else "csv"
    text = to_toml(rows) if file_format == "toml" else to_csv(rows)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"Exported {_count(rows)} of {connection} to {output}.", err=True)


def _count(rows: Sequence[object]) -> str:
    return f"{len(rows)} mapping{'' if len(rows) == 1 else 's'}"


@mapping.command("import")
@click.argument("connection")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def import_(app: AppContext, connection: str, file: Path) -> None:
    """Import mappings into CONNECTION from FILE (.csv or .toml); each becomes manual.

    Every row is checked first: if any is malformed, nothing is imported. Mappings that FILE
    does not name are left as they are.
    """
    connection_id = _connection_id(app, connection)
    mappings = parse_mapping_file(file)
    if not mappings:
        click.echo(f"{file} holds no mappings; nothing changed.")
        return
    with app.store.session() as session:
        existing = {(r.source_kind, r.source_id) for r in list_mappings(session, connection_id)}
        upsert_mappings(session, connection_id, mappings)
    replaced = sum((m.source_kind, m.source_id) in existing for m in mappings)
    click.echo(
        f"Imported {_count(mappings)} into {connection} as manual ({len(mappings) - replaced} "
        f"new, {replaced} replaced); sync runs keep them."
    )
