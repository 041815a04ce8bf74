"""What finding a record in the other system takes, kept on its write intent.

The startup sweep (``_sweep.py``) decides an open intent by looking its record up without
reading it from the source again (the source may no longer show it, or show it changed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector.models import PaymentPosting, Vendor

__all__ = ["bill_lookup", "payment_lookup", "vendor_lookup"]


def vendor_lookup(vendor: Vendor) -> dict[str, Any]:
    """What finding a vendor in the sink takes: the vendor (the sink searches by name)."""
    return {"vendor": vendor.model_dump(mode="json")}


def bill_lookup(vendor_sink_id: str, invoice_number: str) -> dict[str, Any]:
    """What finding a bill in the sink takes: its vendor and invoice number."""
    return {"vendor_sink_id": vendor_sink_id, "invoice_number": invoice_number}


def payment_lookup(posting: PaymentPosting) -> dict[str, Any]:
    """What finding a payment in the ERP takes: the posting, with the payable by id only."""
    return {
        **posting.model_dump(mode="json", exclude={"payable"}),
        "payable_id": posting.payable.source_id,
    }
