"""Oracle NetSuite's words: the connection's settings and credentials, and the wire models.

The wire models are the *system's* shapes (SuiteQL rows with lower-case column names, the
``o:errorDetails`` error body, the token answer), kept apart from the domain models of
``ml_connector.models``; ``plugin.py`` and ``_bills.py`` translate between the two. They ignore
fields they do not know, so an account with custom fields reads the same. Sources are named as
in /work/shared/api/netsuite.md (NSH = NetSuite Help Center topic, NS-OAS = a real account's
OpenAPI document, TNR/AIRB/JSN = public clients).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

__all__ = [
    "SYSTEM",
    "Credentials",
    "ErrorBody",
    "ErrorDetail",
    "Settings",
    "SuiteQLPage",
    "Token",
    "Wire",
    "host_for_account",
]

SYSTEM = "netsuite"

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$")


def host_for_account(account_id: str) -> str:
    """The REST base URL of an account: ``1234567_SB1`` -> ``https://1234567-sb1.suitetalk…``.

    The host is the account id lower-cased with ``_`` -> ``-`` (netsuite.md §1, CORROBORATED by
    JSN ``config.py`` and TNR). Oracle says to read the domain from Company URLs instead; the
    ``base_url`` setting overrides this.
    """
    slug = account_id.strip().lower().replace("_", "-")
    return f"https://{slug}.suitetalk.api.netsuite.com"


class Settings(BaseModel):
    """Which NetSuite account, which subsidiary, and the accounts payments post to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: Annotated[
        str,
        Field(
            min_length=1,
            description="The NetSuite account id, e.g. 1234567 or 1234567_SB1 (sandbox).",
        ),
    ]
    base_url: Annotated[
        str | None,
        Field(
            description="Override of https://<account>.suitetalk.api.netsuite.com (the Company "
            "URLs' SuiteTalk domain; tests and the demo point it at the emulator).",
        ),
    ] = None
    subsidiary_id: Annotated[
        str | None,
        Field(
            description="OneWorld: move only this subsidiary's bills, and post payments in it.",
        ),
    ] = None
    ap_account_id: Annotated[
        str | None,
        Field(description="Internal id of the A/P account payments are posted against."),
    ] = None
    bank_account_id: Annotated[
        str | None,
        Field(description="Internal id of the bank account payments are paid from."),
    ] = None
    approved_status_ids: Annotated[
        tuple[str, ...],
        Field(
            min_length=1,
            description="approvalstatus ids that count as approved (netsuite.md §5: 2).",
        ),
    ] = ("2",)
    concurrency_limit: Annotated[
        int,
        Field(
            ge=1,
            le=1000,
            description="The account's concurrent web-services limit (5 standard, 15 Tier 1, "
            "+10 per SuiteCloud Plus licence); requests in flight stay within it.",
        ),
    ] = 5
    time_zone: Annotated[
        str,
        Field(
            description="The zone SuiteQL reads and writes lastmodifieddate in (the "
            "integration role's/company's time zone).",
        ),
    ] = "UTC"
    dimensions: Annotated[
        tuple[Literal["department", "class", "location"], ...],
        Field(
            description="The segments bill lines carry to BILL (each value must be mapped to a "
            "BILL classification); empty: none.",
        ),
    ] = ("department", "class", "location")
    page_size: Annotated[
        int, Field(ge=1, le=1000, description="SuiteQL rows per request (at most 1000).")
    ] = 1000
    scope: Annotated[
        Literal["array", "string"],
        Field(description="How the JWT carries the scope claim (both are in production use)."),
    ] = "array"

    @field_validator("dimensions", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        return tuple(dict.fromkeys(value))

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        value = value.strip()
        if not _ACCOUNT_ID.match(value):
            raise ValueError("an account id is letters, digits and _ or - (e.g. 1234567_SB1)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError("base_url must start with https:// (or http:// for a local test)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("subsidiary_id", "ap_account_id", "bank_account_id")
    @classmethod
    def _internal_id(cls, value: str | None) -> str | None:
        if value is None or not str(value).strip():
            return None
        value = str(value).strip()
        if not value.isdigit():
            raise ValueError("an internal id is digits")
        return value

    @field_validator("approved_status_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            value = [value]
        ids = tuple(str(v).strip() for v in value)
        if not all(i.isdigit() for i in ids):
            raise ValueError("approval status ids are digits")
        return ids

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of SuiteQL's times."""
        return ZoneInfo(self.time_zone)

    @property
    def rest_url(self) -> str:
        """The base URL the client sends to (without ``/services/rest``)."""
        return self.base_url or host_for_account(self.account_id)


class Credentials(BaseModel):
    """OAuth 2.0 client credentials (M2M): the integration, the certificate and its key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: Annotated[
        str, Field(min_length=1, description="The integration record's client ID.")
    ]
    certificate_id: Annotated[
        str,
        Field(
            min_length=1,
            description="The Certificate ID of the M2M mapping (the JWT header's kid).",
        ),
    ]
    private_key: Annotated[
        SecretStr,
        Field(
            description="The certificate's private key, PEM text (RSA 3072/4096 bits, or EC "
            "P-256/P-384/P-521).",
        ),
    ]

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: SecretStr) -> SecretStr:
        if "-----BEGIN" not in value.get_secret_value():
            # Never quote the value: it is a secret.
            raise ValueError("the private key must be PEM text (-----BEGIN ... PRIVATE KEY-----)")
        return value


# --- Wire --------------------------------------------------------------------------------------


class Wire(BaseModel):
    """Base of every wire model: immutable, tolerant of fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def _int_or_str(value: Any) -> Any:
    """``expires_in`` as a number or a numeric string (netsuite.md §8: parse both)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


class Token(Wire):
    """The token endpoint's answer: ``{"access_token","expires_in":3600,"token_type"}``."""

    access_token: Annotated[str, Field(min_length=1)]
    token_type: str | None = None
    expires_in: Annotated[int | None, BeforeValidator(_int_or_str)] = None


class ErrorDetail(Wire):
    """One entry of ``o:errorDetails`` (NSH ``section_156570709583``; NS-OAS ``nsError``)."""

    detail: str = ""
    code: str | None = Field(default=None, alias="o:errorCode")
    path: str | None = Field(default=None, alias="o:errorPath")
    query_param: str | None = Field(default=None, alias="o:errorQueryParam")
    header: str | None = Field(default=None, alias="o:errorHeader")


class ErrorBody(Wire):
    """An error answer: ``type``, ``title``, ``status``, ``o:errorDetails[]``.

    One fixture also carries a top-level ``o:errorCode`` (netsuite.md §3). The token endpoint
    answers the OAuth form ``{"error", "error_description"}`` instead.
    """

    title: str | None = None
    status: int | None = None
    details: list[ErrorDetail] = Field(default_factory=list, alias="o:errorDetails")
    code: str | None = Field(default=None, alias="o:errorCode")
    error: str | None = None
    error_description: str | None = None

    @property
    def codes(self) -> set[str]:
        """Every error code of the body."""
        found = {d.code for d in self.details if d.code}
        if self.code:
            found.add(self.code)
        if self.error:
            found.add(self.error)
        return found


class SuiteQLPage(Wire):
    """A SuiteQL answer: ``{links, count, hasMore, items, offset, totalResults}``."""

    items: list[dict[str, Any]] = Field(default_factory=list)
    has_more: bool = Field(default=False, alias="hasMore")
    count: int | None = None
    offset: int | None = None
    total_results: int | None = Field(default=None, alias="totalResults")


def decimal_or_none(value: Any) -> Decimal | None:
    """A SuiteQL number (sent as a number or a string) as a Decimal, never through float."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        # json floats already lost nothing the decimal repr shows; use the repr, not the binary.
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except ArithmeticError:
        return None
