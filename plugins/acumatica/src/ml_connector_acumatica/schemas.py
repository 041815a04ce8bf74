"""Acumatica's formats: connection settings, credentials, and the wire shape of its records.

These models describe what the contract-based REST API sends (acumatica.md §5), kept apart from
the core's domain models; :mod:`ml_connector_acumatica.plugin` translates between the two.

Wire rules every model here follows:

- General fields arrive wrapped, ``{"value": …}`` (``{}`` is null, and any field may carry an
  ``"error"``); system fields (``id``, ``rowNumber``, ``_links``) arrive bare. :class:`Entity`
  unwraps before validating, :func:`wrap` wraps before sending.
- Numbers become :class:`~decimal.Decimal`, never float: bodies are parsed with
  :func:`loads` (``parse_float=Decimal``), and a number sent as a string is accepted too
  (UNCONFIRMED which builds do that, so both are tolerated).
- Dates are read from ISO-8601 (with or without offset) or ``MM/DD/YYYY``
  (acumatica.md §8: the output format is UNCONFIRMED).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

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
    "AcumaticaCredentials",
    "AcumaticaSettings",
    "Entity",
    "ErrorBody",
    "WireAccount",
    "WireAddress",
    "WireBill",
    "WireBillDetail",
    "WireCheck",
    "WireCheckDetail",
    "WireCheckHistory",
    "WireContact",
    "WireSubaccount",
    "WireTaxDetail",
    "WireVendor",
    "dumps",
    "field_errors",
    "loads",
    "parse_date",
    "parse_datetime",
    "served_endpoints",
    "wrap",
]

# --- Connection settings and credentials -------------------------------------------------------


class AcumaticaSettings(BaseModel):
    """Where the instance is and how this connection reads it (no secrets here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_url: str = Field(
        description="The instance's full URL, with its site path if it has one, e.g. "
        "https://acme.acumatica.com or https://erp.example.com/AcumaticaERP."
    )
    tenant: Annotated[str, Field(min_length=1)] = Field(
        description="The tenant (company) to sign in to, as on the login page."
    )
    branch: str | None = Field(None, description="The branch to work in; default: the user's.")
    endpoint_name: Annotated[str, Field(min_length=1)] = Field(
        "Default", description="The web-service endpoint's name."
    )
    endpoint_version: Annotated[str, Field(pattern=r"^\d+\.\d{3}\.\d{3}$")] = Field(
        "24.200.001", description="The endpoint's exact version, e.g. 24.200.001 (pinned)."
    )
    auth_mode: Literal["oauth", "cookie"] = Field(
        "oauth",
        description="oauth: the identity server's password grant (client id GUID@Tenant); "
        "cookie: the legacy login/logout session.",
    )
    bills_from: date | None = Field(
        None, description="Only bills dated on or after this day (a books-closed guard)."
    )
    subaccount_maps_to: Literal["classification", "none"] = Field(
        "classification",
        description="classification: lines carry their subaccount, mapped to the one BILL "
        "department, class or location with the same code or name (or set by hand); "
        "none: subaccounts are left out of BILL.",
    )
    tax_account: str | None = Field(
        None, description="The GL account tax lines are coded to; bills with tax need it."
    )
    payment_method: str | None = Field(
        None, description="Payment method of recorded checks; default: the vendor's."
    )
    cash_account: str | None = Field(
        None, description="Cash account of recorded checks; default: the vendor's."
    )
    page_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        100, description="Records per request ($top)."
    )
    login_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        300.0,
        description="How long a sign-in waits for a free API-user licence slot (API Login "
        "Limit) before the run fails; the wait is shown on screen and in the log.",
    )

    @field_validator("instance_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://acme.acumatica.com")
        return value

    @property
    def endpoint(self) -> str:
        """``Name/Version``, as the endpoint listing names endpoints."""
        return f"{self.endpoint_name}/{self.endpoint_version}"


