"""Which vendor bills move, and how a SuiteQL row reads as a payable.

Bills are read with SuiteQL (netsuite.md §4, §6): the header from ``transaction`` (``type =
'VendBill'``, ``status = 'A'`` Open) with the subsidiary from its main line, the expense and
item lines from ``transactionline`` (account per line: ``expenseaccount``; department, class,
location per line). Readiness is checked again here on every row, tolerant of the forms
NetSuite may send (``'A'`` or ``'VendBill:A'``; approval ids as numbers or strings).

Pages are keyed on the internal id (``t.id > <last> ORDER BY t.id``) inside a fixed window, so
no query ever reaches the 100,000-row offset ceiling, and a bill that changes meanwhile leaves
the window (it is read in a later one) without moving any other bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ml_connector.models import (
    Account,
    AccountKind,
    Address,
    Dimension,
    DimensionKind,
    Payable,
    PayableLine,
    RejectedRecord,
    Vendor,
)

from ml_connector_netsuite.schemas import Settings, decimal_or_none

if TYPE_CHECKING:
    from ml_connector.models import ChangeWindow

__all__ = [
    "DIMENSION_TABLES",
    "Rejection",
    "account",
    "bill_query",
    "dimension",
    "is_bill",
    "lines_query",
    "not_ready",
    "rejected",
    "stamp",
    "to_payable",
    "to_vendor",
    "vendors_query",
]

TIME_FORMAT = "YYYY-MM-DD HH24:MI:SS"
"""The SuiteQL literal form of times (netsuite.md §6: ``TO_TIMESTAMP('…', '<this>')``)."""
_PY_TIME = "%Y-%m-%d %H:%M:%S"

DIMENSION_TABLES: dict[DimensionKind, str] = {
    DimensionKind.DEPARTMENT: "department",
    DimensionKind.CLASS: "classification",
    DimensionKind.LOCATION: "location",
}
"""The segment tables the lines' ``department``/``class``/``location`` refer to."""

_LINE_DIMENSIONS = {
    "department": DimensionKind.DEPARTMENT,
    "class": DimensionKind.CLASS,
    "location": DimensionKind.LOCATION,
}

_HEADER_COLUMNS = (
    "t.id, t.type, t.tranid, TO_CHAR(t.trandate, 'YYYY-MM-DD') AS trandate, "
    "TO_CHAR(t.duedate, 'YYYY-MM-DD') AS duedate, t.entity, t.currency, t.foreigntotal, "
    "t.memo, t.status, t.approvalstatus, t.paymenthold, "
    f"TO_CHAR(t.lastmodifieddate, '{TIME_FORMAT}') AS lastmodified, m.subsidiary"
)


