"""The OData query options the SAP B1 emulator serves, written apart from the client's renderer.

Facts: shared/api/sapb1.md §4 and §6 (SAP-UG §3.7). Served:

- ``$filter``: ``eq ne gt ge lt le``, ``and``, ``or``, ``not``, parentheses; ``startswith``,
  ``endswith``, ``contains`` and (v1 only, an OData v3 function) ``substringof``; string, number
  and ``null`` literals; ``datetime'…'`` (v1 and v2, as SAP-UG §3.7.4 lists it); v2's qualified
  enum literal ``SAPB1.BoYesNoEnum'tYES'`` (OCG §6.1, CONFIRMED).
- Date properties take the quoted forms of §6 (``'2024-01-01'``, ``'20240101'``,
  ``'2024-01-01T12:21:21'``, ``datetime'2024-01-01'``), the time part ignored (CONFIRMED). The
  unquoted OData v4 form (``UpdateDate ge 2024-01-01``) is refused with 400 in both versions: §8's
  emulator choice ("v1 quoted forms only"), since whether v2 takes it is UNCONFIRMED.
- Time properties (``UpdateTime``) take ``'18:38:00'``, ``'18:38'``, ``'1838'``; only hours and
  minutes count, on both sides (§6, CONFIRMED).
- Enum properties take the member name, its v2 value or its letter (``CardType eq 'S'``), and
  only ``eq``/``ne``.
- ``$select``, ``$orderby`` (``A,B desc``), ``$top``, ``$skip``, ``$inlinecount=allpages`` (v1)
  and ``$count=true`` (v2).

Anything else (``$expand``, lambda operators, property paths, arithmetic, other functions, a
property compared with a property, an unknown property or ``$``-option) is refused with a
:class:`QueryError` (400) rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from typing import Any

from ml_connector_sapb1._emulator_model import B1Enum, Schema, parse_date, parse_time

__all__ = ["Query", "QueryError", "parse_query", "sort_rows"]

Predicate = Callable[[Mapping[str, Any]], bool]


class QueryError(ValueError):
    """A query option the emulator refuses (400)."""


_TOKENS = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<qualified>(?P<qtype>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)'(?P<qbody>(?:[^']|'')*)')
  | (?P<typed>(?P<tprefix>datetime|datetimeoffset|guid|time|binary|X)'(?P<tbody>(?:[^']|'')*)')
  | (?P<string>'(?P<sbody>(?:[^']|'')*)')
  | (?P<unquoted_date>\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<number>-?\d+(?:\.\d+)?)(?P<suffix>[mMdDfFlL])?
  | (?P<name>[A-Za-z_]\w*)
  | (?P<punct>[(),/])
    """,
    re.VERBOSE,
)

_OPS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_REVERSED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_STRING_FUNCTIONS = frozenset({"startswith", "endswith", "contains", "substringof"})


@dataclass(frozen=True)
class _Literal:
    """A literal of the filter, as written: its kind tells what it can stand for."""

    kind: str  # "string", "number", "null", "bool", "datetime", "enum"
    value: Any
    enum_type: str | None = None


Token = tuple[str, Any]


