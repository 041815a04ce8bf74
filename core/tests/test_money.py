"""ml_connector.money: ISO 4217 minor units and the decimal places an amount needs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ml_connector import money
from ml_connector.money import decimal_places, exceeds_minor_units, minor_units
from ml_connector.testing import _conformance_rules


def test_exports() -> None:
    assert money.__all__ == ["decimal_places", "exceeds_minor_units", "minor_units"]
    for name in money.__all__:
        assert callable(getattr(money, name))


def test_the_conformance_suite_uses_the_same_arithmetic() -> None:
    assert _conformance_rules.minor_units is minor_units
    assert _conformance_rules.decimal_places is decimal_places


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("CAD", 2),
        ("usd", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("ISK", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("ZZZ", 2),  # unknown codes default to the cent
    ],
)
def test_minor_units_follow_iso_4217(currency: str, places: int) -> None:
    assert minor_units(currency) == places


@pytest.mark.parametrize(
    ("amount", "places"),
    [
        (Decimal("100"), 0),
        (Decimal("100.00"), 0),
        (Decimal("12.50"), 1),
        (Decimal("12.500"), 1),
        (Decimal("10.125"), 3),
        (Decimal("-10.125"), 3),
        (Decimal("0.000"), 0),
        (Decimal("-0.00"), 0),
        (Decimal("-3.14"), 2),
        (Decimal("1E+3"), 0),
        (Decimal("1.50E+1"), 0),
        (Decimal("1.234E+1"), 2),
        (Decimal(0.1), 55),  # noqa: RUF032 - the float is the point
        (Decimal(float("12.25")), 2),
    ],
)
def test_decimal_places_counts_what_the_amount_needs(amount: Decimal, places: int) -> None:
    assert decimal_places(amount) == places


@pytest.mark.parametrize(
    ("amount", "currency", "exceeds"),
    [
        (Decimal("10.12"), "USD", False),
        (Decimal("10.120"), "USD", False),
        (Decimal("10.125"), "USD", True),
        (Decimal("-0.001"), "USD", True),
        (Decimal("100"), "JPY", False),
        (Decimal("100.0"), "JPY", False),
        (Decimal("100.5"), "JPY", True),
        (Decimal("1.125"), "KWD", False),
        (Decimal("1.1255"), "KWD", True),
    ],
)
def test_exceeds_minor_units(amount: Decimal, currency: str, exceeds: bool) -> None:
    assert exceeds_minor_units(amount, currency) is exceeds
