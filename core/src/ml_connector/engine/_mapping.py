"""Coding a payable's lines with the sink's accounts and classifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_connector.default_account_matcher import ACCOUNT_KIND
from ml_connector.errors import InvalidRecordError
from ml_connector.models import BillDraftLine, DimensionKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ml_connector.models import AccountMapping, Payable

__all__ = ["AccountCoder"]


class AccountCoder:
    """Turns source account and dimension ids into sink ids, or says which field has none.

    A line is never coded to a guessed account: an unmapped account or dimension value makes the
    whole payable an exception, naming the line and the field.
    """

    def __init__(self, mappings: Iterable[AccountMapping]) -> None:
        self._accounts: dict[str, str] = {}
        self._dimensions: dict[tuple[str, str], tuple[DimensionKind, str]] = {}
        for m in mappings:
            if m.source_kind == ACCOUNT_KIND:
                self._accounts[m.source_id] = m.sink_id
            elif m.sink_kind in DimensionKind.__members__.values():
                self._dimensions[(m.source_kind, m.source_id)] = (
                    DimensionKind(m.sink_kind),
                    m.sink_id,
                )

    @property
    def mapped_accounts(self) -> int:
        """How many source accounts have a sink account."""
        return len(self._accounts)

    def is_mapped(self, account_id: str) -> bool:
        """Whether a source account has a sink account."""
        return account_id in self._accounts

    def code(self, payable: Payable) -> tuple[BillDraftLine, ...]:
        """The payable's lines with sink ids.

        Raises:
            InvalidRecordError: A line's account or dimension value is not mapped.
        """
        lines = []
        for index, line in enumerate(payable.lines):
            sink_account = self._accounts.get(line.account_id)
            if sink_account is None:
                raise InvalidRecordError(
                    "payable",
                    payable.source_id,
                    f"lines.{index}.account_id",
                    f"GL account {line.account_id} is not mapped to a sink account "
                    "(set one with `ml-connector mapping set`)",
                )
            classifications: dict[DimensionKind, str] = {}
            for kind, value in line.dimensions.items():
                target = self._dimensions.get((kind.value, value))
                if target is None:
                    raise InvalidRecordError(
                        "payable",
                        payable.source_id,
                        f"lines.{index}.dimensions.{kind.value}",
                        f"{kind.value} {value} is not mapped to a sink classification "
                        "(set one with `ml-connector mapping set`)",
                    )
                classifications[target[0]] = target[1]
            lines.append(
                BillDraftLine(
                    amount=line.amount,
                    description=line.description,
                    sink_account_id=sink_account,
                    classifications=classifications,
                    source_line_id=line.line_id,
                )
            )
        return tuple(lines)
