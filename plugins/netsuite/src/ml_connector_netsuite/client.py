"""The HTTP client of NetSuite's REST web services: M2M tokens, SuiteQL, records, errors.

One :meth:`NetSuiteClient.request` signs every call with a bearer token, gets a new token
(a newly signed assertion: client credentials have no refresh token) before the old one
expires and once on a 401, and maps every error answer onto ``ml_connector.errors``
(netsuite.md §2, §3). :meth:`NetSuiteClient.suiteql` sends one SuiteQL page
(``Prefer: transient``, ``limit``/``offset``); the readers page by key (``WHERE id > :last ORDER
BY id``) so no query passes the 100,000-row offset ceiling (netsuite.md §4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from ml_connector.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRecordError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.http import retry_after_seconds
from pydantic import ValidationError

from ml_connector_netsuite._auth import Signer
from ml_connector_netsuite.schemas import (
    SYSTEM,
    Credentials,
    ErrorBody,
    Settings,
    SuiteQLPage,
    Token,
)

__all__ = [
    "MAX_LIMIT",
    "OFFSET_CEILING",
    "REST",
    "SUITEQL",
    "TOKEN_PATH",
    "NetSuiteClient",
    "Record",
    "error_for",
]

log = logging.getLogger(__name__)

REST = "/services/rest"
TOKEN_PATH = f"{REST}/auth/oauth2/v1/token"
SUITEQL = f"{REST}/query/v1/suiteql"
MAX_LIMIT = 1000
"""SuiteQL rows per page at most (netsuite.md §4, CORROBORATED)."""
OFFSET_CEILING = 100_000
"""SuiteQL returns at most this many results per query (netsuite.md §4, CONFIRMED)."""
RENEW_BEFORE = timedelta(minutes=5)
"""Get a new token this long before the old one expires (netsuite.md §2)."""
THROTTLE_CODES = frozenset({"CONCURRENCY_LIMIT_EXCEEDED", "SSS_REQUEST_LIMIT_EXCEEDED"})

Record = tuple[str, str | None]
"""The record a call concerns, ``(record_type, record_id)``, for InvalidRecordError."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class NetSuiteClient:
    """One connection's access to one NetSuite account.

    Args:
        http: The HTTP client (built by ``ctx.http_client(settings.rest_url)``); closed here.
        settings: The connection's settings.
        credentials: The M2M credentials.
        clock: "Now" (tz-aware UTC), for the assertion's ``iat`` and the token's expiry.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        credentials: Credentials,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.http = http
        self.settings = settings
        self.now = clock
        self.signer = Signer(
            credentials.client_id,
            credentials.certificate_id,
            credentials.private_key.get_secret_value(),
            scope_form=settings.scope,
        )
        self._token: str | None = None
        self.expires_at: datetime | None = None
        # The account's concurrency limit (netsuite.md §4): never more requests in flight.
        self._gate = asyncio.Semaphore(settings.concurrency_limit)

    @property
    def token_url(self) -> str:
        """The token endpoint's absolute URL: the assertion's ``aud``."""
        return f"{self.settings.rest_url}{TOKEN_PATH}"

    # --- Token -------------------------------------------------------------------------------

    async def sign_in(self) -> None:
        """Sign a new assertion and exchange it for an access token.

        Raises:
            AuthenticationError: The token endpoint refused the assertion (any 4xx: the
                integration, the certificate mapping or the role; the cause is in NetSuite's
                Login Audit Trail).
            TransientError: The endpoint could not be reached or failed (5xx).
        """
        now = self.now()
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.signer.assertion(self.token_url, now),
        }
        response = await self._send("POST", TOKEN_PATH, data=form)
        if response.status_code >= httpx.codes.INTERNAL_SERVER_ERROR:
            raise error_for(response, None)
        if not response.is_success:
            body = _error_body(response)
            reason = _message(body) or response.reason_phrase or "refused"
            raise AuthenticationError(
                f"the token endpoint refused the client assertion ({reason}); check the client "
                "ID, the certificate id and key of the M2M mapping, and the role (NetSuite's "
                "Login Audit Trail names the cause)",
                system=SYSTEM,
                status=response.status_code,
                code=next(iter(sorted(body.codes)), None) if body else None,
            )
        try:
            token = Token.model_validate_json(response.content)
        except ValidationError as exc:
            raise _unexpected(response) from exc
        self._token = token.access_token
        lifetime = token.expires_in if token.expires_in is not None else 3600
        self.expires_at = now + timedelta(seconds=lifetime)

    def _token_stale(self) -> bool:
        if self._token is None:
            return True
        return self.expires_at is not None and self.now() >= self.expires_at - RENEW_BEFORE

    async def close(self) -> None:
        """Forget the token and close the HTTP client (there is nothing to revoke); no raise."""
        self._token = None
        try:
            await self.http.aclose()
        except (httpx.HTTPError, RuntimeError) as exc:  # pragma: no cover - defensive
            log.info("%s: closing the HTTP client failed: %s", SYSTEM, exc)

    # --- Calls -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        record: Record | None = None,
    ) -> httpx.Response:
        """Send with a bearer token; on a 401 sign a new assertion once and replay.

        Raises:
            AuthenticationError: A second 401, or a 403.
            ThrottledError: ``CONCURRENCY_LIMIT_EXCEEDED`` (429, or any status carrying it).
            InvalidRecordError: A 400 about ``record`` (naming the field NetSuite named).
            NotFoundError: 404.
            TransientError: 5xx, a timeout, a connection failure.
            UpstreamError: Any other error answer.
        """
        if self._token_stale():
            await self.sign_in()
        response = await self._send(
            method, path, params=params, json_body=json_body, headers=headers
        )
        if response.status_code == httpx.codes.UNAUTHORIZED:
            log.info("%s: the token was refused; signing a new assertion", SYSTEM)
            await self.sign_in()
            response = await self._send(
                method, path, params=params, json_body=json_body, headers=headers
            )
            if response.status_code == httpx.codes.UNAUTHORIZED:
                body = _error_body(response)
                raise AuthenticationError(
                    f"NetSuite refused a new token ({_message(body) or 'Invalid login attempt'}"
                    "); check the M2M mapping, the certificate and the role's permissions",
                    system=SYSTEM,
                    status=401,
                    code="INVALID_LOGIN",
                )
        if not response.is_success:
            raise error_for(response, record)
        return response

    async def suiteql(self, query: str, *, limit: int, offset: int = 0) -> SuiteQLPage:
        """One page of a SuiteQL query (``offset`` a multiple of ``limit``, netsuite.md §4)."""
        limit = max(1, min(limit, MAX_LIMIT))
        if offset >= OFFSET_CEILING:
            raise UpstreamError("a SuiteQL query went past the 100,000-row ceiling", system=SYSTEM)
        response = await self.request(
            "POST",
            SUITEQL,
            params={"limit": limit, "offset": offset},
            json_body={"q": query},
            headers={"Prefer": "transient"},
        )
        try:
            return SuiteQLPage.model_validate(json_object(response))
        except ValidationError as exc:
            raise _unexpected(response) from exc

    async def query_all(self, query: str) -> list[dict[str, Any]]:
        """Every row of a small query (offset paging; reference lists stay far below 100,000)."""
        rows: list[dict[str, Any]] = []
        offset = 0
        limit = self.settings.page_size
        while True:
            page = await self.suiteql(query, limit=limit, offset=offset)
            rows += page.items
            offset += limit
            if not page.has_more or not page.items:
                return rows

    async def keyset(
        self, build: Callable[[str | None], str], *, key: str = "id"
    ) -> list[dict[str, Any]]:
        """Every row of a query paged by key: ``build(last)`` adds ``WHERE id > last``.

        Each request starts at offset 0, so no request nears the 100,000-row ceiling however
        many rows there are.
        """
        rows: list[dict[str, Any]] = []
        last: str | None = None
        while True:
            page = await self.suiteql(build(last), limit=self.settings.page_size)
            rows += page.items
            if not page.has_more or not page.items:
                return rows
            last = str(page.items[-1].get(key))

    async def get_record(
        self, path: str, *, params: dict[str, Any] | None = None, record: Record | None = None
    ) -> dict[str, Any] | None:
        """``GET /record/v1/<path>`` as a JSON object, or ``None`` on 404."""
        try:
            response = await self.request(
                "GET", f"{REST}/record/v1/{path}", params=params, record=record
            )
        except NotFoundError:
            return None
        return json_object(response)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if data is None:
            sent["Authorization"] = f"Bearer {self._token}"
        content = None if json_body is None else _dumps(json_body)
        if content is not None:
            sent["Content-Type"] = "application/json"
        try:
            async with self._gate:
                return await self.http.request(
                    method, path, params=params, content=content, data=data, headers=sent
                )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{method} {path} timed out", system=SYSTEM) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{method} {path} failed: {exc}", system=SYSTEM) from exc


# --- Answers -----------------------------------------------------------------------------------


def _dumps(body: Any) -> bytes:
    """JSON with Decimals written as numbers from their digits (never through float)."""
    nonce = secrets.token_hex(8)
    numbers: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            numbers.append(format(value, "f"))
            return f"{nonce}:{len(numbers) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON")

    text = json.dumps(body, default=default, separators=(",", ":"))
    for index, digits in enumerate(numbers):
        text = text.replace(f'"{nonce}:{index}"', digits)
    return text.encode()


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, numbers as Decimal (money never goes through float)."""
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _unexpected(response)
    return body