def _tokens(text: str, version: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None:
            raise QueryError(f"Syntax error at position {pos} in '{text}'")
        pos = match.end()
        kind = match.lastgroup
        if kind == "suffix":
            kind = "number"
        if kind == "ws":
            continue
        if kind == "qualified":
            if version != "v2":
                raise QueryError(f"Unrecognized literal {match.group(0)} in '{text}' (v1)")
            out.append(("lit", _Literal("enum", match["qbody"].replace("''", "'"), match["qtype"])))
        elif kind == "typed":
            if match["tprefix"] != "datetime":
                raise QueryError(f"The literal {match.group(0)} is not supported")
            out.append(("lit", _Literal("datetime", match["tbody"])))
        elif kind == "string":
            out.append(("lit", _Literal("string", match["sbody"].replace("''", "'"))))
        elif kind == "unquoted_date":
            # §8 emulator choice: the v1 quoted forms only, in both versions.
            raise QueryError(
                f"Unquoted date literal {match.group(0)} is not supported; "
                f"quote it: '{match.group(0)}'"
            )
        elif kind == "number":
            raw = match.group("number")
            out.append(("lit", _Literal("number", Decimal(raw) if "." in raw else int(raw))))
        elif kind == "punct":
            out.append(("punct", match.group(0)))
        else:
            word = match.group(0)
            if word in _OPS:
                out.append(("op", word))
            elif word in ("and", "or", "not"):
                out.append(("kw", word))
            elif word == "null":
                out.append(("lit", _Literal("null", None)))
            elif word in ("true", "false"):
                out.append(("lit", _Literal("bool", word == "true")))
            else:
                out.append(("name", word))
    return out


def _truncate_minutes(value: time) -> tuple[int, int]:
    return value.hour, value.minute


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if op == "gt":
        return bool(left > right)
    if op == "ge":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


class _Parser:
    def __init__(
        self, tokens: list[Token], schema: Schema, version: str, case_insensitive: bool
    ) -> None:
        self.tokens = tokens
        self.pos = 0
        self.schema = schema
        self.version = version
        self.case_insensitive = case_insensitive

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("The $filter expression ends too early")
        self.pos += 1
        return token

    def expect(self, token: Token) -> None:
        found = self.take()
        if found != token:
            raise QueryError(f"'{token[1]}' expected, found '{found[1]}'")

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.peek() == ("kw", "or"):
            self.pos += 1
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self.peek() == ("kw", "and"):
            self.pos += 1
            right = self.unary()
            left = _and(left, right)
        return left

    def unary(self) -> Predicate:
        token = self.peek()
        if token == ("kw", "not"):
            self.pos += 1
            inner = self.unary()
            return lambda row: not inner(row)
        if token == ("punct", "("):
            self.pos += 1
            inner = self.expression()
            self.expect(("punct", ")"))
            return inner
        if token is not None and token[0] == "name" and self.peek(1) == ("punct", "("):
            return self.function()
        return self.comparison()

    def function(self) -> Predicate:
        name = self.take()[1]
        if name not in _STRING_FUNCTIONS or (name == "substringof" and self.version != "v1"):
            raise QueryError(f"The function '{name}' is not supported")
        self.expect(("punct", "("))
        first, second = self.take(), None
        self.expect(("punct", ","))
        second = self.take()
        self.expect(("punct", ")"))
        if name == "substringof":  # substringof('text', Field): OData v3
            first, second = second, first
        prop = self.property(first)
        if self.schema.fields[prop] != "str":
            raise QueryError(f"The function '{name}' takes a string property, not '{prop}'")
        if second[0] != "lit" or second[1].kind != "string":
            raise QueryError(f"The function '{name}' takes a string literal")
        needle: str = second[1].value
        fold = self.case_insensitive

        def test(row: Mapping[str, Any]) -> bool:
            value = row.get(prop)
            if value is None:
                return False
            hay, pin = (value.lower(), needle.lower()) if fold else (value, needle)
            if name == "startswith":
                return bool(hay.startswith(pin))
            if name == "endswith":
                return bool(hay.endswith(pin))
            return pin in hay

        # "startswith(F,'x') eq true" is the long form of the same test.
        if self.peek() == ("op", "eq") and self.peek(1) in (
            ("lit", _Literal("bool", True)),
            ("lit", _Literal("bool", False)),
        ):
            self.pos += 1
            wanted = self.take()[1].value
            return lambda row: test(row) == wanted
        return test

    def property(self, token: Token) -> str:
        if token[0] != "name":
            raise QueryError(f"A property was expected, not '{token[1]}'")
        name = str(token[1])
        if self.peek() == ("punct", "/"):
            raise QueryError(f"Property paths ('{name}/…') are not supported")
        if name not in self.schema.fields:
            raise QueryError(f"Property '{name}' of '{self.schema.name}' is invalid")
        if not self.schema.scalar(name):
            raise QueryError(f"The collection '{name}' cannot be compared")
        return name

    def comparison(self) -> Predicate:
        left = self.take()
        op_token = self.take()
        if op_token[0] != "op":
            raise QueryError(f"An operator was expected, not '{op_token[1]}'")
        op = str(op_token[1])
        right = self.take()
        if left[0] == "lit" and right[0] == "name":
            left, right, op = right, left, _REVERSED[op]
        prop = self.property(left)
        if right[0] != "lit":
            raise QueryError("A property can only be compared with a literal")
        return self.compiled(prop, op, right[1])

    def compiled(self, prop: str, op: str, literal: _Literal) -> Predicate:
        kind = self.schema.fields[prop]
        if literal.kind == "null":
            if op not in ("eq", "ne"):
                raise QueryError("null can only be compared with eq or ne")
            return lambda row: _compare(row.get(prop), op, None)
        value = self.literal_for(prop, kind, literal)
        if isinstance(kind, B1Enum):
            if op not in ("eq", "ne"):
                raise QueryError(f"The enum property '{prop}' takes eq or ne only")
            return lambda row: _compare(row.get(prop), op, value)
        if kind == "time":
            wanted = _truncate_minutes(value)
            return lambda row: _compare(
                None if row.get(prop) is None else _truncate_minutes(row[prop]), op, wanted
            )
        if kind == "str" and self.case_insensitive:
            folded = value.lower()
            return lambda row: _compare(
                None if row.get(prop) is None else row[prop].lower(), op, folded
            )
        return lambda row: _compare(row.get(prop), op, value)

    def literal_for(self, prop: str, kind: Any, literal: _Literal) -> Any:
        text = literal.value
        try:
            if isinstance(kind, B1Enum):
                if literal.kind == "enum":
                    if literal.enum_type is None or literal.enum_type.split(".")[-1] != kind.name:
                        raise ValueError(f"{literal.enum_type} is not the type of '{prop}'")
                    return kind.parse(text)
                if literal.kind in ("string", "number"):
                    return kind.parse(text)
            elif kind == "date" and literal.kind in ("string", "datetime"):
                return parse_date(text)
            elif kind == "time" and literal.kind == "string":
                return parse_time(text)
            elif (kind == "str" and literal.kind == "string") or (
                kind == "int" and literal.kind == "number" and isinstance(text, int)
            ):
                return text
            elif kind == "dec" and literal.kind == "number":
                return Decimal(text)
        except ValueError as exc:
            raise QueryError(f"Invalid value for '{prop}': {exc}") from None
        raise QueryError(f"A {literal.kind} literal cannot be compared with '{prop}'")


def _and(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) and right(row)


def _or(left: Predicate, right: Predicate) -> Predicate:
    return lambda row: left(row) or right(row)


def parse_filter(text: str, schema: Schema, version: str, case_insensitive: bool) -> Predicate:
    """Compile a ``$filter`` over ``schema``'s records."""
    parser = _Parser(_tokens(text, version), schema, version, case_insensitive)
    predicate = parser.expression()
    rest = parser.peek()
    if rest is not None:
        raise QueryError(f"Unexpected '{rest[1]}' after the $filter expression")
    return predicate


def parse_orderby(text: str, schema: Schema) -> list[tuple[str, bool]]:
    """``$orderby``: ``Prop [asc|desc], …``."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise QueryError(f"Invalid $orderby item '{part.strip()}'")
        if words[0] not in schema.fields:
            raise QueryError(f"Property '{words[0]}' of '{schema.name}' is invalid")
        if not schema.scalar(words[0]):
            raise QueryError(f"The collection '{words[0]}' cannot be ordered by")
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return order


def sort_rows(rows: list[Any], order: list[tuple[str, bool]]) -> list[Any]:
    """Rows sorted by ``order`` (``None`` first ascending, as SQL Server and HANA do)."""
    result = list(rows)
    for prop, descending in reversed(order):
        result.sort(
            key=lambda r, p=prop: (0, 0) if r.get(p) is None else (1, r.get(p)),  # type: ignore[misc]
            reverse=descending,
        )
    return result


@dataclass
class Query:
    """The query options of one collection request."""

    predicate: Predicate | None = None
    select: list[str] | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    skip: int = 0
    count: bool = False
    passed_on: list[tuple[str, str]] = field(default_factory=list)
    """The options a nextLink repeats (all but ``$top`` and ``$skip``), in the order sent."""


def _whole(name: str, text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise QueryError(f"{name} takes a non-negative whole number, not '{text}'")
    return int(text)


_OPTIONS = {
    "v1": frozenset({"$filter", "$select", "$orderby", "$top", "$skip", "$inlinecount", "$format"}),
    "v2": frozenset({"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$format"}),
}


def parse_query(
    items: list[tuple[str, str]], schema: Schema, version: str, *, case_insensitive: bool = False
) -> Query:
    """The query options of a request (``items`` as sent, repeated names refused)."""
    seen: dict[str, str] = {}
    query = Query()
    for name, value in items:
        if not name.startswith("$"):
            continue  # custom query options are allowed by OData and ignored here
        if name not in _OPTIONS[version]:
            raise QueryError(f"The query option '{name}' is not supported")
        if name in seen:
            raise QueryError(f"The query option '{name}' is given twice")
        seen[name] = value
        if name not in ("$top", "$skip"):
            query.passed_on.append((name, value))
    if "$format" in seen and seen["$format"] != "json":
        raise QueryError("Only $format=json is served")
    if "$filter" in seen:
        query.predicate = parse_filter(seen["$filter"], schema, version, case_insensitive)
    if "$select" in seen and seen["$select"].strip() != "*":
        names = [n.strip() for n in seen["$select"].split(",")]
        for name in names:
            if name not in schema.fields:
                raise QueryError(f"Property '{name}' of '{schema.name}' is invalid")
        query.select = names
    if "$orderby" in seen:
        query.orderby = parse_orderby(seen["$orderby"], schema)
    if "$top" in seen:
        query.top = _whole("$top", seen["$top"])
    if "$skip" in seen:
        query.skip = _whole("$skip", seen["$skip"])
    if "$inlinecount" in seen:
        if seen["$inlinecount"] not in ("allpages", "none"):
            raise QueryError("$inlinecount takes allpages or none")
        query.count = seen["$inlinecount"] == "allpages"
    if "$count" in seen:
        if seen["$count"] not in ("true", "false"):
            raise QueryError("$count takes true or false")
        query.count = seen["$count"] == "true"
    return query
