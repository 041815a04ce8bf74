"""SAP Business One's records as the emulator keeps them: enums, entity types, values, JSON.

Facts: shared/api/sapb1.md (sections cited as §n). Records are held with Python values (``date``,
``time``, ``Decimal``, enum member names) and rendered per API version on the way out:

- v1 (OData v3): dates ``YYYY-MM-DD`` (SAP-UG §3.6, CONFIRMED), times ``HH:MM:SS``;
- v2 (OData v4): dates as ``Edm.DateTimeOffset`` ``YYYY-MM-DDT00:00:00Z`` (the type is CONFIRMED
  by MD, the literal string is the §8 emulator choice), times ``HH:MM:SS`` (``Edm.TimeOfDay``;
  the JSON form of time values is UNCONFIRMED, §5).

Enums are accepted by member name, by the v2 ``$metadata`` member value (MD, §5) and, where the
database letter is known, by that letter (``CardType`` ``'S'``: SAP-UG §3.7.3, CONFIRMED; the
other letters are general B1 knowledge, UNCONFIRMED); they are always returned by name
(SAP-UG §3.5.1).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "ACCOUNT_TYPE",
    "ADDRESS_TYPE",
    "AUTHORIZATION",
    "BUSINESS_PARTNER",
    "CANCEL_STATUS",
    "CARD_TYPE",
    "CENT",
    "CHART_OF_ACCOUNT",
    "DISTRIBUTION_RULE",
    "DOCUMENT",
    "DOCUMENT_LINE",
    "DOC_TYPE",
    "INVOICE_TYPE",
    "OBJECT_TYPE",
    "PAYMENT",
    "PAYMENT_AUTHORIZATION",
    "PAYMENT_INVOICE",
    "PAYMENT_OBJECT",
    "PROFIT_CENTER",
    "RECEIPT_TYPE",
    "STATUS",
    "YES_NO",
    "B1Enum",
    "FieldType",
    "Row",
    "Schema",
    "coerce",
    "coerce_record",
    "dumps",
    "loads",
    "money",
    "parse_date",
    "parse_time",
    "render",
    "snapshot",
]

Row = dict[str, Any]
CENT = Decimal("0.01")


@dataclass(frozen=True)
class B1Enum:
    """An enum type of the Service Layer: members ``(name, v2 value, database letter)``."""

    name: str
    members: tuple[tuple[str, int, str | None], ...]

    def parse(self, raw: Any) -> str:
        """The member ``raw`` names, by name, value or letter (ValueError if none)."""
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a value of {self.name}")
        if isinstance(raw, int | Decimal) or (isinstance(raw, str) and raw.isdigit()):
            number = int(raw)
            for name, value, _ in self.members:
                if value == number:
                    return name
        elif isinstance(raw, str):
            for name, _, letter in self.members:
                if raw in (name, letter):
                    return name
        raise ValueError(f"{raw!r} is not a value of {self.name}")

    def value(self, name: str) -> int:
        """The v2 numeric value of a member."""
        return next(v for n, v, _ in self.members if n == name)


# Member values: the v2 $metadata (MD, CONFIRMED, §5); letters as said in the module docstring.
YES_NO = B1Enum("BoYesNoEnum", (("tNO", 0, "N"), ("tYES", 1, "Y")))
STATUS = B1Enum(
    "BoStatus",
    (("bost_Open", 0, "O"), ("bost_Close", 1, "C"), ("bost_Paid", 2, "P"),
     ("bost_Delivered", 3, "D")),
)  # fmt: skip
DOC_TYPE = B1Enum("BoDocumentTypes", (("dDocument_Items", 0, "I"), ("dDocument_Service", 1, "S")))
CANCEL_STATUS = B1Enum(
    "CancelStatusEnum", (("csYes", 0, "Y"), ("csNo", 1, "N"), ("csCancellation", 2, "C"))
)
AUTHORIZATION = B1Enum(
    "DocumentAuthorizationStatusEnum",
    tuple(
        (name, i, None)
        for i, name in enumerate(
            (
                "dasWithout",
                "dasPending",
                "dasApproved",
                "dasRejected",
                "dasGenerated",
                "dasGeneratedbyAuthorizer",
                "dasCancelled",
            )
        )
    ),
)
CARD_TYPE = B1Enum("BoCardTypes", (("cCustomer", 0, "C"), ("cSupplier", 1, "S"), ("cLid", 2, "L")))
RECEIPT_TYPE = B1Enum(
    "BoRcptTypes", (("rCustomer", 0, "C"), ("rAccount", 1, "A"), ("rSupplier", 2, "S"))
)
# BoRcptInvTypes: the values are the object type numbers (MD, §5).
INVOICE_TYPE = B1Enum(
    "BoRcptInvTypes",
    (("it_Invoice", 13, None), ("it_CredItnote", 14, None), ("it_PurchaseInvoice", 18, None),
     ("it_PurchaseCreditNote", 19, None), ("it_JournalEntry", 30, None),
     ("it_APCorrectionInvoice", 163, None), ("it_DownPayment", 203, None),
     ("it_PurchaseDownPayment", 204, None)),
)  # fmt: skip
# BoObjectTypes (only the members the emulator uses): values are the object type numbers.
OBJECT_TYPE = B1Enum(
    "BoObjectTypes",
    (("oPurchaseInvoices", 18, None), ("oPurchaseOrders", 22, None), ("oDrafts", 112, None)),
)
PAYMENT_OBJECT = B1Enum(
    "BoPaymentsObjectType",
    (("bopot_IncomingPayments", 24, None), ("bopot_OutgoingPayments", 46, None)),
)
PAYMENT_AUTHORIZATION = B1Enum(
    "PaymentsAuthorizationStatusEnum",
    tuple(
        (name, i, None)
        for i, name in enumerate(
            (
                "pasWithout",
                "pasPending",
                "pasApproved",
                "pasRejected",
                "pasGenerated",
                "pasGeneratedbyAuthorizer",
                "pasCancelled",
            )
        )
    ),
)
# UNCONFIRMED values; the letters are OACT.ActType's (general B1 knowledge).
ACCOUNT_TYPE = B1Enum(
    "BoAccountTypes", (("at_Revenues", 0, "I"), ("at_Expenses", 1, "E"), ("at_Other", 2, "N"))
)
ADDRESS_TYPE = B1Enum("BoAddressType", (("bo_ShipTo", 0, "S"), ("bo_BillTo", 1, "B")))

FieldType = Any
"""``"str"``, ``"int"``, ``"dec"``, ``"date"``, ``"time"``, a :class:`B1Enum` or a
:class:`Schema` (a collection of complex rows, e.g. ``DocumentLines``)."""


@dataclass(frozen=True)
class Schema:
    """An entity or complex type: its name (as ``$metadata`` has it) and its properties."""

    name: str
    fields: dict[str, FieldType] = field(default_factory=dict)

    def scalar(self, name: str) -> bool:
        """Whether ``name`` is a property that is not a collection."""
        return name in self.fields and not isinstance(self.fields[name], Schema)


_COSTING = {f"CostingCode{n}" if n > 1 else "CostingCode": "str" for n in range(1, 6)}

# Properties named in §5 (each CONFIRMED by MD in v1 and v2) plus the line/header keys B1 adds.
DOCUMENT_LINE = Schema(
    "DocumentLine",
    {
        "LineNum": "int", "DocEntry": "int", "ItemCode": "str", "ItemDescription": "str",
        "Quantity": "dec", "Price": "dec", "UnitPrice": "dec", "LineTotal": "dec",
        "RowTotalFC": "dec", "GrossTotal": "dec", "TaxTotal": "dec", "Currency": "str",
        "AccountCode": "str", **_COSTING, "ProjectCode": "str", "TaxCode": "str",
        "VatGroup": "str", "LineStatus": STATUS, "BaseType": "int", "BaseEntry": "int",
        "BaseLine": "int", "FreeText": "str",
    },
)  # fmt: skip
DOCUMENT = Schema(
    "Document",
    {
        "DocEntry": "int", "DocNum": "int", "DocType": DOC_TYPE, "DocDate": "date",
        "DocDueDate": "date", "TaxDate": "date", "CreationDate": "date", "UpdateDate": "date",
        "UpdateTime": "time", "CardCode": "str", "CardName": "str", "NumAtCard": "str",
        "DocTotal": "dec", "DocTotalFc": "dec", "VatSum": "dec", "DocCurrency": "str",
        "DocRate": "dec", "PaidToDate": "dec", "PaidToDateFC": "dec", "PaidToDateSys": "dec",
        "Comments": "str", "JournalMemo": "str", "Series": "int", "Reference1": "str",
        "Reference2": "str", "Project": "str", "Cancelled": YES_NO,
        "CancelStatus": CANCEL_STATUS, "DocumentStatus": STATUS,
        "AuthorizationStatus": AUTHORIZATION, "DocObjectCode": OBJECT_TYPE,
        # PaymentBlock: the B1 "payment block" of a payable (general B1 knowledge, not in
        # sapb1.md); kept and served, never enforced.
        "PaymentBlock": YES_NO, "DataVersion": "int", "DocumentLines": DOCUMENT_LINE,
    },
)  # fmt: skip
BP_ADDRESS = Schema(
    "BPAddress",
    {
        "AddressName": "str", "AddressType": ADDRESS_TYPE, "Street": "str", "City": "str",
        "ZipCode": "str", "Country": "str", "State": "str", "BPCode": "str", "RowNum": "int",
    },
)  # fmt: skip
BP_BANK_ACCOUNT = Schema(
    "BPBankAccount",
    {"BankCode": "str", "AccountNo": "str", "Country": "str", "BICSwiftCode": "str",
     "IBAN": "str", "AccountName": "str", "InternalKey": "int", "BPCode": "str"},
)  # fmt: skip
BUSINESS_PARTNER = Schema(
    "BusinessPartner",
    {
        "CardCode": "str", "CardName": "str", "CardType": CARD_TYPE, "GroupCode": "int",
        "EmailAddress": "str", "Phone1": "str", "Address": "str", "City": "str",
        "ZipCode": "str", "Country": "str", "FederalTaxID": "str", "Currency": "str",
        "Valid": YES_NO, "Frozen": YES_NO, "PayTermsGrpCode": "int", "DebitorAccount": "str",
        "VatGroup": "str", "CreateDate": "date", "CreateTime": "time", "UpdateDate": "date",
        "UpdateTime": "time", "DataVersion": "int", "BPAddresses": BP_ADDRESS,
        "BPBankAccounts": BP_BANK_ACCOUNT,
    },
)  # fmt: skip
CHART_OF_ACCOUNT = Schema(
    "ChartOfAccount",
    {
        "Code": "str", "Name": "str", "FormatCode": "str", "AcctCurrency": "str",
        "Balance": "dec", "ActiveAccount": YES_NO, "AccountType": ACCOUNT_TYPE,
        "FatherAccountKey": "str", "AccountLevel": "int", "CashAccount": YES_NO,
        "LockManualTransaction": YES_NO, "ValidFor": YES_NO, "FrozenFor": YES_NO,
    },
)  # fmt: skip
PROFIT_CENTER = Schema(
    "ProfitCenter",
    {
        "CenterCode": "str", "CenterName": "str", "GroupCode": "str",
        "InWhichDimension": "int", "CostCenterType": "str", "EffectiveFrom": "date",
        "EffectiveTo": "date", "Active": YES_NO, "CenterOwner": "int",
    },
)  # fmt: skip
DISTRIBUTION_RULE_LINE = Schema(
    "DistributionRuleLine",
    {"LineNumber": "int", "CenterCode": "str", "TotalInCenter": "dec",
     "EffectiveFrom": "date", "EffectiveTo": "date"},
)  # fmt: skip
DISTRIBUTION_RULE = Schema(
    "DistributionRule",
    {
        "FactorCode": "str", "FactorDescription": "str", "InWhichDimension": "int",
        "Active": YES_NO, "TotalFactor": "dec", "Direct": YES_NO, "IsFixedAmount": YES_NO,
        "DistributionRuleLines": DISTRIBUTION_RULE_LINE,
    },
)  # fmt: skip
_DISTRIBUTION = {
    f"DistributionRule{n}" if n > 1 else "DistributionRule": "str" for n in range(1, 6)
}
PAYMENT_INVOICE = Schema(
    "PaymentInvoice",
    {
        "LineNum": "int", "DocEntry": "int", "DocNum": "int", "SumApplied": "dec",
        "AppliedFC": "dec", "AppliedSys": "dec", "DocRate": "dec", "DocLine": "int",
        "InvoiceType": INVOICE_TYPE, "InstallmentId": "int", "DiscountPercent": "dec",
        "PaidSum": "dec", "TotalDiscount": "dec", **_DISTRIBUTION,
    },
)  # fmt: skip
# No UpdateDate/UpdateTime/CreationDate on Payment (MD, CONFIRMED, §5).
PAYMENT = Schema(
    "Payment",
    {
        "DocEntry": "int", "DocNum": "int", "DocType": RECEIPT_TYPE, "CardCode": "str",
        "CardName": "str", "DocDate": "date", "DueDate": "date", "TaxDate": "date",
        "VatDate": "date", "DocCurrency": "str", "DocRate": "dec", "TransferSum": "dec",
        "TransferAccount": "str", "TransferDate": "date", "TransferReference": "str",
        "CashSum": "dec", "CashAccount": "str", "CheckAccount": "str", "Remarks": "str",
        "JournalRemarks": "str", "CounterReference": "str", "Reference1": "str",
        "Reference2": "str", "Cancelled": YES_NO, "Series": "int", "BPLID": "int",
        "ProjectCode": "str", "ControlAccount": "str", "DocObjectCode": PAYMENT_OBJECT,
        "AuthorizationStatus": PAYMENT_AUTHORIZATION, "PaymentInvoices": PAYMENT_INVOICE,
    },
)  # fmt: skip


# --- Values --------------------------------------------------------------------------------------

# §6 (SAP-UG §3.7.4, CONFIRMED): '2014-04-23', '20140423', '2014-04-23T12:21:21'; the time part
# (and an offset) is ignored for date fields.
_DATE = re.compile(
    r"(?P<y>\d{4})-?(?P<m>\d{2})-?(?P<d>\d{2})"
    r"(?:[T ]\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
# §6 (SAP-UG §3.7.5, CONFIRMED): '18:38:00', '1838'; only hours and minutes count in filters.
_TIME = re.compile(r"(?P<h>\d{1,2}):?(?P<m>\d{2})(?::?(?P<s>\d{2})(?:\.\d+)?)?")


def parse_date(text: str) -> date:
    """A date in one of the forms B1 accepts (§6); ValueError otherwise."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a date")
    return date(int(match["y"]), int(match["m"]), int(match["d"]))


