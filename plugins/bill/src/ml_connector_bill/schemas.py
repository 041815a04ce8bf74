"""BILL's wire format: the v3 AP API and webhook API as JSON, kept apart from the domain models.

Facts and their confidence come from ``shared/api/bill.md`` (cited by section). Where BILL's
behaviour is UNCONFIRMED, these models accept every plausible shape: numbers as JSON numbers or
strings, error codes as ``"BDC_1322"`` or ``1322``, missing optional fields, unknown extra fields.

Money stays exact end to end: :func:`loads` reads JSON numbers as :class:`~decimal.Decimal` and
:func:`dumps` writes a Decimal's digits as they are (``228.99``, never ``228.98999…``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

__all__ = [
    "BULK_BILLS_LIMIT",
    "DESCRIPTION_MAX",
    "IDEMPOTENCY_HEADER",
    "MAX_IN_FLIGHT",
    "PAGE_MAX",
    "PRODUCTION_URL",
    "REQUESTS_PER_HOUR",
    "SANDBOX_URL",
    "SIGNATURE_HEADER",
    "SYSTEM",
    "VENDOR_NAME_MAX",
    "BillCredentials",
    "BillEnvironment",
    "BillSettings",
    "WireAddress",
    "WireBill",
    "WireBillLine",
    "WireBillPayment",
    "WireChartOfAccount",
    "WireClassification",
    "WireClassifications",
    "WireError",
    "WireInvoice",
    "WireLogin",
    "WirePayment",
    "WireSubscription",
    "WireVendor",
    "dumps",
    "events_url_for",
    "loads",
    "loads_untrusted",
    "sign",
]

SYSTEM = "bill"
PRODUCTION_URL = "https://gateway.prod.bill.com/connect"  # bill.md §1
SANDBOX_URL = "https://gateway.stage.bill.com/connect"  # bill.md §1
SIGNATURE_HEADER = "x-bill-sha-signature"  # bill.md §6
IDEMPOTENCY_HEADER = "X-Idempotent-Key"  # bill.md §6
MAX_IN_FLIGHT = 3  # per developer key per organization, bill.md §4
REQUESTS_PER_HOUR = 20_000  # per developer key, bill.md §4
BULK_BILLS_LIMIT = 200  # POST /v3/bills/bulk, bill.md §4 (one older revision said 100)
PAGE_MAX = 100  # the largest ``max`` a list accepts, bill.md §4
#: The longest ``description`` BILL accepts on a bill and on a bill line item (bill.md §5,
#: ``/reference/createbill``). Counted in characters; whether BILL counts code points or UTF-16
#: units (a character outside the BMP is two) is UNCONFIRMED.
DESCRIPTION_MAX = 4000
#: A vendor's ``name`` is 1-100 characters (bill.md §5, ``/reference/createvendor``).
VENDOR_NAME_MAX = 100


# --- Connection settings and credentials ---------------------------------------------------------


class BillEnvironment(StrEnum):
    """Which BILL gateway a connection talks to."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"
    #: Any other base URL, e.g. ``ml-connector emulate bill``.
    CUSTOM = "custom"


class BillSettings(BaseModel):
    """Where the connection's BILL organization lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: Annotated[str, Field(min_length=1)] = Field(
        description="The BILL organization (begins 008); every session is bound to it."
    )
    environment: BillEnvironment = Field(
        BillEnvironment.PRODUCTION,
        description="production, sandbox, or custom (then base_url is required).",
    )
    base_url: AnyHttpUrl | None = Field(
        None,
        description="The AP API base URL ending in /connect; only with environment=custom.",
    )
    page_size: Annotated[int, Field(ge=1, le=PAGE_MAX)] = Field(
        PAGE_MAX, description="Records per list request (BILL allows 1-100)."
    )

    @model_validator(mode="after")
    def _base_url_only_for_custom(self) -> BillSettings:
        if self.environment is BillEnvironment.CUSTOM and self.base_url is None:
            raise ValueError("base_url is required when environment is custom")
        if self.environment is not BillEnvironment.CUSTOM and self.base_url is not None:
            raise ValueError("base_url is only used with environment=custom")
        return self

    @property
    def api_url(self) -> str:
        """The AP API base URL (``…/connect``)."""
        if self.environment is BillEnvironment.SANDBOX:
            return SANDBOX_URL
        if self.environment is BillEnvironment.CUSTOM and self.base_url is not None:
            return str(self.base_url).rstrip("/")
        return PRODUCTION_URL

    @property
    def events_url(self) -> str:
        """The webhook API base URL (``…/connect-events``), bill.md §1."""
        return events_url_for(self.api_url)


def events_url_for(api_url: str) -> str:
    """The webhook API's base URL beside an AP API base URL.

    BILL serves both from one gateway: ``…/connect`` and ``…/connect-events`` (bill.md §1).
    """
    root = api_url.rstrip("/")
    if root.endswith("/connect"):
        return root + "-events"
    return root + "/connect-events"


class BillCredentials(BaseModel):
    """An API user of the organization and the developer key (bill.md §2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1)] = Field(description="The API user's email.")
    password: SecretStr = Field(description="The API user's password.")
    dev_key: SecretStr = Field(description="The developer key (sandbox and production differ).")


