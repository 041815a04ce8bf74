"""Accounting guards: what every payable must be before the engine drafts a bill from it.

One place for every source: the engine calls :func:`check_payable` on each payable it is about
to bring to the sink (the listing, exception retries and replays alike), after the operator's
"ignore" is honoured and before anything is written (no vendor, no bill). A payable that breaks
a rule raises :class:`~ml_connector.errors.InvalidRecordError` naming the field; the engine puts
it in the exception queue and goes on with the others. Nothing is ever rounded, cut or flipped
in sign to make a record pass.

The rules, in the order they are checked (the first broken one is reported):

1. **The total is positive** (field ``total``). A zero or negative document is a credit memo, a
   debit adjustment or a void, not a bill to pay. BILL carries credits as *vendor credits*, which
   this connector does not sync yet, so such a document is queued for a person to enter the
   credit in BILL (or ignore it), never sent as a bill and never turned positive.
2. **No amount is finer than its currency** (fields ``lines.N.amount``, then ``total``). An
   amount with more decimal places than the currency's ISO 4217 minor units
   (:func:`ml_connector.money.minor_units`: 2 for USD, 0 for JPY, 3 for KWD) cannot be paid as it
   stands; rounding it would change what the ERP says is owed, so it is queued instead.
   Informational fields (a line's quantity and unit price) are not checked.
3. **The lines add up to the total** (field ``total``). :class:`~ml_connector.models.Payable`
   already refuses a payable whose lines do not add up, so a source reports such a record as
   rejected; the check is repeated here because a payable built without validation
   (``model_construct``) would otherwise reach the sink unseen.

Description lengths are the sink's rule (BILL accepts 4,000 characters, another sink may accept
fewer): the sink plugin refuses an over-long draft before it sends it, naming the field.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ml_connector.errors import InvalidRecordError
from ml_connector.money import decimal_places, minor_units

if TYPE_CHECKING:
    from ml_connector.models import Payable

__all__ = ["check_payable"]

_PAYABLE = "payable"


def check_payable(payable: Payable) -> None:
    """Refuse a payable the connector must not draft as a bill.

    Raises:
        InvalidRecordError: The payable's total is zero or negative (field ``total``), an amount
            has more decimal places than its currency allows (``lines.N.amount`` or ``total``),
            or its lines do not add up to its total (``total``).
    """
    _check_sign(payable)
    _check_precision(payable)
    _check_lines_add_up(payable)


def _refuse(payable: Payable, field: str, reason: str) -> InvalidRecordError:
    return InvalidRecordError(_PAYABLE, payable.source_id, field, reason)


def _check_sign(payable: Payable) -> None:
    total, currency = payable.total, payable.currency
    if total < 0:
        raise _refuse(
            payable,
            "total",
            f"total {total} {currency} is negative: a credit memo or debit adjustment, not a "
            "bill to pay. BILL carries credits as vendor credits, which this connector does not "
            "sync yet; enter the credit in BILL by hand, or ignore this entry",
        )
    if total == 0:
        raise _refuse(
            payable,
            "total",
            f"total {total} {currency} is zero: a zero document (void or fully offset) is "
            "nothing to pay, and BILL would carry any credit in it as a vendor credit, which "
            "this connector does not sync yet; ignore this entry or correct it in the ERP",
        )


def _check_precision(payable: Payable) -> None:
    currency = payable.currency
    places = minor_units(currency)
    amounts = [
        *((f"lines.{i}.amount", line.amount) for i, line in enumerate(payable.lines)),
        ("total", payable.total),
    ]
    for field, amount in amounts:
        needed = decimal_places(amount)
        if needed > places:
            raise _refuse(
                payable,
                field,
                f"amount {amount} has {needed} decimal places, but {currency} has {places} "
                f"(ISO 4217 minor units): it cannot be paid as it stands and the connector "
                f"never rounds money; correct it in the ERP",
            )


def _check_lines_add_up(payable: Payable) -> None:
    line_sum = sum((line.amount for line in payable.lines), Decimal(0))
    if line_sum != payable.total:
        raise _refuse(
            payable,
            "total",
            f"total {payable.total} {payable.currency} does not equal the sum of the lines "
            f"{line_sum}; correct the bill in the ERP",
        )