class AcumaticaCredentials(BaseModel):
    """The API user, and for OAuth the connected application registered on SM303010."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    client_id: str | None = Field(
        None, description="OAuth client id, GUID@Tenant (the tenant is added if missing)."
    )
    client_secret: SecretStr | None = Field(None, description="OAuth client secret.")


# --- JSON --------------------------------------------------------------------------------------


def loads(content: bytes | str) -> Any:
    """Parse a JSON body; every non-integer number becomes a Decimal.

    Raises:
        ValueError: The body is not JSON.
    """
    return json.loads(content, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Serialise to JSON, writing Decimals as exact JSON numbers (never through float)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    return json.dumps(value)


def wrap(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap a record for sending.

    Scalars become ``{"value": …}``, detail lists and linked records are wrapped recursively,
    and ``None`` fields are left out (sending ``{}`` would clear the field).
    """
    wrapped: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name in _SYSTEM_FIELDS:
            wrapped[name] = value
        elif isinstance(value, Mapping):
            wrapped[name] = wrap(value)
        elif isinstance(value, list | tuple):
            wrapped[name] = [wrap(row) for row in value]
        elif isinstance(value, date) and not isinstance(value, datetime):
            wrapped[name] = {"value": value.isoformat()}
        else:
            wrapped[name] = {"value": value}
    return wrapped


#: Fields written bare, never as ``{"value": …}`` (IDG "Representation of a Record in JSON
#: Format"; CSC ``Entity.cs``). ``note`` is not one: it is written like any general field.
_SYSTEM_FIELDS = frozenset({"id", "rowNumber", "custom", "_links", "files", "delete", "error"})


def _unwrap(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) <= {"value", "error", "type"}:
        return value.get("value")  # {} and {"error": …} alone are null
    return value


