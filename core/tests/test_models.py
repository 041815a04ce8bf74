from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from ml_connector.models import ChangeWindow, Payable, PayableLine, Vendor


def payable(**overrides: object) -> Payable:
    data: dict[str, object] = {
        "source_id": "BILL-001",
        "document_number": "000123",
        "invoice_number": "INV-9",
        "vendor": Vendor(source_id="V1", name="Acme Supplies"),
        "invoice_date": date(2026, 11, 1),
        "due_date": date(2026, 12, 1),
        "total": "150.10",
        "lines": [
            {"line_id": "1", "amount": "100.05", "account_id": "6100"},
            {"line_id": "2", "amount": Decimal("50.05"), "account_id": "6200"},
        ],
        "modified_at": datetime(2026, 11, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
    }
    data.update(overrides)
    return Payable.model_validate(data)


def test_money_is_decimal_and_times_are_utc() -> None:
    p = payable()
    assert p.total == Decimal("150.10")
    assert isinstance(p.lines[0].amount, Decimal)
    assert p.modified_at == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    assert p.modified_at.tzinfo is UTC


def test_float_money_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        PayableLine(line_id="1", amount=0.1, account_id="6100")  # type: ignore[arg-type]
    assert info.value.errors()[0]["loc"] == ("amount",)
    assert "float" in info.value.errors()[0]["msg"]


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_non_finite_money_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="finite"):
        PayableLine(line_id="1", amount=Decimal(bad), account_id="6100")


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        payable(modified_at=datetime(2026, 11, 2, 9, 30))
    assert info.value.errors()[0]["loc"] == ("modified_at",)


def test_total_must_equal_the_lines() -> None:
    with pytest.raises(ValidationError, match=r"does not equal the sum of the lines 150\.10"):
        payable(total="150.00")


def test_a_bill_needs_a_line() -> None:
    with pytest.raises(ValidationError) as info:
        payable(lines=[], total="0")
    assert info.value.errors()[0]["loc"] == ("lines",)


def test_nested_errors_name_the_path() -> None:
    with pytest.raises(ValidationError) as info:
        payable(lines=[{"line_id": "1", "amount": "1", "account_id": ""}], total="1")
    assert info.value.errors()[0]["loc"] == ("lines", 0, "account_id")


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        Vendor(source_id="V1", name="Acme", nickname="x")  # type: ignore[call-arg]


def test_change_window_is_ordered() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError, match="since must not be after until"):
        ChangeWindow(since=now, until=now - timedelta(seconds=1))
    assert ChangeWindow(since=None, until=now).since is None
