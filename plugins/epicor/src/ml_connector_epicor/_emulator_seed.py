"""Seeded, realistic data for the Epicor emulator: vendors, a chart of accounts, AP invoices.

Posted invoices carry detail lines and GL expense distribution (some lines split over two
accounts, some with a freight line, some with tax); beside them are invoices that must not move:
unposted (still in an AP entry group), held, on payment hold, debit memos and paid ones. With
``unmapped=True`` one posted invoice is coded to an account the demo keeps out of BILL's chart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector_epicor._emulator_books import Books

__all__ = ["ACCOUNTS", "TAX_ACCOUNT", "UNMAPPED_NATURAL", "Seeded", "seed_books"]

VENDORS = [
    ("DIGCO", "Digital Components Co", "1200 Circuit Way", "San Jose", "CA", "95131", "USA"),
    ("NWIND", "Northwind Industrial Supply", "88 Harbor Rd", "Tacoma", "WA", "98421", "USA"),
    ("ACMEFAST", "Acme Fasteners Inc", "415 Bolt St", "Cleveland", "OH", "44114", "USA"),
    ("GLFRT", "Great Lakes Freight LLC", "9 Dock Ave", "Duluth", "MN", "55802", "USA"),
    ("SUMMIT", "Summit Office Products", "300 Summit Pkwy", "Denver", "CO", "80202", "USA"),
    ("PACSTEEL", "Pacific Steel Works", "77 Forge Ln", "Portland", "OR", "97217", "USA"),
    ("MAPLETL", "Maple Leaf Tooling Ltd", "21 King St W", "Toronto", "ON", "M5H 1A1", "Canada"),
    ("BLUEPACK", "Bluewater Packaging", "5 Marina Dr", "Erie", "PA", "16507", "USA"),
    ("PRECBRG", "Precision Bearings Inc", "640 Axle Ct", "Rockford", "IL", "61109", "USA"),
    ("EVERGRN", "Evergreen Facilities Services", "12 Grove St", "Madison", "WI", "53703", ""),
    ("TRIPLEC", "Tri-County Electric Co-op", "1 Power Plant Rd", "Fargo", "ND", "58102", "USA"),
    ("LEXLAW", "Lexington & Hale LLP", "200 Main St Ste 900", "Lexington", "KY", "40507",
     "USA"),
]  # fmt: skip

ACCOUNTS = [
    ("5100", "Purchases - Raw Materials"),
    ("6100", "Office Supplies"),
    ("6200", "Repairs and Maintenance"),
    ("6300", "Utilities"),
    ("6400", "Freight In"),
    ("6500", "Professional Fees"),
    ("6700", "Software Subscriptions"),
    ("6900", "Sales and Use Tax"),
    ("7100", "Shop Supplies"),
]
DEPARTMENTS = [("10", "Administration"), ("20", "Production"), ("30", "Sales")]
TAX_ACCOUNT = "6900|00"
UNMAPPED_NATURAL = "7999"

_LINE_TEXT = {
    "5100": ["Cold rolled steel sheet", "Aluminum bar stock", "Resin pellets"],
    "6100": ["Copy paper, 10 cases", "Toner cartridges", "Desk organizers"],
    "6200": ["Compressor service call", "Forklift repair", "HVAC filter replacement"],
    "6300": ["Electric service", "Water and sewer", "Natural gas"],
    "6500": ["Legal services", "Audit fieldwork", "Consulting retainer"],
    "6700": ["CAD seat renewal", "ERP hosting", "Backup storage"],
    "7100": ["Cutting inserts", "Shop rags and gloves", "Welding wire"],
}


@dataclass
class Seeded:
    """What a seeding made: the invoices that must reach BILL and those that must not."""

    eligible: set[tuple[int, str]] = field(default_factory=set)
    held: set[tuple[int, str]] = field(default_factory=set)
    unmapped: set[tuple[int, str]] = field(default_factory=set)


def _accounts(books: Books) -> list[str]:
    # The chart's segment values (COASegValues): natural accounts (1), departments (2).
    for natural, name in [*ACCOUNTS, ("2000", "Accounts Payable"), ("8800", "Obsolete")]:
        books.add_segment_value(1, natural, name)
    books.add_segment_value(2, "00", "Company-wide")
    for dept, dept_name in DEPARTMENTS:
        books.add_segment_value(2, dept, dept_name)
    keys = []
    for natural, name in ACCOUNTS:
        if natural == "6900":
            books.add_account(natural, "00", name)
            continue
        for dept, dept_name in DEPARTMENTS:
            keys.append(books.add_account(natural, dept, f"{name} - {dept_name}"))
    books.add_account("2000", "00", "Accounts Payable")
    books.add_account("8800", "00", "Obsolete - Do Not Use", active=False)
    return keys


def _vendors(books: Books) -> list[int]:
    numbers = []
    for vendor_id, name, street, city, state, zip_code, country in VENDORS:
        domain = vendor_id.lower() + ".example.com"
        numbers.append(
            books.add_vendor(
                vendor_id,
                name,
                Address1=street,
                City=city,
                State=state,
                ZIP=zip_code,
                Country=country,
                EMailAddress=f"ar@{domain}",
                PhoneNum="555-0100",
                CurrencyCode="CAD" if country == "Canada" else "USD",
            )
        )
    return numbers


def seed_books(
    books: Books,
    *,
    invoices: int,
    rng: random.Random,
    extras: bool = True,
    unmapped: bool = False,
) -> Seeded:
    """Fill ``books`` with vendors, accounts and ``invoices`` posted, payable AP invoices.

    Args:
        books: An empty company.
        invoices: How many invoices must reach BILL.
        rng: Seeds every choice, so a seed gives the same data each time.
        extras: Also add invoices that must not move (one of each kind).
        unmapped: Also add a posted invoice on an account BILL's chart will not have.
    """
    accounts = _accounts(books)
    vendors = _vendors(books)
    now = books.stamp()
    seeded = Seeded()
    serial = 10_000

    def one(**columns: Any) -> tuple[int, str]:
        nonlocal serial
        serial += rng.randint(1, 40)
        vendor = rng.choice(vendors)
        style = rng.randrange(3)
        number = (f"INV-{serial}", f"{now.year}-{serial}", f"SI{serial:07d}")[style]
        lines: list[tuple[Decimal, str, str] | tuple[Decimal, str, str, str]] = []
        for _ in range(rng.randint(1, 4)):
            account = rng.choice(accounts)
            text = rng.choice(_LINE_TEXT.get(account[:4], ["Materials"]))
            amount = Decimal(rng.randint(2_500, 250_000)) / 100
            if rng.random() < 0.2:
                lines.append((amount, account, text, rng.choice(accounts)))
            else:
                lines.append((amount, account, text))
        if rng.random() < 0.25:
            freight = Decimal(rng.randint(1_500, 30_000)) / 100
            lines.append((freight, f"6400|{rng.choice(DEPARTMENTS)[0]}", "Freight"))
        tax = Decimal(0)
        if rng.random() < 0.3:
            tax = (sum(line[0] for line in lines) * Decimal("0.0725")).quantize(Decimal("0.01"))
        changed = now - timedelta(minutes=rng.randint(5, 60 * 24 * 20))
        day = (changed - timedelta(days=rng.randint(0, 10))).date()
        return books.add_invoice(
            vendor, number, lines, tax=tax, changed=changed, invoice_date=day, **columns
        )

    for _ in range(invoices):
        seeded.eligible.add(one())
    if extras:
        seeded.held.add(one(posted=False))
        seeded.held.add(one(posted=False, InvoiceHeld=True))
        seeded.held.add(one(PayHold=True))
        seeded.held.add(one(DebitMemo=True))
        paid = one()
        head = books.invoices[paid].head
        head.update(DocInvoiceBal=Decimal(0), InvoiceBal=Decimal(0), OpenPayable=False)
        seeded.held.add(paid)
    if unmapped:
        books.add_account(UNMAPPED_NATURAL, "00", "Suspense - Unclassified")
        serial += 7
        key = books.add_invoice(
            rng.choice(vendors),
            f"INV-{serial}",
            [(Decimal("412.50"), f"{UNMAPPED_NATURAL}|00", "Unclassified charge")],
            changed=now - timedelta(hours=3),
        )
        seeded.unmapped.add(key)
    return seeded
