"""The SuiteQL subset the emulator reads: a tokenizer, a recursive-descent parser, an evaluator.

Grammar (what SuiteQL clients send, netsuite.md §4 and §6)::

    query   := SELECT [DISTINCT] item {, item} FROM table {join} [WHERE expr]
               [ORDER BY order {, order}]
    item    := * | alias.* | expr [[AS] name]
    table   := name [[AS] alias]
    join    := [INNER | LEFT [OUTER]] JOIN table ON expr
    expr    := and {OR and};  and := not {AND not};  not := NOT not | cmp
    cmp     := value [(= | <> | != | < | <= | > | >=) value | [NOT] IN (value {, value})
               | IS [NOT] NULL | [NOT] BETWEEN value AND value | [NOT] LIKE value]
    value   := literal | ( expr ) | func ( args ) | [alias.]column
    func    := TO_DATE | TO_TIMESTAMP | TO_CHAR | NVL | COALESCE | UPPER | LOWER
               | BUILTIN.DF | BUILTIN.CF

Unknown tables and columns raise :class:`SqlError` (the emulator answers 400 ``INVALID_PARAMETER``
with NetSuite's "Invalid search query" wording).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["Query", "SqlError", "parse", "run"]


class SqlError(Exception):
    """A query the emulator refuses (syntax, unknown table or column)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<name>[A-Za-z_][A-Za-z0-9_$]*)"
    r"|(?P<op><>|!=|<=|>=|[=<>(),.*+\-]))"
)
_KEYWORDS = {
    "SELECT",
    "DISTINCT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "AS",
    "ON",
    "JOIN",
    "LEFT",
    "INNER",
    "OUTER",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "BETWEEN",
    "LIKE",
}


@dataclass
class Tok:
    kind: str  # num, str, name, kw, op, end
    text: str


def tokenize(sql: str) -> list[Tok]:
    out: list[Tok] = []
    pos, sql = 0, sql.rstrip().rstrip(";")
    while pos < len(sql):
        if sql[pos:].strip() == "":
            break
        m = _TOKEN.match(sql, pos)
        if m is None or m.end() == pos:
            raise SqlError(f"Syntax error near '{sql[pos : pos + 20].strip()}'")
        pos = m.end()
        kind = m.lastgroup or "op"
        text = m.group(kind)
        if kind == "name" and text.upper() in _KEYWORDS:
            out.append(Tok("kw", text.upper()))
        elif kind == "str":
            out.append(Tok("str", text[1:-1].replace("''", "'")))
        else:
            out.append(Tok(kind, text))
    out.append(Tok("end", ""))
    return out


# --- The tree --------------------------------------------------------------------------------


@dataclass
class Col:
    alias: str | None
    name: str


@dataclass
class Lit:
    value: Any


@dataclass
class Func:
    name: str
    args: list[Any]


@dataclass
class Bin:
    op: str
    left: Any
    right: Any


@dataclass
class Not:
    expr: Any


@dataclass
class In:
    expr: Any
    items: list[Any]
    negate: bool


@dataclass
class IsNull:
    expr: Any
    negate: bool


@dataclass
class Between:
    expr: Any
    low: Any
    high: Any
    negate: bool


@dataclass
class Like:
    expr: Any
    pattern: Any
    negate: bool


@dataclass
class Star:
    alias: str | None


@dataclass
class Table:
    name: str
    alias: str


@dataclass
class Join:
    table: Table
    on: Any
    left: bool


@dataclass
class Query:
    items: list[tuple[Any, str | None]]
    table: Table
    joins: list[Join] = field(default_factory=list)
    where: Any = None
    order: list[tuple[Any, bool]] = field(default_factory=list)
    distinct: bool = False