# --- Tolerant scalar types -----------------------------------------------------------------------


def _bdc_code(value: Any) -> Any:
    # UNCONFIRMED (README rule): a code may come as 1322 or "1322" instead of "BDC_1322".
    if isinstance(value, int) and not isinstance(value, bool):
        return f"BDC_{value}"
    if isinstance(value, str) and value.strip().isdigit():
        return f"BDC_{value.strip()}"
    return value


def _bill_time(value: Any) -> Any:
    # BILL writes "+00:00" and "Z"; accept "+0000" too (bill.md §4 lists that form for filters).
    if isinstance(value, str):
        return re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value.strip())
    return value


def _day(value: Any) -> Any:
    # A date may come as "2025-12-15" or as a timestamp "2025-12-15T00:00:00.000Z" (bill.md §6).
    if isinstance(value, str) and "T" in value:
        return value.split("T", 1)[0]
    return value


Code = Annotated[str | None, BeforeValidator(_bdc_code)]
Timestamp = Annotated[datetime, BeforeValidator(_bill_time)]
Day = Annotated[date, BeforeValidator(_day)]


class WireModel(BaseModel):
    """Base of BILL's JSON objects: unknown fields ignored, names as BILL spells them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Errors and login ----------------------------------------------------------------------------


class WireError(WireModel):
    """One item of BILL's error array (bill.md §3)."""

    code: Code = None
    message: str = ""
    severity: str | None = None
    category: str | None = None
    timestamp: str | None = None


class WireLogin(WireModel):
    """``POST /v3/login``'s answer (bill.md §2)."""

    sessionId: Annotated[str, Field(min_length=1)]
    organizationId: str | None = None
    userId: str | None = None
    trusted: bool | None = None


# --- Vendors -------------------------------------------------------------------------------------


class WireAddress(WireModel):
    """A vendor address; ``country`` is ISO-2 (bill.md §5)."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    stateOrProvince: str | None = None
    zipOrPostalCode: str | None = None
    country: str | None = None


class WireVendor(WireModel):
    """A vendor as BILL returns it."""

    id: str
    name: str = ""
    archived: bool = False
    email: str | None = None
    phone: str | None = None
    address: WireAddress | None = None
    billCurrency: str | None = None
    createdTime: Timestamp | None = None
    updatedTime: Timestamp | None = None


# --- Bills ---------------------------------------------------------------------------------------


class WireClassifications(WireModel):
    """The classification ids of a bill line (bill.md §5)."""

    chartOfAccountId: str | None = None
    accountingClassId: str | None = None
    departmentId: str | None = None
    locationId: str | None = None
    itemId: str | None = None
    # UNCONFIRMED on bill lines (bill.md §5); sent only when a line is coded to one.
    jobId: str | None = None
    employeeId: str | None = None


class WireBillLine(WireModel):
    """A bill line item; responses carry ``id`` (``bli…``)."""

    id: str | None = None
    amount: Decimal | None = None
    description: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    classifications: WireClassifications | None = None
    # Response lines may also carry the account at the line's top level (bill.md §5).
    chartOfAccountId: str | None = None


class WireInvoice(WireModel):
    """The nested invoice of a bill (bill.md §5: number and date are *not* top level)."""

    invoiceNumber: str | None = None
    invoiceDate: Day | None = None


class WireBill(WireModel):
    """A bill as BILL returns it."""

    id: str
    vendorId: str | None = None
    vendorName: str | None = None
    amount: Decimal | None = None
    dueAmount: Decimal | None = None
    dueDate: Day | None = None
    invoice: WireInvoice | None = None
    description: str | None = None
    billLineItems: list[WireBillLine] = Field(default_factory=list)
    paymentStatus: str | None = None
    archived: bool = False
    createdTime: Timestamp | None = None
    updatedTime: Timestamp | None = None

    @property
    def invoice_number(self) -> str | None:
        """The vendor's invoice number, if BILL sent one."""
        return self.invoice.invoiceNumber if self.invoice else None

    @property
    def is_paid(self) -> bool:
        """Whether the bill is (partly) paid or has payments against it, so it must not change.

        ``paymentStatus`` values beyond ``UNPAID`` are UNCONFIRMED (bill.md §8), so anything
        else counts as paid, and so does a ``dueAmount`` below the ``amount``.
        """
        status = (self.paymentStatus or "").strip().upper()
        if status and status != "UNPAID":
            return True
        return (
            self.amount is not None and self.dueAmount is not None and self.dueAmount < self.amount
        )