class Rejection(Exception):
    """A record that cannot be a payable as it is; ``field`` is NetSuite's field name."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# --- Queries -----------------------------------------------------------------------------------


def literal_time(moment: datetime, zone: ZoneInfo, *, up: bool = False) -> str:
    """``TO_TIMESTAMP('2026-01-05 09:00:00', 'YYYY-MM-DD HH24:MI:SS')`` in the account's zone.

    SuiteQL times have whole seconds: a lower bound is rounded down, an upper bound up
    (``up``); the exact window is applied to each row afterwards.
    """
    local = moment.astimezone(zone).replace(tzinfo=None)
    if up and local.microsecond:
        local = local.replace(microsecond=0) + timedelta(seconds=1)
    local = local.replace(microsecond=0)
    return f"TO_TIMESTAMP('{local.strftime(_PY_TIME)}', '{TIME_FORMAT}')"


def _digits(value: str, name: str) -> str:
    """An internal id to put in a query: digits only (nothing else reaches the SQL text)."""
    if not value.isdigit():
        raise ValueError(f"{name} {value!r} is not an internal id")
    return value


def bill_query(window: ChangeWindow | None, settings: Settings, after: str | None) -> str:
    """The open vendor bills changed in ``window``, after internal id ``after``, by id."""
    where = ["t.type = 'VendBill'", "t.status = 'A'"]
    if window is not None:
        if window.since is not None:
            where.append(f"t.lastmodifieddate >= {literal_time(window.since, settings.zone)}")
        where.append(f"t.lastmodifieddate < {literal_time(window.until, settings.zone, up=True)}")
    if settings.subsidiary_id is not None:
        where.append(f"m.subsidiary = {_digits(settings.subsidiary_id, 'subsidiary_id')}")
    if after is not None:
        where.append(f"t.id > {_digits(after, 'page token')}")
    return (
        f"SELECT {_HEADER_COLUMNS} FROM transaction t "  # noqa: S608 - digits-checked ids only
        "JOIN transactionline m ON m.transaction = t.id AND m.mainline = 'T' "
        f"WHERE {' AND '.join(where)} ORDER BY t.id"
    )


def one_query(source_id: str) -> str:
    """One transaction by internal id, whatever its type and status."""
    return (
        f"SELECT {_HEADER_COLUMNS} FROM transaction t "  # noqa: S608 - digits-checked ids only
        "LEFT JOIN transactionline m ON m.transaction = t.id AND m.mainline = 'T' "
        f"WHERE t.id = {_digits(source_id, 'source id')}"
    )


def lines_query(bill_ids: list[str]) -> str:
    """The lines (not the main line) of some bills, in a stable order for offset paging."""
    ids = ", ".join(_digits(i, "bill id") for i in bill_ids)
    return (
        "SELECT tl.transaction, tl.id, tl.expenseaccount, tl.foreignamount, tl.memo, "  # noqa: S608 - digits-checked ids only
        "tl.department, tl.class, tl.location "
        f"FROM transactionline tl WHERE tl.transaction IN ({ids}) AND tl.mainline = 'F' "
        "ORDER BY tl.transaction, tl.id"
    )


def vendors_query(vendor_ids: list[str]) -> str:
    """Some vendors by internal id."""
    ids = ", ".join(_digits(i, "vendor id") for i in vendor_ids)
    return (
        "SELECT v.id, v.entityid, v.companyname, v.email, v.phone, v.isinactive "  # noqa: S608 - digits-checked ids only
        f"FROM vendor v WHERE v.id IN ({ids}) ORDER BY v.id"
    )


def addresses_query(vendor_ids: list[str]) -> str:
    """Some vendors' default billing addresses (``entityaddress``; not in netsuite.md).

    ``vendor.defaultbillingaddress`` holds the ``entityaddress.nkey`` of the address: the
    usual SuiteQL join, UNCONFIRMED here; the plugin reads vendors without addresses if the
    account refuses the query.
    """
    ids = ", ".join(_digits(i, "vendor id") for i in vendor_ids)
    return (
        "SELECT v.id, a.addr1, a.addr2, a.city, a.state, a.zip, a.country "  # noqa: S608 - digits-checked ids only
        "FROM vendor v JOIN entityaddress a ON a.nkey = v.defaultbillingaddress "
        f"WHERE v.id IN ({ids}) ORDER BY v.id"
    )


def address(row: dict[str, Any]) -> Address | None:
    """An ``entityaddress`` row as an address, or ``None`` if it has no usable country."""
    country = (text(row, "country") or "").upper()
    if len(country) != 2 or not country.isalpha():
        return None
    return Address(
        line1=text(row, "addr1"),
        line2=text(row, "addr2"),
        city=text(row, "city"),
        state=text(row, "state"),
        postal_code=text(row, "zip"),
        country=country,
    )


CURRENCIES_QUERY = "SELECT c.id, c.symbol FROM currency c ORDER BY c.id"


def accounts_query(after: str | None) -> str:
    """The chart of accounts, active or not, paged by id."""
    where = "" if after is None else f" WHERE a.id > {_digits(after, 'account id')}"
    return (
        "SELECT a.id, a.acctnumber, a.fullname, a.accttype, a.isinactive "  # noqa: S608 - digits-checked ids only
        f"FROM account a{where} ORDER BY a.id"
    )


def dimension_query(table: str, after: str | None) -> str:
    """One segment's values, active or not, paged by id."""
    where = "" if after is None else f" WHERE d.id > {_digits(after, 'id')}"
    sql = f"SELECT d.id, d.name, d.isinactive FROM {table} d{where} ORDER BY d.id"  # noqa: S608
    return sql


# --- Reading rows ------------------------------------------------------------------------------


