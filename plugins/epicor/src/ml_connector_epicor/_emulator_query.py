"""The query languages the Epicor emulator understands, written apart from the client's renderer.

- OData v4 ``$filter`` (``eq ne gt ge lt le``, ``and``, ``or``, ``not``, parentheses; string,
  number, boolean, ``null`` and date-time literals), ``$orderby`` (epicor.md §4) and ``$expand``
  with nested options (``APInvDtls($expand=APInvExps;$select=…)``, OData v4);
- ``GetRows`` where clauses (``= <> != > >= < <=``, ``AND``/``OR``/``NOT``, parentheses, quoted
  strings, numbers, ``true``/``false``/``yes``/``no``, a trailing ``BY col [DESCENDING], …``),
  as Kinetic's business objects take them (UNCONFIRMED in detail, epicor.md §4 and §8).

Both compile to predicates over rows held with Python types (Decimal, aware datetimes, dates).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

__all__ = [
    "ExpandItem",
    "Predicate",
    "QuerySyntaxError",
    "compare",
    "parse_expand",
    "parse_filter",
    "parse_orderby",
    "parse_where",
    "sort_rows",
]

Predicate = Callable[[Mapping[str, Any]], bool]
R = TypeVar("R", bound=Mapping[str, Any])


class QuerySyntaxError(ValueError):
    """A query the server cannot parse (OData: 400 ``ODataException``)."""


# --- Values -------------------------------------------------------------------------------------


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QuerySyntaxError(f"'{text}' is not a date-time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    def widen(value: Any, other: Any) -> Any:
        if isinstance(other, datetime) and isinstance(value, str):
            return _datetime(value)
        if (
            isinstance(other, datetime)
            and isinstance(value, date)
            and not isinstance(value, datetime)
        ):
            return datetime.combine(value, time(), UTC)
        if isinstance(other, date) and isinstance(value, str):
            return _datetime(value).date()
        if isinstance(other, bool) and isinstance(value, int) and not isinstance(value, bool):
            return bool(value)
        if isinstance(other, int | Decimal) and isinstance(value, str):
            try:
                return Decimal(value)
            except InvalidOperation:
                return value
        return value

    return widen(left, right), widen(right, left)


def compare(left: Any, op: str, right: Any) -> bool:
    """``left op right`` with SQL-like ``NULL``: only (in)equality holds for it."""
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    left, right = _coerce(left, right)
    try:
        result: bool
        if op == "eq":
            result = left == right
        elif op == "ne":
            result = left != right
        elif op == "gt":
            result = left > right
        elif op == "ge":
            result = left >= right
        elif op == "lt":
            result = left < right
        else:
            result = left <= right
    except TypeError:
        raise QuerySyntaxError(f"cannot compare {left!r} with {right!r}") from None
    return result


# --- Tokens -------------------------------------------------------------------------------------

_ODATA_TOKENS = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<v3date>datetime'(?P<v3body>[^']*)')
  | (?P<string>'(?P<sbody>(?:[^']|'')*)')
  | (?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<day>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)

_WHERE_TOKENS = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?P<sbody>(?:[^']|'')*)')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><>|!=|>=|<=|=|>|<)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)

_ODATA_OPS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_WHERE_OPS = {"=": "eq", "<>": "ne", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}

# A token: (kind, value). Field references are ("field", name); literals ("lit", value).
Token = tuple[str, Any]


def _tokens(text: str, pattern: re.Pattern[str], *, v3_dates: bool, odata: bool) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = pattern.match(text, pos)
        if match is None:
            raise QuerySyntaxError(f"syntax error at position {pos} in '{text}'")
        pos = match.end()
        kind = match.lastgroup
        raw = match.group(0)
        if kind == "ws":
            continue
        if kind == "v3date":
            if not v3_dates:
                raise QuerySyntaxError(f"unrecognised literal {raw} at position {match.start()}")
            out.append(("lit", _datetime(match.group("v3body"))))
        elif kind == "stamp":
            # UNCONFIRMED (§8): this emulator takes only the OData v4 unquoted form by default.
            if v3_dates:
                raise QuerySyntaxError(f"syntax error at position {match.start()} in '{text}'")
            out.append(("lit", _datetime(raw)))
        elif kind == "day":
            out.append(("lit", date.fromisoformat(raw)))
        elif kind == "string":
            out.append(("lit", match.group("sbody").replace("''", "'")))
        elif kind == "number":
            out.append(("lit", Decimal(raw) if "." in raw else int(raw)))
        elif kind == "op":
            out.append(("op", _WHERE_OPS[raw]))
        elif kind == "punct":
            out.append(("punct", raw))
        else:
            out.append(_word(raw, odata))
    return out


def _word(raw: str, odata: bool) -> Token:
    lowered = raw.lower()
    if odata:
        if raw in ("true", "false"):
            return ("lit", raw == "true")
        if raw == "null":
            return ("lit", None)
        if raw in _ODATA_OPS:
            return ("op", raw)
        if raw in ("and", "or", "not"):
            return ("kw", raw)
        return ("field", raw)
    if lowered in ("true", "yes"):
        return ("lit", True)
    if lowered in ("false", "no"):
        return ("lit", False)
    if lowered in ("and", "or", "not", "by", "desc", "descending", "asc", "ascending"):
        return ("kw", lowered)
    return ("field", raw.rsplit(".", 1)[-1])  # "APInvHed.Posted" names the column Posted


# --- Parsing ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token], columns: Collection[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.columns = columns

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("the expression ends too early")
        self.pos += 1
        return token

    def at(self, kind: str, value: Any) -> bool:
        return self.peek() == (kind, value)

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.at("kw", "or"):
            self.pos += 1
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self.at("kw", "and"):
            self.pos += 1
            right = self.unary()
            left = _and(left, right)
        return left

    def unary(self) -> Predicate:
        if self.at("kw", "not"):
            self.pos += 1
            inner = self.unary()
            return lambda row: not inner(row)
        if self.at("punct", "("):
            self.pos += 1
            inner = self.expression()
            if self.take() != ("punct", ")"):
                raise QuerySyntaxError("')' expected")
            return inner
        left = self.operand()
        kind, op = self.take()
        if kind != "op":
            raise QuerySyntaxError(f"an operator was expected, not '{op}'")
        right = self.operand()
        return lambda row: compare(left(row), op, right(row))

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, value = self.take()
        if kind == "lit":
            return lambda row: value
        if kind == "field":
            if value not in self.columns:
                raise QuerySyntaxError(f"Could not find a property named '{value}'")
            return lambda row: row.get(value)
        raise QuerySyntaxError(f"unexpected '{value}'")


def _and(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) and right(row)


def _or(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) or right(row)


def parse_filter(text: str, columns: Collection[str], *, v3_dates: bool = False) -> Predicate:
    """Compile an OData ``$filter`` over rows with these columns."""
    parser = _Parser(_tokens(text, _ODATA_TOKENS, v3_dates=v3_dates, odata=True), columns)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise QuerySyntaxError(f"unexpected '{parser.peek()[1]}' after the expression")  # type: ignore[index]
    return predicate


def parse_where(text: str, columns: Collection[str]) -> tuple[Predicate, list[tuple[str, bool]]]:
    """Compile a ``GetRows`` where clause: its predicate and its ``BY`` sort order."""
    tokens = _tokens(text, _WHERE_TOKENS, v3_dates=False, odata=False)
    split = next((i for i, t in enumerate(tokens) if t == ("kw", "by")), len(tokens))
    predicate: Predicate = lambda row: True  # noqa: E731 - an empty clause selects every row
    if split:
        parser = _Parser(tokens[:split], columns)
        predicate = parser.expression()
        if parser.peek() is not None:
            raise QuerySyntaxError(f"unexpected '{parser.peek()[1]}' in the where clause")  # type: ignore[index]
    order: list[tuple[str, bool]] = []
    for token in tokens[split + 1 :]:
        if token[0] == "field":
            if token[1] not in columns:
                raise QuerySyntaxError(f"unknown column {token[1]} in BY")
            order.append((token[1], False))
        elif token[0] == "kw" and token[1] in ("desc", "descending") and order:
            order[-1] = (order[-1][0], True)
        elif token not in (("punct", ","), ("kw", "by"), ("kw", "asc"), ("kw", "ascending")):
            raise QuerySyntaxError(f"unexpected '{token[1]}' in BY")
    return predicate, order


def parse_orderby(text: str, columns: Collection[str]) -> list[tuple[str, bool]]:
    """``$orderby``: ``col [asc|desc], …``."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise QuerySyntaxError(f"bad $orderby item '{part.strip()}'")
        if words[0] not in columns:
            raise QuerySyntaxError(f"Could not find a property named '{words[0]}'")
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return order


