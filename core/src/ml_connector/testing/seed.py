"""Deterministic, realistic data for the fake ERP and the fake sink.

:func:`generate_data` turns a :class:`SeedSpec` into a :class:`SeedData` (pure data: the same spec
gives the same data, byte for byte); :func:`seed_erp` and :func:`seed_sink` load it into fakes, and
:func:`seed_pair` does all three::

    data = seed_pair(FakeErp.in_memory("acme"), FakeSink.in_memory("org-1"), SeedSpec(payables=500))
    data.ready_ids     # the payables that should end up as bills
    data.window        # the ChangeWindow covering every modified_at

What the data looks like:

- vendors with US remit-to addresses, emails and phones;
- a GL chart of expense accounts (plus Accounts Payable), subaccounts and departments; the sink
  has a counterpart for every account (most by number and name, some by name only, so both
  matching rules are exercised) and every department (by name); BILL has no subaccounts;
- on request, one ERP account with no counterpart in the sink, used by a few approved payables;
- payables with 1-5 lines (quantity x unit price = amount, Decimal with 2 places) whose total is the
  sum of the lines; mostly approved, some on hold, draft or purchase orders (which must not move);
  ``modified_at`` spread over ``[start, start + span)``;
- on request, malformed approved payables (a line without account, a total that does not match,
  an unknown vendor), which the plugin must report as rejected records.
"""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING

from ml_connector.models import (
    Account,
    AccountKind,
    Address,
    ChangeWindow,
    Dimension,
    DimensionKind,
    Vendor,
)
from ml_connector.testing._records import ErpLine, ErpPayable, ErpStatus

if TYPE_CHECKING:
    from ml_connector.testing._erp import FakeErp
    from ml_connector.testing._sink import FakeSink

__all__ = [
    "SeedData",
    "SeedSpec",
    "SinkChartEntry",
    "generate_data",
    "seed_erp",
    "seed_pair",
    "seed_sink",
]

_CENT = Decimal("0.01")

# (number, name); every fourth one is matched in the sink by name only (no number there).
_EXPENSE_ACCOUNTS = (
    ("5000", "Cost of Goods Sold"),
    ("6000", "Office Supplies"),
    ("6050", "Postage and Delivery"),
    ("6100", "Rent"),
    ("6150", "Utilities"),
    ("6200", "Telephone and Internet"),
    ("6300", "Travel"),
    ("6350", "Meals and Entertainment"),
    ("6400", "Professional Fees"),
    ("6450", "Legal Fees"),
    ("6500", "Freight Inbound"),
    ("6600", "Software Subscriptions"),
    ("6700", "Repairs and Maintenance"),
    ("6800", "Insurance"),
    ("6900", "Advertising and Marketing"),
    ("7000", "Training and Education"),
)
_PAYABLES_ACCOUNT = ("2000", "Accounts Payable")
_UNMAPPED_ACCOUNT = ("7990", "Suspense Clearing")
_DEPARTMENTS = (
    ("ADMIN", "Administration"),
    ("SALES", "Sales"),
    ("OPS", "Operations"),
    ("RND", "Research and Development"),
    ("FIN", "Finance"),
)
_SUBACCOUNTS = (("000-000", "Company Wide"), ("100-000", "East Region"), ("200-000", "West Region"))
_NAMES = (
    "Northwind", "Contoso", "Fabrikam", "Acme", "Globex", "Initech", "Vandelay", "Tyrell",
    "Hooli", "Wonka", "Oceanic", "Soylent", "Massive", "Stark", "Wayne", "Cyberdyne",
    "Gekko", "Sterling", "Bluth", "Prestige",
)  # fmt: skip
_TRADES = (
    "Office Supply", "Freight", "Legal Services", "Software", "Maintenance", "Catering",
    "Printing", "Consulting", "Electric", "Insurance Agency",
)  # fmt: skip
_SUFFIXES = ("Inc.", "LLC", "Co.", "Ltd.", "Corp.")
_STREETS = ("Main St", "Oak Ave", "Market St", "Elm St", "Harbor Blvd", "Industrial Pkwy")
_CITIES = (
    ("Seattle", "WA", "98101"), ("Portland", "OR", "97204"), ("Denver", "CO", "80202"),
    ("Austin", "TX", "78701"), ("Chicago", "IL", "60601"), ("Atlanta", "GA", "30303"),
    ("Boston", "MA", "02108"), ("Phoenix", "AZ", "85004"),
)  # fmt: skip
_HELD = (ErpStatus.ON_HOLD, ErpStatus.DRAFT, ErpStatus.PURCHASE_ORDER)