class _Parser:
    def __init__(self, sql: str) -> None:
        self.toks = tokenize(sql)
        self.i = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> Tok | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text.upper() == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str | None = None) -> Tok:
        tok = self.accept(kind, text)
        if tok is None:
            found = self.tok.text or "end of query"
            raise SqlError(f"Syntax error: expected {text or kind} but found '{found}'")
        return tok

    def query(self) -> Query:
        self.expect("kw", "SELECT")
        distinct = bool(self.accept("kw", "DISTINCT"))
        items = [self.item()]
        while self.accept("op", ","):
            items.append(self.item())
        self.expect("kw", "FROM")
        query = Query(items, self.table(), distinct=distinct)
        while True:
            left = False
            if self.accept("kw", "LEFT"):
                left = True
                self.accept("kw", "OUTER")
            else:
                self.accept("kw", "INNER")
            if not self.accept("kw", "JOIN"):
                if left:
                    raise SqlError("Syntax error: expected JOIN")
                break
            table = self.table()
            self.expect("kw", "ON")
            query.joins.append(Join(table, self.expr(), left))
        if self.accept("kw", "WHERE"):
            query.where = self.expr()
        if self.accept("kw", "ORDER"):
            self.expect("kw", "BY")
            while True:
                expr = self.expr()
                desc = bool(self.accept("kw", "DESC"))
                if not desc:
                    self.accept("kw", "ASC")
                query.order.append((expr, desc))
                if not self.accept("op", ","):
                    break
        if self.tok.kind != "end":
            raise SqlError(f"Syntax error near '{self.tok.text}'")
        return query

    def item(self) -> tuple[Any, str | None]:
        if self.accept("op", "*"):
            return Star(None), None
        if (
            self.tok.kind == "name"
            and self.toks[self.i + 1].text == "."
            and self.toks[self.i + 2].text == "*"
        ):
            alias = self.take().text.lower()
            self.i += 2
            return Star(alias), None
        expr = self.expr()
        if self.accept("kw", "AS"):
            return expr, self.expect("name").text.lower()
        if self.tok.kind == "name":
            return expr, self.take().text.lower()
        return expr, None

    def table(self) -> Table:
        name = self.expect("name").text.lower()
        alias = name
        if self.accept("kw", "AS"):
            alias = self.expect("name").text.lower()
        elif self.tok.kind == "name":
            alias = self.take().text.lower()
        return Table(name, alias)

    def expr(self) -> Any:
        left = self.conj()
        while self.accept("kw", "OR"):
            left = Bin("OR", left, self.conj())
        return left

    def conj(self) -> Any:
        left = self.neg()
        while self.accept("kw", "AND"):
            left = Bin("AND", left, self.neg())
        return left

    def neg(self) -> Any:
        if self.accept("kw", "NOT"):
            return Not(self.neg())
        return self.cmp()

    def cmp(self) -> Any:
        left = self.value()
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            return Bin("<>" if tok.text == "!=" else tok.text, left, self.value())
        if self.accept("kw", "IS"):
            negate = bool(self.accept("kw", "NOT"))
            self.expect("kw", "NULL")
            return IsNull(left, negate)
        negate = bool(self.accept("kw", "NOT"))
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            items = [self.value()]
            while self.accept("op", ","):
                items.append(self.value())
            self.expect("op", ")")
            return In(left, items, negate)
        if self.accept("kw", "BETWEEN"):
            low = self.value()
            self.expect("kw", "AND")
            return Between(left, low, self.value(), negate)
        if self.accept("kw", "LIKE"):
            return Like(left, self.value(), negate)
        if negate:
            raise SqlError("Syntax error: expected IN, BETWEEN or LIKE after NOT")
        return left

    def value(self) -> Any:
        if tok := self.accept("num"):
            return Lit(Decimal(tok.text))
        if self.accept("op", "-"):
            num = self.expect("num")
            return Lit(-Decimal(num.text))
        if tok := self.accept("str"):
            return Lit(tok.text)
        if self.accept("kw", "NULL"):
            return Lit(None)
        if self.accept("op", "("):
            inner = self.expr()
            self.expect("op", ")")
            return inner
        name = self.expect("name").text
        if self.accept("op", "."):
            second = self.expect("name").text
            if name.upper() == "BUILTIN" and self.tok.text == "(":
                return self.call(f"BUILTIN.{second.upper()}")
            return Col(name.lower(), second.lower())
        if self.tok.text == "(":
            return self.call(name.upper())
        return Col(None, name.lower())

    def call(self, name: str) -> Func:
        if name not in _FUNCTIONS:
            raise SqlError(f"Unknown function {name}")
        self.expect("op", "(")
        args = [] if self.tok.text == ")" else [self.expr()]
        while self.accept("op", ","):
            args.append(self.expr())
        self.expect("op", ")")
        return Func(name, args)


def parse(sql: str) -> Query:
    """Parse one SuiteQL query, or raise :class:`SqlError`."""
    return _Parser(sql).query()


# --- Evaluation ------------------------------------------------------------------------------


def _oracle_format(fmt: str) -> str:
    out = fmt.upper()
    for ora, py in (
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("AM", "%p"),
        ("PM", "%p"),
    ):
        out = out.replace(ora, py)
    return out