def text(row: dict[str, Any], name: str) -> str | None:
    """A column as text, ``None`` when empty (SuiteQL leaves null columns out)."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, dict):  # a reference {id, refName} (REST record form)
        value = value.get("id")
        if value is None:
            return None
    value = str(value).strip()
    return value or None


def flag(row: dict[str, Any], name: str) -> bool:
    """A SuiteQL boolean: ``'T'``/``'F'`` (also true/false)."""
    value = row.get(name)
    if isinstance(value, bool):
        return value
    return str(value).strip().upper() in {"T", "TRUE", "Y", "YES", "1"}


def stamp(row: dict[str, Any], zone: ZoneInfo) -> datetime | None:
    """The row's ``lastmodified`` (account zone, whole seconds) as UTC, or ``None``."""
    value = text(row, "lastmodified") or text(row, "lastmodifieddate")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("T", " ", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def in_window(moment: datetime, window: ChangeWindow) -> bool:
    """Whether a change time is in ``[since, until)``."""
    return (window.since is None or moment >= window.since) and moment < window.until


def is_bill(row: dict[str, Any]) -> bool:
    """Whether a transaction row is a vendor bill (a purchase order is ``PurchOrd``)."""
    kind = (text(row, "type") or "VendBill").lower()
    return kind in {"vendbill", "vendorbill"}


_STATUS_LABELS = {
    "A": "open",
    "B": "paid in full",
    "C": "cancelled",
    "D": "pending approval",
    "E": "rejected",
    "F": "payment in transit",
}


def status_letter(row: dict[str, Any]) -> str | None:
    """The bill's status letter (``'A'`` from ``'A'``, ``'VendBill:A'`` or ``'Open'``)."""
    value = text(row, "status")
    if value is None:
        return None
    value = value.rsplit(":", 1)[-1].strip()
    if len(value) == 1:
        return value.upper()
    for letter, label in _STATUS_LABELS.items():
        if value.lower() == label:
            return letter
    return None


def status_label(row: dict[str, Any]) -> str:
    """The bill's status as words, for ``source_status``."""
    letter = status_letter(row)
    return _STATUS_LABELS.get(letter or "", text(row, "status") or "unknown")


def not_ready(row: dict[str, Any], settings: Settings) -> str | None:
    """Why a bill must not move (``None`` if it is ready): not open, not approved, on hold.

    An unknown status letter counts as not ready (netsuite.md §8). An empty approval status
    counts as approved: without approval routing a bill has none, and status ``A`` (Open)
    already excludes ``D`` (Pending Approval) and ``E`` (Rejected).
    """
    if not is_bill(row):
        return f"a {text(row, 'type')} transaction, not a vendor bill"
    letter = status_letter(row)
    if letter != "A":
        return f"status {status_label(row)}"
    approval = text(row, "approvalstatus")
    if approval is not None and approval not in settings.approved_status_ids:
        return f"approval status {approval}"
    if flag(row, "paymenthold"):
        return "payment hold"
    return None


def _date(row: dict[str, Any], name: str) -> date | None:
    value = text(row, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise Rejection(name, f"{name} {value!r} is not a date") from None


@dataclass(frozen=True)
class Line:
    """One bill line as read from ``transactionline``."""

    line_id: str
    account: str | None
    amount: Decimal | None
    memo: str | None
    dimensions: dict[DimensionKind, str]


def line(row: dict[str, Any]) -> Line:
    """A ``transactionline`` row (expense or item line)."""
    dimensions = {}
    for column, kind in _LINE_DIMENSIONS.items():
        value = text(row, column)
        if value is not None:
            dimensions[kind] = value
    return Line(
        line_id=text(row, "id") or "",
        account=text(row, "expenseaccount") or text(row, "account"),
        amount=decimal_or_none(row.get("foreignamount", row.get("amount"))),
        memo=text(row, "memo"),
        dimensions=dimensions,
    )


def to_payable(
    row: dict[str, Any],
    lines: list[Line],
    vendor: Vendor,
    currency: str,
    settings: Settings,
) -> Payable:
    """A bill row and its lines as a payable.

    Line amounts are taken with the sign that adds up to the bill's total: NetSuite's
    ``transactionline`` amounts may carry the accounting sign (UNCONFIRMED which), so lines
    that add up to minus the total are negated.

    Raises:
        Rejection: The bill cannot be read (naming the NetSuite field).
    """
    source_id = text(row, "id")
    if source_id is None:
        raise Rejection("id", "the transaction has no internal id")
    tranid = text(row, "tranid")
    if tranid is None:
        raise Rejection(
            "tranid",
            "the bill has no Reference No. (tranid), which BILL needs as the invoice number",
        )
    modified = stamp(row, settings.zone)
    if modified is None:
        raise Rejection("lastmodifieddate", "the bill has no readable lastmodifieddate")
    invoice_date = _date(row, "trandate")
    if invoice_date is None:
        raise Rejection("trandate", "the bill has no date (trandate)")
    due_date = _date(row, "duedate") or invoice_date
    total = decimal_or_none(row.get("foreigntotal"))
    if total is None:
        raise Rejection("foreigntotal", "the bill has no readable total (foreigntotal)")
    total = abs(total)
    if not lines:
        raise Rejection("transactionline", "the bill has no expense or item lines")
    amounts: list[Decimal] = []
    for index, item in enumerate(lines):
        if item.amount is None:
            raise Rejection(f"transactionline.{index}.foreignamount", "the line has no amount")
        if item.account is None:
            raise Rejection(
                f"transactionline.{index}.expenseaccount",
                f"line {item.line_id or index} has no GL account",
            )
        amounts.append(item.amount)
    line_sum = sum(amounts, Decimal(0))
    if line_sum != total and -line_sum == total:
        amounts = [-a for a in amounts]
    elif line_sum != total:
        raise Rejection(
            "foreigntotal",
            f"the lines add up to {line_sum} {currency}, the bill's total is {total} {currency}",
        )
    payable_lines = [
        PayableLine(
            line_id=item.line_id or str(index),
            amount=amount,
            description=item.memo,
            account_id=item.account or "",
            dimensions={k: v for k, v in item.dimensions.items() if k.value in settings.dimensions},
        )
        for index, (item, amount) in enumerate(zip(lines, amounts, strict=True))
    ]
    return Payable(
        source_id=source_id,
        document_number=source_id,
        invoice_number=tranid,
        vendor=vendor,
        invoice_date=invoice_date,
        due_date=due_date,
        currency=currency,
        total=total,
        lines=tuple(payable_lines),
        description=text(row, "memo"),
        modified_at=modified,
        source_status=status_label(row),
    )


def to_vendor(row: dict[str, Any], currency: str, where: Address | None = None) -> Vendor:
    """A ``vendor`` row as a vendor (a person vendor has no company name: its entity id)."""
    source_id = text(row, "id")
    if source_id is None:
        raise Rejection("entity", "the vendor has no internal id")
    name = text(row, "companyname") or text(row, "entityid")
    if name is None:
        raise Rejection("vendor.companyname", f"vendor {source_id} has no name")
    return Vendor(
        source_id=source_id,
        name=name,
        email=text(row, "email"),
        phone=text(row, "phone"),
        address=where,
        currency=currency,
        active=not flag(row, "isinactive"),
    )


def currency_code(value: str | None, currencies: dict[str, str]) -> str:
    """The ISO code of a bill's currency id (the ``currency`` table's ``symbol``).

    Raises:
        Rejection: The currency is unknown or not a 3-letter code.
    """
    if value is None:
        raise Rejection("currency", "the bill has no currency")
    code = currencies.get(value, value).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise Rejection("currency", f"currency {value} has no ISO code (symbol {code!r})")
    return code


def rejected(
    record_id: str | None, rejection: Rejection, moment: datetime | None
) -> RejectedRecord:
    """A rejected bill, naming the NetSuite field."""
    return RejectedRecord(
        record_type="vendorBill",
        record_id=record_id,
        field=rejection.field,
        reason=rejection.reason,
        modified_at=moment,
    )


_KINDS: dict[str, AccountKind] = {}
for _kind, _names in {
    AccountKind.EXPENSE: (
        "expense",
        "othexpense",
        "otherexpense",
        "cogs",
        "costofgoodssold",
        "deferexpense",
        "deferredexpense",
    ),
    AccountKind.ASSET: (
        "bank",
        "acctrec",
        "accountsreceivable",
        "othcurrasset",
        "othercurrentasset",
        "fixedasset",
        "othasset",
        "otherasset",
        "unbilledrec",
        "unbilledreceivable",
    ),
    AccountKind.LIABILITY: (
        "acctpay",
        "accountspayable",
        "credcard",
        "creditcard",
        "othcurrliab",
        "othercurrentliability",
        "longtermliab",
        "longtermliability",
        "deferrevenue",
        "deferredrevenue",
    ),
    AccountKind.EQUITY: ("equity", "retainedearnings"),
    AccountKind.INCOME: ("income", "othincome", "otherincome"),
}.items():
    for _name in _names:
        _KINDS[_name] = _kind


def account(row: dict[str, Any]) -> Account | None:
    """An ``account`` row (``accttype`` as code or label), or ``None`` without an id/name."""
    source_id = text(row, "id")
    name = text(row, "fullname") or text(row, "acctname") or text(row, "acctnumber")
    if source_id is None or name is None:
        return None
    kind_text = "".join(ch for ch in (text(row, "accttype") or "").lower() if ch.isalnum())
    return Account(
        id=source_id,
        number=text(row, "acctnumber"),
        name=name,
        kind=_KINDS.get(kind_text, AccountKind.OTHER),
        active=not flag(row, "isinactive"),
        parent_id=text(row, "parent"),
    )


def dimension(kind: DimensionKind, row: dict[str, Any]) -> Dimension | None:
    """A department / class / location row, or ``None`` without an id or name."""
    source_id = text(row, "id")
    name = text(row, "name")
    if source_id is None or name is None:
        return None
    return Dimension(
        id=source_id, kind=kind, code=None, name=name, active=not flag(row, "isinactive")
    )


def chunks(values: list[str], size: int) -> list[list[str]]:
    """``values`` in pieces of at most ``size``."""
    return [values[i : i + size] for i in range(0, len(values), size)] if values else []