def sort_rows(rows: Iterable[R], order: list[tuple[str, bool]]) -> list[R]:
    """Rows sorted as SQL Server does: ``NULL`` first ascending, last descending."""
    result = list(rows)
    for column, descending in reversed(order):
        result.sort(
            key=lambda r, c=column: (0, 0) if r.get(c) is None else (1, r.get(c)),  # type: ignore[misc]
            reverse=descending,
        )
    return result


# --- $expand ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpandItem:
    """One item of an OData v4 ``$expand``: a path and its own ``$select`` and ``$expand``.

    ``path`` has one segment in v4 form (``APInvDtls($expand=APInvExps)``); more than one is the
    v3 path form (``APInvDtls/APInvExps``), which the caller refuses when it crosses navigations.
    """

    path: tuple[str, ...]
    select: tuple[str, ...] | None = None
    expand: tuple[ExpandItem, ...] = ()


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses."""
    parts, depth, start = [], 0, 0
    for pos, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise QuerySyntaxError(f"')' without '(' at position {pos} in '{text}'")
        elif char == sep and depth == 0:
            parts.append(text[start:pos])
            start = pos + 1
    if depth:
        raise QuerySyntaxError(f"')' expected at the end of '{text}'")
    parts.append(text[start:])
    return parts


def parse_expand(text: str) -> tuple[ExpandItem, ...]:
    """Parse an OData v4 ``$expand``: comma-separated items, each ``Path`` or ``Path(options)``.

    Options inside the parentheses are ``;``-separated; ``$select`` and ``$expand`` are served
    (the emulator's choice: the others, ``$filter`` and so on, are refused as unsupported here).
    """
    items = []
    for part in _split_top(text, ","):
        raw = part.strip()
        match = _NAME.match(raw)
        if match is None:
            raise QuerySyntaxError(f"Syntax error: character '{raw[:1]}' is not valid in $expand")
        path, rest = tuple(match.group(0).split("/")), raw[match.end() :].strip()
        select: tuple[str, ...] | None = None
        nested: tuple[ExpandItem, ...] = ()
        if rest:
            if not (rest.startswith("(") and rest.endswith(")")):
                raise QuerySyntaxError(f"Syntax error at '{rest}' in $expand")
            for option in _split_top(rest[1:-1], ";"):
                name, equals, value = option.strip().partition("=")
                if not equals or not value.strip():
                    raise QuerySyntaxError(f"Syntax error at '{option.strip()}' in $expand")
                if name == "$select":
                    select = tuple(c.strip() for c in value.split(","))
                elif name == "$expand":
                    nested = parse_expand(value)
                else:
                    raise QuerySyntaxError(
                        f"The query option '{name}' inside $expand is not supported here"
                    )
        items.append(ExpandItem(path, select, nested))
    return tuple(items)