def _unexpected(response: httpx.Response) -> UpstreamError:
    request = response.request
    return UpstreamError(
        f"unexpected answer to {request.method} {request.url.path}",
        system=SYSTEM,
        status=response.status_code,
    )


def _error_body(response: httpx.Response) -> ErrorBody | None:
    try:
        return ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def _message(body: ErrorBody | None) -> str | None:
    if body is None:
        return None
    parts = []
    for detail in body.details:
        text = detail.detail.strip()
        where = detail.path or detail.query_param or detail.header
        if where:
            text = f"{text} (at {where})" if text else f"at {where}"
        if detail.code:
            text = f"{detail.code}: {text}" if text else detail.code
        if text:
            parts.append(text)
    if not parts and body.error:
        parts.append(
            f"{body.error}: {body.error_description}" if body.error_description else body.error
        )
    return "; ".join(parts) or body.title


def _field(body: ErrorBody | None) -> str | None:
    """The field NetSuite blamed: ``o:errorPath``, else a field named in the detail."""
    if body is None:
        return None
    for detail in body.details:
        if detail.path:
            return detail.path
    for detail in body.details:
        if detail.query_param:
            return detail.query_param
    return None


def error_for(response: httpx.Response, record: Record | None) -> Exception:
    """The core error for an error answer (NetSuite's words in the message, no secrets)."""
    status = response.status_code
    body = _error_body(response)
    codes = body.codes if body else set()
    message = _message(body) or response.reason_phrase or f"HTTP {status}"
    code = next(iter(sorted(codes)), None)
    if status == httpx.codes.TOO_MANY_REQUESTS or codes & THROTTLE_CODES:
        # Never branch on the title ("Bad Request" even on 429, netsuite.md §3).
        return ThrottledError(
            message,
            retry_after=retry_after_seconds(response),
            system=SYSTEM,
            status=status,
            code=code or "CONCURRENCY_LIMIT_EXCEEDED",
        )
    if record is not None and status == httpx.codes.BAD_REQUEST:
        return InvalidRecordError(record[0], record[1], _field(body), message, system=SYSTEM)
    if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        return AuthenticationError(message, system=SYSTEM, status=status, code=code)
    if status == httpx.codes.NOT_FOUND:
        return NotFoundError(message, system=SYSTEM, status=status, code=code)
    if status == httpx.codes.CONFLICT:
        return ConflictError(message, system=SYSTEM, status=status, code=code)
    kind = TransientError if status >= httpx.codes.INTERNAL_SERVER_ERROR else UpstreamError
    return kind(message, system=SYSTEM, status=status, code=code)
