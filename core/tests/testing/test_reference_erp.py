"""The reference ERP plugin, driven through a real pluggy PluginManager."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from core.tests.testing.helpers import T0, Side, erp_ctx, erp_payable

from ml_connector.description import Capability, PluginInfo, Role
from ml_connector.errors import AuthenticationError, InvalidRecordError, UpstreamError
from ml_connector.models import ChangeWindow, PaymentPosting
from ml_connector.testing import ErpStatus, FakeErp, ReferenceErpPlugin, SeedSpec, seed_erp
from ml_connector.testing.reference_erp import PLUGIN_INFO
from ml_connector.testing.seed import generate_data

WINDOW = ChangeWindow(since=T0, until=T0 + timedelta(days=1))


async def read_all(side: Side, window: ChangeWindow = WINDOW):
    pages, token = [], None
    while True:
        page = await side("list_changed_payables", window=window, page_token=token)
        pages.append(page)
        token = page.next_page_token
        if token is None:
            return pages


def test_description_matches_the_entry_point_metadata() -> None:
    info = PluginInfo.model_validate(PLUGIN_INFO)
    description = ReferenceErpPlugin().describe_plugin()
    assert (
        (description.system, description.role)
        == (info.system, info.role)
        == (
            "reference_erp",
            Role.SOURCE,
        )
    )
    assert description.capabilities == {Capability.DIMENSIONS}
    assert "password" in description.credentials_model.model_fields


async def test_paging_returns_every_approved_payable_once_in_stable_order(erp: FakeErp) -> None:
    data = generate_data(SeedSpec(seed=3, vendors=5, payables=230, start=T0))
    seed_erp(erp, data)
    side = Side(ReferenceErpPlugin(), erp_ctx(page_size=7))
    await side("authenticate")

    pages = await read_all(side, data.window)

    items = [p for page in pages for p in page.items]
    assert [p.source_id for p in items] == sorted(
        data.ready_ids, key=lambda i: (data.payable(i).modified_at, i)
    )
    assert all(len(page.items) == 7 for page in pages[:-1])
    assert {p.source_status for p in items} == {"approved"}
    assert not set(data.held_ids) & {p.source_id for p in items}


async def test_window_lower_bound_is_inclusive_and_upper_bound_exclusive(
    erp: FakeErp, source: Side
) -> None:
    until = T0 + timedelta(hours=1)
    erp.put_payables(
        [
            erp_payable(1, modified_at=T0 - timedelta(microseconds=1)),
            erp_payable(2, modified_at=T0),
            erp_payable(3, modified_at=until - timedelta(microseconds=1)),
            erp_payable(4, modified_at=until),
        ]
    )
    pages = await read_all(source, ChangeWindow(since=T0, until=until))
    assert [p.source_id for page in pages for p in page.items] == ["AP-0002", "AP-0003"]

    first_sync = await read_all(source, ChangeWindow(since=None, until=until))
    assert [p.source_id for p in first_sync[0].items] == ["AP-0001", "AP-0002", "AP-0003"]


async def test_payables_not_ready_to_pay_are_never_listed(erp: FakeErp, source: Side) -> None:
    erp.put_payables(
        [
            erp_payable(1),
            erp_payable(2, status=ErpStatus.ON_HOLD),
            erp_payable(3, status=ErpStatus.DRAFT),
            erp_payable(4, status=ErpStatus.PURCHASE_ORDER),
        ]
    )
    pages = await read_all(source)
    assert [p.source_id for page in pages for p in page.items] == ["AP-0001"]
    held = await source("get_payable", source_id="AP-0002")
    assert held.source_status == "on_hold"


async def test_malformed_records_come_back_rejected_beside_the_good_ones(
    erp: FakeErp, source: Side
) -> None:
    no_account = erp_payable(2, amounts=("10.00", "5.00"))
    no_account.lines[1].account_id = None
    erp.put_payables(
        [
            erp_payable(1),
            no_account,
            erp_payable(3, total=Decimal("99.99")),
            erp_payable(4, vendor_id="V404"),
            erp_payable(5),
        ]
    )
    pages = await read_all(source)

    assert [p.source_id for page in pages for p in page.items] == ["AP-0001", "AP-0005"]
    rejected = {r.record_id: r for page in pages for r in page.rejected}
    assert rejected["AP-0002"].field == "lines.1.account_id"
    assert rejected["AP-0003"].field == "total"
    assert rejected["AP-0004"].field == "vendor_id"
    assert rejected["AP-0003"].modified_at == T0 + timedelta(minutes=3)
    with pytest.raises(InvalidRecordError) as caught:
        await source("get_payable", source_id="AP-0003")
    assert (caught.value.record_id, caught.value.field) == ("AP-0003", "total")


async def test_pydantic_refusals_are_rejected_with_the_field_path(
    erp: FakeErp, source: Side
) -> None:
    erp.put_payables([erp_payable(1, currency="usd")])
    (page,) = await read_all(source)
    assert page.items == ()
    assert page.rejected[0].field == "currency"


async def test_a_payable_changed_during_the_read_is_not_skipped(erp: FakeErp) -> None:
    erp.put_payables([erp_payable(n) for n in range(1, 7)])
    side = Side(ReferenceErpPlugin(), erp_ctx(page_size=2))
    await side("authenticate")
    erp.clock = lambda: T0 + timedelta(hours=2)
    window = ChangeWindow(since=T0, until=T0 + timedelta(hours=3))

    first = await side("list_changed_payables", window=window, page_token=None)
    erp.update_payable("AP-0001", description="changed")  # already read: read again later
    erp.update_payable("AP-0005", description="changed")  # not read yet: moves to the end
    rest = await read_all_from(side, window, first.next_page_token)

    seen = [p.source_id for p in first.items] + [p.source_id for p in rest]
    assert seen == ["AP-0001", "AP-0002", "AP-0003", "AP-0004", "AP-0006", "AP-0001", "AP-0005"]


async def read_all_from(side: Side, window: ChangeWindow, token: str | None):
    items = []
    while token is not None:
        page = await side("list_changed_payables", window=window, page_token=token)
        items.extend(page.items)
        token = page.next_page_token
    return items


async def test_a_token_from_another_window_is_refused(erp: FakeErp) -> None:
    erp.put_payables([erp_payable(n) for n in range(1, 4)])
    side = Side(ReferenceErpPlugin(), erp_ctx(page_size=1))
    await side("authenticate")
    page = await side("list_changed_payables", window=WINDOW, page_token=None)
    other = ChangeWindow(since=T0, until=T0 + timedelta(days=2))
    with pytest.raises(UpstreamError, match="another query"):
        await side("list_changed_payables", window=other, page_token=page.next_page_token)
    with pytest.raises(UpstreamError, match="invalid page token"):
        await side("list_changed_payables", window=WINDOW, page_token="garbage!")


async def test_find_payment_sees_a_posting_and_record_payment_does_not_look(
    erp: FakeErp, source: Side
) -> None:
    erp.put_payables([erp_payable(1, amounts=("60.00", "40.00"))])
    payable = await source("get_payable", source_id="AP-0001")
    posting = PaymentPosting(
        payment_sink_id="stp0001",
        payable=payable,
        amount=Decimal("30.00"),
        paid_on=date(2025, 3, 10),
        reference="BILL stp0001",
    )

    assert await source("find_payment", posting=posting) is None
    first = await source("record_payment", posting=posting)
    found = await source("find_payment", posting=posting)
    assert (found.source_id, found.already_recorded) == (first.source_id, True)

    # Like an ERP's API, a second posting is a second payment: the engine's look-first guards.
    again = await source("record_payment", posting=posting)
    assert again.source_id != first.source_id
    assert erp.open_balance("AP-0001") == Decimal("40.00")
    assert [p.sink_payment_id for p in erp.payments_for("AP-0001")] == ["stp0001", "stp0001"]
    assert (await source("find_payment", posting=posting)).source_id == first.source_id


async def test_record_payment_refuses_more_than_the_open_balance(
    erp: FakeErp, source: Side
) -> None:
    erp.put_payables([erp_payable(1)])
    payable = await source("get_payable", source_id="AP-0001")

    def posting(sink_id: str, amount: str) -> PaymentPosting:
        return PaymentPosting(
            payment_sink_id=sink_id,
            payable=payable,
            amount=Decimal(amount),
            paid_on=date(2025, 3, 10),
            reference=sink_id,
        )

    await source("record_payment", posting=posting("stp1", "80.00"))
    with pytest.raises(InvalidRecordError) as caught:
        await source("record_payment", posting=posting("stp2", "20.01"))
    assert (caught.value.record_id, caught.value.field) == ("stp2", "amount")

    await source("record_payment", posting=posting("stp3", "20.00"))
    assert erp.payables["AP-0001"].status is ErpStatus.CLOSED  # fully paid: no longer listed
    with pytest.raises(InvalidRecordError, match="not open"):
        await source("record_payment", posting=posting("stp4", "1.00"))


async def test_catalog_check_and_close(erp: FakeErp, source: Side) -> None:
    data = generate_data(SeedSpec(payables=3))
    seed_erp(erp, data)
    catalog = await source("list_accounts")
    assert {a.id for a in catalog.accounts} == {a.id for a in data.accounts}
    assert {d.kind.value for d in catalog.dimensions} == {"department", "subaccount"}
    check = await source("check_connection")
    assert check.ok
    assert "acme" in check.detail
    assert erp.write_calls() == 0

    await source("close_connection")
    await source("close_connection")  # a second close does not raise
    with pytest.raises(AuthenticationError, match="not signed in"):
        await source("check_connection")


async def test_authentication_failures(erp: FakeErp) -> None:
    erp.users = {"ap-bot": "another password"}
    with pytest.raises(AuthenticationError, match="do not match"):
        await Side(ReferenceErpPlugin(), erp_ctx())("authenticate")
    with pytest.raises(AuthenticationError, match="no reference_erp tenant 'nowhere'"):
        await Side(ReferenceErpPlugin(), erp_ctx(instance="nowhere"))("authenticate")


async def test_heavy_churn_keeps_each_payable_listed_once(erp: FakeErp, source: Side) -> None:
    # Thousands of out-of-order changes exercise the index's sort-and-compact path.
    erp.put_payables([erp_payable(n) for n in range(1, 11)])
    for step in range(3000):
        n = step % 10 + 1
        minutes = (step * 7919) % 600  # jumps back and forth inside the window
        erp.update_payable(f"AP-{n:04d}", modified_at=T0 + timedelta(minutes=minutes))
    pages = await read_all(source)
    listed = [p for page in pages for p in page.items]
    assert sorted(p.source_id for p in listed) == [f"AP-{n:04d}" for n in range(1, 11)]
    assert [p.modified_at for p in listed] == sorted(p.modified_at for p in listed)


def test_planting_needs_an_aware_change_time(erp: FakeErp) -> None:
    record = erp_payable(1)
    record.modified_at = record.modified_at.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        erp.put_payables([record])
