"""Data the SAP B1 emulator starts with: the sample company and the demo's scenario.

Everything is added through the emulator's own control API, so it obeys the same rules as the
data a test adds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector_sapb1.emulator import SapB1Emulator

__all__ = [
    "DEMO_ACCOUNTS",
    "DEMO_UNMAPPED_ACCOUNT",
    "DemoScenario",
    "seed_demo",
    "seed_sample",
]

#: Suppliers (CardCode, CardName, city, state), in the SBODEMOUS style of codes.
SUPPLIERS = (
    ("V10000", "Acme Office Supply", "Seattle", "WA"),
    ("V20000", "Bluebird Logistics", "Portland", "OR"),
    ("V30000", "Cedar Property Management", "Boise", "ID"),
    ("V40000", "Delta Consulting Group", "Denver", "CO"),
    ("V50000", "Evergreen Utilities", "Spokane", "WA"),
    ("V60000", "Foxglove Components", "Reno", "NV"),
)
CUSTOMERS = (("C20000", "Norm Thompson Retail"), ("C30000", "Parameter Technology"))

#: Postable expense accounts lines are coded to (and the inventory account of item lines).
DEMO_ACCOUNTS = {
    "1400": "Inventory",
    "6100": "Office Supplies",
    "6200": "Rent and Occupancy",
    "6300": "Utilities",
    "6400": "Professional Fees",
    "6500": "Freight and Delivery",
}
DEMO_UNMAPPED_ACCOUNT = "6999"
"""The account the sink does not get: one approved invoice is coded to it (the exception)."""
_UNMAPPED_NAME = "Suspense - Unclassified"
_SERVICE_ACCOUNTS = ("6100", "6200", "6300", "6400", "6500")

#: Profit centers: dimension 1 departments, dimension 2 regions.
PROFIT_CENTERS = (
    ("ADMIN", "Administration", 1),
    ("SALES", "Sales", 1),
    ("OPS", "Operations", 1),
    ("EAST", "Eastern Region", 2),
    ("WEST", "Western Region", 2),
)
_TAX_RATE = Decimal("0.0825")


def _base(emulator: SapB1Emulator) -> None:
    emulator.add_account("6000", "Operating Expenses", ActiveAccount="tNO", AccountLevel=1)
    for code, name in DEMO_ACCOUNTS.items():
        kind = "at_Other" if code < "4000" else "at_Expenses"
        emulator.add_account(code, name, AccountType=kind, FatherAccountKey=None)
    for code, name, dimension in PROFIT_CENTERS:
        emulator.add_profit_center(code, name, dimension)


def _suppliers(emulator: SapB1Emulator) -> list[str]:
    codes = []
    for i, (code, name, city, state) in enumerate(SUPPLIERS, start=1):
        slug = name.split()[0].lower()
        codes.append(
            emulator.add_supplier(
                code, name=name, City=city, Country="US", Phone1=f"206-555-01{i:02d}",
                EmailAddress=f"ap@{slug}.example", ZipCode=f"98{i:03d}",
                Address=f"{100 + i} Main St", FederalTaxID=f"91-12345{i:02d}",
                BPAddresses=[{"AddressName": "Bill to", "AddressType": "bo_BillTo",
                              "Street": f"{100 + i} Main St", "City": city, "State": state,
                              "ZipCode": f"98{i:03d}", "Country": "US"}],
            )
        )  # fmt: skip
    return codes


def seed_sample(emulator: SapB1Emulator) -> None:
    """What ``ml-connector emulate sapb1`` serves: a small company with a few invoices."""
    _base(emulator)
    codes = _suppliers(emulator)
    for code, name in CUSTOMERS:
        emulator.add_customer(code, name=name)
    emulator.add_invoice(
        codes[0], [{"AccountCode": "6100", "ItemDescription": "Paper and toner",
                    "LineTotal": Decimal("240.00"), "CostingCode": "ADMIN"}],
        num_at_card="AOS-1001", vat_sum=Decimal("19.80"),
    )  # fmt: skip
    emulator.add_invoice(
        codes[1], [{"ItemCode": "A00001", "ItemDescription": "Pallet wrap", "Quantity": 4,
                    "Price": Decimal("37.50"), "AccountCode": "1400"}],
        doc_type="dDocument_Items", num_at_card="BL-77120",
    )  # fmt: skip
    emulator.add_draft(
        codes[3], [{"AccountCode": "6400", "ItemDescription": "Advisory, March",
                    "LineTotal": Decimal("4800.00")}],
        num_at_card="DCG-2024-031",
    )  # fmt: skip


@dataclass
class DemoScenario:
    """What the demo seeded: the keys that must move and the ones that must not."""

    eligible: set[tuple[str, str]] = field(default_factory=set)
    held: set[tuple[str, str]] = field(default_factory=set)
    eligible_entries: dict[tuple[str, str], int] = field(default_factory=dict)


def seed_demo(emulator: SapB1Emulator, bills: int, seed: int) -> DemoScenario:
    """``bills`` approved invoices (service and item type), the records that must not move.

    Those: drafts awaiting approval and a rejected one (``Drafts``), cancelled invoices (with
    their cancellation documents), purchase orders, and paid invoices; and exactly one approved
    invoice on :data:`DEMO_UNMAPPED_ACCOUNT`.
    """
    rng = random.Random(seed)  # noqa: S311 - demo data, not cryptography
    _base(emulator)
    emulator.add_account(DEMO_UNMAPPED_ACCOUNT, _UNMAPPED_NAME)
    codes = _suppliers(emulator)
    for code, name in CUSTOMERS:
        emulator.add_customer(code, name=name)
    scenario = DemoScenario()
    today = emulator.local_now().date()
    taken: set[str] = set()

    def number(prefix: str) -> str:
        while (found := f"{prefix}-{rng.randint(10_000, 99_999)}") in taken:
            pass
        taken.add(found)
        return found

    def document(items: bool, account: str | None = None) -> tuple[list[dict[str, Any]], Any]:
        lines: list[dict[str, Any]] = []
        for n in range(rng.randint(1, 3)):
            if items:
                lines.append(
                    {"ItemCode": f"A{rng.randint(1, 40):05d}", "ItemDescription": f"Part {n + 1}",
                     "Quantity": rng.randint(1, 12),
                     "Price": Decimal(rng.randint(250, 40_000)) / 100, "AccountCode": "1400"}
                )  # fmt: skip
            else:
                line: dict[str, Any] = {
                    "AccountCode": account or rng.choice(_SERVICE_ACCOUNTS),
                    "ItemDescription": rng.choice(
                        ("Monthly service", "Supplies", "Consulting hours", "Delivery",
                         "Maintenance", "Subscription")
                    ),
                    "LineTotal": Decimal(rng.randint(500, 250_000)) / 100,
                }  # fmt: skip
                if rng.random() < 0.6:
                    line["CostingCode"] = rng.choice(("ADMIN", "SALES", "OPS"))
                if rng.random() < 0.3:
                    line["CostingCode2"] = rng.choice(("EAST", "WEST"))
                lines.append(line)
        fields = {"DocDate": today - timedelta(days=rng.randint(1, 25))}
        return lines, fields

    def vat(lines: list[dict[str, Any]]) -> Decimal:
        if rng.random() < 0.5:
            return Decimal(0)
        net = sum(
            (line.get("LineTotal") or line["Quantity"] * line["Price"] for line in lines),
            Decimal(0),
        )
        return (net * _TAX_RATE).quantize(Decimal("0.01"))

    def name_of(card_code: str) -> str:
        return str(emulator.partner(card_code)["CardName"])

    def invoice(card_code: str, **kwargs: Any) -> tuple[int, tuple[str, str]]:
        items = rng.random() < 0.3 and "account" not in kwargs
        lines, fields = document(items, kwargs.pop("account", None))
        invoice_number = number("INV")
        entry = emulator.add_invoice(
            card_code, lines, doc_type="dDocument_Items" if items else "dDocument_Service",
            num_at_card=invoice_number, vat_sum=vat(lines), **fields, **kwargs,
        )  # fmt: skip
        return entry, (name_of(card_code), invoice_number)

    for _ in range(bills):
        status = "dasApproved" if rng.random() < 0.25 else "dasWithout"
        entry, key = invoice(rng.choice(codes), authorization=status)
        scenario.eligible.add(key)
        scenario.eligible_entries[key] = entry
    # The exception: approved, on the account the sink does not get; it must not be counted.
    invoice(codes[0], account=DEMO_UNMAPPED_ACCOUNT)
    for i in range(max(1, bills // 10)):  # awaiting approval: drafts, never PurchaseInvoices
        lines, fields = document(False)
        invoice_number = number("INV")
        card_code = rng.choice(codes)
        emulator.add_draft(
            card_code, lines, num_at_card=invoice_number,
            authorization="dasRejected" if i == 0 else "dasPending", **fields,
        )  # fmt: skip
        scenario.held.add((name_of(card_code), invoice_number))
    for _ in range(max(1, bills // 20)):  # cancelled (with their cancellation documents)
        _, key = invoice(rng.choice(codes), cancelled=True)
        scenario.held.add(key)
    for _ in range(max(1, bills // 20)):  # paid in full in B1 already
        entry, key = invoice(rng.choice(codes))
        emulator.pay_invoice(entry, reference=f"CHK-{rng.randint(1000, 9999)}")
        scenario.held.add(key)
    for _ in range(max(1, bills // 10)):  # purchase orders: no vendor invoice number
        card_code = rng.choice(codes)
        lines, fields = document(rng.random() < 0.5)
        doc_type = "dDocument_Items" if "ItemCode" in lines[0] else "dDocument_Service"
        entry = emulator.add_purchase_order(card_code, lines, doc_type=doc_type, **fields)
        scenario.held.add((name_of(card_code), str(emulator.purchase_order(entry)["DocNum"])))
    return scenario