def _to_time(value: Any, fmt: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(str(value), _oracle_format(str(fmt))).replace(tzinfo=UTC)
    except ValueError as exc:
        raise SqlError(f"Invalid date '{value}' for format '{fmt}'") from exc


def _to_char(value: Any, fmt: Any = None) -> str | None:
    if value is None:
        return None
    if isinstance(value, date) and fmt is not None:
        return value.strftime(_oracle_format(str(fmt)))
    shown = render(value)
    return None if shown is None else str(shown)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "TO_DATE": _to_time,
    "TO_TIMESTAMP": _to_time,
    "TO_CHAR": _to_char,
    "NVL": lambda a, b: b if a is None else a,
    "COALESCE": lambda *a: next((x for x in a if x is not None), None),
    "UPPER": lambda a: None if a is None else str(a).upper(),
    "LOWER": lambda a: None if a is None else str(a).lower(),
    "BUILTIN.DF": lambda a: a,  # resolved by the evaluator (needs the column)
    "BUILTIN.CF": lambda a: a,
}


def render(value: Any) -> Any:
    """A value as SuiteQL answers it (UNCONFIRMED, netsuite.md is silent on value types).

    Emulator choice: every non-null value is a string; dates and date-times come back in the
    account's default date format ``M/D/YYYY`` without the time, so clients that need the time
    ask for ``TO_CHAR(col, 'YYYY-MM-DD HH24:MI:SS')`` as netsuite.md §6's query does.
    """
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return f"{value.month}/{value.day}/{value.year}"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))
    return str(value)


def _number_key(key: Any) -> str | None:
    """A number's canonical text (equal numbers, equal text), for hashing; None otherwise."""
    if isinstance(key, Decimal) and key.is_finite():
        return format(key.normalize(), "f")
    return None


def _key(value: Any) -> Any:
    """Comparable form: dates become UTC date-times, numbers Decimals, the rest strings."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    return value


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    a, b = _key(a), _key(b)
    if type(a) is not type(b):
        a, b = str(a), str(b)
    result: bool = {
        "=": a == b,
        "<>": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]
    return result


Schema = dict[str, set[str]]
"""Each table's columns."""
Row = dict[str, dict[str, Any] | None]
"""One joined row: alias to that table's row (None on the empty side of a LEFT JOIN)."""


@dataclass
class Context:
    """What a query runs against: the tables, and how BUILTIN.DF/CF show a column's value."""

    schema: Schema
    tables: Callable[[str], Iterable[dict[str, Any]]]
    display: Callable[[str, str, Any, dict[str, Any]], Any]
    """(table, column, value, row) -> the display value (BUILTIN.DF)."""
    criteria: Callable[[str, str, Any, dict[str, Any]], Any]
    """(table, column, value, row) -> the criteria value (BUILTIN.CF)."""


