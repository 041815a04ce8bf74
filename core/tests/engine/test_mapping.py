from datetime import UTC, date, datetime

import pytest

from ml_connector.default_account_matcher import match_catalogs
from ml_connector.engine._mapping import AccountCoder
from ml_connector.errors import InvalidRecordError
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountMapping,
    Dimension,
    DimensionKind,
    MappingMethod,
    Payable,
    Vendor,
)

SOURCE = AccountCatalog(
    accounts=(
        Account(id="6100", number="6100", name="Office Supplies"),
        Account(id="6200", number="6200", name="Travel"),
        Account(id="6300", number="6300", name="Software"),
        Account(id="6400", number="6400", name="Legal Fees"),
    ),
    dimensions=(
        Dimension(id="SUB-10", kind=DimensionKind.SUBACCOUNT, code="10", name="East"),
        Dimension(id="SUB-99", kind=DimensionKind.SUBACCOUNT, code="99", name="Nowhere"),
    ),
)
SINK = AccountCatalog(
    accounts=(
        Account(id="0ca1", number="6100", name="Supplies"),
        Account(id="0ca2", number=None, name="travel "),
        Account(id="0ca3", number="6300", name="Software A", active=False),
        Account(id="0ca4", number=None, name="Legal Fees"),
        Account(id="0ca5", number=None, name="Legal  fees"),
    ),
    dimensions=(Dimension(id="0de1", kind=DimensionKind.SUBACCOUNT, code="10", name="East"),),
)


def test_default_matcher_number_then_name_never_inactive_never_ambiguous() -> None:
    manual = [AccountMapping(source_kind="account", source_id="6300", sink_kind="account",
                             sink_id="0ca9", method=MappingMethod.MANUAL)]  # fmt: skip
    found = {
        (m.source_kind, m.source_id): (m.sink_id, m.method)
        for m in match_catalogs(SOURCE, SINK, manual)
    }
    assert found == {
        ("account", "6300"): ("0ca9", MappingMethod.MANUAL),
        ("account", "6100"): ("0ca1", MappingMethod.NUMBER),
        ("account", "6200"): ("0ca2", MappingMethod.NAME),
        ("subaccount", "SUB-10"): ("0de1", MappingMethod.NUMBER),
    }  # 6400 is ambiguous (two sink accounts named alike), SUB-99 has no match


def payable(account: str, sub: str | None = None) -> Payable:
    dims = {DimensionKind.SUBACCOUNT: sub} if sub else {}
    return Payable(
        source_id="B1", document_number="B1", invoice_number="I1",
        vendor=Vendor(source_id="V1", name="Acme"), invoice_date=date(2026, 1, 1),
        due_date=date(2026, 2, 1), total="10", modified_at=datetime(2026, 1, 1, tzinfo=UTC),
        lines=[{"line_id": "1", "amount": "4", "account_id": "6100"},
               {"line_id": "2", "amount": "6", "account_id": account, "dimensions": dims}],
    )  # fmt: skip


def test_coder_codes_lines_and_names_the_unmapped_field() -> None:
    coder = AccountCoder(match_catalogs(SOURCE, SINK, []))
    lines = coder.code(payable("6200", "SUB-10"))
    assert [(line.sink_account_id, dict(line.classifications)) for line in lines] == [
        ("0ca1", {}),
        ("0ca2", {DimensionKind.SUBACCOUNT: "0de1"}),
    ]
    with pytest.raises(InvalidRecordError) as info:
        coder.code(payable("6400"))
    assert info.value.field == "lines.1.account_id"
    assert "GL account 6400 is not mapped" in str(info.value)
    with pytest.raises(InvalidRecordError) as info:
        coder.code(payable("6200", "SUB-99"))
    assert info.value.field == "lines.1.dimensions.subaccount"
