"""File-backed fakes: every write is on disk when the hook returns, and a reopen sees it all."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from core.tests.testing.helpers import ORG, T0, Side, draft, erp_ctx, sink_ctx, vendor

from ml_connector.errors import AuthenticationError
from ml_connector.models import ChangeWindow, PaymentPosting
from ml_connector.testing import (
    FakeErp,
    FakeSink,
    ReferenceErpPlugin,
    ReferenceSinkPlugin,
    SeedSpec,
    reset_fakes,
    seed_pair,
)


async def test_erp_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "erp.sqlite"
    erp = FakeErp.open(path, "acme")
    data = seed_pair(erp, FakeSink.in_memory(ORG), SeedSpec(payables=40, start=T0))
    side = Side(ReferenceErpPlugin(), erp_ctx(state_path=str(path)))
    await side("authenticate")
    first_id = data.ready_ids[0]
    payable = await side("get_payable", source_id=first_id)
    posting = PaymentPosting(
        payment_sink_id="stp1",
        payable=payable,
        amount=Decimal("1.00"),
        paid_on=date(2025, 3, 2),
        reference="stp1",
    )
    recorded = await side("record_payment", posting=posting)

    reset_fakes()
    reopened = FakeErp.open(path)

    assert reopened.instance == "acme"
    assert set(reopened.payables) == {p.source_id for p in data.payables}
    assert reopened.payables[first_id].lines == data.payable(first_id).lines
    assert reopened.open_balance(first_id) == payable.total - Decimal("1.00")
    side = Side(ReferenceErpPlugin(), erp_ctx(state_path=str(path)))
    await side("authenticate")
    again = await side("find_payment", posting=posting)
    assert again.already_recorded
    assert again.source_id == recorded.source_id
    other = await side(
        "record_payment", posting=posting.model_copy(update={"payment_sink_id": "x"})
    )
    assert other.source_id == "PMT-000002"  # the id sequence continues after the reopen

    # the payment moved the partly paid payable's modified_at to now: it is listed again
    window = ChangeWindow(since=None, until=datetime.now(UTC) + timedelta(days=1))
    listed, token = [], None
    while True:
        page = await side("list_changed_payables", window=window, page_token=token)
        listed.extend(p.source_id for p in page.items)
        token = page.next_page_token
        if token is None:
            break
    assert sorted(listed) == sorted(data.ready_ids)


async def test_sink_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sink.sqlite"
    sink = FakeSink.open(path, ORG)
    sink.add_account("Office Supplies", "6000")
    side = Side(ReferenceSinkPlugin(), sink_ctx(state_path=str(path)))
    await side("authenticate")
    created_vendor = await side("upsert_vendor", vendor=vendor(1), existing_sink_id=None)
    bills = await side(
        "create_bills", drafts=[draft(sink, created_vendor.sink_id, n) for n in range(3)]
    )
    payment = sink.pay_bill(bills[0].sink_id)
    sub = await side(
        "ensure_webhook_subscription",
        notification_url="https://x.example/hook",
        events=["payment.updated"],
        existing=None,
    )

    reset_fakes()
    reopened = FakeSink.open(path)

    assert reopened.organization_id == ORG
    assert set(reopened.bills) == {b.sink_id for b in bills}
    assert reopened.bills[bills[0].sink_id].paid
    assert not reopened.bills[bills[1].sink_id].paid
    assert reopened.payments[payment.id].applications == payment.applications
    assert reopened.subscriptions[sub.sink_id].security_key == sub.security_key.get_secret_value()
    side = Side(ReferenceSinkPlugin(), sink_ctx(state_path=str(path)))
    await side("authenticate")
    found = await side("find_vendor", vendor=vendor(1))
    assert found.sink_id == created_vendor.sink_id
    window = ChangeWindow(since=None, until=payment.updated_at + timedelta(seconds=1))
    page = await side("list_changed_payments", window=window, page_token=None)
    assert [p.sink_id for p in page.items] == [payment.id]
    more = await side("create_bill", draft=draft(sink, created_vendor.sink_id, 9))
    assert more.sink_id not in {b.sink_id for b in bills}  # the id sequence continued


def test_opening_needs_the_right_tenant(tmp_path: Path) -> None:
    path = tmp_path / "erp.sqlite"
    with pytest.raises(ValueError, match="give its tenant key"):
        FakeErp.open(path)
    FakeErp.open(path, "acme").close()
    with pytest.raises(ValueError, match="holds tenant 'acme'"):
        FakeErp.open(path, "globex")
    assert FakeErp.open(path).persistent


async def test_a_plugin_cannot_reach_a_missing_or_foreign_state_file(tmp_path: Path) -> None:
    missing = Side(ReferenceErpPlugin(), erp_ctx(state_path=str(tmp_path / "none.sqlite")))
    with pytest.raises(AuthenticationError, match="no reference_erp state file"):
        await missing("authenticate")
    FakeErp.open(tmp_path / "erp.sqlite", "acme")
    foreign = Side(
        ReferenceErpPlugin(), erp_ctx(instance="globex", state_path=str(tmp_path / "erp.sqlite"))
    )
    with pytest.raises(AuthenticationError, match="holds tenant"):
        await foreign("authenticate")


def test_the_file_is_written_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "sink.sqlite"
    FakeSink.open(path, ORG).add_account("Rent", "6100")
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # committed already: another connection sees it while the fake still holds the file
        assert db.execute("SELECT count(*) FROM record WHERE kind = 'account'").fetchone() == (1,)
    finally:
        db.close()


def test_a_file_belongs_to_one_kind_of_system(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    FakeSink.open(path, ORG).close()
    with pytest.raises(ValueError, match="holds reference_sink state"):
        FakeErp.open(path, "acme")