def parse_time(text: str) -> time:
    """A time of day in one of the forms B1 accepts (§6); ValueError otherwise."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a time")
    return time(int(match["h"]), int(match["m"]), int(match["s"] or 0))


def money(value: Decimal) -> Decimal:
    """An amount rounded as B1 keeps amounts (two decimals; general B1 knowledge)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"'{value}' is not a number") from None
    else:
        raise ValueError(f"{value!r} is not a number")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    return number


def coerce(kind: FieldType, value: Any) -> Any:
    """``value`` (JSON or Python) as the emulator stores a property of type ``kind``."""
    if value is None:
        return None
    if isinstance(kind, Schema):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ValueError(f"a collection of {kind.name} is expected")
        return [coerce_record(kind, row) for row in value]
    if isinstance(kind, B1Enum):
        return kind.parse(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise ValueError(f"{value!r} is not an integer")
    if kind == "dec":
        return _decimal(value)
    if kind == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            return parse_date(value)
        raise ValueError(f"{value!r} is not a date")
    if kind == "time":
        if isinstance(value, time):
            return value.replace(microsecond=0, tzinfo=None)
        if isinstance(value, str):
            return parse_time(value)
        raise ValueError(f"{value!r} is not a time")
    raise AssertionError(kind)


def coerce_record(schema: Schema, values: dict[str, Any]) -> Row:
    """Every property of ``values`` coerced; an unknown property is a ValueError."""
    out: Row = {}
    for name, value in values.items():
        if name not in schema.fields:
            raise ValueError(f"Property '{name}' of '{schema.name}' is invalid")
        try:
            out[name] = coerce(schema.fields[name], value)
        except ValueError as exc:
            raise ValueError(f"Property '{name}' of '{schema.name}': {exc}") from None
    return out


def _render_value(kind: FieldType, value: Any, version: str) -> Any:
    if value is None:
        return None
    if isinstance(kind, Schema):
        return [render(kind, row, version) for row in value]
    if kind == "date":
        # v1 Edm.DateTime as 'YYYY-MM-DD' (SAP-UG §3.6); v2 Edm.DateTimeOffset (§8 choice).
        return value.isoformat() if version == "v1" else f"{value.isoformat()}T00:00:00Z"
    if kind == "time":
        return value.strftime("%H:%M:%S")
    return value


def render(schema: Schema, record: Row, version: str, select: list[str] | None = None) -> Row:
    """The record as the version's JSON has it (``select`` keeps those properties only)."""
    names = [n for n in schema.fields if select is None or n in select]
    return {n: _render_value(schema.fields[n], record.get(n), version) for n in names}


def snapshot(record: Row) -> Row:
    """A deep copy, so callers cannot change the books behind the emulator's back."""
    return copy.deepcopy(record)


# --- JSON ---------------------------------------------------------------------------------------


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, Decimal):
        out.append(format(value, "f"))  # exact, never through float
    elif value is None or isinstance(value, str | int | bool):
        out.append(json.dumps(value))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    """JSON with Decimals as exact numbers."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(body: bytes) -> Any:
    """JSON with numbers that have a fraction read as Decimal; ValueError if not JSON."""
    return json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
