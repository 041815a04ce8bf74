"""The HTTP client for Epicor Kinetic's REST API v2 (facts: shared/api/epicor.md).

What it takes care of, so :mod:`ml_connector_epicor.plugin` only translates records:

- **Identity**: the API key goes in ``x-api-key`` on every call, since Kinetic refuses v2 calls
  without it even with a valid token (§2); a blank key stops the client before anything is sent.
  The user is proven by Basic auth, an OAuth2 client-credentials bearer token (Kinetic cloud), or
  a ``TokenResource.svc`` token; tokens are renewed before they expire, and once more (shared by
  concurrent callers) when the server says a token is no longer good, then the call is replayed.
- **The three 401s** (bad password, bad API key, access denied) share one status and one
  ``ErrorType``; they are told apart by ``ErrorMessage`` (§2) and reported with their own
  :attr:`~ml_connector.errors.UpstreamError.code`: ``invalid_credentials``, ``invalid_api_key``,
  ``access_denied``. None of them is retried.
- **Reads**: OData ``$filter``/``$select``/``$expand``/``$orderby``/``$top``/``$skip``, paged until
  a page comes back empty (the server's row cap is admin-configurable, §4), following the same
  query if ``@odata.nextLink`` appears. v2 is OData v4, so children of children are expanded
  nested: ``$expand=APInvDtls($expand=APInvExps)`` (the line distribution; §5, CORRECTED).
  A 500 on a direct OData read, which some services are known to answer (§4), switches that
  service to its ``GetRows`` method for the rest of the client's life. A 400 ``ODataException``
  on a date filter switches to the OData v3 literal (§8).
- **Errors**: Kinetic's body (``HttpStatus``, ``ReasonPhrase``, ``ErrorMessage``, ``ErrorType``,
  ``ErrorDetails``, ``CorrelationId``) and the other shapes of §3 become :mod:`ml_connector.errors`
  naming the record; the correlation id is kept (attribute and message, so it reaches the audit).
- **Payments**: the Payment Entry method sequence of §5, looked up first so a BILL payment is
  never entered twice for one invoice; the group posted with ``GET GetNewParameters`` and
  ``RunDirect`` of its ``APPaymentPostProcess`` row (§5, CORRECTED).

Messages never carry secrets: Kinetic echoes a refused API key in its message ("Invalid API Key
<key>"), so every server text is scrubbed of the key, password, client secret and tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from ml_connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    InvalidRecordError,
    NotFoundError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.http import retry_after_seconds
from ml_connector_epicor.schemas import (
    AP_INVOICE_SVC,
    AP_PAYMENT_POST_SVC,
    CHECK_GROUP_SVC,
    COA_SEGMENT_SVC,
    GETROWS_TABLES,
    GL_ACCOUNT_SVC,
    PAYMENT_ENTRY_SVC,
    SYSTEM,
    VENDOR_SVC,
    AuthMode,
    CheckRow,
    dumps,
    loads,
    parse_error_body,
    parse_token_answer,
    segment_values,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ml_connector_epicor.schemas import EpicorCredentials, EpicorSettings, TokenAnswer

__all__ = [
    "AnyOf",
    "Cond",
    "Cursor",
    "EpicorClient",
    "Identity",
    "Page",
    "Query",
    "Record",
    "payment_group_id",
]

log = logging.getLogger("ml_connector_epicor")

Record = tuple[str, str | None]
"""``(record type, record id)``: what a request is about, so its errors can name it."""

#: Token lifetime assumed when the answer does not say (third-party: one hour, §2 UNCONFIRMED).
DEFAULT_TOKEN_SECONDS = 3600.0
#: Renew a token this long before it expires (at most a tenth of its lifetime).
REFRESH_MARGIN = timedelta(seconds=60)
#: Vendor ids per ``$filter`` (an ``or`` chain keeps URLs short and works on OData 4.0).
VENDOR_CHUNK = 20

_INVOICE_FIELDS = (
    "Company", "VendorNum", "InvoiceNum", "VendorNumVendorID", "VendorNumName", "GroupID",
    "InvoiceDate", "DueDate", "CurrencyCode", "DocInvoiceAmt", "DocTaxAmt", "InvoiceBal",
    "DocInvoiceBal", "Posted", "OpenPayable", "InvoiceHeld", "HoldInvoice", "PayHold",
    "DebitMemo", "Description", "InvoiceComment", "ChangeDate", "SysRevID", "SysRowID",
)  # fmt: skip
_VENDOR_FIELDS = (
    "VendorNum", "VendorID", "Name", "Inactive", "Address1", "Address2", "Address3", "City",
    "State", "ZIP", "Country", "EMailAddress", "PhoneNum", "CurrencyCode", "PayHold",
)  # fmt: skip
_GL_FIELDS = ("COACode", "GLAccount1", "AccountDesc", "SegValue1", "Active")
_SEGMENT_FIELDS = (
    "COACode", "SegmentNbr", "SegmentCode", "SegmentName", "SegmentDesc", "SegmentAbbrev",
    "ActiveFlag",
)  # fmt: skip

#: The line-level GL distribution: a navigation of each line, not of the header (SNO's
#: APInvoiceSvc: ``APInvDtls(…)/APInvExps``; epicor.md §5, CORRECTED), so it is read with an
#: OData v4 nested expand, ``$expand=APInvDtls($expand=APInvExps)``.
INVOICE_EXPAND = ("APInvDtls", "APInvDtls/APInvExps")

#: Expanded navigation paths (``parent/child``) and the ``GetRows`` table each comes from, with
#: the columns that join a row of it to its parent. ``GetRows`` answers flat tables (every
#: ``APInvExp`` row of the page's invoices in one table), which are nested back here.
_CHILD_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "APInvDtls": ("APInvDtl", ("VendorNum", "InvoiceNum")),
    "APInvDtls/APInvExps": ("APInvExp", ("VendorNum", "InvoiceNum", "InvoiceLine")),
    "APTrans": ("APTran", ("HeadNum",)),
}

_WHERE_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_API_KEY_ECHO = re.compile(r"(Invalid API Key)\s+\S+?(\.(\s|$)|\s|$)", re.IGNORECASE)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def expand_option(paths: Iterable[str]) -> str:
    """OData v4 ``$expand`` for navigation paths: ``("A", "A/B", "C")`` -> ``A($expand=B),C``.

    v4 nests each level in parentheses; the v3 path form (``A/B``) is refused by a v4 server
    for a path through two navigations.
    """
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for name in path.split("/"):
            node = node.setdefault(name, {})

    def render(node: dict[str, Any]) -> str:
        return ",".join(
            f"{name}($expand={render(sub)})" if sub else name for name, sub in node.items()
        )

    return render(tree)


def payment_group_id(payment_id: str, vendor_num: int, invoice_num: str) -> str:
    """The payment group of one BILL payment's application to one invoice.

    Derived from the posting, so a retry after a crash finds the group an earlier attempt
    created instead of leaving a second one behind. Eight characters: the usual width of
    Kinetic's ``GroupID`` columns (UNCONFIRMED for every version).
    """
    digest = hashlib.sha256(f"{payment_id}|{vendor_num}|{invoice_num}".encode()).digest()
    return "BL" + base64.b32encode(digest).decode()[:6]


# --- Queries ------------------------------------------------------------------------------------


Literal = str | int | bool | Decimal | datetime | None


@dataclass(frozen=True)
class Cond:
    """``field op value``; ``op`` is an OData operator (``eq``, ``ge``, …)."""

    field: str
    op: str
    value: Literal


@dataclass(frozen=True)
class AnyOf:
    """Conditions joined by ``or``."""

    conds: tuple[Cond, ...]


@dataclass(frozen=True)
class Query:
    """One read, in a form that renders to OData options and to a ``GetRows`` where clause.

    Attributes:
        service: E.g. ``Erp.BO.APInvoiceSvc``.
        entity_set: The OData collection, e.g. ``APInvoices``.
        table: The dataset table ``GetRows`` returns the rows in, e.g. ``APInvHed``.
        where: Clauses joined by ``and``.
        select: Columns to return (OData only; ``GetRows`` returns every column).
        expand: Child collections to return with each row, as navigation paths
            (``"APInvDtls/APInvExps"``: each line's own children; list the parent too).
        order: ``(column, descending)`` pairs.
    """

    service: str
    entity_set: str
    table: str
    where: tuple[Cond | AnyOf, ...] = ()
    select: tuple[str, ...] = ()
    expand: tuple[str, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class Cursor:
    """Where a paged read stands: ``odata`` rows consumed, or the next ``getrows`` page."""

    mode: str
    position: int


START = Cursor("odata", 0)


@dataclass
class Page:
    """One page of rows and the cursor of the next one (``None`` after the last page).

    ``restarted`` is true when the read fell back to ``GetRows`` and began again from the first
    row: rows already returned may come again (never fewer).
    """

    rows: list[dict[str, Any]]
    next: Cursor | None
    restarted: bool = False


@dataclass
class _Token:
    answer: TokenAnswer
    renew_at: datetime
    expires_at: datetime

    @property
    def value(self) -> str:
        return self.answer.access_token.get_secret_value()


@dataclass
class Identity:
    """Who the client signed in as; never a secret."""

    principal: str
    expires_at: datetime | None = None


class EpicorClient:
    """One connection's view of one Kinetic company.

    Args:
        settings: The connection's settings.
        credentials: The API key and the user identity.
        http: An ``httpx.AsyncClient`` built with ``ConnectionContext.http_client`` on the
            server URL (so tests and the demo reach an emulator); the client closes it.
        clock: "Now", for renewing tokens before they expire.
    """

    def __init__(
        self,
        settings: EpicorSettings,
        credentials: EpicorCredentials,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self._http = http
        self._clock = clock
        self._zone = ZoneInfo(settings.server_timezone)
        self._prefix = (
            f"{quote(settings.instance, safe='')}/api/v2/odata/{quote(settings.company, safe='')}/"
        )
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._getrows_services: set[str] = set()
        self._date_style = "v4"
        self._vendors: dict[int, dict[str, Any]] = {}
        self._segments: dict[str, dict[int, str]] | None = None
        self._segments_missing: set[str] = set()
        self.identity = Identity(principal=self._principal())

    # --- Identity --------------------------------------------------------------------------------

    def _principal(self) -> str:
        who = (
            self._credentials.client_id
            if self.settings.auth is AuthMode.OAUTH
            else self._credentials.username
        )
        return f"{who or '?'}@{self.settings.company}"

    def check_configuration(self) -> None:
        """Refuse to send anything that Kinetic would reject for want of configuration.

        Raises:
            ConfigurationError: The API key is blank, or the auth mode lacks a credential.
        """
        creds, mode = self._credentials, self.settings.auth
        if not creds.api_key.get_secret_value().strip():
            raise ConfigurationError(
                "epicor: no API key configured (credentials.api_key): Kinetic's REST v2 refuses "
                "every call without one, even with a valid user or token. Create one in API Key "
                "Maintenance for company " + self.settings.company + " and add it to the connection"
            )
        needed: dict[AuthMode, tuple[str, ...]] = {
            AuthMode.BASIC: ("username", "password"),
            AuthMode.TOKEN_RESOURCE: ("username", "password"),
            AuthMode.OAUTH: ("client_id", "client_secret"),
        }
        for name in needed[mode]:
            value = getattr(creds, name)
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            if not text:
                raise ConfigurationError(
                    f"epicor: auth mode {mode.value!r} needs credentials.{name}, which is empty"
                )
        if mode is AuthMode.OAUTH and not self.settings.token_url:
            raise ConfigurationError("epicor: auth mode 'oauth' needs settings.token_url")

    async def sign_in(self) -> Identity:
        """Check the configuration and, for the token modes, fetch the first token."""
        self.check_configuration()
        if self.settings.auth is not AuthMode.BASIC:
            async with self._token_lock:
                if self._token is None:
                    await self._fetch_token()
        return self.identity

    async def close(self) -> None:
        """Close the HTTP client; Kinetic's bearer tokens have no logout, so nothing else."""
        self._token = None
        await self._http.aclose()

    def _secrets(self) -> list[str]:
        creds = self._credentials
        found = [creds.api_key.get_secret_value()]
        found += [s.get_secret_value() for s in (creds.password, creds.client_secret) if s]
        if self._token is not None:
            found.append(self._token.value)
        return [s for s in found if len(s) >= 4]

    def redact(self, text: str) -> str:
        """``text`` without any secret of this connection, on one line."""
        text = _API_KEY_ECHO.sub(r"\1 ***\2", text)
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return " ".join(text.split())

    async def _current_token(self) -> str | None:
        if self.settings.auth is AuthMode.BASIC:
            return None
        async with self._token_lock:
            if self._token is None or self._clock() >= self._token.renew_at:
                await self._fetch_token()
            assert self._token is not None
            return self._token.value

    async def _renew(self, stale: str) -> None:
        async with self._token_lock:
            if self._token is not None and self._token.value != stale:
                return  # a concurrent caller renewed it already
            await self._fetch_token()

    async def _fetch_token(self) -> None:
        creds, settings = self._credentials, self.settings
        if settings.auth is AuthMode.OAUTH:
            assert settings.token_url is not None
            assert creds.client_secret is not None
            form = {
                "grant_type": "client_credentials",
                "client_id": creds.client_id or "",
                "client_secret": creds.client_secret.get_secret_value(),
            }
            if settings.oauth_scope:
                form["scope"] = settings.oauth_scope
            url, headers = settings.token_url, {"Accept": "application/json"}
        else:
            assert creds.password is not None
            password = creds.password.get_secret_value()
            # UNCONFIRMED (§2): some servers read user and password from headers (answering
            # XML), others from a password-grant form (answering JSON); send both forms.
            form = {
                "grant_type": "password",
                "username": creds.username or "",
                "password": password,
            }
            headers = {
                "Accept": "application/json",
                "username": creds.username or "",
                "password": password,
                "x-api-key": creds.api_key.get_secret_value(),
            }
            url = f"{quote(settings.instance, safe='')}/TokenResource.svc/"
        try:
            response = await self._http.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(
                f"could not reach the token service: {type(exc).__name__}", system=SYSTEM
            ) from None
        log.debug("POST token service -> %s", response.status_code)
        if response.status_code >= 400:
            raise self._token_error(response)
        answer = parse_token_answer(response.content, response.headers.get("content-type", ""))
        if answer is None:
            raise UpstreamError(
                "the token service answered without an access token",
                system=SYSTEM,
                status=response.status_code,
            )
        lifetime = timedelta(seconds=answer.expires_in or DEFAULT_TOKEN_SECONDS)
        now = self._clock()
        margin = min(REFRESH_MARGIN, lifetime / 10)
        self._token = _Token(answer, now + lifetime - margin, now + lifetime)
        self.identity.expires_at = now + lifetime

    def _token_error(self, response: httpx.Response) -> ConnectorError:
        status = response.status_code
        text, code = "", "invalid_credentials"
        try:
            data = loads(response.content)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):  # OAuth2 (RFC 6749)
            code = data["error"]
            text = str(data.get("error_description") or data["error"])
        else:
            body = parse_error_body(response.content, response.headers.get("content-type", ""))
            text = body.ErrorMessage if body else ""
        text = self.redact(text or response.reason_phrase or f"HTTP {status}")
        kwargs: dict[str, Any] = {"system": SYSTEM, "status": status}
        if status == 429:
            return ThrottledError(
                f"token service: {text}", retry_after=retry_after_seconds(response), **kwargs
            )
        if status >= 500:
            return TransientError(f"token service: {text}", **kwargs)
        what = (
            "client id or secret"
            if self.settings.auth is AuthMode.OAUTH
            else "user name or password"
        )
        return AuthenticationError(
            f"the token service refused the {what}: {text}", code=code, **kwargs
        )

    # --- Requests --------------------------------------------------------------------------------

    def _headers(self, token: str | None, has_body: bool) -> dict[str, str]:
        creds = self._credentials
        headers = {"x-api-key": creds.api_key.get_secret_value(), "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        else:
            assert creds.password is not None
            pair = f"{creds.username}:{creds.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.settings.plant:
            plant = {"Company": self.settings.company, "Plant": self.settings.plant}
            headers["CallSettings"] = dumps(plant).decode()
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        record: Record | None,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one call (renewing the token once if the server says it is stale); its JSON."""
        self.check_configuration()
        content = dumps(body) if body is not None else None
        for attempt in (1, 2):
            token = await self._current_token()
            headers = self._headers(token, content is not None)
            try:
                response = await self._http.request(
                    method, path, params=params, content=content, headers=headers
                )
            except httpx.TimeoutException:
                raise TransientError(f"{method} {path}: timed out", system=SYSTEM) from None
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"{method} {path}: could not reach the server ({type(exc).__name__})",
                    system=SYSTEM,
                ) from None
            log.debug("%s %s -> %s", method, path, response.status_code)
            if response.status_code < 400:
                return self._json(response, record)
            error = self._error(response, record)
            if attempt == 1 and token is not None and _renewable(response.status_code, error):
                log.info("epicor: token no longer accepted (%s); renewing once", error)
                await self._renew(token)
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, response: httpx.Response, record: Record | None) -> Any:
        if response.status_code == 204 or not response.content.strip():
            return {}
        try:
            return loads(response.content)
        except ValueError:
            raise UpstreamError(
                f"{_where(record)}the server answered {response.status_code} with a body that "
                "is not JSON (a proxy or login page in front of Kinetic?)",
                system=SYSTEM,
                status=response.status_code,
            ) from None

    def _error(self, response: httpx.Response, record: Record | None) -> ConnectorError:
        status = response.status_code
        body = parse_error_body(response.content, response.headers.get("content-type", ""))
        text = self.redact(body.ErrorMessage if body else "") or response.reason_phrase
        text = text or f"HTTP {status}"
        error_type = body.ErrorType if body else ""
        correlation = (body.CorrelationId if body else "") or None
        note = f" (correlation id {correlation})" if correlation else ""
        where = _where(record)
        kwargs: dict[str, Any] = {"system": SYSTEM, "status": status, "correlation_id": correlation}
        if status in (401, 403, 407, 410):
            return self._auth_error(status, text, note, kwargs)
        if status == 429:
            return ThrottledError(
                f"{where}{text}{note}",
                retry_after=retry_after_seconds(response),
                code=error_type or None,
                **kwargs,
            )
        if status == 503 and response.headers.get("retry-after"):
            return ThrottledError(
                f"{where}{text}{note}",
                retry_after=retry_after_seconds(response),
                code=error_type or None,
                **kwargs,
            )
        if status >= 500 or status == 408:
            return TransientError(f"{where}{text}{note}", code=error_type or None, **kwargs)
        if status == 404:
            return NotFoundError(f"{where}{text}{note}", code=error_type or None, **kwargs)
        if status == 409:
            return ConflictError(f"{where}{text}{note}", code=error_type or None, **kwargs)
        business = "BusinessObjectException" in error_type or "BLException" in error_type
        if status == 400 and record is not None and (business or (body and body.ErrorDetails)):
            detail = body.ErrorDetails[0] if body and body.ErrorDetails else None
            column = ".".join(p for p in (detail.Table, detail.Field) if p) if detail else None
            return InvalidRecordError(
                record[0],
                record[1],
                column or None,
                f"{text}{note}",
                system=SYSTEM,
                correlation_id=correlation,
            )
        return UpstreamError(f"{where}{text}{note}", code=error_type or None, **kwargs)

    def _auth_error(
        self, status: int, text: str, note: str, kwargs: dict[str, Any]
    ) -> ConnectorError:
        # One status, one ErrorType for three causes: only the message tells them apart (§2).
        lowered = text.lower()
        company = self.settings.company
        if "api key" in lowered:
            return AuthenticationError(
                f"Epicor refused the API key for company {company}: {text}{note}; check "
                "credentials.api_key and that the key is enabled for this company",
                code="invalid_api_key",
                **kwargs,
            )
        if "username or password" in lowered or "user name or password" in lowered:
            return AuthenticationError(
                f"Epicor refused the user name or password: {text}{note}",
                code="invalid_credentials",
                **kwargs,
            )
        if "access denied" in lowered:
            return AuthenticationError(
                f"the Epicor user lacks the rights to a service method: {text}{note}; grant "
                "them in Kinetic's security maintenance",
                code="access_denied",
                **kwargs,
            )
        if status == 410 or self.settings.auth is not AuthMode.BASIC:
            return SessionExpiredError(f"Epicor: {text}{note}", code="session_expired", **kwargs)
        return AuthenticationError(
            f"Epicor refused the call: {text}{note}", code="unauthorized", **kwargs
        )

    # --- Reading ---------------------------------------------------------------------------------

    def _literal(self, value: Literal) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        if isinstance(value, datetime):
            if self._date_style == "v4":
                return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            local = value.astimezone(self._zone).replace(tzinfo=None)
            return f"datetime'{local.strftime('%Y-%m-%dT%H:%M:%S')}'"
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return str(value)

    def _where_literal(self, value: Literal) -> str:
        if isinstance(value, datetime):
            local = value.astimezone(self._zone).replace(tzinfo=None)
            return "'" + local.strftime("%Y-%m-%dT%H:%M:%S") + "'"
        return self._literal(value)

    def _odata_filter(self, where: Iterable[Cond | AnyOf]) -> str:
        def one(cond: Cond) -> str:
            return f"{cond.field} {cond.op} {self._literal(cond.value)}"

        parts = [
            one(c) if isinstance(c, Cond) else "(" + " or ".join(one(x) for x in c.conds) + ")"
            for c in where
        ]
        return " and ".join(parts)

    def _where_clause(self, query: Query) -> str:
        def one(cond: Cond) -> str:
            return f"{cond.field} {_WHERE_OPS[cond.op]} {self._where_literal(cond.value)}"

        parts = [
            one(c) if isinstance(c, Cond) else "(" + " OR ".join(one(x) for x in c.conds) + ")"
            for c in query.where
        ]
        clause = " AND ".join(parts)
        if query.order:
            # Where clauses take a trailing sort as in ABL ("BY x DESCENDING"): UNCONFIRMED.
            order = ", ".join(f"{f} DESCENDING" if desc else f for f, desc in query.order)
            clause = f"{clause} BY {order}".strip()
        return clause

    def _odata_params(self, query: Query, skip: int, top: int) -> dict[str, str]:
        params = {"$top": str(top), "$skip": str(skip)}
        if query.where:
            params["$filter"] = self._odata_filter(query.where)
        if query.select:
            params["$select"] = ",".join(query.select)
        if query.expand:
            params["$expand"] = expand_option(query.expand)
        if query.order:
            params["$orderby"] = ",".join(f"{f} desc" if d else f for f, d in query.order)
        return params

    async def _odata(
        self, path: str, query: Query, record: Record | None, skip: int, top: int
    ) -> Any:
        try:
            return await self._request(
                "GET", path, record=record, params=self._odata_params(query, skip, top)
            )
        except UpstreamError as exc:
            dated = any(
                isinstance(v, datetime)
                for c in query.where
                for v in ([c.value] if isinstance(c, Cond) else [x.value for x in c.conds])
            )
            if not (exc.status == 400 and "odataexception" in (exc.code or "").lower() and dated):
                raise
            if self._date_style != "v4":
                raise
            # UNCONFIRMED (§6, §8): the date literal's syntax; fall back to the v3 form once.
            log.info("epicor: unquoted date literal refused; using datetime'...' from now on")
            self._date_style = "v3"
            return await self._request(
                "GET", path, record=record, params=self._odata_params(query, skip, top)
            )

    async def _odata_page(
        self, query: Query, skip: int, record: Record | None
    ) -> tuple[list[dict[str, Any]], bool]:
        path = f"{self._prefix}{query.service}/{query.entity_set}"
        data = await self._odata(path, query, record, skip, self.settings.page_size)
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise UpstreamError(
                f"{_where(record)}{query.entity_set}: the answer has no 'value' list of rows",
                system=SYSTEM,
            )
        # Stop only on an empty page: the server's row cap is admin-configurable and may be
        # below $top (§4), so a short page is not proof of the last one.
        return value, bool(value)

    async def _getrows_page(
        self, query: Query, page: int, record: Record | None, size: int | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        tables = GETROWS_TABLES.get(query.service, (query.table,))
        children = {_CHILD_TABLES[path][0]: path for path in query.expand}
        params: dict[str, Any] = {
            f"whereClause{t}": self._where_clause(query)
            if t == query.table
            else ("" if t in children else "1=0")
            for t in tables
        }
        params["pageSize"] = size or self.settings.page_size
        params["absolutePage"] = page
        path = f"{self._prefix}{query.service}/GetRows"
        data = await self._request("POST", path, record=record, body=params)
        dataset = data.get("returnObj") if isinstance(data, dict) else None
        if not isinstance(dataset, dict):
            raise UpstreamError(
                f"{_where(record)}{query.service}/GetRows: the answer has no returnObj dataset",
                system=SYSTEM,
            )
        rows = [dict(r) for r in dataset.get(query.table) or [] if isinstance(r, dict)]
        _nest(rows, "", query.expand, dataset)
        parameters = data.get("parameters")
        more = parameters.get("morePages") if isinstance(parameters, dict) else None
        # UNCONFIRMED (§8): morePages may be absent; then read on until a page is empty.
        return rows, (more if isinstance(more, bool) else bool(rows))

    async def query_page(self, query: Query, cursor: Cursor, record: Record | None) -> Page:
        """Read the page at ``cursor``; a 500 on OData switches to ``GetRows`` for good.

        Rows come in the query's order; the caller keeps the cursor (it survives in page tokens).
        """
        restarted = False
        if cursor.mode == "odata" and query.service in self._getrows_services:
            cursor, restarted = Cursor("getrows", 0), cursor.position > 0
        if cursor.mode == "odata":
            try:
                rows, more = await self._odata_page(query, cursor.position, record)
            except TransientError as exc:
                if exc.status != 500:
                    raise
                # §4: some services answer direct OData reads with a 500 "unexpected internal
                # problem"; their GetRows method works. Use it from now on, from the first row.
                log.info("epicor: %s answered 500 to OData; reading through GetRows", query.service)
                self._getrows_services.add(query.service)
                cursor, restarted = Cursor("getrows", 0), cursor.position > 0
            else:
                step = Cursor("odata", cursor.position + len(rows))
                return Page(rows, step if more else None, restarted)
        # UNCONFIRMED (§8): whether absolutePage counts from 0 or 1. Starting at 0 and going on
        # while morePages says so reads every row under both (page 0 may repeat page 1).
        rows, more = await self._getrows_page(query, cursor.position, record)
        return Page(rows, Cursor("getrows", cursor.position + 1) if more else None, restarted)

    async def read_all(
        self, query: Query, record: Record | None, *, enough: int | None = None
    ) -> list[dict[str, Any]]:
        """Every row of ``query`` (or the first ``enough`` of them)."""
        rows: list[dict[str, Any]] = []
        cursor: Cursor | None = START
        while cursor is not None:
            page = await self.query_page(query, cursor, record)
            if page.restarted:
                rows = []
            rows += page.rows
            cursor = page.next
            if enough is not None and len(rows) >= enough:
                break
        return rows

    def _key_path(self, entity_set: str, keys: Sequence[Literal]) -> str:
        parts = [self._key_literal(self.settings.company)] + [self._key_literal(k) for k in keys]
        return f"{entity_set}({','.join(parts)})"

    @staticmethod
    def _key_literal(value: Literal) -> str:
        if isinstance(value, str):
            return "'" + quote(value.replace("'", "''"), safe="") + "'"
        return str(value)

    async def get_one(
        self, query: Query, keys: Sequence[tuple[str, Literal]], record: Record | None
    ) -> dict[str, Any] | None:
        """One row by its key (without Company, which comes from the settings), or ``None``."""
        if query.service not in self._getrows_services:
            entity = self._key_path(query.entity_set, [v for _, v in keys])
            path = f"{self._prefix}{query.service}/{entity}"
            params: dict[str, str] = {}
            if query.select:
                params["$select"] = ",".join(query.select)
            if query.expand:
                params["$expand"] = expand_option(query.expand)
            try:
                data = await self._request("GET", path, record=record, params=params)
            except NotFoundError:
                return None
            except TransientError as exc:
                if exc.status != 500:
                    raise
                log.info("epicor: %s answered 500 to OData; reading through GetRows", query.service)
                self._getrows_services.add(query.service)
            else:
                if isinstance(data, dict) and isinstance(data.get("value"), list):
                    rows = data["value"]  # tolerate a collection-shaped answer
                    return rows[0] if rows and isinstance(rows[0], dict) else None
                if not isinstance(data, dict):
                    raise UpstreamError(f"{_where(record)}the answer is not a row", system=SYSTEM)
                return data
        by_key = replace(query, where=query.where + tuple(Cond(k, "eq", v) for k, v in keys))
        rows = await self.read_all(by_key, record, enough=1)
        return rows[0] if rows else None

    async def call(
        self, service: str, method: str, params: dict[str, Any], record: Record | None
    ) -> dict[str, Any]:
        """Call a business-object method: ``POST`` with named parameters (``{}`` if none, §1)."""
        data = await self._request(
            "POST", f"{self._prefix}{service}/{method}", record=record, body=params
        )
        if not isinstance(data, dict):
            raise UpstreamError(
                f"{_where(record)}{method}: the answer is not an object", system=SYSTEM
            )
        return data

    async def get_method(self, service: str, method: str, record: Record | None) -> dict[str, Any]:
        """Call a business-object method that takes no parameter: a ``GET``.

        SNO lists such methods (``GetNewParameters``) as GET only; Kinetic refuses a POST.
        """
        data = await self._request("GET", f"{self._prefix}{service}/{method}", record=record)
        if not isinstance(data, dict):
            raise UpstreamError(
                f"{_where(record)}{method}: the answer is not an object", system=SYSTEM
            )
        return data

    async def _dataset(
        self, service: str, method: str, params: dict[str, Any], record: Record | None
    ) -> dict[str, Any]:
        """Call a method that changes a dataset; the dataset it hands back (§5 convention)."""
        data = await self.call(service, method, params, record)
        parameters = data.get("parameters")
        ds = parameters.get("ds") if isinstance(parameters, dict) else None
        if not isinstance(ds, dict):
            ds = data.get("returnObj")
        if not isinstance(ds, dict):
            raise UpstreamError(
                f"{_where(record)}{method}: no dataset in the answer", system=SYSTEM
            )
        return ds

    # --- What the sync reads -------------------------------------------------------------------

    def invoices_query(self, since: datetime | None) -> Query:
        """Posted invoices changed since ``since`` (minus the overlap), newest change first.

        Only ``Posted`` (set once, never cleared) and ``ChangeDate`` (only ever moves forward)
        filter on the server: a row can then never leave the result set while it is paged, and
        a row that changes moves to the front. So ``$skip`` paging skips nothing: what moves
        behind the cursor changed after the read began and belongs to the next window. Holds,
        balance and the window's upper bound are checked on the rows instead (epicor.md §6).
        """
        where: list[Cond | AnyOf] = [Cond("Posted", "eq", True)]
        if since is not None:
            overlap = timedelta(hours=self.settings.change_overlap_hours)
            where.append(Cond("ChangeDate", "ge", since - overlap))
        return Query(
            AP_INVOICE_SVC,
            "APInvoices",
            "APInvHed",
            tuple(where),
            _INVOICE_FIELDS,
            INVOICE_EXPAND,
            (("ChangeDate", True), ("VendorNum", False), ("InvoiceNum", False)),
        )

    async def invoice(self, vendor_num: int, invoice_num: str) -> dict[str, Any] | None:
        """One AP invoice with its lines and GL distribution, whatever its status."""
        query = Query(
            AP_INVOICE_SVC,
            "APInvoices",
            "APInvHed",
            (),
            _INVOICE_FIELDS,
            INVOICE_EXPAND,
        )
        return await self.get_one(
            query,
            [("VendorNum", vendor_num), ("InvoiceNum", invoice_num)],
            ("payable", f"{vendor_num}:{invoice_num}"),
        )

    async def vendors(self, numbers: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The vendors with these ``VendorNum``s (cached for the client's life).

        Vendors carry no change date (§5, §6), so they are read by the ids that changed invoices
        reference, a few per request.
        """
        wanted = sorted({n for n in numbers if n not in self._vendors})
        for start in range(0, len(wanted), VENDOR_CHUNK):
            chunk = wanted[start : start + VENDOR_CHUNK]
            query = Query(
                VENDOR_SVC,
                "Vendors",
                "Vendor",
                (AnyOf(tuple(Cond("VendorNum", "eq", n) for n in chunk)),),
                _VENDOR_FIELDS,
                (),
                (("VendorNum", False),),
            )
            for row in await self.read_all(query, ("vendor", None), enough=len(chunk)):
                number = row.get("VendorNum")
                if isinstance(number, int):
                    self._vendors[number] = row
        return {n: self._vendors[n] for n in numbers if n in self._vendors}

    async def gl_accounts(self) -> list[dict[str, Any]]:
        """Every GL account (of ``settings.coa_code`` if set), in key order.

        With the segments of ``settings.segment_dimensions`` (``SegValueN``), which are kept for
        :meth:`account_segments`.
        """
        where = (Cond("COACode", "eq", self.settings.coa_code),) if self.settings.coa_code else ()
        segments = tuple(f"SegValue{n}" for n in self.settings.segment_dimensions)
        query = Query(
            GL_ACCOUNT_SVC,
            "GLAccounts",
            "GLAccount",
            where,
            _GL_FIELDS + segments,
            (),
            (("COACode", False), ("GLAccount1", False)),
        )
        rows = await self.read_all(query, ("account", None))
        self._segments = {
            str(r["GLAccount1"]): segment_values(r) for r in rows if r.get("GLAccount1")
        }
        return rows

    async def account_segments(self, account: str) -> dict[int, str] | None:
        """The segment values of GL account ``account`` (a ``GLAccount1``), or ``None``.

        From the chart read by :meth:`gl_accounts` (the run reads it first, for the account
        mapping); read once more if the account is not in it, as one created since would not be.
        """
        if self._segments is None or (
            account not in self._segments and account not in self._segments_missing
        ):
            await self.gl_accounts()
            assert self._segments is not None
            if account not in self._segments:
                self._segments_missing.add(account)
        return self._segments.get(account)

    async def segment_values(self) -> list[dict[str, Any]]:
        """The values of the chart segments that ``settings.segment_dimensions`` names.

        ``COASegValues`` rows (``SegmentNbr``, ``SegmentCode``, ``SegmentName``, ``ActiveFlag``);
        none when no segment is a dimension.
        """
        numbers = tuple(self.settings.segment_dimensions)
        if not numbers:
            return []
        where: list[Cond | AnyOf] = [AnyOf(tuple(Cond("SegmentNbr", "eq", n) for n in numbers))]
        if self.settings.coa_code:
            where.append(Cond("COACode", "eq", self.settings.coa_code))
        query = Query(
            COA_SEGMENT_SVC,
            "COASegValues",
            "COASegValues",
            tuple(where),
            _SEGMENT_FIELDS,
            (),
            (("COACode", False), ("SegmentNbr", False), ("SegmentCode", False)),
        )
        return await self.read_all(query, ("segment value", None))

    async def first_invoice_probe(self) -> int:
        """The cheapest proof of access: at most one AP invoice row (``$top=1``)."""
        query = Query(AP_INVOICE_SVC, "APInvoices", "APInvHed", (), ("InvoiceNum",))
        if AP_INVOICE_SVC in self._getrows_services:
            rows, _ = await self._getrows_page(query, 0, None, size=1)
            return len(rows)
        path = f"{self._prefix}{AP_INVOICE_SVC}/APInvoices"
        try:
            data = await self._request(
                "GET", path, record=None, params={"$top": "1", "$select": "InvoiceNum"}
            )
        except TransientError as exc:
            if exc.status != 500:
                raise
            self._getrows_services.add(AP_INVOICE_SVC)
            rows, _ = await self._getrows_page(query, 0, None, size=1)
            return len(rows)
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, list):
            raise UpstreamError("APInvoices: the answer has no 'value' list", system=SYSTEM)
        return len(value)

    # --- Payments ------------------------------------------------------------------------------

    async def find_payment(
        self, payment_id: str, vendor_num: int, invoice_num: str, record: Record
    ) -> CheckRow | None:
        """The payment (``CheckHed``) that carries this BILL payment id and pays this invoice.

        Reads only (``PaymentEntries`` with ``$expand=APTrans``, or ``GetRows``), posted or not,
        voided or not. Shared by the ``find_payment`` hook and :meth:`enter_payment`'s own look.
        """
        query = Query(
            PAYMENT_ENTRY_SVC,
            "PaymentEntries",
            "CheckHed",
            (Cond("XRefCheckNum", "eq", payment_id), Cond("VendorNum", "eq", vendor_num)),
            ("HeadNum", "GroupID", "VendorNum", "XRefCheckNum", "Posted", "Voided"),
            ("APTrans",),
            (("HeadNum", False),),
        )
        wanted = payment_id.strip().casefold()
        for row in await self.read_all(query, record):
            check = CheckRow.model_validate(row)
            # What the server filtered on is checked again where the row carries it: a server
            # that ignored the filter must not make another payment's check pass for this one,
            # and a column left out of the answer must not hide this one (a duplicate is worse
            # than a posting a person sees missing). Case and padding aside, as Kinetic compares.
            ref = check.XRefCheckNum.strip().casefold()
            if (ref and ref != wanted) or (check.VendorNum and check.VendorNum != vendor_num):
                continue
            # One BILL payment may pay several invoices of the vendor: each has its own check,
            # so the payment id alone is not the key (hookspecs.record_payment).
            if any(t.InvoiceNum == invoice_num for t in check.APTrans):
                return check
        return None

    async def enter_payment(
        self,
        *,
        payment_id: str,
        vendor_num: int,
        invoice_num: str,
        amount: Decimal,
        paid_on: date,
        reference: str,
    ) -> tuple[int, bool]:
        """Record a BILL payment against one invoice through Payment Entry, once.

        Looks first (:meth:`find_payment`); a payment entered but not yet posted by an attempt
        that died is posted now. Otherwise the §5 sequence: payment group (created or reused,
        then locked), ``CreateNewCheckHed``, ``OnChangeVendor``, ``OnChangeManualPrint``,
        ``OnChangeCheckDate``, ``GetNewAPTran``, ``OnChangeInvoiceNum``, ``OnChangeDocTranAmt``,
        one ``Update`` of the whole dataset (header and application saved together, so no
        half-entered payment is left), then the group posted.

        Returns:
            The payment's ``HeadNum``, and whether it existed before this call.
        """
        record: Record = ("payment", f"{payment_id} for payable {vendor_num}:{invoice_num}")
        found = await self.find_payment(payment_id, vendor_num, invoice_num, record)
        if found is not None:
            if not found.Posted and not found.Voided and self.settings.post_payments:
                await self._post_group(found.GroupID, record)
            return found.HeadNum, True
        bank = self.settings.payment_bank_account
        if not bank:
            raise ConfigurationError(
                "epicor: settings.payment_bank_account (the BankAcctID payments are drawn on) "
                "is needed to record BILL payments"
            )
        vendor = (await self.vendors([vendor_num])).get(vendor_num)
        vendor_id = vendor.get("VendorID") if vendor else None
        if not isinstance(vendor_id, str) or not vendor_id:
            raise InvalidRecordError(
                record[0], record[1], "VendorNum", f"vendor {vendor_num} no longer exists",
                system=SYSTEM,
            )  # fmt: skip
        group = payment_group_id(payment_id, vendor_num, invoice_num)
        await self._open_group(group, bank, paid_on, record)
        pay = PAYMENT_ENTRY_SVC
        ds = await self._dataset(pay, "CreateNewCheckHed", {"pcGroupID": group, "ds": {}}, record)
        ds = await self._dataset(pay, "OnChangeVendor", {"pcVendorID": vendor_id, "ds": ds}, record)
        ds = await self._dataset(
            pay, "OnChangeManualPrint", {"plManualPrint": True, "ds": ds}, record
        )
        day = f"{paid_on.isoformat()}T00:00:00"
        ds = await self._dataset(pay, "OnChangeCheckDate", {"pdtCheckDate": day, "ds": ds}, record)
        head = _current_row(ds, "CheckHed", record)
        head.update({"XRefCheckNum": payment_id, "Description": reference[:60], "BankAcctID": bank})
        head_num = head.get("HeadNum")
        params = {"ds": ds, "headNum": head_num, "apTranNo": 0, "invoiceNum": invoice_num}
        ds = await self._dataset(pay, "GetNewAPTran", params, record)
        params = {"pcInvoiceNum": invoice_num, "pcChangeExchangeRateResponse": "", "ds": ds}
        ds = await self._dataset(pay, "OnChangeInvoiceNum", params, record)
        ds = await self._dataset(
            pay, "OnChangeDocTranAmt", {"pdDocTranAmt": amount, "ds": ds}, record
        )
        ds = await self._dataset(pay, "Update", {"ds": ds}, record)
        saved = _current_row(ds, "CheckHed", record).get("HeadNum", head_num)
        if not isinstance(saved, int):
            raise UpstreamError(f"{_where(record)}Update returned no HeadNum", system=SYSTEM)
        if self.settings.post_payments:
            # A failure from here on leaves the payment saved, not posted: the core's look-up
            # finds it unfinished (find_payment) and record_payment posts it, never a second one.
            await self._post_group(group, record)
        return saved, False

    async def _open_group(self, group: str, bank: str, day: date, record: Record) -> None:
        query = Query(CHECK_GROUP_SVC, "APChkGrps", "APChkGrp")
        if await self.get_one(query, [("GroupID", group)], record) is None:
            ds = await self._dataset(CHECK_GROUP_SVC, "GetNewAPChkGrp", {"ds": {}}, record)
            row = _current_row(ds, "APChkGrp", record)
            row.update(
                {
                    "GroupID": group,
                    "BankAcctID": bank,
                    "CheckDate": f"{day.isoformat()}T00:00:00",
                    "RowMod": "A",
                }
            )
            # §3: 409 DuplicateRecordException, created meanwhile: it exists
            with contextlib.suppress(ConflictError):
                await self._dataset(CHECK_GROUP_SVC, "Update", {"ds": ds}, record)
        # UNCONFIRMED (§8): payments need a group locked by this user before CreateNewCheckHed.
        data = await self.call(CHECK_GROUP_SVC, "LockGroup", {"pcGroupID": group}, record)
        parameters = data.get("parameters")
        locked = parameters.get("plSuccess", True) if isinstance(parameters, dict) else True
        if locked is False:
            raise ConflictError(
                f"{_where(record)}payment group {group} is locked by another user", system=SYSTEM
            )

    async def _post_group(self, group: str, record: Record) -> None:
        """Post the payment group: ``Erp.PROC.APPaymentPostSvc`` (epicor.md §5, CORRECTED).

        ``GetNewParameters`` is a GET (it takes no parameter; SNO lists no POST for it) and
        answers the ``APPaymentPostTableset``, whose one table is ``APPaymentPostProcess``; the
        group goes in its row, and the tableset back to ``RunDirect`` as ``{"ds": …}``.
        """
        data = await self.get_method(AP_PAYMENT_POST_SVC, "GetNewParameters", record)
        ds = data.get("returnObj")
        if isinstance(ds, list) and ds and isinstance(ds[0], dict):
            ds = ds[0]  # SNO's schema types returnObj as a list of tablesets: take either
        parameters = data.get("parameters")
        if not isinstance(ds, dict) and isinstance(parameters, dict):
            ds = parameters.get("ds")
        if not isinstance(ds, dict):
            raise UpstreamError(f"{_where(record)}GetNewParameters: no dataset", system=SYSTEM)
        row = _current_row(ds, "APPaymentPostProcess", record)
        row["GroupID"] = group
        # §5 convention: a changed row says so; a new one ("A") stays new until it is saved.
        if not row.get("RowMod"):
            row["RowMod"] = "U"
        await self.call(AP_PAYMENT_POST_SVC, "RunDirect", {"ds": ds}, record)