def field_errors(body: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every per-field ``error`` in a returned entity, as ``(dotted path, message)``.

    A 422 answer carries the whole entity with errors on the offending fields, also inside
    detail rows (acumatica.md §3), e.g. ``("Details.0.Project", "Project … cannot be found")``.
    """
    found: list[tuple[str, str]] = []
    if not isinstance(body, Mapping):
        return found
    for name, value in body.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping):
            if isinstance(value.get("error"), str) and set(value) <= {"value", "error", "type"}:
                found.append((path, value["error"]))
            else:
                found.extend(field_errors(value, f"{path}."))
        elif isinstance(value, list):
            for index, row in enumerate(value):
                found.extend(field_errors(row, f"{path}.{index}."))
    return found


# --- Scalars -----------------------------------------------------------------------------------


def _decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("a number was expected, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):  # not from our parser; keep the digits it prints
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    return value


_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})")


def parse_datetime(value: Any) -> datetime | None:
    """Read a timestamp; one without an offset is taken as UTC (UNCONFIRMED, acumatica.md §8).

    Raises:
        ValueError: Not a timestamp in a known format.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        match = _US_DATE.match(value.strip())
        if match:
            month, day, year = (int(g) for g in match.groups())
            parsed = datetime(year, month, day)
        else:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def parse_date(value: Any) -> date | None:
    """Read a date; the date part of a timestamp is kept as written (no time-zone shift).

    Raises:
        ValueError: Not a date in a known format.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        match = _US_DATE.match(text)
        if match:
            month, day, year = (int(g) for g in match.groups())
            return date(year, month, day)
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    raise ValueError(f"not a date: {value!r}")


WireDecimal = Annotated[Decimal, BeforeValidator(_decimal)]
WireDate = Annotated[date | None, BeforeValidator(parse_date)]
WireDatetime = Annotated[datetime | None, BeforeValidator(parse_datetime)]


# --- Records -----------------------------------------------------------------------------------


class Entity(BaseModel):
    """A record as the API sends it: general fields unwrapped from ``{"value": …}`` first.

    Field names are Acumatica's (aliases); unknown fields are ignored, so a newer endpoint
    version's additions do not break reading.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap_values(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: (v if k in _SYSTEM_FIELDS else _unwrap(v)) for k, v in data.items()}
        return data


class WireAddress(Entity):
    """``MainContact.Address`` of a vendor."""

    address_line1: str | None = Field(None, alias="AddressLine1")
    address_line2: str | None = Field(None, alias="AddressLine2")
    city: str | None = Field(None, alias="City")
    state: str | None = Field(None, alias="State")
    postal_code: str | None = Field(None, alias="PostalCode")
    country: str | None = Field(None, alias="Country")


class WireContact(Entity):
    """A vendor's ``MainContact`` (linked entity)."""

    email: str | None = Field(None, alias="Email")
    phone1: str | None = Field(None, alias="Phone1")
    address: WireAddress | None = Field(None, alias="Address")


class WireVendor(Entity):
    """``Vendor`` (AP303000)."""

    vendor_id: str = Field(alias="VendorID")
    vendor_name: str | None = Field(None, alias="VendorName")
    legal_name: str | None = Field(None, alias="LegalName")
    status: str | None = Field(None, alias="Status")
    currency_id: str | None = Field(None, alias="CurrencyID")
    main_contact: WireContact | None = Field(None, alias="MainContact")


class WireAccount(Entity):
    """``Account``: a GL account."""

    account_cd: str = Field(alias="AccountCD")
    description: str | None = Field(None, alias="Description")
    type: str | None = Field(None, alias="Type")
    active: bool | None = Field(None, alias="Active")


class WireSubaccount(Entity):
    """``Subaccount``: a segmented subaccount value (no change timestamp, acumatica.md §5)."""

    subaccount_cd: str = Field(alias="SubaccountCD")
    description: str | None = Field(None, alias="Description")
    active: bool | None = Field(None, alias="Active")


class WireBillDetail(Entity):
    """One ``Details`` row of a bill: GL coding and amounts."""

    row_number: int | None = Field(None, alias="rowNumber")
    account: str | None = Field(None, alias="Account")
    subaccount: str | None = Field(None, alias="Subaccount")
    amount: WireDecimal | None = Field(None, alias="Amount")
    extended_cost: WireDecimal | None = Field(None, alias="ExtendedCost")
    qty: WireDecimal | None = Field(None, alias="Qty")
    unit_cost: WireDecimal | None = Field(None, alias="UnitCost")
    description: str | None = Field(None, alias="Description")
    transaction_description: str | None = Field(None, alias="TransactionDescription")


class WireTaxDetail(Entity):
    """One ``TaxDetails`` row of a bill."""

    tax_id: str | None = Field(None, alias="TaxID")
    tax_rate: WireDecimal | None = Field(None, alias="TaxRate")
    taxable_amount: WireDecimal | None = Field(None, alias="TaxableAmount")
    tax_amount: WireDecimal | None = Field(None, alias="TaxAmount")


class WireBill(Entity):
    """``Bill`` (AP301000): the AP document, with ``Details``/``TaxDetails`` when expanded."""

    type: str = Field(alias="Type")
    reference_nbr: str = Field(alias="ReferenceNbr")
    status: str | None = Field(None, alias="Status")
    vendor: str | None = Field(None, alias="Vendor")
    vendor_ref: str | None = Field(None, alias="VendorRef")
    date: WireDate = Field(None, alias="Date")
    due_date: WireDate = Field(None, alias="DueDate")
    currency_id: str | None = Field(None, alias="CurrencyID")
    description: str | None = Field(None, alias="Description")
    amount: WireDecimal | None = Field(None, alias="Amount")
    balance: WireDecimal | None = Field(None, alias="Balance")
    tax_total: WireDecimal | None = Field(None, alias="TaxTotal")
    last_modified: WireDatetime = Field(None, alias="LastModifiedDateTime")
    details: list[WireBillDetail] | None = Field(None, alias="Details")
    tax_details: list[WireTaxDetail] | None = Field(None, alias="TaxDetails")


class WireCheckDetail(Entity):
    """One ``Details`` row of a check: a document the payment is applied to."""

    doc_type: str | None = Field(None, alias="DocType")
    reference_nbr: str | None = Field(None, alias="ReferenceNbr")
    amount_paid: WireDecimal | None = Field(None, alias="AmountPaid")


class WireCheckHistory(Entity):
    """One ``History`` row of a check (``CheckHistoryDetail``): an application once released.

    Releasing a check moves its ``Details`` rows here (UG AP302000 "Application History").
    """

    doc_type: str | None = Field(None, alias="DocType")
    reference_nbr: str | None = Field(None, alias="ReferenceNbr")
    amount_paid: WireDecimal | None = Field(None, alias="AmountPaid")


class WireCheck(Entity):
    """``Check`` (AP302000): the AP payment (``Payment`` is the AR one, acumatica.md §5)."""

    type: str | None = Field(None, alias="Type")
    reference_nbr: str | None = Field(None, alias="ReferenceNbr")
    status: str | None = Field(None, alias="Status")
    vendor: str | None = Field(None, alias="Vendor")
    payment_ref: str | None = Field(None, alias="PaymentRef")
    payment_amount: WireDecimal | None = Field(None, alias="PaymentAmount")
    details: list[WireCheckDetail] | None = Field(None, alias="Details")
    history: list[WireCheckHistory] | None = Field(None, alias="History")


class ErrorBody(BaseModel):
    """A 500 (or other error) body: ``message``, ``exceptionMessage``, ``exceptionType``."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    message: str | None = None
    exception_message: str | None = Field(None, alias="exceptionMessage")
    exception_type: str | None = Field(None, alias="exceptionType")
    inner_exception: ErrorBody | None = Field(None, alias="innerException")
    #: ASP.NET's binding errors, path to messages (``HttpError.modelState``, CSC): how a body
    #: that cannot be read (e.g. a bare value where ``{"value": …}`` belongs) is refused.
    model_state: dict[str, Any] | None = Field(None, alias="modelState")

    def innermost(self) -> ErrorBody:
        """The deepest ``innerException``: the one that says what really went wrong."""
        body = self
        while body.inner_exception is not None:
            body = body.inner_exception
        return body

    def text(self) -> str:
        """Every message and type in the chain, for matching known failure texts."""
        parts: list[str] = []
        body: ErrorBody | None = self
        while body is not None:
            parts += [p for p in (body.message, body.exception_message, body.exception_type) if p]
            body = body.inner_exception
        return " ".join(parts)

    def binding_errors(self) -> list[tuple[str, str]]:
        """``modelState`` as ``(field path, message)``, paths as ``Details.0.Account``.

        ASP.NET names them after the action's parameter and in C# style
        (``entity.Details[0].Account``); the parameter name is dropped.
        """
        found: list[tuple[str, str]] = []
        for key, messages in (self.model_state or {}).items():
            path = re.sub(r"\[(\d+)\]", r".\1", key)
            path = re.sub(r"^(?:entity|Entity)\.", "", path)
            listed = messages if isinstance(messages, list) else [messages]
            found += [(path, str(m)) for m in listed or [""]]
        return found


def served_endpoints(listing: Any) -> list[str]:
    """The ``Name/Version`` endpoints of a ``GET /entity`` answer.

    Current builds answer ``{"version": {…}, "endpoints": [{"name", "version", "href"}]}``;
    older ones a bare array of the same objects (acumatica.md §1, CORROBORATED): both are read.
    """
    rows: Sequence[Any] = []
    if isinstance(listing, Mapping):
        rows = listing.get("endpoints") or []
    elif isinstance(listing, list):
        rows = listing
    return [
        f"{row.get('name')}/{row.get('version')}"
        for row in rows
        if isinstance(row, Mapping) and row.get("name") and row.get("version")
    ]
