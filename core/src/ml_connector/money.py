"""Money arithmetic every side agrees on: a currency's minor units and an amount's precision.

The connector never rounds money. These helpers let a plugin, the engine and the conformance
suite ask the same two questions the same way: how many decimal places does a currency allow
(ISO 4217 minor units), and how many does this amount need? An amount that needs more than its
currency allows is refused, never quantized: ``minor_units("USD")`` is 2, ``minor_units("JPY")``
0, ``minor_units("KWD")`` 3; ``decimal_places(Decimal("12.50"))`` is 1 and
``decimal_places(Decimal("10.125"))`` 3, so 10.125 USD is refused.

.. versionadded:: 1.2
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

__all__ = ["decimal_places", "exceeds_minor_units", "minor_units"]

# ISO 4217 currencies whose minor unit is not the cent; every other code has 2 decimal places.
_THREE_PLACES = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")
_NO_PLACES = (
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
)  # fmt: skip
_MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {**dict.fromkeys(_THREE_PLACES, 3), **dict.fromkeys(_NO_PLACES, 0)}
)


def minor_units(currency: str) -> int:
    """The decimal places of a currency's minor unit (ISO 4217): 2 unless the table says 0 or 3.

    Args:
        currency: An ISO 4217 code, in any case (``"usd"`` is ``"USD"``).

    Returns:
        0 for currencies without a minor unit (JPY, KRW, …), 3 for the dinars and rials that
        count in thousandths (KWD, BHD, …), 2 for every other code.
    """
    return _MINOR_UNITS.get(currency.upper(), 2)


def decimal_places(amount: Decimal) -> int:
    """How many decimal places an amount needs: ``Decimal("12.50")`` 1, ``Decimal(0.1)`` 55.

    Trailing zeros do not count (``12.500`` is an exact 12.50), digits a float left do; zero,
    however written, needs none, and so does an amount with a positive exponent (``1E+3``).

    Args:
        amount: A finite Decimal.
    """
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    text = "".join(str(d) for d in digits)
    if not text.strip("0"):
        return 0  # zero, however written
    trailing = len(text) - len(text.rstrip("0"))
    return max(0, -exponent - trailing)


def exceeds_minor_units(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` needs more decimal places than ``currency`` has (it cannot be paid).

    ``Decimal("10.125")`` in USD does; ``Decimal("10.120")`` does not; ``Decimal("100.5")`` in
    JPY does.
    """
    return decimal_places(amount) > minor_units(currency)