def _nest(
    parents: list[dict[str, Any]], prefix: str, paths: Sequence[str], dataset: dict[str, Any]
) -> None:
    """Hang ``GetRows``' flat child tables under their parents, as the OData expand nests them.

    ``paths`` are the query's navigation paths; those one level below ``prefix`` are joined to
    ``parents`` on their key columns, then their own children to them.
    """
    for path in paths:
        parent, _, name = path.rpartition("/")
        if parent != prefix.rstrip("/"):
            continue
        table, keys = _CHILD_TABLES[path]
        kids = [dict(r) for r in dataset.get(table) or [] if isinstance(r, dict)]
        for row in parents:
            row[name] = [k for k in kids if all(k.get(c) == row.get(c) for c in keys)]
        _nest([k for row in parents for k in row[name]], path + "/", paths, dataset)


def _current_row(ds: dict[str, Any], table: str, record: Record) -> dict[str, Any]:
    rows = ds.get(table)
    if not isinstance(rows, list) or not rows or not isinstance(rows[-1], dict):
        raise UpstreamError(f"{_where(record)}the dataset has no {table} row", system=SYSTEM)
    row: dict[str, Any] = rows[-1]
    return row


def _where(record: Record | None) -> str:
    if record is None:
        return ""
    kind, ident = record
    return f"{kind} {ident}: " if ident else f"{kind}: "


def _renewable(status: int, error: ConnectorError) -> bool:
    """Whether a fresh token may cure this answer (never a refused key or missing rights)."""
    if status not in (401, 403, 410) or not isinstance(error, AuthenticationError):
        return False
    return error.code not in ("invalid_api_key", "access_denied")
