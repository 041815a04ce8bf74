"""What the demo asks of emulators beyond their API: seeding, and the truth for its final check.

An emulator that wants to take part in ``ml-connector demo`` implements one of these protocols.
The demo reads the systems' own records through them to count duplicates, missing bills and bills
that moved though they must not, so the check does not trust the connector's view of what it did.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

__all__ = ["BillKey", "DemoSink", "DemoSource", "missing_members"]

BillKey = tuple[str, str]
"""A bill's natural key across systems: (vendor name, vendor invoice number)."""


@runtime_checkable
class DemoSource(Protocol):
    """An ERP emulator the demo can seed and check."""

    def seed_demo(self, bills: int, seed: int) -> None:
        """Create vendors, accounts and ``bills`` approved bills, and bills that must not move.

        Bills that must not move: on hold, unapproved, purchase orders. Also one approved bill on
        an account the sink does not get (it shows the exception queue).
        """

    def eligible_bills(self) -> set[BillKey]:
        """The bills that must reach the sink (approved and coded to a mapped account)."""

    def held_bill_keys(self) -> set[BillKey]:
        """The natural keys (vendor name, vendor invoice number) of the bills that must not move.

        On hold, unapproved, purchase orders, and whatever else the ERP holds that the connector
        must leave alone (paid, voided, other document types), as seeded by :meth:`seed_demo`.
        Each key is what the sink would hold for that bill if it moved: the vendor's name and the
        invoice number as the source plugin reads them, so the demo can look for it in the sink.
        """

    def payments_posted(self) -> dict[BillKey, int]:
        """How many payments are posted against each bill."""

    def account_numbers(self) -> dict[str, str]:
        """GL account number to name, for the sink's chart of accounts."""

    def unmapped_account(self) -> str:
        """The account number the sink must not get (the deliberate exception)."""

    def bill_totals(self) -> dict[BillKey, Decimal]:
        """Each eligible bill's total, as the ERP has it now."""

    def change_bill(self, key: BillKey) -> None:
        """Change an eligible bill's amount as a clerk would (its change time becomes now)."""

    def expire_sessions(self) -> None:
        """End every session and token, as an idle timeout does."""


@runtime_checkable
class DemoSink(Protocol):
    """A sink emulator the demo can seed, pay through and check."""

    def seed_chart(self, accounts: dict[str, str]) -> None:
        """Create chart-of-accounts entries (number to name)."""

    def bills_by_key(self) -> dict[BillKey, int]:
        """How many bills the sink holds per natural key (more than one is a duplicate)."""

    def pay_bills(self, count: int) -> list[BillKey]:
        """Pay ``count`` unpaid bills in full, as a clerk approving payments would."""

    def bill_totals(self) -> dict[BillKey, Decimal]:
        """Each bill's amount, by natural key (the last one if there are duplicates)."""

    def expire_sessions(self) -> None:
        """End every session, as BILL's 35-minute idle timeout does."""


def missing_members(obj: object, protocol: type[Any]) -> list[str]:
    """The methods of ``protocol`` (one of the above) that ``obj`` lacks, in declaration order.

    What ``isinstance(obj, protocol)`` checks, spelled out, so an error can name what is missing.
    """
    wanted = [name for name, value in vars(protocol).items() if callable(value) and name[0] != "_"]
    return [name for name in wanted if not callable(getattr(obj, name, None))]