@dataclass(frozen=True)
class SeedSpec:
    """What to generate.

    Attributes:
        seed: The random seed: the same spec always gives the same data.
        vendors: How many vendors.
        payables: How many well-formed AP documents (all statuses).
        start: The earliest ``modified_at`` (timezone-aware).
        span: ``modified_at`` falls in ``[start, start + span)``.
        held_share: The share of documents not ready to pay (on hold, draft, purchase order).
        unmapped_account: Add an ERP account with no counterpart in the sink.
        unmapped_share: With ``unmapped_account``, the share of approved payables with a line on
            it (at least one payable).
        malformed: Extra approved payables that cannot be read as payables.
        subaccounts_on_lines: Code every line to a subaccount too (BILL has none to map it to).
    """

    seed: int = 0
    vendors: int = 25
    payables: int = 200
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    span: timedelta = timedelta(days=30)
    held_share: float = 0.15
    unmapped_account: bool = False
    unmapped_share: float = 0.02
    malformed: int = 0
    subaccounts_on_lines: bool = False


@dataclass(frozen=True)
class SinkChartEntry:
    """A chart-of-accounts entry the sink should hold (the sink assigns its id)."""

    name: str
    number: str | None
    kind: AccountKind = AccountKind.EXPENSE


@dataclass(frozen=True)
class SeedData:
    """Generated data, and which payables are which.

    Attributes:
        ready_ids: Approved, well-formed payables coded to mapped accounts: they should become
            bills.
        held_ids: On hold, draft or purchase orders: they must never reach the sink.
        unmapped_ids: Approved payables with a line on the unmapped account: exception queue.
        malformed_ids: Approved payables that cannot be read: rejected records.
    """

    spec: SeedSpec
    vendors: tuple[Vendor, ...]
    accounts: tuple[Account, ...]
    dimensions: tuple[Dimension, ...]
    payables: tuple[ErpPayable, ...]
    sink_accounts: tuple[SinkChartEntry, ...]
    sink_classifications: tuple[tuple[DimensionKind, str], ...]
    unmapped_account_id: str | None = None
    ready_ids: tuple[str, ...] = ()
    held_ids: tuple[str, ...] = ()
    unmapped_ids: tuple[str, ...] = ()
    malformed_ids: tuple[str, ...] = ()

    @property
    def window(self) -> ChangeWindow:
        """The change window covering every generated ``modified_at``."""
        return ChangeWindow(since=self.spec.start, until=self.spec.start + self.spec.span)

    @cached_property
    def _by_id(self) -> dict[str, ErpPayable]:
        return {p.source_id: p for p in self.payables}

    def payable(self, source_id: str) -> ErpPayable:
        """A generated payable by id."""
        return self._by_id[source_id]


# --- Generation ------------------------------------------------------------------------------


def _vendors(rng: random.Random, count: int) -> list[Vendor]:
    combos = [(n, t, s) for n in _NAMES for t in _TRADES for s in _SUFFIXES]
    rng.shuffle(combos)
    vendors = []
    for i in range(count):
        name, trade, suffix = combos[i % len(combos)]
        full = f"{name} {trade} {suffix}"
        if i >= len(combos):
            full = f"{name} {trade} #{i // len(combos) + 1} {suffix}"
        city, state, zip_code = rng.choice(_CITIES)
        slug = f"{name}{trade.split()[0]}".lower()
        vendors.append(
            Vendor(
                source_id=f"V{i + 1:05d}",
                name=full,
                email=f"ap@{slug}.example.com",
                phone=f"+1-555-01{rng.randrange(100):02d}",
                address=Address(
                    line1=f"{rng.randint(10, 9999)} {rng.choice(_STREETS)}",
                    city=city,
                    state=state,
                    postal_code=zip_code,
                    country="US",
                ),
            )
        )
    return vendors


def _chart(spec: SeedSpec) -> tuple[list[Account], list[SinkChartEntry]]:
    accounts = [
        Account(id=number, number=number, name=name, kind=AccountKind.EXPENSE)
        for number, name in _EXPENSE_ACCOUNTS
    ]
    sink = [
        SinkChartEntry(name=name, number=None if i % 4 == 3 else number)
        for i, (number, name) in enumerate(_EXPENSE_ACCOUNTS)
    ]
    number, name = _PAYABLES_ACCOUNT
    accounts.append(Account(id=number, number=number, name=name, kind=AccountKind.LIABILITY))
    sink.append(SinkChartEntry(name=name, number=number, kind=AccountKind.LIABILITY))
    if spec.unmapped_account:
        number, name = _UNMAPPED_ACCOUNT
        accounts.append(Account(id=number, number=number, name=name))
    return accounts, sink


def _dimensions() -> list[Dimension]:
    return [
        *(Dimension(id=c, kind=DimensionKind.DEPARTMENT, code=c, name=n) for c, n in _DEPARTMENTS),
        *(Dimension(id=c, kind=DimensionKind.SUBACCOUNT, code=c, name=n) for c, n in _SUBACCOUNTS),
    ]


def _lines(rng: random.Random, spec: SeedSpec) -> list[ErpLine]:
    lines = []
    for n in range(1, rng.randint(1, 5) + 1):
        number, name = rng.choice(_EXPENSE_ACCOUNTS)
        quantity = rng.randint(1, 12)
        unit_price = Decimal(rng.randint(250, 250_000)) * _CENT
        dimensions = {DimensionKind.DEPARTMENT: rng.choice(_DEPARTMENTS)[0]}
        if spec.subaccounts_on_lines:
            dimensions[DimensionKind.SUBACCOUNT] = rng.choice(_SUBACCOUNTS)[0]
        lines.append(
            ErpLine(
                line_id=str(n),
                amount=(unit_price * quantity).quantize(_CENT),
                account_id=number,
                description=name,
                dimensions=dimensions,
                quantity=Decimal(quantity),
                unit_price=unit_price,
            )
        )
    return lines