# --- Payments ------------------------------------------------------------------------------------


class WireBillPayment(WireModel):
    """One application of a payment to a bill (``blp…``), bill.md §5."""

    id: str | None = None
    billId: str
    amount: Decimal


class WireVendorRef(WireModel):
    """The ``vendor`` object some payment shapes carry instead of ``vendorId``."""

    id: str | None = None
    name: str | None = None


class WirePayment(WireModel):
    """A payment (``stp…``) as BILL returns it; ``singleStatus`` says where it stands."""

    id: str
    vendorId: str | None = None
    vendor: WireVendorRef | None = None
    vendorName: str | None = None
    billId: str | None = None
    billPayments: list[WireBillPayment] = Field(default_factory=list)
    amount: Decimal | None = None
    processDate: Day | None = None
    status: str | None = None
    singleStatus: str | None = None
    disbursementStatus: str | None = None
    transactionNumber: str | None = None
    createdTime: Timestamp | None = None
    updatedTime: Timestamp | None = None


# --- Chart of accounts and classifications -------------------------------------------------------


class WireAccountDetails(WireModel):
    """The ``account`` object of a chart-of-accounts entry.

    UNCONFIRMED (bill.md §5 names the object, not its fields): read ``number``/``accountNumber``
    and ``type``/``accountType``.
    """

    number: str | None = None
    accountNumber: str | None = None
    type: str | None = None
    accountType: str | None = None


class WireChartOfAccount(WireModel):
    """A chart-of-accounts entry (``0ca…``)."""

    id: str
    name: str = ""
    description: str | None = None
    parentId: str | None = None
    archived: bool = False
    account: WireAccountDetails | None = None
    accountNumber: str | None = None
    accountType: str | None = None

    @property
    def number(self) -> str | None:
        """The account number, wherever BILL put it."""
        details = self.account
        found = (details.number or details.accountNumber) if details else None
        return found or self.accountNumber

    @property
    def kind(self) -> str | None:
        """BILL's account type word, wherever BILL put it."""
        details = self.account
        found = (details.type or details.accountType) if details else None
        return found or self.accountType


class WireClassification(WireModel):
    """A department, location, class, job, employee or item value."""

    id: str
    name: str = ""
    shortName: str | None = None
    archived: bool = False


# --- Webhook subscriptions -----------------------------------------------------------------------


class WireSubscriptionStatus(WireModel):
    """A subscription's status; fields beyond ``enabled`` are UNCONFIRMED (bill.md §6)."""

    enabled: bool = True


class WireSubscriptionEvent(WireModel):
    """One subscribed event type (all are version ``"1"``)."""

    type: str
    version: str = "1"


class WireSubscription(WireModel):
    """A webhook subscription; ``securityKey`` only on create and rotation (bill.md §6)."""

    id: str
    name: str | None = None
    organizationId: str | None = None
    securityKey: SecretStr | None = None
    status: WireSubscriptionStatus = Field(default_factory=WireSubscriptionStatus)
    events: list[WireSubscriptionEvent] = Field(default_factory=list)
    notificationUrl: str = ""

    @property
    def event_types(self) -> tuple[str, ...]:
        """The subscribed event types, sorted."""
        return tuple(sorted(e.type for e in self.events))


# --- JSON with exact decimals, and webhook signing -----------------------------------------------


def loads(raw: bytes | str) -> Any:
    """Parse JSON, reading non-integral numbers as Decimal so money stays exact.

    Raises:
        ValueError: Not JSON.
    """
    return json.loads(raw, parse_float=Decimal)


