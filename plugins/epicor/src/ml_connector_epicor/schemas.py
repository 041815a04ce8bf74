"""Epicor Kinetic's wire format (REST API v2, OData v4), kept apart from the domain models.

Everything here is read tolerantly, because Kinetic instances differ by version, patch level and
customisation (epicor.md, introduction and §5): unknown columns are ignored (customer UD columns end
in ``_c``), numbers may arrive as JSON numbers or strings, booleans as ``true`` or ``1``, and date
columns as ``"2024-05-01"`` or ``"2024-05-01T00:00:00"``. Money is parsed from the raw JSON text
as :class:`~decimal.Decimal` (:func:`loads`) and written back as exact JSON numbers
(:func:`dumps`); it never passes through a float.

Also here: the connection's settings and credentials schemas, Epicor's error body, the token
answers, and the table lists that the ``GetRows`` fallback needs.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from ml_connector.models import DimensionKind

__all__ = [
    "AP_INVOICE_SVC",
    "AP_PAYMENT_POST_SVC",
    "CHECK_GROUP_SVC",
    "COA_SEGMENT_SVC",
    "GETROWS_TABLES",
    "GL_ACCOUNT_SVC",
    "PAYMENT_ENTRY_SVC",
    "SYSTEM",
    "VENDOR_SVC",
    "APTranRow",
    "AuthMode",
    "COASegValueRow",
    "CheckRow",
    "EpicorCredentials",
    "EpicorSettings",
    "ErrorBody",
    "ErrorDetail",
    "ExpenseRow",
    "GLAccountRow",
    "InvoiceLineRow",
    "InvoiceRow",
    "TokenAnswer",
    "VendorRow",
    "dumps",
    "loads",
    "parse_error_body",
    "parse_token_answer",
    "segment_values",
]

SYSTEM = "epicor"

# Services the sync uses (epicor.md §1, service catalogue).
AP_INVOICE_SVC = "Erp.BO.APInvoiceSvc"
VENDOR_SVC = "Erp.BO.VendorSvc"
GL_ACCOUNT_SVC = "Erp.BO.GLAccountSvc"
PAYMENT_ENTRY_SVC = "Erp.BO.PaymentEntrySvc"
CHECK_GROUP_SVC = "Erp.BO.APChkGrpSvc"
AP_PAYMENT_POST_SVC = "Erp.PROC.APPaymentPostSvc"
#: The chart's segment values (names of departments, divisions, …), SNO ``Erp_BO_COASegValuesSvc``.
COA_SEGMENT_SVC = "Erp.BO.COASegValuesSvc"
#: GL accounts have 20 segments (``SegValue1``..``SegValue20``); segment 1 is the natural account.
SEGMENTS = range(1, 21)

#: Every table of each service's dataset, in ``GetRows`` parameter order. Kinetic wants a
#: ``whereClause<Table>`` parameter for every one of them (a missing one is a 400 "Parameter
#: whereClauseX is not found in the input object"); ``"1=0"`` leaves a table out. Taken from the
#: v1 help of one SaaS instance (SNO, epicor.md sources): another version may add tables, which
#: the client cannot know, so this list is UNCONFIRMED per customer.
GETROWS_TABLES: dict[str, tuple[str, ...]] = {
    AP_INVOICE_SVC: (
        "APInvHed", "APInvHedAttch", "APIHAPInvExp", "APIHAPInvExpTGLC", "APIHAPInvMsc",
        "RcvMisc", "APIHAPLnTax", "APInvDtl", "APInvDtlAttch", "APInvDtlDEASch", "APInvExp",
        "APInvExpTGLC", "GlbAPIETGLC", "APInvJob", "APInvMsc", "APInvLnMscTax", "APInvPB",
        "APLnTax", "APInvDtlTGLC", "APInvHedMscTax", "APInvSched", "APInvTax", "PESUNATDtl",
        "EntityGLC", "PEAPInvTax", "AdditionalForms_ParametersView", "LegalNumGenOpts",
        "SupplierXRef", "TaxConnectStatus",
    ),
    VENDOR_SVC: (
        "Vendor", "VendorAttch", "EntityGLC", "TaxExempt", "Partner", "PEVendWhldHist",
        "VendRestriction", "VendBank", "VendBankAttch", "VendCntMain", "VenMFBill", "VendorPP",
        "VenPPMFBill", "VenPPUPSEmail", "VendPPRestriction", "VendCnt", "VendCntAttch",
        "VenUPSEmail", "VendRemitTo",
    ),
    GL_ACCOUNT_SVC: ("GLAccount",),
    PAYMENT_ENTRY_SVC: (
        "CheckHed", "CheckHedAttch", "APTran", "APTranTGLC", "APTTaxDtl", "BankTran",
        "BankTranTaxDtl", "BankTranTGLC", "TaxDtl", "LegalNumGenOpts",
    ),
    CHECK_GROUP_SVC: ("APChkGrp", "APChkGrpAttch"),
    COA_SEGMENT_SVC: ("COASegValues", "COASegAcct", "COASegOpt", "COASegRes"),
}  # fmt: skip


# --- JSON without floats ------------------------------------------------------------------------


def loads(content: bytes | str) -> Any:
    """Parse JSON with every non-integer number as an exact Decimal."""
    return json.loads(content, parse_float=Decimal)


def _encode(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool | int | str):
        out.append(json.dumps(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be finite")
        out.append(format(value, "f"))
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + json.dumps(str(key)) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    """Encode JSON with Decimals as exact JSON numbers (floats are never involved)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


