"""The Service Layer's wire format, and the connection's settings and credentials.

The wire models use the Service Layer's own property names (``DocEntry``, ``NumAtCard``,
``DocumentLines``), so a rejected record names the field a B1 consultant knows. They are
tolerant where sapb1.md §8 asks for tolerance: enums by member name, by their ``$metadata``
value or by their database letter; dates as ``YYYY-MM-DD`` (v1) or full ISO 8601 (v2); times of
day as ``HH:MM:SS``, ``HH:MM``, ``HHMM`` or an OData v3 duration (``PT14H05M``); amounts as the
JSON number's own text (read with :func:`loads`, never through a float) or a string. Unknown
properties (user-defined fields, newer versions) are ignored.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ml_connector.models import DimensionKind
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "SERVICE_ROOTS",
    "SYSTEM",
    "BusinessPartner",
    "ChartOfAccount",
    "Credentials",
    "DistributionRule",
    "Document",
    "DocumentLine",
    "Payment",
    "PaymentInvoice",
    "ProfitCenter",
    "Settings",
    "Wire",
    "b1_date",
    "b1_time",
    "b1_yes",
    "dumps",
    "loads",
    "money",
]

SYSTEM = "sapb1"
SERVICE_ROOTS = ("/b1s/v1", "/b1s/v2")
"""The two service roots (sapb1.md §1): OData v3 and OData v4."""


# --- Settings and credentials ------------------------------------------------------------------


class Settings(BaseModel):
    """Where the Service Layer is, which company, and how the sync reads and writes.

    Secrets are not here: the B1 user's password is in :class:`Credentials`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_url: Annotated[str, Field(min_length=1, pattern=r"^https?://")] = Field(
        description="The Service Layer's service root with its version, e.g. "
        "https://b1.example.com:50000/b1s/v2 (or …/b1s/v1). Any port; the path ends with "
        "/b1s/v1 or /b1s/v2."
    )
    company_db: Annotated[str, Field(min_length=1)] = Field(
        description="The company database to sign in to (CompanyDB of POST /Login), e.g. "
        "SBODEMOUS; one connection per company."
    )
    transfer_account: Annotated[str, Field(min_length=1)] = Field(
        description="The G/L account (ChartOfAccounts Code) of the bank that BILL payments are "
        "recorded from: the TransferAccount of each outgoing payment."
    )
    tax_account: str | None = Field(
        None,
        description="The G/L account (Code) an invoice's VatSum is coded to, as a line of its "
        "own. Without it, invoices that carry tax are rejected naming VatSum.",
    )
    page_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        100, description="Records per page, sent as Prefer: odata.maxpagesize=N."
    )
    server_timezone: str = Field(
        "UTC",
        description="The IANA time zone of the company's UpdateDate/UpdateTime stamps (the B1 "
        "server's local time), e.g. America/Chicago.",
    )
    dimension_kinds: dict[int, DimensionKind] = Field(
        default_factory=dict,
        description="Which BILL classification each B1 cost-accounting dimension (1 to 5: "
        'CostingCode to CostingCode5) is, e.g. {"1": "department", "2": "location"}. '
        "Dimensions left out are not sent. None by default.",
    )
    currency_codes: dict[str, Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(
        default_factory=dict,
        description="B1 currency codes that are not ISO 4217 codes, to their ISO code, e.g. "
        '{"$": "USD"} (B1 lets a company name its currencies freely).',
    )
    ca_bundle: str | None = Field(
        None,
        description="A PEM file of the CA that signed the Service Layer's certificate (an "
        "on-premise server with the company's own CA).",
    )
    verify_tls: bool = Field(
        True,
        description="Verify the server's TLS certificate. false is for a test server only: it "
        "logs a warning at every run, and is refused together with ca_bundle.",
    )

    @field_validator("service_url")
    @classmethod
    def _service_root(cls, value: str) -> str:
        root = value.rstrip("/")
        if "?" in root or "#" in root:
            raise ValueError("the service URL takes no query or fragment")
        if not root.endswith(SERVICE_ROOTS):
            raise ValueError(
                "the service URL must end with the service root and its version, /b1s/v1 "
                f"(OData v3) or /b1s/v2 (OData v4), e.g. https://b1.example.com:50000/b1s/v2; "
                f"got {value!r}"
            )
        return root

    @field_validator("server_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. UTC)") from None
        return value

    @field_validator("dimension_kinds")
    @classmethod
    def _dimensions(cls, value: dict[int, DimensionKind]) -> dict[int, DimensionKind]:
        for number in value:
            if not 1 <= number <= 5:
                raise ValueError(f"dimension {number}: B1 has dimensions 1 to 5")
        kinds = list(value.values())
        twice = sorted({k.value for k in kinds if kinds.count(k) > 1})
        if twice:
            raise ValueError(f"two dimensions are the same classification ({', '.join(twice)})")
        return dict(sorted(value.items()))

    @field_validator("tax_account", "ca_bundle")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if self.ca_bundle is not None and not self.verify_tls:
            raise ValueError(
                "ca_bundle and verify_tls=false contradict each other: give the CA bundle to "
                "verify the server against it, or turn verification off (test servers only)"
            )
        return self

    @property
    def version(self) -> Literal["v1", "v2"]:
        """``"v1"`` (OData v3) or ``"v2"`` (OData v4), from the service URL."""
        return "v2" if self.service_url.endswith("/b1s/v2") else "v1"

    @property
    def zone(self) -> ZoneInfo:
        """The zone of the company's change stamps."""
        return ZoneInfo(self.server_timezone)

    def ca_bundle_path(self) -> Path | None:
        """The CA bundle as a path, if one is set."""
        return None if self.ca_bundle is None else Path(self.ca_bundle).expanduser()


class Credentials(BaseModel):
    """The B1 user the Service Layer session signs in as (UserName, Password of /Login)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, Field(min_length=1)] = Field(
        description="The SAP Business One user code, e.g. manager."
    )
    password: SecretStr = Field(description="The B1 user's password.")


# --- JSON --------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(content: bytes | str) -> Any:
    """Parse a JSON body; every number with a fraction becomes a Decimal, never a float.

    Raises:
        ValueError: The body is not JSON.
    """
    return json.loads(content, parse_float=Decimal, parse_constant=_no_constant)


def dumps(value: Any) -> bytes:
    """Serialise to JSON, writing Decimals as exact JSON numbers (never through float)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        out.append(format(value, "f"))
    elif isinstance(value, dict):
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
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, float):
        raise TypeError("money goes as a Decimal, never as a float")
    else:
        out.append(json.dumps(value))