# Bounds for JSON from a sender not yet trusted (webhook bodies, bill.md §6). BILL's payloads
# nest four levels and carry amounts of a few digits; these leave room and keep every step below
# linear in the body's size: a 17-byte ``1e999999999`` written out digit for digit is a billion
# digits, and a body nested a million levels deep exhausts the stack.
UNTRUSTED_MAX_DEPTH = 32
"""Nesting levels an untrusted JSON body may have (deeper ones are refused unparsed)."""
UNTRUSTED_MAX_DIGITS = 40
"""Digits in a row an untrusted JSON number may have; exponents have at most two digits."""

# Everything but the four brackets, as a ``bytes.translate`` delete set; braces count as brackets
# (only the depth matters here: json.loads refuses a brace closed by a bracket).
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
# Digits all read as 0 and the exponent as e, so one substring test finds a long run.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_NUMBER = (b"0" * (UNTRUSTED_MAX_DIGITS + 1), b"e000", b"e+000", b"e-000")
# A \u escape of a surrogate: the only way a parsed string can hold a lone one (raw UTF-8
# surrogates do not decode).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _outside_strings(raw: bytes) -> bytes:
    r"""The bytes of a JSON text that lie outside its strings (exact for valid JSON).

    Only C-speed steps: ``\\`` pairs are dropped first (a run of backslashes escapes the next
    character only if it is odd), then escaped quotes, so every quote left opens or closes a
    string; every other piece between quotes is outside.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def _too_costly(raw: bytes, max_depth: int) -> str | None:
    """Why parsing ``raw`` could cost more than linear time or stack, or ``None``."""
    outside = _outside_strings(raw)
    nesting = outside.translate(_AS_BRACKETS, _NOT_BRACKETS)
    # One replace removes every innermost pair, and no pair its removals join (the scan goes on
    # after each match): one level per pass. What is left after max_depth passes is deeper, or
    # unbalanced, which is not JSON either. A run of more openers than allowed ends it at once.
    too_deep = b"[" * (max_depth + 1)
    for _ in range(max_depth):
        if too_deep in nesting:
            break
        shorter = nesting.replace(b"[]", b"")
        if shorter == nesting:
            break
        nesting = shorter
    if nesting:
        return f"it is nested more than {max_depth} levels deep, or its brackets do not match"
    shape = outside.translate(_NUMBER_SHAPE)
    if any(run in shape for run in _LONG_NUMBER):
        return f"it has a number of more than {UNTRUSTED_MAX_DIGITS} digits or a 3-digit exponent"
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_untrusted(raw: bytes, *, exact: bool = True, max_depth: int = UNTRUSTED_MAX_DEPTH) -> Any:
    r"""Parse JSON from a sender not yet trusted, in time and stack linear in its size.

    Checked before :func:`json.loads` sees it, by byte scans: strict UTF-8, at most ``max_depth``
    levels of nesting, no number longer than :data:`UNTRUSTED_MAX_DIGITS` digits or with an
    exponent of three digits. ``NaN`` and ``Infinity`` are refused, and so are lone surrogates
    (``"\ud800"``), which no UTF-8 text can carry on.

    Args:
        raw: The JSON text.
        exact: Read non-integral numbers as :class:`~decimal.Decimal` (else as float).
        max_depth: The deepest nesting accepted.

    Raises:
        ValueError: Not JSON, or outside the limits; the message says which, without the text.
    """
    problem = _too_costly(raw, max_depth)
    if problem is not None:
        raise ValueError(problem)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8") from None
    try:
        value = json.loads(
            text, parse_float=Decimal if exact else float, parse_constant=_no_constant
        )
    except RecursionError:  # pragma: no cover - the depth scan refuses these first
        raise ValueError("it is nested too deeply") from None
    except ValueError:
        raise ValueError("it is not JSON") from None
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode()
        except UnicodeEncodeError:
            raise ValueError("it has a lone surrogate escape") from None
    return value


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("cannot send a non-finite amount")
        out.append(format(value, "f"))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(encode_basestring(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, str):
        # What json.dumps(value, ensure_ascii=False) writes, without a JSONEncoder per scalar.
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, datetime | date):
        out.append(encode_basestring(value.isoformat()))
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def dumps(value: Any) -> bytes:
    """Minified JSON (UTF-8) with Decimals written digit for digit, as BILL sends webhooks."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


def sign(body: bytes, security_key: str) -> str:
    """The ``x-bill-sha-signature`` of a body: base64 of HMAC-SHA256 keyed by the securityKey.

    bill.md §6: the key is the subscription's ``securityKey`` as UTF-8; the digest is base64.
    """
    digest = hmac.new(security_key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