class _Eval:
    def __init__(self, query: Query, ctx: Context) -> None:
        self.q, self.ctx = query, ctx
        self.aliases: dict[str, str] = {}
        # IN lists of id literals, as sets: the client asks for a page's lines by 1,000 ids.
        self._in_sets: dict[int, frozenset[str] | None] = {}
        for table in [query.table, *(j.table for j in query.joins)]:
            if table.name not in ctx.schema:
                raise SqlError(
                    "Invalid search query. Detailed unprocessed description follows. Search error"
                    f" occurred: Record '{table.name}' was not found."
                )
            if table.alias in self.aliases:
                raise SqlError(f"Duplicate table alias '{table.alias}'")
            self.aliases[table.alias] = table.name

    def resolve(self, col: Col) -> tuple[str, str]:
        if col.alias is not None:
            if col.alias not in self.aliases:
                raise SqlError(f"Unknown table alias '{col.alias}'")
            table = self.aliases[col.alias]
            if col.name not in self.ctx.schema[table]:
                raise SqlError(
                    "Invalid search query. Detailed unprocessed description follows. Search error"
                    f" occurred: Field '{col.name}' for record '{table}' was not found."
                )
            return col.alias, col.name
        owners = [a for a, t in self.aliases.items() if col.name in self.ctx.schema[t]]
        if not owners:
            raise SqlError(
                "Invalid search query. Detailed unprocessed description follows. Search error"
                f" occurred: Unknown identifier '{col.name}'."
            )
        if len(owners) > 1:
            raise SqlError(f"Column '{col.name}' is ambiguous")
        return owners[0], col.name

    def check(self, node: Any) -> None:
        """Resolve every column once, so unknown names fail even on empty tables."""
        if isinstance(node, Col):
            self.resolve(node)
        elif isinstance(node, Func):
            for arg in node.args:
                self.check(arg)
        elif isinstance(node, Bin):
            self.check(node.left)
            self.check(node.right)
        elif isinstance(node, Not):
            self.check(node.expr)
        elif isinstance(node, In):
            self.check(node.expr)
            for item in node.items:
                self.check(item)
        elif isinstance(node, IsNull):
            self.check(node.expr)
        elif isinstance(node, Between):
            for part in (node.expr, node.low, node.high):
                self.check(part)
        elif isinstance(node, Like):
            self.check(node.expr)
            self.check(node.pattern)

    def value(self, node: Any, row: Row) -> Any:
        if isinstance(node, Lit):
            return node.value
        if isinstance(node, Col):
            alias, name = self.resolve(node)
            record = row.get(alias)
            return None if record is None else record.get(name)
        if isinstance(node, Func):
            if node.name in ("BUILTIN.DF", "BUILTIN.CF"):
                if len(node.args) != 1 or not isinstance(node.args[0], Col):
                    raise SqlError(f"{node.name} takes one column")
                alias, name = self.resolve(node.args[0])
                record = row.get(alias)
                if record is None:
                    return None
                show = self.ctx.display if node.name == "BUILTIN.DF" else self.ctx.criteria
                return show(self.aliases[alias], name, record.get(name), record)
            args = [self.value(a, row) for a in node.args]
            try:
                return _FUNCTIONS[node.name](*args)
            except TypeError as exc:
                raise SqlError(f"Wrong number of arguments to {node.name}") from exc
        return self.truth(node, row)

    def truth(self, node: Any, row: Row) -> bool | None:
        if isinstance(node, Bin) and node.op in ("AND", "OR"):
            a, b = self.truth(node.left, row), self.truth(node.right, row)
            if node.op == "AND":
                return False if a is False or b is False else (None if None in (a, b) else True)
            return True if a is True or b is True else (None if None in (a, b) else False)
        if isinstance(node, Bin):
            return _compare(node.op, self.value(node.left, row), self.value(node.right, row))
        if isinstance(node, Not):
            inner = self.truth(node.expr, row)
            return None if inner is None else not inner
        if isinstance(node, IsNull):
            return (self.value(node.expr, row) is None) != node.negate
        if isinstance(node, In):
            value = self.value(node.expr, row)
            if value is None:
                return None
            literals = self._literal_set(node)
            number = _number_key(_key(value))
            if literals is not None and number is not None:
                found = number in literals  # numbers compare by value: canonical text
            else:
                found = any(_compare("=", value, self.value(i, row)) for i in node.items)
            return found != node.negate
        if isinstance(node, Between):
            value = self.value(node.expr, row)
            low, high = (
                _compare(">=", value, self.value(node.low, row)),
                _compare("<=", value, self.value(node.high, row)),
            )
            if low is None or high is None:
                return None
            return (low and high) != node.negate
        if isinstance(node, Like):
            value, pattern = self.value(node.expr, row), self.value(node.pattern, row)
            if value is None or pattern is None:
                return None
            regex = "".join(
                ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern)
            )
            return bool(re.fullmatch(regex, str(value), re.S)) != node.negate
        value = self.value(node, row)
        raise SqlError(f"Not a condition: {value!r}")

    def _sorter(self, expr: Any) -> Callable[[Row], Any]:
        return lambda row: _sort_key(self.value(expr, row))

    def _getter(self, expr: Any) -> Callable[[Row], Any]:
        return lambda row: self.value(expr, row)

    @staticmethod
    def _column_getter(alias: str, column: str) -> Callable[[Row], Any]:
        def get(row: Row) -> Any:
            record = row.get(alias)
            return None if record is None else record.get(column)

        return get

    def _literal_set(self, node: In) -> frozenset[str] | None:
        """The IN list as canonical number texts, when every item is a number literal."""
        if id(node) not in self._in_sets:
            keys = [_number_key(_key(i.value)) if isinstance(i, Lit) else None for i in node.items]
            usable = all(k is not None for k in keys)
            self._in_sets[id(node)] = frozenset(str(k) for k in keys) if usable else None
        return self._in_sets[id(node)]

    def _equi_join(
        self, join: Join, right: list[dict[str, Any]]
    ) -> Callable[[Row], list[dict[str, Any]]] | None:
        """Candidates by an equality of the ON clause, instead of every right row for each row.

        Only a speed-up: the whole ON clause is still evaluated on each candidate. It applies
        when an AND-ed ``a.x = b.y`` ties the joined table to the rows so far and the joined
        column holds numbers (ids), which compare by value: their canonical text is the key.
        """
        conjuncts, pending = [], [join.on]
        while pending:
            node = pending.pop()
            if isinstance(node, Bin) and node.op == "AND":
                pending += [node.left, node.right]
            else:
                conjuncts.append(node)
        for node in conjuncts:
            if not (isinstance(node, Bin) and node.op == "=" and isinstance(node.left, Col)):
                continue
            if not isinstance(node.right, Col):
                continue
            sides = [self.resolve(node.left), self.resolve(node.right)]
            inner = [c for a, c in sides if a == join.table.alias]
            outer = [(node.left, node.right)[i] for i, (a, _) in enumerate(sides)
                     if a != join.table.alias]  # fmt: skip
            if len(inner) != 1 or len(outer) != 1:
                continue
            raw = [r.get(inner[0]) for r in right]
            keys = [None if v is None else _number_key(_key(v)) for v in raw]
            if any(k is None and v is not None for k, v in zip(keys, raw, strict=True)):
                continue  # only numbers (ids): they compare by value
            index: dict[str, list[dict[str, Any]]] = {}
            for record, key in zip(right, keys, strict=True):
                if key is not None:
                    index.setdefault(key, []).append(record)
            outer_col = outer[0]

            def candidates(
                row: Row, col: Any = outer_col, found: dict[str, Any] = index
            ) -> list[dict[str, Any]]:
                number = _number_key(_key(self.value(col, row)))
                return [] if number is None else list(found.get(number, []))

            return candidates
        return None

    def run(self) -> tuple[list[str], list[list[Any]]]:
        q = self.q
        for expr, _name in q.items:
            if not isinstance(expr, Star):
                self.check(expr)
        for join in q.joins:
            self.check(join.on)
        self.check(q.where)
        for expr, _desc in q.order:
            self.check(expr)
        rows: list[Row] = [{q.table.alias: r} for r in self.ctx.tables(q.table.name)]
        for join in q.joins:
            right = list(self.ctx.tables(join.table.name))
            candidates = self._equi_join(join, right)
            joined: list[Row] = []
            for row in rows:
                matched = False
                for other in right if candidates is None else candidates(row):
                    candidate = {**row, join.table.alias: other}
                    if self.truth(join.on, candidate):
                        joined.append(candidate)
                        matched = True
                if join.left and not matched:
                    joined.append({**row, join.table.alias: None})
            rows = joined
        if q.where is not None:
            rows = [r for r in rows if self.truth(q.where, r)]
        for expr, desc in reversed(q.order):
            present = [r for r in rows if self.value(expr, r) is not None]
            missing = [r for r in rows if self.value(expr, r) is None]
            present.sort(key=self._sorter(expr), reverse=desc)
            # Oracle sorts NULLs last ascending, first descending.
            rows = missing + present if desc else present + missing
        names: list[str] = []
        getters: list[Callable[[Row], Any]] = []
        for expr, name in q.items:
            if isinstance(expr, Star):
                aliases = [expr.alias] if expr.alias else list(self.aliases)
                for alias in aliases:
                    if alias not in self.aliases:
                        raise SqlError(f"Unknown table alias '{alias}'")
                    for column in sorted(self.ctx.schema[self.aliases[alias]]):
                        names.append(column)
                        getters.append(self._column_getter(alias, column))
                continue
            if name is None:
                # SuiteQL names an unaliased column by its bare name, a function by "expr1"...
                name = expr.name if isinstance(expr, Col) else f"expr{len(names) + 1}"
            names.append(name)
            getters.append(self._getter(expr))
        out = [[g(r) for g in getters] for r in rows]
        if q.distinct:
            seen: set[tuple[Any, ...]] = set()
            unique = []
            for values in out:
                key = tuple(render(v) for v in values)
                if key not in seen:
                    seen.add(key)
                    unique.append(values)
            out = unique
        return names, out


def _sort_key(value: Any) -> Any:
    key = _key(value)
    if isinstance(key, datetime):
        return (0, key.timestamp(), "")
    if isinstance(key, Decimal):
        return (1, float(key), "")
    return (2, 0.0, str(key))


def run(sql: str, ctx: Context) -> tuple[list[str], list[list[Any]]]:
    """Parse and run ``sql``; the column names (lower-case) and the rows' raw values."""
    return _Eval(parse(sql), ctx).run()
