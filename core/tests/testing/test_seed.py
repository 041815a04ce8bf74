"""The seed generator: deterministic, realistic, and shaped for the default account matcher."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from core.tests.testing.helpers import ORG, Side, erp_ctx

from ml_connector.default_account_matcher import match_catalogs
from ml_connector.models import AccountCatalog, DimensionKind, MappingMethod
from ml_connector.testing import (
    ErpStatus,
    FakeErp,
    FakeSink,
    ReferenceErpPlugin,
    SeedSpec,
    generate_data,
    seed_pair,
)


def test_the_same_spec_gives_the_same_data() -> None:
    spec = SeedSpec(seed=42, payables=300, malformed=3, unmapped_account=True)
    assert generate_data(spec) == generate_data(spec)
    assert generate_data(spec).payables != generate_data(SeedSpec(seed=43, payables=300)).payables


def test_payables_look_like_real_ap_bills() -> None:
    data = generate_data(SeedSpec(seed=1, vendors=30, payables=2_000))
    window = data.window
    assert window.since is not None
    for p in data.payables:
        assert 1 <= len(p.lines) <= 5
        assert p.total == sum(line.amount for line in p.lines)
        assert p.total.as_tuple().exponent == -2
        assert all(line.amount == line.quantity * line.unit_price for line in p.lines)
        assert window.since <= p.modified_at < window.until
        assert p.due_date > p.invoice_date
        assert DimensionKind.DEPARTMENT in p.lines[0].dimensions
    statuses = Counter(p.status for p in data.payables)
    assert statuses[ErpStatus.APPROVED] > 0.8 * len(data.payables)
    assert all(
        statuses[s] > 0 for s in (ErpStatus.ON_HOLD, ErpStatus.DRAFT, ErpStatus.PURCHASE_ORDER)
    )
    assert len({(p.vendor_id, p.invoice_number) for p in data.payables}) == len(data.payables)
    assert len({v.name for v in data.vendors}) == 30
    assert all(v.address and v.address.line1 and v.address.postal_code for v in data.vendors)
    assert len(data.ready_ids) + len(data.held_ids) == len(data.payables)


def test_the_default_matcher_maps_everything_but_the_unmapped_account() -> None:
    erp, sink = FakeErp.in_memory("acme"), FakeSink.in_memory(ORG)
    data = seed_pair(erp, sink, SeedSpec(unmapped_account=True))
    source = AccountCatalog(accounts=data.accounts, dimensions=data.dimensions)
    target = AccountCatalog(
        accounts=tuple(sink.accounts.values()), dimensions=tuple(sink.classifications.values())
    )

    mappings = match_catalogs(source, target, [])

    mapped = {m.source_id for m in mappings if m.source_kind == "account"}
    assert mapped == {a.id for a in data.accounts} - {data.unmapped_account_id}
    assert {m.method for m in mappings if m.source_kind == "account"} == {
        MappingMethod.NUMBER,
        MappingMethod.NAME,
    }
    departments = {m.source_id for m in mappings if m.source_kind == "department"}
    assert departments == {d.id for d in data.dimensions if d.kind is DimensionKind.DEPARTMENT}
    assert data.unmapped_ids
    for source_id in data.unmapped_ids:
        accounts = {line.account_id for line in data.payable(source_id).lines}
        assert data.unmapped_account_id in accounts


async def test_the_plugin_reads_ready_and_unmapped_payables_and_rejects_malformed_ones() -> None:
    erp = FakeErp.in_memory("acme")
    data = seed_pair(
        erp, FakeSink.in_memory(ORG), SeedSpec(payables=150, malformed=3, unmapped_account=True)
    )
    side = Side(ReferenceErpPlugin(), erp_ctx(page_size=50))
    await side("authenticate")
    items, rejected, token = [], [], None
    while True:
        page = await side("list_changed_payables", window=data.window, page_token=token)
        items.extend(p.source_id for p in page.items)
        rejected.extend(r.record_id for r in page.rejected)
        token = page.next_page_token
        if token is None:
            break
    assert sorted(items) == sorted(data.ready_ids + data.unmapped_ids)
    assert sorted(rejected) == sorted(data.malformed_ids)
    assert len(data.malformed_ids) == 3
    assert sum(erp.payables[i].total for i in data.ready_ids) > Decimal(0)
