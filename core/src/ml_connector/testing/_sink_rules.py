"""BILL's rules for the records the fake sink accepts (shared/api/bill.md §5, §7).

Each check raises :class:`~ml_connector.errors.InvalidRecordError` naming the record and the field,
as BILL's 400 answers name the field; nothing is changed when a check fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_connector.errors import InvalidRecordError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ml_connector.models import Account, BillDraft, Dimension, Vendor

__all__ = ["SYSTEM", "check_draft", "check_vendor", "refuse_draft"]

SYSTEM = "reference_sink"


def refuse_draft(draft: BillDraft, field: str | None, reason: str) -> InvalidRecordError:
    """The error for a refused bill: it names the payable the draft came from."""
    return InvalidRecordError("payable", draft.payable.source_id, field, reason, system=SYSTEM)


def check_vendor(vendor: Vendor) -> None:
    """Name 1-100 characters; an address with line1, city and zip (country is ISO-2 already)."""

    def refuse(field: str, reason: str) -> InvalidRecordError:
        return InvalidRecordError("vendor", vendor.source_id, field, reason, system=SYSTEM)

    if len(vendor.name) > 100:
        raise refuse("name", "must be at most 100 characters")
    if vendor.address is None:
        raise refuse("address", "the address is required")
    for name in ("line1", "city", "postal_code"):
        if not getattr(vendor.address, name):
            raise refuse(f"address.{name}", "is required")


def check_draft(
    draft: BillDraft,
    *,
    vendor_ids: Mapping[str, object],
    accounts: Mapping[str, Account],
    classifications: Mapping[str, Dimension],
) -> None:
    """A known vendor, dates in order, positive lines on active accounts and classifications."""
    if draft.vendor_sink_id not in vendor_ids:
        raise refuse_draft(draft, "vendor_sink_id", f"no vendor {draft.vendor_sink_id}")
    if draft.payable.due_date < draft.payable.invoice_date:
        raise refuse_draft(draft, "payable.due_date", "the due date is before the invoice date")
    for i, line in enumerate(draft.lines):
        if line.amount <= 0:
            raise refuse_draft(draft, f"lines.{i}.amount", "a line amount must be positive")
        account = accounts.get(line.sink_account_id)
        if account is None or not account.active:
            raise refuse_draft(
                draft, f"lines.{i}.sink_account_id", f"no active account {line.sink_account_id}"
            )
        for kind, value_id in line.classifications.items():
            value = classifications.get(value_id)
            if value is None or value.kind is not kind or not value.active:
                raise refuse_draft(
                    draft,
                    f"lines.{i}.classifications.{kind.value}",
                    f"no active {kind.value} {value_id}",
                )
