"""Content versions: what decides that a bill needs no write, stable across releases."""

from datetime import UTC, date, datetime

import pytest

from ml_connector.engine._fingerprint import fingerprint
from ml_connector.engine._payables import content_digest, draft_version, payable_content
from ml_connector.models import BillDraft, BillDraftLine, DimensionKind, Payable, Vendor


def draft(description: str = "Toner", vendor_sink_id: str = "00901") -> BillDraft:
    payable = Payable(
        source_id="B1", document_number="B1", invoice_number="I-7", source_status="Open",
        vendor=Vendor(source_id="V1", name="Müller & Söhne"), invoice_date=date(2026, 1, 1),
        due_date=date(2026, 2, 1), total="10.50", modified_at=datetime(2026, 1, 1, tzinfo=UTC),
        lines=[{"line_id": "1", "amount": "4.50", "account_id": "6100", "description": description},
               {"line_id": "2", "amount": "6", "account_id": "6200",
                "dimensions": {DimensionKind.SUBACCOUNT: "SUB-10"}}],
    )  # fmt: skip
    lines = (
        BillDraftLine(amount="4.50", description=description, sink_account_id="0ca1",
                      source_line_id="1"),
        BillDraftLine(amount="6", sink_account_id="0ca2", source_line_id="2",
                      classifications={DimensionKind.SUBACCOUNT: "0de1"}),
    )  # fmt: skip
    return BillDraft(payable=payable, vendor_sink_id=vendor_sink_id, lines=lines)


@pytest.mark.parametrize("description", ["Toner", "Bürobedarf «Q1» 10 €", 'quote " and \\'])
def test_the_assembled_version_is_the_drafts_own_fingerprint(description: str) -> None:
    """Versions are stored with every link: a different formula would rewrite every bill."""
    made = draft(description)
    expected = fingerprint(
        made, exclude={"payable": {"modified_at", "source_status"}, "existing_sink_id": True}
    )
    assert draft_version(made) == expected
    assert draft_version(made, payable_content(made.payable)) == expected


def test_a_resave_in_the_erp_changes_no_version_but_content_does() -> None:
    made = draft()
    resaved = made.model_copy(
        update={
            "payable": made.payable.model_copy(
                update={
                    "modified_at": datetime(2026, 3, 1, tzinfo=UTC),
                    "source_status": "Balanced",
                }
            ),
            "existing_sink_id": "00n1",
        }
    )
    assert draft_version(resaved) == draft_version(made)
    assert content_digest(resaved.payable) == content_digest(made.payable)
    assert draft_version(draft("Paper")) != draft_version(made)
    assert draft_version(draft(vendor_sink_id="00902")) != draft_version(made)
