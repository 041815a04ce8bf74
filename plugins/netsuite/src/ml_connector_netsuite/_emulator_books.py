"""What the emulated NetSuite account holds, and its SuiteQL tables (netsuite.md §5).

Records are plain dataclasses; :meth:`Books.table` turns them into the rows SuiteQL reads, with
NetSuite's lower-case column names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["APPROVAL", "BILL_STATUS", "SCHEMA", "Account", "Books", "Line", "Txn", "Vendor"]

APPROVAL = {1: "Pending Approval", 2: "Approved", 3: "Rejected"}
"""netsuite.md §5/§8: 1 Pending, 2 Approved (CORROBORATED); 3 Rejected (UNCONFIRMED, choice)."""
BILL_STATUS = {
    "A": "Open",
    "B": "Paid In Full",
    "C": "Cancelled",
    "D": "Pending Approval",
    "E": "Rejected",
    "F": "Payment In-Transit",
}
"""netsuite.md §5: VendBill status letters (the emulator never emits F, §8)."""
PO_STATUS = {"A": "Pending Supervisor Approval", "B": "Pending Receipt", "H": "Closed"}
PAYMENT_STATUS = {"C": "Confirmed", "V": "Voided"}
TYPE_LABEL = {"VendBill": "Bill", "PurchOrd": "Purchase Order", "VendPymt": "Bill Payment"}
RECORD_TYPE = {"VendBill": "vendorbill", "PurchOrd": "purchaseorder", "VendPymt": "vendorpayment"}


@dataclass
class Vendor:
    id: int
    companyname: str
    subsidiary: int
    created: datetime
    modified: datetime
    email: str | None = None
    phone: str | None = None
    currency: int = 1
    externalid: str | None = None
    inactive: bool = False
    subsidiaries: set[int] = field(default_factory=set)
    address: dict[str, str | None] | None = None
    """addr1, addr2, city, state, zip, country (ISO code): the default billing address."""


@dataclass
class Account:
    id: int
    number: str
    name: str
    type: str = "Expense"
    active: bool = True


@dataclass
class Line:
    id: int
    account: int | None
    amount: Decimal
    department: int | None = None
    klass: int | None = None
    location: int | None = None
    memo: str | None = None


@dataclass
class Txn:
    id: int
    type: str  # VendBill, PurchOrd, VendPymt
    tranid: str | None
    entity: int
    trandate: date
    subsidiary: int
    created: datetime
    modified: datetime
    lines: list[Line] = field(default_factory=list)
    status: str | None = "A"
    approvalstatus: int | None = 2
    duedate: date | None = None
    memo: str | None = None
    externalid: str | None = None
    currency: int = 1
    paymenthold: bool = False
    voided: bool = False
    paid: Decimal = Decimal(0)
    apacct: int | None = None
    account: int | None = None  # a payment's bank account
    applied: dict[int, Decimal] = field(default_factory=dict)  # a payment's bill id -> amount
    total_override: Decimal | None = None

    @property
    def total(self) -> Decimal:
        if self.total_override is not None:
            return self.total_override
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def unpaid(self) -> Decimal:
        return self.total - self.paid


def _address(address: dict[str, str | None] | None) -> dict[str, str | None]:
    fields = ("addr1", "addr2", "city", "state", "zip", "country")
    return {k: (address or {}).get(k) for k in fields}


def _tf(flag: bool) -> str:
    return "T" if flag else "F"


SCHEMA: dict[str, set[str]] = {
    # netsuite.md §5 (CORROBORATED, TNR streams): the transaction header. No `subsidiary` here:
    # it is on transactionline (mainline = 'T').
    "transaction": {
        "id",
        "tranid",
        "trandate",
        "duedate",
        "type",
        "recordtype",
        "status",
        "approvalstatus",
        "entity",
        "currency",
        "exchangerate",
        "foreigntotal",
        "total",
        "foreignamountpaid",
        "foreignamountunpaid",
        "memo",
        "externalid",
        "createddate",
        "lastmodifieddate",
        "postingperiod",
        "paymenthold",
        "voided",
    },
    # netsuite.md §5: subsidiary, expense account and segments are on transactionline.
    "transactionline": {
        "id",
        "transaction",
        "linesequencenumber",
        "mainline",
        "taxline",
        "expenseaccount",
        "amount",
        "netamount",
        "foreignamount",
        "department",
        "class",
        "location",
        "memo",
        "subsidiary",
        "entity",
        "isbillable",
    },
    "vendor": {
        "id",
        "entityid",
        "companyname",
        "legalname",
        "email",
        "phone",
        "isperson",
        "isinactive",
        "subsidiary",
        "currency",
        "externalid",
        "datecreated",
        "lastmodifieddate",
        "defaultbillingaddress",
    },
    # Not in netsuite.md (UNCONFIRMED): vendor.defaultbillingaddress = entityaddress.nkey, the
    # usual SuiteQL join for an entity's default address; one row per vendor with an address.
    "entityaddress": {"nkey", "addressee", "addr1", "addr2", "city", "state", "zip", "country"},
    # netsuite.md §1/§5: vendors relate to subsidiaries through this table in OneWorld.
    "vendorsubsidiaryrelationship": {"id", "entity", "subsidiary", "isprimarysub"},
    "account": {
        "id",
        "acctnumber",
        "accountsearchdisplayname",
        "fullname",
        "displaynamewithhierarchy",
        "accttype",
        "isinactive",
    },
    "department": {"id", "name", "fullname", "isinactive"},
    "classification": {"id", "name", "fullname", "isinactive"},
    "location": {"id", "name", "fullname", "isinactive"},
    "subsidiary": {"id", "name", "fullname", "iselimination", "isinactive", "currency"},
    "currency": {"id", "name", "symbol"},
}
# Payment applications: netsuite.md says only "type = 'VendPymt' on transaction"; the link tables
# are UNCONFIRMED there. Emulator choice: NetSuite's link tables, one row per applied bill, with
# previousdoc = the bill, nextdoc = the payment, linktype 'Payment', foreignamount = the amount.
_LINK_COLUMNS = {
    "previousdoc",
    "nextdoc",
    "previousline",
    "nextline",
    "previoustype",
    "nexttype",
    "linktype",
    "foreignamount",
    "linkdate",
}
for _name in (
    "nexttransactionlinelink",
    "previoustransactionlinelink",
    "nexttransactionlink",
    "previoustransactionlink",
):
    SCHEMA[_name] = set(_LINK_COLUMNS)


@dataclass
class Books:
    vendors: dict[int, Vendor] = field(default_factory=dict)
    accounts: dict[int, Account] = field(default_factory=dict)
    departments: dict[int, str] = field(default_factory=dict)
    classes: dict[int, str] = field(default_factory=dict)
    locations: dict[int, str] = field(default_factory=dict)
    subsidiaries: dict[int, str] = field(default_factory=dict)
    currencies: dict[int, str] = field(default_factory=lambda: {1: "USD"})
    txns: dict[int, Txn] = field(default_factory=dict)
    next_id: int = 100

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # --- SuiteQL tables ------------------------------------------------------------------

    def table(self, name: str) -> Iterable[dict[str, Any]]:
        if name == "transaction":
            return [self._txn_row(t) for t in self.txns.values()]
        if name == "transactionline":
            return [row for t in self.txns.values() for row in self._line_rows(t)]
        if name == "vendor":
            return [self._vendor_row(v) for v in self.vendors.values()]
        if name == "entityaddress":
            return [
                {"nkey": v.id * 10, "addressee": v.companyname, **_address(v.address)}
                for v in self.vendors.values()
                if v.address is not None
            ]
        if name == "vendorsubsidiaryrelationship":
            return [
                {
                    "id": v.id * 100 + s,
                    "entity": v.id,
                    "subsidiary": s,
                    "isprimarysub": _tf(s == v.subsidiary),
                }
                for v in self.vendors.values()
                for s in sorted(v.subsidiaries | {v.subsidiary})
            ]
        if name == "account":
            return [
                {
                    "id": a.id,
                    "acctnumber": a.number,
                    "fullname": a.name,
                    "accountsearchdisplayname": f"{a.number} {a.name}",
                    "displaynamewithhierarchy": f"{a.number} {a.name}",
                    "accttype": a.type,
                    "isinactive": _tf(not a.active),
                }
                for a in self.accounts.values()
            ]
        segments = {
            "department": self.departments,
            "classification": self.classes,
            "location": self.locations,
        }
        if name in segments:
            return [
                {"id": i, "name": n, "fullname": n, "isinactive": "F"}
                for i, n in segments[name].items()
            ]
        if name == "subsidiary":
            return [
                {
                    "id": i,
                    "name": n,
                    "fullname": n,
                    "iselimination": "F",
                    "isinactive": "F",
                    "currency": 1,
                }
                for i, n in self.subsidiaries.items()
            ]
        if name == "currency":
            return [{"id": i, "name": n, "symbol": n} for i, n in self.currencies.items()]
        if name in SCHEMA and "link" in name:
            rows = []
            for pay in self.txns.values():
                if pay.type != "VendPymt" or pay.voided:
                    continue
                for bill_id, amount in pay.applied.items():
                    rows.append(
                        {
                            "previousdoc": bill_id,
                            "nextdoc": pay.id,
                            "previousline": 0,
                            "nextline": 0,
                            "previoustype": "VendBill",
                            "nexttype": "VendPymt",
                            "linktype": "Payment",
                            "foreignamount": amount,
                            "linkdate": pay.trandate,
                        }
                    )
            return rows
        return []

    def _txn_row(self, t: Txn) -> dict[str, Any]:
        total = t.total
        # Emulator choice (UNCONFIRMED): a bill's foreigntotal is positive, a payment's too.
        return {
            "id": t.id,
            "tranid": t.tranid,
            "trandate": t.trandate,
            "duedate": t.duedate,
            "type": t.type,
            "recordtype": RECORD_TYPE[t.type],
            "status": t.status,
            "approvalstatus": t.approvalstatus,
            "entity": t.entity,
            "currency": t.currency,
            "exchangerate": Decimal(1),
            "foreigntotal": total,
            "total": total,
            "foreignamountpaid": t.paid if t.type == "VendBill" else None,
            "foreignamountunpaid": t.unpaid if t.type == "VendBill" else None,
            "memo": t.memo,
            "externalid": t.externalid,
            "createddate": t.created,
            "lastmodifieddate": t.modified,
            "postingperiod": None,
            "paymenthold": _tf(t.paymenthold),
            "voided": _tf(t.voided),
        }

    def _line_rows(self, t: Txn) -> list[dict[str, Any]]:
        # The header line: mainline 'T', line 0, carries the subsidiary and the A/P side.
        rows = [
            {
                "id": 0,
                "transaction": t.id,
                "linesequencenumber": 0,
                "mainline": "T",
                "taxline": "F",
                "expenseaccount": t.apacct if t.type != "VendPymt" else t.account,
                "amount": -t.total,
                "netamount": -t.total,
                "foreignamount": -t.total,
                "department": None,
                "class": None,
                "location": None,
                "memo": t.memo,
                "subsidiary": t.subsidiary,
                "entity": t.entity,
                "isbillable": "F",
            }
        ]
        for seq, line in enumerate(t.lines, start=1):
            rows.append(
                {
                    "id": line.id,
                    "transaction": t.id,
                    "linesequencenumber": seq,
                    "mainline": "F",
                    "taxline": "F",
                    "expenseaccount": line.account,
                    "amount": line.amount,
                    "netamount": line.amount,
                    "foreignamount": line.amount,
                    "department": line.department,
                    "class": line.klass,
                    "location": line.location,
                    "memo": line.memo,
                    "subsidiary": t.subsidiary,
                    "entity": t.entity,
                    "isbillable": "F",
                }
            )
        return rows

    def _vendor_row(self, v: Vendor) -> dict[str, Any]:
        return {
            "id": v.id,
            "entityid": v.companyname,
            "companyname": v.companyname,
            "legalname": v.companyname,
            "email": v.email,
            "phone": v.phone,
            "isperson": "F",
            "isinactive": _tf(v.inactive),
            "subsidiary": v.subsidiary,
            "currency": v.currency,
            "externalid": v.externalid,
            "datecreated": v.created,
            "lastmodifieddate": v.modified,
            "defaultbillingaddress": None if v.address is None else v.id * 10,
        }

    # --- BUILTIN.DF / BUILTIN.CF -----------------------------------------------------------

    def display(self, table: str, column: str, value: Any, row: dict[str, Any]) -> Any:
        """BUILTIN.DF: the referenced record's name (netsuite.md §5: DF(status) is the label)."""
        if value is None:
            return None
        if column == "status" and table == "transaction":
            labels = {"VendBill": BILL_STATUS, "PurchOrd": PO_STATUS}.get(
                row["type"], PAYMENT_STATUS
            )
            return f"{TYPE_LABEL[row['type']]} : {labels.get(value, value)}"
        if column == "approvalstatus":
            return APPROVAL.get(int(value), str(value))
        if column == "type" and table == "transaction":
            return TYPE_LABEL.get(value, value)
        if column in ("entity",) and int(value) in self.vendors:
            return self.vendors[int(value)].companyname
        if column in ("expenseaccount", "account") and int(value) in self.accounts:
            a = self.accounts[int(value)]
            return f"{a.number} {a.name}"
        lookup = {
            "department": self.departments,
            "class": self.classes,
            "location": self.locations,
            "subsidiary": self.subsidiaries,
            "currency": self.currencies,
        }
        if column in lookup:
            return lookup[column].get(int(value), value)
        if column in ("transaction", "previousdoc", "nextdoc") and int(value) in self.txns:
            t = self.txns[int(value)]
            return f"{TYPE_LABEL[t.type]} #{t.tranid or t.id}"
        return value

    def criteria(self, table: str, column: str, value: Any, row: dict[str, Any]) -> Any:
        """BUILTIN.CF: ``VendBill:A`` for a transaction's status (netsuite.md §5)."""
        if value is None:
            return None
        if column == "status" and table == "transaction":
            return f"{row['type']}:{value}"
        return value
