"""Every failure of the conformance suite says why: a message on every assert, known rule names.

The suite is installed, so pytest does not rewrite its asserts: a bare ``assert`` fails with a
bare ``AssertionError``. We choose explicit messages over assertion rewriting, and hold the suite
to it here.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from pathlib import Path

import pytest

from ml_connector.testing import _conformance_rules, conformance
from ml_connector.testing._conformance_rules import RULES, decimal_places, minor_units

SOURCES = [Path(conformance.__file__), Path(_conformance_rules.__file__)]
RULE_PREFIX = re.compile(r"^\[([a-z0-9-]+)\]")


def _trees() -> list[tuple[str, ast.Module]]:
    return [(path.name, ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCES]


def _leading_text(node: ast.expr) -> str | None:
    """The literal text a string expression starts with, if it starts with one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _leading_text(node.values[0])
    return None


def test_every_assert_has_a_message() -> None:
    bare = [
        f"{name}:{node.lineno}: assert {ast.unparse(node.test)}"
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert) and node.msg is None
    ]
    assert not bare, "asserts without a message:\n" + "\n".join(bare)


def test_every_rule_named_in_the_suite_exists() -> None:
    unknown = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            texts: list[tuple[int, str]] = []
            # "[rule] …" at the start of any string (assert messages, skip reasons)
            if isinstance(node, ast.Constant | ast.JoinedStr):
                text = _leading_text(node)
                match = RULE_PREFIX.match(text or "")
                if match:
                    texts.append((node.lineno, match.group(1)))
            # fail("rule", …) and rule = "…"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fail":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    texts.append((node.lineno, first.value))
            named_rule = isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "rule" for t in node.targets
            )
            value = getattr(node, "value", None)
            if named_rule and isinstance(value, ast.Constant) and isinstance(value.value, str):
                texts.append((node.lineno, value.value))
            unknown += [f"{name}:{line}: {rule}" for line, rule in texts if rule not in RULES]
    assert not unknown, "rule names not in RULES:\n" + "\n".join(unknown)


def test_the_rules_the_brief_names_are_there() -> None:
    assert {
        "not-ready-never-returned",
        "money-precision",
        "money-sign",
        "read-without-rejection",
        "exactly-once-across-pages",
        "window-bounds",
        "contract-range",
    } <= set(RULES)


def test_the_module_docstring_lists_every_rule() -> None:
    doc = conformance.__doc__ or ""
    missing = [rule for rule in RULES if f"``{rule}``" not in doc]
    assert not missing, f"rules the conformance docstring does not list: {missing}"


def test_fail_names_the_rule_the_record_and_the_field() -> None:
    with pytest.raises(pytest.fail.Exception) as caught:
        _conformance_rules.fail("money-sign", "total -1.00", record="AP-1", field="total")
    assert str(caught.value) == "[money-sign] payable AP-1, field total: total -1.00"
    with pytest.raises(pytest.fail.Exception) as caught:
        _conformance_rules.fail("contract-range", "open", kind="plugin", record="erp")
    assert str(caught.value) == "[contract-range] plugin erp: open"
    with pytest.raises(ValueError, match="unknown conformance rule"):
        _conformance_rules.fail("no-such-rule", "x")


@pytest.mark.parametrize(
    ("amount", "places"),
    [
        (Decimal("100"), 0),
        (Decimal("100.00"), 0),
        (Decimal("12.50"), 1),
        (Decimal("12.500"), 1),
        (Decimal("0.000"), 0),
        (Decimal("-3.14"), 2),
        (Decimal("1E+3"), 0),
        (Decimal(0.1), 55),  # noqa: RUF032 - the float is the point
        (Decimal(float("12.25")), 2),
    ],
)
def test_decimal_places_counts_what_the_amount_needs(amount: Decimal, places: int) -> None:
    assert decimal_places(amount) == places


def test_minor_units_follow_iso_4217() -> None:
    assert [minor_units(c) for c in ("USD", "EUR", "JPY", "KRW", "KWD", "BHD", "usd")] == [
        2,
        2,
        0,
        0,
        3,
        3,
        2,
    ]