# --- Values ------------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:[T ].*)?$")
_MS_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")
_DIGITS_TIME = re.compile(r"^\d{3,6}$")
_DURATION = re.compile(r"^-?P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.\d+)?S)?)$")


def b1_date(value: Any) -> date | None:
    """A date as the Service Layer sends it, or ``None``.

    v1 sends ``"2014-04-01"`` (SAP-UG §3.6); v2 types dates as ``Edm.DateTimeOffset``, so a full
    timestamp such as ``"2026-04-23T00:00:00Z"`` (sapb1.md §8); older JSON formats send
    ``"/Date(1398902400000)/"``. The date is read as written: B1 keeps dates without a time.

    Raises:
        ValueError: Not a date in any of these forms.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    match = _DATE.match(text)
    if match:
        return date(int(match[1]), int(match[2]), int(match[3]))
    ms = _MS_DATE.match(text)
    if ms:
        return datetime.fromtimestamp(int(ms[1]) / 1000, tz=ZoneInfo("UTC")).date()
    raise ValueError(f"{text!r} is not a date")


def b1_time(value: Any) -> time | None:
    """A time of day as the Service Layer sends it (``UpdateTime``), or ``None``.

    ``Edm.Time`` (v1) and ``Edm.TimeOfDay`` (v2); their JSON form is UNCONFIRMED (sapb1.md §5),
    so ``"14:05:00"``, ``"14:05"``, ``"1405"``/``"140503"`` (B1's own HHMM(SS) integers, also as
    numbers) and the OData v3 duration ``"PT14H05M00S"`` are all read.

    Raises:
        ValueError: Not a time of day in any of these forms.
    """
    if value is None or value == "":
        return None
    if isinstance(value, time):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time of day")
    text = str(value).strip()
    if isinstance(value, int) or _DIGITS_TIME.match(text):
        digits = text.zfill(4) if len(text) <= 4 else text.zfill(6)
        hours, minutes = int(digits[:2]), int(digits[2:4])
        seconds = int(digits[4:6]) if len(digits) == 6 else 0
        return time(hours, minutes, seconds)
    match = _TIME.match(text) or _DURATION.match(text)
    if match:
        return time(int(match[1] or 0), int(match[2] or 0), int(match[3] or 0))
    raise ValueError(f"{text!r} is not a time of day")


def b1_yes(value: Any) -> bool | None:
    """``BoYesNoEnum`` as a bool: ``tYES``/``Y``/``1`` is true, ``tNO``/``N``/``0`` false."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text in ("tYES", "Y", "1", "true", "True"):
        return True
    if text in ("tNO", "N", "0", "false", "False"):
        return False
    raise ValueError(f"{text!r} is not tYES or tNO")


