"""Epicor -> engine -> BILL: an AP invoice row without a key is named in the exception queue.

The Epicor and BILL emulators through the real plugins (tests/e2e_support.py). A row whose
``InvoiceNum`` or ``VendorNum`` is null or absent cannot be a payable (its id is
``"<VendorNum>:<InvoiceNum>"``): it is rejected naming the column, and the rest of its page moves.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from tests.e2e_support import SOURCES, Pair

from ml_connector.store import RunStatus

pytestmark = pytest.mark.skipif(
    "epicor" not in SOURCES, reason="the Epicor plugin is not installed"
)


def _plant(pair: Pair, number: str, column: str, *, absent: bool) -> tuple[str, str]:
    """A posted invoice whose key column ``column`` is null (or absent); its kept key part and
    its ``SysRowID``."""
    books = pair.erp.books
    vendor = min(books.vendors)
    key = books.add_invoice(vendor, number, [(Decimal("123.45"), "6100|10", "Copy paper")])
    head = books.invoices[key].head
    if absent:
        del head[column]
    else:
        head[column] = None
    kept = str(vendor) if column == "InvoiceNum" else number
    return kept, str(head["SysRowID"])


async def test_a_row_without_a_key_is_named_and_the_other_bills_arrive(tmp_path: Path) -> None:
    pair = Pair.create(tmp_path, "epicor", bills=12)
    planted = {
        "InvoiceNum": _plant(pair, "KEYLESS-1", "InvoiceNum", absent=False),
        "VendorNum": _plant(pair, "KEYLESS-2", "VendorNum", absent=True),
    }
    summary = await pair.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error
    pair.assert_exactly_once()  # every other bill arrived, once; the planted ones did not
    assert len(pair.bill.bills_by_key()) == 12
    for column, (kept, row_id) in planted.items():
        (entry,) = [e for e in pair.exceptions() if e.field == column]
        assert entry.object_type == "bill"
        assert row_id in entry.source_id, "the exception names the record"
        assert kept in entry.source_id
        assert f"has no {column}, a key of APInvHed" in entry.reason

    again = await pair.sync()  # still there, still one entry each; nothing else moves
    assert again.status is RunStatus.SUCCEEDED, again.error
    pair.assert_exactly_once()
    assert sorted(e.field for e in pair.exceptions() if e.field in planted) == sorted(planted)