# --- Tolerant field types -----------------------------------------------------------------------


def _amount(value: Any) -> Any:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, float):
        raise ValueError("amounts are read as Decimal from the JSON text, never as float")
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    return value


def _flag(value: Any) -> Any:
    if value is None or value == "":
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y")
    return value


def _day(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and len(value) > 10:
        return value[:10]
    return value or None


def _text(value: Any) -> Any:
    return "" if value is None else value


Amount = Annotated[Decimal, BeforeValidator(_amount)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Day = Annotated[date | None, BeforeValidator(_day)]
Text = Annotated[str, BeforeValidator(_text)]


class _Row(BaseModel):
    """A row as Kinetic serialises it: PascalCase columns, unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Rows ---------------------------------------------------------------------------------------


class ExpenseRow(_Row):
    """``APInvExp``: the GL expense distribution of a line (epicor.md §5).

    A child of its line, not of the header: ``APInvDtls(…)/APInvExps`` (SNO's APInvoiceSvc).
    """

    InvoiceLine: int
    InvExpSeq: int
    DocExpAmt: Amount = Decimal(0)
    ExpAmt: Amount = Decimal(0)
    GLAccount: Text = ""
    GLAccountDesc: Text = ""
    COACode: Text = ""


class InvoiceLineRow(_Row):
    """``APInvDtl``: one line of an AP invoice, with its GL distribution (epicor.md §5)."""

    InvoiceLine: int
    LineType: Text = ""
    Description: Text = ""
    PartNum: Text = ""
    PONum: int = 0
    VendorQty: Amount = Decimal(0)
    DocUnitCost: Amount = Decimal(0)
    DocExtCost: Amount = Decimal(0)
    APInvExps: list[ExpenseRow] = Field(default_factory=list)


class InvoiceRow(_Row):
    """``APInvHed``: an AP invoice header, with the child rows the sync expands (epicor.md §5).

    The lines come expanded (``APInvDtls``), each with its distribution (``APInvExps``): the
    header has no ``APInvExps`` navigation.
    """

    Company: Text = ""
    VendorNum: int
    InvoiceNum: str
    VendorNumVendorID: Text = ""
    VendorNumName: Text = ""
    GroupID: Text = ""
    InvoiceDate: Day = None
    DueDate: Day = None
    CurrencyCode: Text = ""
    DocInvoiceAmt: Amount = Decimal(0)
    DocTaxAmt: Amount = Decimal(0)
    DocInvoiceBal: Amount | None = None
    InvoiceBal: Amount | None = None
    Posted: Flag = False
    OpenPayable: Flag | None = None
    InvoiceHeld: Flag = False
    HoldInvoice: Flag = False
    PayHold: Flag = False
    DebitMemo: Flag = False
    Description: Text = ""
    InvoiceComment: Text = ""
    ChangeDate: datetime | None = None
    SysRevID: int = 0
    SysRowID: Text = ""
    APInvDtls: list[InvoiceLineRow] = Field(default_factory=list)


class VendorRow(_Row):
    """``Vendor`` (epicor.md §5): no change date, so it is read by the ids invoices reference."""

    VendorNum: int
    VendorID: Text = ""
    Name: Text = ""
    Inactive: Flag = False
    Address1: Text = ""
    Address2: Text = ""
    Address3: Text = ""
    City: Text = ""
    State: Text = ""
    ZIP: Text = ""
    Country: Text = ""
    EMailAddress: Text = ""
    PhoneNum: Text = ""
    CurrencyCode: Text = ""
    #: "Payments to vendor should be held … can't be selected in check processing" (SNO).
    PayHold: Flag = False


class GLAccountRow(_Row):
    """``GLAccount``: the key column is ``GLAccount1``, not ``GLAccount`` (epicor.md §5, §7)."""

    COACode: Text = ""
    GLAccount1: str
    AccountDesc: Text = ""
    SegValue1: Text = ""
    Active: Flag = True


def segment_values(raw: Any) -> dict[int, str]:
    """A ``GLAccount`` row's non-blank segment values (``SegValue1``..``SegValue20``) by number."""
    if not isinstance(raw, dict):
        return {}
    found: dict[int, str] = {}
    for number in SEGMENTS:
        value = raw.get(f"SegValue{number}")
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            found[number] = str(value).strip()
    return found


class COASegValueRow(_Row):
    """``COASegValues``: one value of one chart segment, e.g. department 20 "Production".

    Keys ``Company``, ``COACode``, ``SegmentNbr`` (1-20), ``SegmentCode`` (the value as it
    appears in ``GLAccount.SegValueN``); SNO ``Erp_BO_COASegValuesSvc``.
    """

    COACode: Text = ""
    SegmentNbr: int
    SegmentCode: str
    SegmentName: Text = ""
    SegmentDesc: Text = ""
    SegmentAbbrev: Text = ""
    ActiveFlag: Flag = True


class APTranRow(_Row):
    """``APTran``: a payment's application to one invoice (epicor.md §5)."""

    HeadNum: int
    APTranNo: int = 0
    InvoiceNum: Text = ""
    TranType: Text = ""
    DocTranAmt: Amount = Decimal(0)
    Posted: Flag = False


class CheckRow(_Row):
    """``CheckHed``: an AP payment header, as ``PaymentEntrySvc`` serves it (epicor.md §5)."""

    HeadNum: int
    GroupID: Text = ""
    VendorNum: int = 0
    XRefCheckNum: Text = ""
    Posted: Flag = False
    Voided: Flag = False
    APTrans: list[APTranRow] = Field(default_factory=list)


# --- Errors -------------------------------------------------------------------------------------


class ErrorDetail(_Row):
    """One item of ``ErrorDetails`` (business-logic errors name the table and the field)."""

    Message: Text = ""
    Type: Text = ""
    Table: Text = ""
    Field: Text = ""


class ErrorBody(_Row):
    """Kinetic's error body (epicor.md §3).

    Fields: ``HttpStatus``, ``ReasonPhrase``, ``ErrorMessage``, ``ErrorType``, ``ErrorDetails``,
    ``CorrelationId``. ``HttpStatus`` may be a number or a string; ``ReasonPhrase`` is spelt
    "REST API Exception" or "REST Api Exception"; the same fields arrive as XML when the server
    prefers it.
    """

    HttpStatus: int | None = None
    ReasonPhrase: Text = ""
    ErrorMessage: Text = ""
    ErrorType: Text = ""
    ErrorDetails: list[ErrorDetail] = Field(default_factory=list)
    CorrelationId: Text = ""

    @field_validator("HttpStatus", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        if isinstance(value, str):
            return int(value) if value.strip().isdigit() else None
        return value


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fields(content: bytes) -> dict[str, Any] | None:
    try:
        root = ET.fromstring(content)  # noqa: S314 - the configured server's own answer
    except ET.ParseError:
        return None
    fields: dict[str, Any] = {}
    details: list[dict[str, str]] = []
    for element in root.iter():
        name = _local(element.tag)
        if name == "ErrorDetail" or (
            name.endswith("Detail") and any(_local(c.tag) == "Message" for c in element)
        ):
            details.append({_local(c.tag): (c.text or "") for c in element})
        elif len(element) == 0 and element.text is not None:
            fields.setdefault(name, element.text.strip())
    if details:
        fields["ErrorDetails"] = details
    return fields


def parse_error_body(content: bytes, content_type: str) -> ErrorBody | None:
    """Read an error answer in any of the shapes Kinetic (or a proxy in front of it) uses.

    Kinetic's own JSON body, the same as XML, the OData-standard ``{"error": {...}}`` and a plain
    text body (502/503 from a gateway) are all understood (epicor.md §3); ``None`` means there
    was nothing to read.
    """
    text = content.strip()
    if not text:
        return None
    if text.startswith(b"<") and b"<html" not in text[:200].lower():
        fields = _xml_fields(text)
        return ErrorBody.model_validate(fields) if fields else None
    if "json" in content_type or text.startswith(b"{"):
        try:
            data = loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            odata = data.get("error")
            if isinstance(odata, dict):  # OData standard (UNCONFIRMED for Kinetic, §3)
                inner = odata.get("innererror")
                return ErrorBody(
                    ErrorMessage=str(odata.get("message") or ""),
                    ErrorType=str(odata.get("code") or "")
                    or str(inner.get("type", "") if isinstance(inner, dict) else ""),
                )
            try:
                return ErrorBody.model_validate(data)
            except ValueError:
                return None
    plain = re.sub(r"<[^>]+>", " ", text.decode("utf-8", "replace"))
    return ErrorBody(ErrorMessage=" ".join(plain.split())[:300])


# --- Tokens -------------------------------------------------------------------------------------


class TokenAnswer(BaseModel):
    """A bearer token, from TokenResource.svc or an OAuth2 token endpoint."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    expires_in: float | None = None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


_TOKEN_NAMES = {
    "accesstoken": "access_token",
    "access_token": "access_token",
    "expiresin": "expires_in",
    "expires_in": "expires_in",
    "tokentype": "token_type",
    "token_type": "token_type",
}


def parse_token_answer(content: bytes, content_type: str) -> TokenAnswer | None:
    """Read a token answer: JSON ``AccessToken`` / ``access_token``, or XML ``Token.AccessToken``.

    Which one TokenResource.svc sends, and whether it says ``ExpiresIn``, is UNCONFIRMED
    (epicor.md §2, §8), so both shapes and both spellings are read. ``None`` if there is no token.
    """
    fields: dict[str, Any] = {}
    text = content.strip()
    if text.startswith(b"<"):
        raw = _xml_fields(text) or {}
    else:
        try:
            data = loads(text)
        except ValueError:
            return None
        raw = data if isinstance(data, dict) else {}
    for name, value in raw.items():
        key = _TOKEN_NAMES.get(str(name).lower())
        if key is not None and value not in (None, ""):
            fields[key] = value
    if "access_token" not in fields:
        return None
    try:
        expires = fields.get("expires_in")
        fields["expires_in"] = float(expires) if expires is not None else None
        return TokenAnswer.model_validate(fields)
    except (ValueError, TypeError):
        return None


# --- Settings and credentials -------------------------------------------------------------------


class AuthMode(StrEnum):
    """How the connection proves its user identity; the API key goes with every mode (§2)."""

    #: ``Authorization: Basic`` with an Epicor user and password.
    BASIC = "basic"
    #: OAuth2 client credentials at an identity provider (Kinetic cloud), then ``Bearer``.
    OAUTH = "oauth"
    #: A token from the server's ``TokenResource.svc`` (user and password), then ``Bearer``.
    TOKEN_RESOURCE = "token_resource"  # noqa: S105 - a mode name


class EpicorSettings(BaseModel):
    """Where the Kinetic server is, which company, and how the sync reads and writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_url: Annotated[str, Field(min_length=1, pattern=r"^https?://")] = Field(
        description="The server's URL, e.g. https://erp.example.com (no instance, no path)."
    )
    instance: Annotated[str, Field(min_length=1)] = Field(
        description="The Kinetic instance (application) name, e.g. 'KineticProd'."
    )
    company: Annotated[str, Field(min_length=1)] = Field(
        description="The Epicor company id; one connection per company (it is in every URL)."
    )
    auth: AuthMode = Field(
        AuthMode.BASIC,
        description="basic (user + password), oauth (client credentials, Kinetic cloud) or "
        "token_resource (TokenResource.svc token from user + password).",
    )
    token_url: str | None = Field(
        None, description="The OAuth2 token endpoint of the identity provider (auth=oauth)."
    )
    oauth_scope: str | None = Field(None, description="The OAuth2 scope to ask for, if any.")
    plant: str | None = Field(None, description="The site (plant) sent in CallSettings, if any.")
    page_size: Annotated[int, Field(ge=1, le=100)] = Field(
        100, description="Rows per request (Kinetic caps list calls, often at 100)."
    )
    change_overlap_hours: Annotated[float, Field(ge=0, le=24 * 7)] = Field(
        24.0,
        description="How far before the window the ChangeDate filter starts: ChangeDate may "
        "hold only a date, and the server's clock may differ (epicor.md §6).",
    )
    server_timezone: str = Field(
        "UTC", description="The IANA zone of date-times the server sends without an offset."
    )
    tax_account: str | None = Field(
        None, description="The GL account (GLAccount1) that an invoice's tax line is coded to."
    )
    payment_bank_account: str | None = Field(
        None, description="The BankAcctID that payments recorded back are drawn on."
    )
    post_payments: bool = Field(
        True, description="Post the payment group after entering a payment (else leave it open)."
    )
    coa_code: str | None = Field(None, description="List GL accounts of this chart only.")
    base_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field(
        "USD", description="The currency of rows that carry no CurrencyCode."
    )
    segment_dimensions: dict[int, DimensionKind] = Field(
        default_factory=dict,
        description="GL account segments beyond the natural account (SegValue2..SegValue20) "
        'sent as dimensions, by segment number, e.g. {"2": "department", "3": '
        '"location"}; BILL gets them as the classifications they map to. None by default.',
    )

    @field_validator("server_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("segment_dimensions")
    @classmethod
    def _segments(cls, value: dict[int, DimensionKind]) -> dict[int, DimensionKind]:
        for number in value:
            if number == 1:
                raise ValueError(
                    "segment 1 is the natural account (the account number), not a dimension"
                )
            if number not in SEGMENTS:
                raise ValueError(f"segment {number}: Kinetic accounts have segments 2 to 20")
        kinds = list(value.values())
        twice = sorted({k.value for k in kinds if kinds.count(k) > 1})
        if twice:
            raise ValueError(f"two segments are the same dimension ({', '.join(twice)})")
        return dict(sorted(value.items()))

    @field_validator("server_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class EpicorCredentials(BaseModel):
    """The API key (sent on every call) and the user identity of the chosen auth mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = Field(
        description="The Kinetic API key (API Key Maintenance); REST v2 refuses calls without it."
    )
    username: str | None = Field(None, description="The Epicor user (basic, token_resource).")
    password: SecretStr | None = Field(None, description="The user's password.")
    client_id: str | None = Field(None, description="The OAuth2 client id (oauth).")
    client_secret: SecretStr | None = Field(None, description="The OAuth2 client secret.")