def money(value: Any) -> Decimal:
    """An amount from the body's own text, with no trailing zeros beyond the value.

    B1 keeps amounts as numeric(19,6): ``1250.000000`` is 1250, exactly; the zeros are trimmed
    so an exact amount does not look finer than its currency. Nothing is rounded.

    Raises:
        ValueError: A float (its text is already lost), or not a finite number.
    """
    if isinstance(value, bool | float):
        raise ValueError("an amount must be read from the body's text, not from a float")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    trimmed = number.normalize()
    if trimmed.as_tuple().exponent > 0:  # type: ignore[operator]
        trimmed = trimmed.quantize(Decimal(1))
    return trimmed


def _opt_money(value: Any) -> Decimal | None:
    return None if value is None or value == "" else money(value)


def _opt_number(value: Any) -> Decimal | None:
    return _opt_money(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _enum(members: dict[str, tuple[int, str | None]]) -> BeforeValidator:
    """An enum read by member name, ``$metadata`` value or database letter; kept as the name."""
    by_value = {v: name for name, (v, _) in members.items()}
    by_letter = {letter: name for name, (_, letter) in members.items() if letter}

    def parse(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not one of {', '.join(members)}")
        if isinstance(value, int | Decimal):
            found = by_value.get(int(value))
        else:
            text = str(value).strip()
            found = (
                text
                if text in members
                else by_value.get(int(text))
                if text.lstrip("-").isdigit()
                else by_letter.get(text)
            )
        if found is None:
            # A member this plugin does not know (a newer version): kept as sent, so the rules
            # that compare with known members leave the document out rather than guess.
            return str(value).strip()
        return found

    return BeforeValidator(parse)


# Member values: the v2 $metadata (MD, CONFIRMED, sapb1.md §5); letters are the database's
# (SAP-UG §3.7.3 for CardType; the others general B1 knowledge, UNCONFIRMED).
_DOC_STATUS = _enum(
    {"bost_Open": (0, "O"), "bost_Close": (1, "C"), "bost_Paid": (2, "P"),
     "bost_Delivered": (3, "D")}
)  # fmt: skip
_DOC_TYPE = _enum({"dDocument_Items": (0, "I"), "dDocument_Service": (1, "S")})
_CANCEL_STATUS = _enum({"csYes": (0, "Y"), "csNo": (1, "N"), "csCancellation": (2, "C")})
_AUTHORIZATION = _enum(
    {"dasWithout": (0, None), "dasPending": (1, None), "dasApproved": (2, None),
     "dasRejected": (3, None), "dasGenerated": (4, None), "dasGeneratedbyAuthorizer": (5, None),
     "dasCancelled": (6, None)}
)  # fmt: skip
_CARD_TYPE = _enum({"cCustomer": (0, "C"), "cSupplier": (1, "S"), "cLid": (2, "L")})
_ACCOUNT_TYPE = _enum({"at_Revenues": (0, "I"), "at_Expenses": (1, "E"), "at_Other": (2, "N")})
_ADDRESS_TYPE = _enum({"bo_ShipTo": (0, "S"), "bo_BillTo": (1, "B")})
_OBJECT_TYPE = _enum({"oPurchaseInvoices": (18, None), "oDrafts": (112, None)})
_INVOICE_TYPE = _enum(
    {"it_Invoice": (13, None), "it_CredItnote": (14, None), "it_PurchaseInvoice": (18, None),
     "it_PurchaseCreditNote": (19, None), "it_JournalEntry": (30, None),
     "it_APCorrectionInvoice": (163, None), "it_DownPayment": (203, None),
     "it_PurchaseDownPayment": (204, None)}
)  # fmt: skip
_PAYMENT_OBJECT = _enum(
    {"bopot_IncomingPayments": (24, None), "bopot_OutgoingPayments": (46, None)}
)

Amount = Annotated[Decimal | None, BeforeValidator(_opt_money)]
Number = Annotated[Decimal | None, BeforeValidator(_opt_number)]
B1Date = Annotated[date | None, BeforeValidator(b1_date)]
B1Time = Annotated[time | None, BeforeValidator(b1_time)]
YesNo = Annotated[bool | None, BeforeValidator(b1_yes)]
Text = Annotated[str | None, BeforeValidator(_text)]
IntOrNone = Annotated[int | None, BeforeValidator(lambda v: None if v in (None, "") else v)]


class Wire(BaseModel):
    """Base of every wire model: immutable, tolerant of properties it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# --- Documents (PurchaseInvoices) --------------------------------------------------------------


class DocumentLine(Wire):
    """One row of ``DocumentLines`` (sapb1.md §5)."""

    LineNum: IntOrNone = None
    ItemCode: Text = None
    ItemDescription: Text = None
    FreeText: Text = None
    Quantity: Number = None
    Price: Number = None
    LineTotal: Amount = None
    RowTotalFC: Amount = None
    AccountCode: Text = None
    CostingCode: Text = None
    CostingCode2: Text = None
    CostingCode3: Text = None
    CostingCode4: Text = None
    CostingCode5: Text = None

    def costing_code(self, dimension: int) -> str | None:
        """``CostingCode`` (dimension 1) to ``CostingCode5``: the line's distribution rule."""
        name = "CostingCode" if dimension == 1 else f"CostingCode{dimension}"
        value: str | None = getattr(self, name)
        return value


class Document(Wire):
    """A marketing document of ``PurchaseInvoices`` (type ``Document``, sapb1.md §5)."""

    DocEntry: int
    DocNum: IntOrNone = None
    DocType: Annotated[str | None, _DOC_TYPE] = None
    DocObjectCode: Annotated[str | None, _OBJECT_TYPE] = None
    CardCode: Text = None
    CardName: Text = None
    NumAtCard: Text = None
    DocDate: B1Date = None
    DocDueDate: B1Date = None
    TaxDate: B1Date = None
    UpdateDate: B1Date = None
    UpdateTime: B1Time = None
    DocCurrency: Text = None
    DocTotal: Amount = None
    DocTotalFc: Amount = None
    VatSum: Amount = None
    VatSumFc: Amount = None
    PaidToDate: Amount = None
    PaidToDateFC: Amount = None
    Comments: Text = None
    Cancelled: YesNo = None
    CancelStatus: Annotated[str | None, _CANCEL_STATUS] = None
    DocumentStatus: Annotated[str | None, _DOC_STATUS] = None
    AuthorizationStatus: Annotated[str | None, _AUTHORIZATION] = None
    PaymentBlock: YesNo = None
    DocumentLines: list[DocumentLine] = Field(default_factory=list)

    @field_validator("DocumentLines", mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def foreign(self) -> bool:
        """Whether the document is in a foreign currency: B1 fills the FC amounts only then."""
        return bool(self.DocTotalFc)


# --- Business partners -------------------------------------------------------------------------


class BPAddress(Wire):
    """One row of ``BPAddresses``."""

    AddressName: Text = None
    AddressType: Annotated[str | None, _ADDRESS_TYPE] = None
    Street: Text = None
    Block: Text = None
    City: Text = None
    ZipCode: Text = None
    State: Text = None
    Country: Text = None


class BusinessPartner(Wire):
    """``BusinessPartners('{CardCode}')`` (sapb1.md §5)."""

    CardCode: str
    CardName: Text = None
    CardType: Annotated[str | None, _CARD_TYPE] = None
    EmailAddress: Text = None
    Phone1: Text = None
    Address: Text = None
    City: Text = None
    ZipCode: Text = None
    Country: Text = None
    Currency: Text = None
    Valid: YesNo = None
    Frozen: YesNo = None
    BPAddresses: list[BPAddress] = Field(default_factory=list)

    @field_validator("BPAddresses", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        return [] if value is None else value


# --- Chart of accounts and dimensions ----------------------------------------------------------


class ChartOfAccount(Wire):
    """``ChartOfAccounts('{Code}')``: there is no ``Postable``; ``ActiveAccount`` tNO is a title."""

    Code: str
    Name: Text = None
    FormatCode: Text = None
    ActiveAccount: YesNo = None
    FrozenFor: YesNo = None
    AccountType: Annotated[str | None, _ACCOUNT_TYPE] = None
    FatherAccountKey: Text = None


class ProfitCenter(Wire):
    """``ProfitCenters('{CenterCode}')``: a cost center of dimension ``InWhichDimension``."""

    CenterCode: str
    CenterName: Text = None
    InWhichDimension: IntOrNone = None
    Active: YesNo = None


class DistributionRule(Wire):
    """``DistributionRules('{FactorCode}')``: what a line's CostingCode holds."""

    FactorCode: str
    FactorDescription: Text = None
    InWhichDimension: IntOrNone = None
    Active: YesNo = None


# --- Vendor payments ---------------------------------------------------------------------------


class PaymentInvoice(Wire):
    """A row of ``PaymentInvoices``: the payment's application to one document."""

    DocEntry: IntOrNone = None
    InvoiceType: Annotated[str | None, _INVOICE_TYPE] = None
    SumApplied: Amount = None


class Payment(Wire):
    """``VendorPayments({DocEntry})`` (or ``PaymentDrafts``), as the lookup reads it."""

    DocEntry: int
    DocNum: IntOrNone = None
    CardCode: Text = None
    TransferReference: Text = None
    Cancelled: YesNo = None
    DocObjectCode: Annotated[str | None, _PAYMENT_OBJECT] = None
    PaymentInvoices: list[PaymentInvoice] = Field(default_factory=list)

    @field_validator("PaymentInvoices", mode="before")
    @classmethod
    def _rows(cls, value: Any) -> Any:
        return [] if value is None else value