def _payable(
    rng: random.Random, spec: SeedSpec, number: int, vendor: Vendor, invoice: str
) -> ErpPayable:
    span_us = int(spec.span.total_seconds() * 1_000_000)
    modified_at = spec.start + timedelta(microseconds=rng.randrange(span_us))
    invoice_date = modified_at.date() - timedelta(days=rng.randint(0, 20))
    lines = _lines(rng, spec)
    status = rng.choice(_HELD) if rng.random() < spec.held_share else ErpStatus.APPROVED
    return ErpPayable(
        source_id=f"AP-{number:07d}",
        document_number=f"{number:07d}",
        invoice_number=invoice,
        vendor_id=vendor.source_id,
        invoice_date=invoice_date,
        due_date=invoice_date + timedelta(days=rng.choice((15, 30, 45, 60))),
        total=sum((line.amount for line in lines), Decimal(0)),
        lines=lines,
        modified_at=modified_at,
        status=status,
        description=f"{vendor.name} invoice {invoice}",
    )


def _break(payable: ErpPayable, problem: int) -> None:
    if problem == 0:
        payable.lines[-1].account_id = None
    elif problem == 1:
        payable.total += _CENT
    else:
        payable.vendor_id = "V-UNKNOWN"


def generate_data(spec: SeedSpec | None = None) -> SeedData:
    """Generate the data a spec describes; the same spec always gives the same data.

    The garbage collector is paused meanwhile: the data is a large, acyclic structure that it
    would rescan again and again (half the time of a 100,000-payable run).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(spec or SeedSpec())
    finally:
        if enabled:
            gc.enable()


def _generate(spec: SeedSpec) -> SeedData:
    if spec.start.tzinfo is None:
        raise ValueError("SeedSpec.start must be timezone-aware")
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data, not crypto
    vendors = _vendors(rng, max(spec.vendors, 1))
    accounts, sink_accounts = _chart(spec)
    invoice_numbers = {v.source_id: rng.randint(1000, 9000) for v in vendors}
    payables: list[ErpPayable] = []
    ready: list[str] = []
    held: list[str] = []
    unmapped: list[str] = []
    malformed: list[str] = []
    for i in range(spec.payables + spec.malformed):
        vendor = rng.choice(vendors)
        invoice_numbers[vendor.source_id] += 1
        tag = "".join(word[0] for word in vendor.name.split()[:3]).upper()
        payable = _payable(rng, spec, i + 1, vendor, f"{tag}-{invoice_numbers[vendor.source_id]}")
        if i >= spec.payables:  # the malformed extras
            payable.status = ErpStatus.APPROVED
            _break(payable, (i - spec.payables) % 3)
            malformed.append(payable.source_id)
        elif payable.status is not ErpStatus.APPROVED:
            held.append(payable.source_id)
        elif spec.unmapped_account and (rng.random() < spec.unmapped_share or not unmapped):
            payable.lines[0].account_id = _UNMAPPED_ACCOUNT[0]
            unmapped.append(payable.source_id)
        else:
            ready.append(payable.source_id)
        payables.append(payable)
    return SeedData(
        spec=spec,
        vendors=tuple(vendors),
        accounts=tuple(accounts),
        dimensions=tuple(_dimensions()),
        payables=tuple(payables),
        sink_accounts=tuple(sink_accounts),
        sink_classifications=tuple((DimensionKind.DEPARTMENT, n) for _, n in _DEPARTMENTS),
        unmapped_account_id=_UNMAPPED_ACCOUNT[0] if spec.unmapped_account else None,
        ready_ids=tuple(ready),
        held_ids=tuple(held),
        unmapped_ids=tuple(unmapped),
        malformed_ids=tuple(malformed),
    )


# --- Loading ---------------------------------------------------------------------------------


def seed_erp(erp: FakeErp, data: SeedData) -> None:
    """Load the vendors, chart, dimensions and payables into a fake ERP (one transaction)."""
    with erp.writing():
        erp.add_vendors(data.vendors)
        erp.add_accounts(data.accounts)
        erp.add_dimensions(data.dimensions)
        erp.put_payables(data.payables)


def seed_sink(sink: FakeSink, data: SeedData) -> None:
    """Load the chart of accounts and the classifications into a fake sink (one transaction)."""
    with sink.writing():
        for entry in data.sink_accounts:
            sink.add_account(entry.name, entry.number, entry.kind)
        for kind, name in data.sink_classifications:
            sink.add_classification(kind, name)


def seed_pair(erp: FakeErp, sink: FakeSink, spec: SeedSpec | None = None) -> SeedData:
    """Generate data and load it into both fakes."""
    data = generate_data(spec)
    seed_erp(erp, data)
    seed_sink(sink, data)
    return data
