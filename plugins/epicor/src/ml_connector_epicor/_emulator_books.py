"""One emulated Kinetic company: its tables, and the business objects' rules the sync meets.

Rows are held with Python types (Decimal, aware UTC datetimes, dates) and rendered the way
Kinetic serialises them only on the way out. Business rules raise :class:`BusinessError`, which
the emulator answers as a 400 ``BusinessObjectException`` naming the table and the field
(epicor.md §3); a second record with an existing key raises :class:`DuplicateRecord` (409).

The Payment Entry rules follow the likely flow of epicor.md §5 (order UNCONFIRMED): a payment
group must exist and be locked by the user before ``CreateNewCheckHed``; ``HeadNum`` is assigned
from a sequence when the header is created; ``Update`` saves the header and its applications
together; posting the group reduces the invoices' balances, sets ``Posted`` on ``CheckHed`` and
``APTran`` and removes the group.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["Books", "BusinessError", "Check", "DuplicateRecord", "Invoice", "wire"]

Row = dict[str, Any]


class BusinessError(Exception):
    """A business-rule refusal, naming the table and field (400 ``BusinessObjectException``)."""

    def __init__(self, message: str, table: str, column: str) -> None:
        super().__init__(message)
        self.message, self.table, self.column = message, table, column


class DuplicateRecord(Exception):
    """The key already exists (409 ``DuplicateRecordException``)."""


@dataclass
class Invoice:
    """An AP invoice: ``APInvHed`` with its ``APInvDtl`` lines and ``APInvExp`` distribution."""

    head: Row
    lines: list[Row] = field(default_factory=list)
    expenses: list[Row] = field(default_factory=list)


@dataclass
class Check:
    """An AP payment: ``CheckHed`` with its ``APTran`` applications."""

    head: Row
    trans: list[Row] = field(default_factory=list)


def wire(row: Row) -> Row:
    """A row as Kinetic serialises it.

    Date-times come without an offset (server time, UTC here) and with milliseconds; dates come
    as midnight date-times (epicor.md §5).
    """
    out: Row = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
            out[key] = text
        elif isinstance(value, date):
            out[key] = value.isoformat() + "T00:00:00"
        else:
            out[key] = value
    return out


def _day(value: Any, table: str, column: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BusinessError(f"'{value}' is not a valid date.", table, column) from None


def _money(value: Any, table: str, column: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BusinessError(f"'{value}' is not a valid amount.", table, column)
    try:
        return Decimal(value)
    except ArithmeticError:
        raise BusinessError(f"'{value}' is not a valid amount.", table, column) from None


class Books:
    """The data of one company and the rules of the business objects the sync calls.

    Args:
        company: The Company id (a URL segment and a key column of every row).
        clock: The emulator's "now".
        rng: Seeds row GUIDs.
    """

    def __init__(self, company: str, clock: Callable[[], datetime], rng: random.Random) -> None:
        self.company = company
        self.clock = clock
        self.rng = rng
        self.vendors: dict[int, Row] = {}
        self.accounts: dict[str, Row] = {}
        #: ``COASegValues`` by (COACode, SegmentNbr, SegmentCode).
        self.segment_values: dict[tuple[str, int, str], Row] = {}
        self.invoices: dict[tuple[int, str], Invoice] = {}
        self.checks: dict[int, Check] = {}
        self.groups: dict[str, Row] = {}
        self.banks: set[str] = {"CHECKING", "BILLPAY"}
        self._next_vendor = 101
        self._next_head = 5001

    # --- Helpers -------------------------------------------------------------------------------

    def stamp(self) -> datetime:
        """Now, at the millisecond precision Kinetic keeps."""
        now = self.clock().astimezone(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def guid(self) -> str:
        """A new ``SysRowID``."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def vendor_by_id(self, vendor_id: str) -> Row | None:
        """The vendor with this ``VendorID`` (the user's code)."""
        return next((v for v in self.vendors.values() if v["VendorID"] == vendor_id), None)

    # --- Seeding -------------------------------------------------------------------------------

    def add_vendor(self, vendor_id: str, name: str, **columns: Any) -> int:
        """Add a vendor; returns its system-assigned ``VendorNum``."""
        number = self._next_vendor
        self._next_vendor += 1
        row: Row = {
            "Company": self.company,
            "VendorNum": number,
            "VendorID": vendor_id,
            "Name": name,
            "Inactive": False,
            "Approved": True,
            "Address1": "",
            "Address2": "",
            "Address3": "",
            "City": "",
            "State": "",
            "ZIP": "",
            "Country": "USA",
            "CountryNum": 1,
            "EMailAddress": "",
            "PhoneNum": "",
            "FaxNum": "",
            "TermsCode": "N30",
            "GroupCode": "",
            "CurrencyCode": "USD",
            "PayHold": False,
            "PMUID": 0,
            "TaxPayerID": "",
            "SysRevID": 1,
            "SysRowID": self.guid(),
        }
        row.update(columns)
        self.vendors[number] = row
        return number

    def add_account(
        self,
        natural: str,
        segment: str,
        description: str,
        *more: str,
        active: bool = True,
    ) -> str:
        """Add a GL account ``natural|segment[|more…]``; returns its ``GLAccount1``.

        Segment values go in ``SegValue1``.. (the natural account first); the unused segments
        of the 20 are blank, as Kinetic serves them.
        """
        values = [natural, segment, *more]
        key = "|".join(values)
        row: Row = {
            "Company": self.company,
            "COACode": "MAINBOOK",
            "GLAccount1": key,
            "AccountDesc": description,
        }
        row.update({f"SegValue{n}": "" for n in range(1, 21)})
        row.update({f"SegValue{n}": v for n, v in enumerate(values, start=1)})
        row.update(
            {
                "Active": active,
                "GLAcctDispGLAcctDisp": "-".join(values),
                "SysRevID": 1,
                "SysRowID": self.guid(),
            }
        )
        self.accounts[key] = row
        return key

    def add_segment_value(
        self, number: int, code: str, name: str, *, coa: str = "MAINBOOK", active: bool = True
    ) -> tuple[str, int, str]:
        """Add a value of chart segment ``number`` (``COASegValues``); returns its key."""
        key = (coa, number, code)
        self.segment_values[key] = {
            "Company": self.company,
            "COACode": coa,
            "SegmentNbr": number,
            "SegmentCode": code,
            "SegmentName": name,
            "SegmentDesc": name,
            "SegmentAbbrev": name[:10],
            "ActiveFlag": active,
            "Category": "",
            "NormalBalance": "D" if number == 1 else "",
            "SysRevID": 1,
            "SysRowID": self.guid(),
        }
        return key

    def add_invoice(
        self,
        vendor_num: int,
        invoice_num: str,
        lines: Iterable[tuple[Decimal, str, str] | tuple[Decimal, str, str, str]],
        *,
        invoice_date: date | None = None,
        due_days: int = 30,
        tax: Decimal = Decimal(0),
        posted: bool = True,
        changed: datetime | None = None,
        **columns: Any,
    ) -> tuple[int, str]:
        """Add an AP invoice as AP entry plus posting would leave it.

        Each line is ``(amount, GL account, description)``, optionally with a second GL account
        that takes a third of the amount (a split distribution). The invoice's key is
        ``(VendorNum, InvoiceNum)``; a second invoice with that key is refused, as in Epicor.
        """
        key = (vendor_num, invoice_num)
        if key in self.invoices:
            raise DuplicateRecord(f"invoice {invoice_num} of vendor {vendor_num} exists")
        vendor = self.vendors[vendor_num]
        when = changed or self.stamp()
        day = invoice_date or when.date()
        invoice = Invoice(head={})
        total = Decimal(0)
        for number, spec in enumerate(lines, start=1):
            amount, account, text = spec[0], spec[1], spec[2]
            invoice.lines.append(
                {
                    "Company": self.company,
                    "VendorNum": vendor_num,
                    "InvoiceNum": invoice_num,
                    "InvoiceLine": number,
                    "LineType": "M" if "freight" in text.lower() else "U",
                    "Description": text,
                    "PartNum": "",
                    "PONum": 0,
                    "POLine": 0,
                    "VendorQty": Decimal(1),
                    "OurQty": Decimal(1),
                    "UnitCost": amount,
                    "DocUnitCost": amount,
                    "ExtCost": amount,
                    "DocExtCost": amount,
                    "GLAccount": account,
                    "ChangeDate": when,
                    "SysRevID": 1,
                    "RowMod": "",
                }
            )
            split = [(amount, account)]
            if len(spec) == 4:
                part = (amount / 3).quantize(Decimal("0.01"))
                split = [(amount - part, account), (part, spec[3])]
            for seq, (share, gl) in enumerate(split, start=1):
                invoice.expenses.append(
                    {
                        "Company": self.company,
                        "VendorNum": vendor_num,
                        "InvoiceNum": invoice_num,
                        "InvoiceLine": number,
                        "InvExpSeq": seq,
                        "ExpAmt": share,
                        "DocExpAmt": share,
                        "GLAccount": gl,
                        "GLAccountDesc": self.accounts.get(gl, {}).get("AccountDesc", ""),
                        "COACode": "MAINBOOK",
                        "BookID": "MAIN",
                        "Posted": posted,
                        "ExpDispGLAcct": gl.replace("|", "-"),
                        "SysRevID": 1,
                    }
                )
            total += amount
        total += tax
        invoice.head = {
            "Company": self.company,
            "VendorNum": vendor_num,
            "InvoiceNum": invoice_num,
            "VendorNumVendorID": vendor["VendorID"],
            "VendorNumName": vendor["Name"],
            "GroupID": "" if posted else "APENTRY",
            "InvoiceDate": day,
            "ApplyDate": day,
            "DueDate": date.fromordinal(day.toordinal() + due_days),
            "DiscountDate": None,
            "TermsCode": vendor["TermsCode"],
            "CurrencyCode": vendor["CurrencyCode"],
            "InvoiceAmt": total,
            "DocInvoiceAmt": total,
            "TaxAmt": tax,
            "DocTaxAmt": tax,
            "InvoiceVendorAmt": total,
            "DocInvoiceVendorAmt": total,
            "InvoiceBal": total,
            "DocInvoiceBal": total,
            "UnpostedBal": Decimal(0) if posted else total,
            "Posted": posted,
            "OpenPayable": posted,
            "InvoiceHeld": False,
            "HoldInvoice": False,
            "PayHold": False,
            "DebitMemo": False,
            "GLPosted": False,
            "LockStatus": "",
            "Description": f"{vendor['Name']} invoice {invoice_num}",
            "InvoiceComment": "",
            "InvoiceRef": "",
            "REFPONum": 0,
            "EntryPerson": "ap.clerk",
            "FiscalYear": day.year,
            "FiscalPeriod": day.month,
            "ChangedBy": "ap.clerk",
            "ChangeDate": when,
            "SysRevID": 1,
            "SysRowID": self.guid(),
            "RowMod": "",
        }
        invoice.head.update(columns)
        self.invoices[key] = invoice
        return key

    def touch(self, key: tuple[int, str]) -> None:
        """Change an invoice as a clerk would: a new ``ChangeDate`` and ``SysRevID``."""
        head = self.invoices[key].head
        head["ChangeDate"] = self.stamp()
        head["SysRevID"] += 1

    def adjust(self, key: tuple[int, str], amount: Decimal) -> None:
        """Add ``amount`` to an invoice's first line, its distribution, total and balance."""
        invoice = self.invoices[key]
        line, expense, head = invoice.lines[0], invoice.expenses[0], invoice.head
        for row, columns in (
            (line, ("UnitCost", "DocUnitCost", "ExtCost", "DocExtCost")),
            (expense, ("ExpAmt", "DocExpAmt")),
            (head, ("InvoiceAmt", "DocInvoiceAmt", "InvoiceBal", "DocInvoiceBal",
                    "InvoiceVendorAmt", "DocInvoiceVendorAmt")),
        ):  # fmt: skip
            for column in columns:
                row[column] += amount
        self.touch(key)

    # --- Read views ----------------------------------------------------------------------------

    def invoice_heads(self) -> list[Row]:
        """Every ``APInvHed`` row."""
        return [i.head for i in self.invoices.values()]

    def _invoice_of(self, row: Row) -> Invoice | None:
        number, invoice_num = row.get("VendorNum"), row.get("InvoiceNum")
        if isinstance(number, int) and isinstance(invoice_num, str):
            invoice = self.invoices.get((number, invoice_num))
            if invoice is not None:
                return invoice
        # A header a test broke (a key column blanked): found by its SysRowID.
        row_id = row.get("SysRowID")
        return next((i for i in self.invoices.values() if i.head.get("SysRowID") == row_id), None)

    def invoice_children(self, row: Row, table: str) -> list[Row]:
        """The ``APInvDtl`` or ``APInvExp`` rows of an ``APInvHed`` row."""
        invoice = self._invoice_of(row)
        if invoice is None:
            return []
        return invoice.lines if table == "APInvDtl" else invoice.expenses

    def line_expenses(self, line: Row) -> list[Row]:
        """The ``APInvExp`` rows of an ``APInvDtl`` row: its GL distribution."""
        invoice = self._invoice_of(line)
        if invoice is None:
            return []
        return [e for e in invoice.expenses if e["InvoiceLine"] == line.get("InvoiceLine")]

    def check_heads(self) -> list[Row]:
        """Every ``CheckHed`` row."""
        return [c.head for c in self.checks.values()]

    def check_trans(self, row: Row) -> list[Row]:
        """The ``APTran`` rows of a ``CheckHed`` row."""
        return self.checks[row["HeadNum"]].trans

    # --- APChkGrpSvc ---------------------------------------------------------------------------

    def new_group(self, ds: Row, user: str) -> Row:
        """``GetNewAPChkGrp``: a new group row in the dataset (``RowMod`` A)."""
        ds.setdefault("APChkGrp", []).append(
            wire(
                {
                    "Company": self.company,
                    "GroupID": "",
                    "CreatedBy": user,
                    "ActiveUserID": "",
                    "BankAcctID": "",
                    "CheckDate": self.stamp().date(),
                    "CurrencyCode": "USD",
                    "PMUID": 0,
                    "PostInProcess": False,
                    "SysRevID": 0,
                    "SysRowID": "",
                    "RowMod": "A",
                }
            )
        )
        return ds

    def update_groups(self, ds: Row) -> Row:
        """``APChkGrpSvc/Update``: save added groups."""
        for row in ds.get("APChkGrp") or []:
            if row.get("RowMod") != "A":
                continue
            group_id = str(row.get("GroupID") or "").strip()
            if not group_id:
                raise BusinessError("Group ID is required.", "APChkGrp", "GroupID")
            if len(group_id) > 8:
                raise BusinessError("Group ID is too long (8).", "APChkGrp", "GroupID")
            if group_id in self.groups:
                raise DuplicateRecord(f"Payment group {group_id} already exists.")
            if row.get("BankAcctID") not in self.banks:
                raise BusinessError(
                    f"Bank account {row.get('BankAcctID')} is not valid.", "APChkGrp", "BankAcctID"
                )
            saved = dict(
                row, GroupID=group_id, RowMod="", ActiveUserID="", SysRevID=1, SysRowID=self.guid()
            )
            saved["CheckDate"] = _day(row.get("CheckDate"), "APChkGrp", "CheckDate")
            self.groups[group_id] = saved
            row.update(wire(saved))
        return ds

    def lock_group(self, group_id: str, user: str) -> bool:
        """``LockGroup``: take the group for ``user``; ``False`` if someone else holds it."""
        group = self.groups.get(group_id)
        if group is None:
            raise BusinessError(f"Payment group {group_id} not found.", "APChkGrp", "GroupID")
        if group["ActiveUserID"] not in ("", user):
            return False
        group["ActiveUserID"] = user
        return True

    def unlock_group(self, group_id: str, user: str) -> bool:
        """``UnLockGroup``."""
        group = self.groups.get(group_id)
        if group is None or group["ActiveUserID"] not in ("", user):
            return False
        group["ActiveUserID"] = ""
        return True

    # --- PaymentEntrySvc -----------------------------------------------------------------------

    @staticmethod
    def _current(ds: Row, table: str) -> Row:
        rows = [r for r in ds.get(table) or [] if isinstance(r, dict)]
        added = [r for r in rows if r.get("RowMod") in ("A", "U")]
        if not (added or rows):
            raise BusinessError(f"There is no {table} record to change.", table, "RowMod")
        return (added or rows)[-1]

    def create_check(self, group_id: str, ds: Row, user: str) -> Row:
        """``CreateNewCheckHed``: a new payment header in a group this user has locked."""
        group = self.groups.get(group_id)
        if group is None:
            raise BusinessError(f"Payment group {group_id} not found.", "CheckHed", "GroupID")
        # UNCONFIRMED (§8): the emulator requires the group to be locked by the caller.
        if group["ActiveUserID"] != user:
            raise BusinessError(
                f"Payment group {group_id} is not locked by {user}.", "CheckHed", "GroupID"
            )
        head_num = self._next_head
        self._next_head += 1
        ds.setdefault("CheckHed", []).append(
            wire(
                {
                    "Company": self.company,
                    "HeadNum": head_num,
                    "GroupID": group_id,
                    "BankAcctID": group["BankAcctID"],
                    "CheckDate": group["CheckDate"],
                    "CheckNum": 0,
                    "VendorNum": 0,
                    "VendorNumVendorID": "",
                    "Name": "",
                    "Address1": "",
                    "City": "",
                    "State": "",
                    "ZIP": "",
                    "Country": "",
                    "CurrencyCode": "USD",
                    "ManualPrint": False,
                    "CheckAmt": Decimal(0),
                    "DocCheckAmt": Decimal(0),
                    "CheckSrc": "3",
                    "Posted": False,
                    "Voided": False,
                    "XRefCheckNum": "",
                    "Description": "",
                    "SysRevID": 0,
                    "SysRowID": "",
                    "RowMod": "A",
                }
            )
        )
        return ds

    def on_change_vendor(self, vendor_id: str, ds: Row) -> Row:
        """``OnChangeVendor``: fill the header from the vendor."""
        head = self._current(ds, "CheckHed")
        vendor = self.vendor_by_id(vendor_id)
        if vendor is None:
            raise BusinessError(f"Supplier {vendor_id} not found.", "CheckHed", "VendorNum")
        if vendor["Inactive"]:
            raise BusinessError(f"Supplier {vendor_id} is inactive.", "CheckHed", "VendorNum")
        head.update(
            {
                k: vendor[k]
                for k in (
                    "VendorNum",
                    "Name",
                    "Address1",
                    "City",
                    "State",
                    "ZIP",
                    "Country",
                    "CurrencyCode",
                )
            }
        )
        head["VendorNumVendorID"] = vendor["VendorID"]
        return ds

    def on_change_head(self, ds: Row, column: str, value: Any) -> Row:
        """``OnChangeCheckDate``, ``OnChangeManualPrint``: set a header column."""
        head = self._current(ds, "CheckHed")
        if column == "CheckDate":
            value = wire({"d": _day(value, "CheckHed", "CheckDate")})["d"]
        head[column] = value
        return ds

    def new_tran(self, ds: Row, head_num: Any, invoice_num: Any) -> Row:
        """``GetNewAPTran``: a new application row under a header of the dataset."""
        heads = [h for h in ds.get("CheckHed") or [] if h.get("HeadNum") == head_num]
        if not heads:
            raise BusinessError(f"Payment {head_num} is not in the dataset.", "APTran", "HeadNum")
        head = heads[-1]
        if not head.get("VendorNum"):
            raise BusinessError("A supplier is required first.", "CheckHed", "VendorNum")
        trans = ds.setdefault("APTran", [])
        number = 1 + max(
            (t.get("APTranNo", 0) for t in trans if t.get("HeadNum") == head_num), default=0
        )
        trans.append(
            {
                "Company": self.company,
                "TranType": "Pay",
                "HeadNum": head_num,
                "APTranNo": number,
                "InvoiceNum": str(invoice_num or ""),
                "VendorNum": head["VendorNum"],
                "TranAmt": Decimal(0),
                "DocTranAmt": Decimal(0),
                "DiscAmt": Decimal(0),
                "DocDiscAmt": Decimal(0),
                "TranDate": head["CheckDate"],
                "Posted": False,
                "RowMod": "A",
            }
        )
        return ds

    def _open_invoice(self, vendor_num: Any, invoice_num: str) -> Invoice:
        invoice = self.invoices.get((vendor_num, invoice_num))
        if invoice is None:
            raise BusinessError(
                f"Invoice {invoice_num} not found for this supplier.", "APTran", "InvoiceNum"
            )
        if not invoice.head["Posted"]:
            raise BusinessError(f"Invoice {invoice_num} is not posted.", "APTran", "InvoiceNum")
        if invoice.head["DocInvoiceBal"] <= 0:
            raise BusinessError(f"Invoice {invoice_num} is paid.", "APTran", "InvoiceNum")
        return invoice

    def on_change_invoice(self, invoice_num: str, ds: Row) -> Row:
        """``OnChangeInvoiceNum``: check the invoice is open; default the amount to its balance."""
        tran = self._current(ds, "APTran")
        invoice = self._open_invoice(tran.get("VendorNum"), invoice_num)
        balance = invoice.head["DocInvoiceBal"]
        tran.update({"InvoiceNum": invoice_num, "DocTranAmt": balance, "TranAmt": balance})
        return self._total(ds)

    def on_change_amount(self, amount: Any, ds: Row) -> Row:
        """``OnChangeDocTranAmt``: a positive amount no larger than the invoice's balance."""
        tran = self._current(ds, "APTran")
        value = _money(amount, "APTran", "DocTranAmt")
        invoice = self._open_invoice(tran.get("VendorNum"), str(tran.get("InvoiceNum")))
        self._check_amount(value, invoice)
        tran.update({"DocTranAmt": value, "TranAmt": value})
        return self._total(ds)

    @staticmethod
    def _check_amount(value: Decimal, invoice: Invoice) -> None:
        if value <= 0:
            raise BusinessError("The payment amount must be positive.", "APTran", "DocTranAmt")
        balance = invoice.head["DocInvoiceBal"]
        if value > balance:
            raise BusinessError(
                f"The payment amount {value} exceeds the invoice balance {balance}.",
                "APTran",
                "DocTranAmt",
            )

    @staticmethod
    def _total(ds: Row) -> Row:
        for head in ds.get("CheckHed") or []:
            total = sum(
                (
                    Decimal(t.get("DocTranAmt") or 0)
                    for t in ds.get("APTran") or []
                    if t.get("HeadNum") == head.get("HeadNum")
                ),
                Decimal(0),
            )
            head.update({"DocCheckAmt": total, "CheckAmt": total})
        return ds

    def update_checks(self, ds: Row) -> Row:
        """``PaymentEntrySvc/Update``: save the dataset's added headers and applications.

        Everything is checked before anything is stored, so one call saves all or nothing.
        """
        heads = [h for h in ds.get("CheckHed") or [] if h.get("RowMod") in ("A", "U")]
        trans = [t for t in ds.get("APTran") or [] if t.get("RowMod") in ("A", "U")]
        for head in heads:
            if not head.get("VendorNum"):
                raise BusinessError("A supplier is required.", "CheckHed", "VendorNum")
            if head.get("GroupID") not in self.groups:
                raise BusinessError("The payment group is not valid.", "CheckHed", "GroupID")
        new_heads = {h.get("HeadNum") for h in heads}
        for tran in trans:
            if tran.get("HeadNum") not in new_heads and tran.get("HeadNum") not in self.checks:
                raise BusinessError("The payment header is missing.", "APTran", "HeadNum")
            invoice = self._open_invoice(tran.get("VendorNum"), str(tran.get("InvoiceNum")))
            self._check_amount(_money(tran.get("DocTranAmt"), "APTran", "DocTranAmt"), invoice)
        self._total(ds)
        for head in heads:
            stored = {k: v for k, v in head.items() if k != "RowMod"}
            stored["CheckDate"] = _day(head.get("CheckDate"), "CheckHed", "CheckDate")
            stored.update(SysRevID=1, SysRowID=self.guid(), Posted=False)
            old = self.checks.get(head["HeadNum"])
            self.checks[head["HeadNum"]] = Check(stored, old.trans if old else [])
            head.update(RowMod="", SysRowID=stored["SysRowID"], SysRevID=1)
        for tran in trans:
            stored = {k: v for k, v in tran.items() if k != "RowMod"}
            stored["TranDate"] = _day(tran.get("TranDate"), "APTran", "TranDate")
            stored["DocTranAmt"] = stored["TranAmt"] = Decimal(tran["DocTranAmt"])
            self.checks[tran["HeadNum"]].trans.append(stored)
            tran["RowMod"] = ""
        return ds

    # --- APPaymentPostSvc ----------------------------------------------------------------------

    def post_group(self, group_id: str) -> int:
        """Post every payment of the group: balances down, ``Posted`` set, group removed."""
        if group_id not in self.groups:
            raise BusinessError(
                f"Payment group {group_id} not found.", "APPaymentPostProcess", "GroupID"
            )
        checks = [
            c
            for c in self.checks.values()
            if c.head["GroupID"] == group_id and not c.head["Posted"]
        ]
        owed: dict[tuple[int, str], Decimal] = {}
        for check in checks:
            for tran in check.trans:
                key = (tran["VendorNum"], tran["InvoiceNum"])
                owed[key] = owed.get(key, Decimal(0)) + tran["DocTranAmt"]
        for key, amount in owed.items():
            if amount > self.invoices[key].head["DocInvoiceBal"]:
                raise BusinessError(
                    f"Posting would overpay invoice {key[1]}.", "APTran", "DocTranAmt"
                )
        for key, amount in owed.items():
            head = self.invoices[key].head
            head["DocInvoiceBal"] -= amount
            head["InvoiceBal"] -= amount
            head["OpenPayable"] = head["DocInvoiceBal"] > 0
            # UNCONFIRMED: posting a payment writes the invoice, so it gets a new ChangeDate.
            head["ChangeDate"] = self.stamp()
            head["SysRevID"] += 1
        for check in checks:
            check.head["Posted"] = True
            check.head["SysRevID"] += 1
            for tran in check.trans:
                tran["Posted"] = True
        # UNCONFIRMED: a posted group is removed, as Kinetic's group posting does.
        del self.groups[group_id]
        return len(checks)

    def payments_against(self, key: tuple[int, str]) -> list[tuple[Row, Row]]:
        """``(CheckHed, APTran)`` pairs applied to an invoice, voided ones excluded."""
        return [
            (c.head, t)
            for c in self.checks.values()
            if not c.head["Voided"]
            for t in c.trans
            if (t["VendorNum"], t["InvoiceNum"]) == key
        ]
