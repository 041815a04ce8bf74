"""The BILL v3 HTTP client: session, error mapping, paging, and the calls the plugin makes.

What it promises (shared/api/bill.md, by section):

- Sign-in with devKey + username + password + organizationId (§2); every later request sends the
  ``devKey`` and ``sessionId`` headers, never a secret in a URL (§2). The session is cached and
  renewed before 30 idle minutes (BILL ends it after 35, §2). On the invalid-session answer (401, or
  ``BDC_1109`` / ``BDC_1361`` whatever the status) it signs in again *once* and replays the request
  *once*; a second refusal raises :class:`~ml_connector.errors.SessionExpiredError`. Never a loop.
  The session id is saved (encrypted by the core, ``ConnectionContext.saved_session``) after each
  sign-in and reused by the next process, so a run after a crash costs no sign-in (BILL allows
  200 an hour per developer key, §4); a saved session BILL has ended is answered like any other.
  It is forgotten after the sign-out at close.
- Every error is classified by BILL's code first and the HTTP status second (§3, §8), onto the
  core's tree: ``BDC_1322`` / ``BDC_1144`` / 429 -> :class:`~ml_connector.errors.ThrottledError`
  (``BDC_1144`` waits until the next full hour), 5xx, ``BDC_1001`` / ``BDC_1002``, timeouts and
  dropped connections -> :class:`~ml_connector.errors.TransientError`, a 400/422 on a write ->
  :class:`~ml_connector.errors.InvalidRecordError` naming the record and the field from BILL's
  message, 404 ``BDC_1205`` -> :class:`~ml_connector.errors.NotFoundError`. The client retries
  nothing but the session: the engine owns backoff, so it can honour the concurrency cap.
- Lists send ``max`` (never BILL's disputed default, §4), follow ``nextPage`` until it is absent,
  null or empty, continue past an empty page that still has a ``nextPage``, and refuse a token
  that repeats.
- Messages and logs carry method, path, status, code and BILL's message, with any secret the
  client holds redacted; request headers and bodies are never logged.

Requests within one call are made one after another, so the engine's per-organisation slot count
bounds the requests in flight (bill.md §4: three).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

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
from ml_connector_bill.schemas import (
    IDEMPOTENCY_HEADER,
    SYSTEM,
    BillCredentials,
    BillSettings,
    WireBill,
    WireChartOfAccount,
    WireClassification,
    WireError,
    WireLogin,
    WireSubscription,
    WireVendor,
    dumps,
    loads,
)

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext, SessionKeeper

__all__ = [
    "SESSION_REFRESH_IDLE",
    "BillClient",
    "RecordRef",
    "bill_time",
    "quoted",
]

log = logging.getLogger("ml_connector_bill")

_Model = TypeVar("_Model", bound=BaseModel)

#: Codes that mean "sign in again" (bill.md §2; BDC_1361 is UNCONFIRMED, §8 says re-login once).
SESSION_CODES = frozenset({"BDC_1109", "BDC_1361"})
#: Rate-limit codes (bill.md §4): concurrent requests, and the hourly budget.
CONCURRENCY_CODE, HOURLY_CODE = "BDC_1322", "BDC_1144"
THROTTLE_CODES = frozenset({CONCURRENCY_CODE, HOURLY_CODE})
#: Wrong user/password, wrong developer key (bill.md §3; their status is UNCONFIRMED).
CREDENTIAL_CODES = frozenset({"BDC_1101", "BDC_1102"})
#: "System error occurred." / "Unknown error occurred." (bill.md §3).
SERVER_CODES = frozenset({"BDC_1001", "BDC_1002"})
#: Record not found; "API not supported" (a wrong path, which is a setup problem, not a record).
RECORD_NOT_FOUND, NO_SUCH_API = "BDC_1205", "BDC_1121"
#: Renew the session after this many idle seconds (BILL ends it after 35 minutes, bill.md §2).
SESSION_REFRESH_IDLE = 30 * 60.0

_URLS_KEPT = 32  # absolute URLs of the paths used most recently (ids make others one-off)
_FIELD_FIRST = re.compile(r"^\s*([A-Za-z_][\w.\[\]]*)\s*:\s*(.+)$", re.S)
_ENTITY_DATA = re.compile(r"Invalid entity data\.?\s*([A-Za-z_][\w.\[\]]*)", re.I)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RecordRef:
    """The domain record a write is about, so BILL's refusal can name it."""

    record_type: str
    record_id: str | None


def quoted(value: str) -> str:
    """A string filter value as BILL wants it: in double quotes (bill.md §4)."""
    return f'"{value}"'


def bill_time(value: datetime) -> str:
    """A time as a filter value: UTC with milliseconds and ``Z`` (bill.md §4)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _field_and_reason(message: str) -> tuple[str | None, str]:
    """BILL names the field first, ``email: must not be blank`` (bill.md §3, §8)."""
    match = _FIELD_FIRST.match(message)
    if match:
        return match.group(1), match.group(2).strip()
    match = _ENTITY_DATA.search(message)
    if match:
        return match.group(1).rstrip("."), message
    return None, message


def _until_next_hour(now: datetime) -> float:
    """BDC_1144: requests fail until the start of the next hour (bill.md §4)."""
    utc = now.astimezone(UTC)
    return 3600.0 - (utc.minute * 60 + utc.second + utc.microsecond / 1e6)


def _error_items(response: httpx.Response) -> list[WireError]:
    """BILL's error array (bill.md §3); tolerates a single object, or no JSON at all."""
    try:
        data = loads(response.content)
    except ValueError:
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return []
    items = []
    for item in data:
        if isinstance(item, dict):
            try:
                items.append(WireError.model_validate(item))
            except ValidationError:
                continue
    return items


class BillClient:
    """An async client for one BILL organization, shared by the hook calls of one side.

    Args:
        http: The HTTP client, built by ``ConnectionContext.http_client`` so tests and the demo
            can point it at the emulator; its base URL is the AP API (``…/connect``).
        settings: The connection's settings.
        credentials: The connection's credentials.
        clock: The current time (for ``BDC_1144``'s wait until the next hour).
        monotonic: Seconds for the session's idle timer.
        keeper: Where the session is saved for the next process (``ctx.saved_session``).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: BillSettings,
        credentials: BillCredentials,
        *,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        keeper: SessionKeeper | None = None,
    ) -> None:
        self._http = http
        self._urls: OrderedDict[str, httpx.URL] = OrderedDict()
        self.settings = settings
        self._credentials = credentials
        self._clock = clock
        self._monotonic = monotonic
        self._session: str | None = None
        self._last_used = 0.0
        self._login_lock = asyncio.Lock()
        self._keeper = keeper
        self._saved_checked = keeper is None
        #: How many times this client signed in (tests and the audit read it).
        self.logins = 0
        #: The signed-in user's id (``006…``), once signed in.
        self.user_id: str | None = None

    @classmethod
    def for_context(cls, ctx: ConnectionContext) -> BillClient:
        """A client for a connection side, through ``ctx.http_client`` (honours its transport).

        Raises:
            ConfigurationError: The context does not hold BILL settings and credentials.
        """
        settings, credentials = ctx.settings, ctx.credentials
        if not isinstance(settings, BillSettings):
            raise ConfigurationError(f"{SYSTEM}: settings must be BillSettings")
        if not isinstance(credentials, BillCredentials):
            raise ConfigurationError(f"{SYSTEM}: credentials must be BillCredentials")
        http = ctx.http_client(settings.api_url, headers={"accept": "application/json"})
        # A session a previous process left is reused (contract 1.2; absent from older cores).
        return cls(http, settings, credentials, keeper=getattr(ctx, "saved_session", None))

    # --- Session ---------------------------------------------------------------------------------

    @property
    def signed_in(self) -> bool:
        """Whether the client holds a session (it may have expired on BILL's side)."""
        return self._session is not None

    async def ensure_signed_in(self) -> None:
        """Sign in unless a session is held and fresh."""
        await self._current_session()

    async def login(self) -> WireLogin:
        """Sign in now, replacing any session held.

        Raises:
            AuthenticationError: BILL refused the credentials or the organization.
            ThrottledError: Too many sign-ins (BILL allows 200 an hour per developer key, §4).
            TransientError: BILL could not be reached.
        """
        async with self._login_lock:
            return await self._login_now()

    async def _login_now(self) -> WireLogin:
        body = {
            "username": self._credentials.username,
            "password": self._credentials.password.get_secret_value(),
            "organizationId": self.settings.organization_id,
            "devKey": self._credentials.dev_key.get_secret_value(),
        }
        response = await self._send("POST", "/v3/login", None, content=dumps(body))
        if not response.is_success:
            error = self._error(response, "POST", "/v3/login", None)
            if isinstance(error, ThrottledError | TransientError):
                raise error
            assert isinstance(error, UpstreamError)  # no record given, so never InvalidRecordError
            raise AuthenticationError(
                error.message, system=SYSTEM, status=error.status, code=error.code
            )
        data = self._json(response, "POST", "/v3/login")
        try:
            login = WireLogin.model_validate(data)
        except ValidationError:
            raise UpstreamError(
                "BILL answered the sign-in without a sessionId", system=SYSTEM, status=200
            ) from None
        if login.organizationId and login.organizationId != self.settings.organization_id:
            # Everything written would land in another organization's books: refuse.
            raise AuthenticationError(
                f"signed in to organization {login.organizationId}, not to "
                f"{self.settings.organization_id}",
                system=SYSTEM,
            )
        self._session = login.sessionId
        self._last_used = self._monotonic()
        self.user_id = login.userId
        self.logins += 1
        log.info("signed in to BILL organization %s", self.settings.organization_id)
        if self._keeper is not None:
            self._keeper.save(
                {"owner": self._owner(), "session_id": login.sessionId, "user_id": login.userId}
            )
        return login

    def _owner(self) -> dict[str, str]:
        """Whose session it is: a saved session of other settings is not reused."""
        return {
            "api_url": self.settings.api_url,
            "organization_id": self.settings.organization_id,
            "username": self._credentials.username,
        }

    def _resume_saved(self) -> str | None:
        """Take up the session a previous process saved, once per client; ``None`` if none.

        It is not checked here: if BILL ended it, the first call is refused as any expired
        session is, and the client signs in again once.
        """
        if self._saved_checked or self._keeper is None:
            return None
        self._saved_checked = True
        saved = self._keeper.load()
        if saved is None or saved.get("owner") != self._owner():
            return None
        session, user = saved.get("session_id"), saved.get("user_id")
        if not isinstance(session, str) or not session:
            return None
        self._session = session
        self.user_id = user if isinstance(user, str) else None
        self._last_used = self._monotonic()  # unknown: BILL says so if it ended the session
        log.info("reusing the BILL session a previous run left open")
        return session

    async def _current_session(self) -> str:
        session = self._session
        if session is not None and self._monotonic() - self._last_used < SESSION_REFRESH_IDLE:
            return session
        return await self._renew(session)

    async def _renew(self, stale: str | None) -> str:
        """Sign in again unless another call already replaced the ``stale`` session."""
        async with self._login_lock:
            if self._session is not None and self._session != stale:
                return self._session
            resumed = self._resume_saved() if self._session is None else None
            if resumed is not None:
                return resumed
            await self._login_now()
            assert self._session is not None
            return self._session

    async def logout(self) -> None:
        """End the session (``POST /v3/logout``); never raises."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            response = await self._send("POST", "/v3/logout", session)
        except Exception as exc:  # the session is gone either way
            log.debug("BILL logout failed: %s", type(exc).__name__)
            return
        # Forgotten once BILL ended it (or no longer knew it); else the next run reuses it.
        if self._keeper is not None and (response.is_success or self._session_refused(response)):
            self._keeper.clear()

    async def aclose(self) -> None:
        """Log out and close the HTTP client; never raises."""
        await self.logout()
        try:
            await self._http.aclose()
        except Exception as exc:  # closing twice, or a transport that is gone
            log.debug("closing the BILL HTTP client failed: %s", type(exc).__name__)

    # --- Requests --------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        secrets = (
            self._credentials.password.get_secret_value(),
            self._credentials.dev_key.get_secret_value(),
            self._session,
        )
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    async def _send(
        self,
        method: str,
        path: str,
        session: str | None,
        *,
        events: bool = False,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = {
            "content-type": "application/json",
            "devKey": self._credentials.dev_key.get_secret_value(),
        }
        if session is not None:
            sent["sessionId"] = session
        sent.update(headers or {})
        url = self.settings.events_url + path if events else self._url(path)
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, url, params=params, content=content, headers=sent
            )
        except httpx.TimeoutException:
            raise TransientError(f"{method} {path}: timed out", system=SYSTEM) from None
        except httpx.TransportError as exc:
            raise TransientError(f"{method} {path}: {type(exc).__name__}", system=SYSTEM) from None
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("%s %s -> %s (%.0f ms)", method, path, response.status_code, elapsed)
        return response

    def _url(self, path: str) -> httpx.URL:
        """``path`` on the API's base URL, parsed once: httpx parses a relative URL per request."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._http.build_request("GET", path).url
            if len(self._urls) > _URLS_KEPT:
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(path)
        return url

    @staticmethod
    def _session_refused(response: httpx.Response) -> bool:
        if response.status_code == 401:
            return True
        if response.is_success:
            return False
        return any(item.code in SESSION_CODES for item in _error_items(response))

    async def call(
        self,
        method: str,
        path: str,
        *,
        events: bool = False,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        record: RecordRef | None = None,
    ) -> Any:
        """Make one API request with the session, re-signing in once if BILL ended it.

        Args:
            method: The HTTP method.
            path: The path under the API's base URL, e.g. ``/v3/bills``.
            events: Call the webhook API (``…/connect-events``) instead of the AP API.
            params: Query parameters.
            body: A JSON body (Decimals are sent exactly).
            headers: Extra headers (e.g. the idempotency key).
            record: The record a write is about; a 400/422 then names it.

        Returns:
            The parsed JSON body (``None`` for an empty body).

        Raises:
            ConnectorError: The core's error for BILL's answer (see the module docstring).
        """
        content = None if body is None else dumps(body)
        session = await self._current_session()
        response = await self._send(
            method, path, session, events=events, params=params, content=content, headers=headers
        )
        if self._session_refused(response):
            log.info("BILL ended the session; signing in again once")
            session = await self._renew(session)
            response = await self._send(
                method,
                path,
                session,
                events=events,
                params=params,
                content=content,
                headers=headers,
            )
            if self._session_refused(response):
                # Never a second re-login: BDC_1109 again is SessionExpiredError, another 401
                # (a developer key BILL no longer accepts) is AuthenticationError.
                raise self._error(response, method, path, None)
        self._last_used = self._monotonic()
        if not response.is_success:
            raise self._error(response, method, path, record)
        return self._json(response, method, path)

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        if not response.content.strip():
            return None
        try:
            return loads(response.content)
        except ValueError:
            raise UpstreamError(
                f"{method} {path}: BILL answered with a body that is not JSON",
                system=SYSTEM,
                status=response.status_code,
            ) from None

    def _error(
        self, response: httpx.Response, method: str, path: str, record: RecordRef | None
    ) -> ConnectorError:
        """Map BILL's answer onto the core's errors: by code first, by status second (§3)."""
        status = response.status_code
        items = _error_items(response)
        codes = {item.code for item in items if item.code}
        first = items[0] if items else None
        code = first.code if first else None
        text = (first.message.strip() if first else "") or f"HTTP {status}"
        message = self._redact(text)
        where = f"{method} {path}"
        kwargs: dict[str, Any] = {"system": SYSTEM, "status": status, "code": code}
        if codes & THROTTLE_CODES or status == 429:
            # UNCONFIRMED (§8): the status of BDC_1322/BDC_1144 is undocumented, so the code
            # decides, whatever the status (4xx, 429, 503).
            now = self._clock()
            retry_after = retry_after_seconds(response, now)
            if retry_after is None and HOURLY_CODE in codes:
                retry_after = _until_next_hour(now)
            throttle_code = HOURLY_CODE if HOURLY_CODE in codes else (code or CONCURRENCY_CODE)
            kwargs["code"] = throttle_code
            return ThrottledError(f"{message} ({where})", retry_after=retry_after, **kwargs)
        if codes & SESSION_CODES:
            return SessionExpiredError(f"{message} ({where})", **kwargs)
        if status == 401 and not codes:
            return SessionExpiredError(f"{message} ({where})", **kwargs)
        if codes & CREDENTIAL_CODES or status in (401, 403):
            return AuthenticationError(f"{message} ({where})", **kwargs)
        if status >= 500 or codes & SERVER_CODES:
            return TransientError(f"{message} ({where})", **kwargs)
        if status == 404 or codes & {RECORD_NOT_FOUND, NO_SUCH_API}:
            return NotFoundError(f"{message} ({where})", **kwargs)
        if status == 409:
            return ConflictError(f"{message} ({where})", **kwargs)
        if status in (400, 422) and record is not None:
            field, reason = _field_and_reason(message)
            return InvalidRecordError(
                record.record_type, record.record_id, field, reason, system=SYSTEM
            )
        return UpstreamError(f"{message} ({where})", **kwargs)

    async def get_or_none(self, path: str, *, events: bool = False) -> Any:
        """GET one record; ``None`` when BILL says it does not exist (404 ``BDC_1205``).

        Raises:
            NotFoundError: The *path* is unknown (``BDC_1121``): a setup problem, not a record.
        """
        try:
            return await self.call("GET", path, events=events)
        except NotFoundError as exc:
            if exc.code == NO_SUCH_API:
                raise
            return None

    def _model(self, model: type[_Model], data: Any, what: str) -> _Model:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(whole object)"
            raise UpstreamError(
                f"BILL sent a {what} that is not as documented ({where}: {first['msg']})",
                system=SYSTEM,
            ) from None

    # --- Paging ----------------------------------------------------------------------------------

    async def list_page(
        self,
        path: str,
        *,
        filters: Sequence[str] = (),
        sort: str | None = None,
        page: str | None = None,
        events: bool = False,
    ) -> tuple[list[Any], str | None]:
        """One page of a list: its results and the next page's token (``None`` on the last).

        Always sends ``max`` (the docs disagree on the default, bill.md §4). A missing, null or
        empty ``nextPage`` ends the list (which one BILL sends is UNCONFIRMED, §8).
        """
        params = {"max": str(self.settings.page_size)}
        if filters:
            params["filters"] = ",".join(filters)
        if sort:
            params["sort"] = sort
        if page:
            params["page"] = page
        data = await self.call("GET", path, params=params, events=events)
        if isinstance(data, list):  # an unpaged array: everything at once
            return data, None
        results = data.get("results", []) if isinstance(data, dict) else None
        if results is None and isinstance(data, dict):
            results = []
        if not isinstance(data, dict) or not isinstance(results, list):
            raise UpstreamError(
                f"GET {path}: BILL sent a list without a results array", system=SYSTEM
            )
        token = data.get("nextPage")
        return results, token if isinstance(token, str) and token else None

    async def iterate(
        self,
        path: str,
        *,
        filters: Sequence[str] = (),
        sort: str | None = None,
        events: bool = False,
    ) -> AsyncIterator[Any]:
        """Every record of a list, page after page (an empty page with a token continues).

        Raises:
            UpstreamError: BILL handed out the same page token twice (it would never end).
        """
        token: str | None = None
        seen: set[str] = set()
        while True:
            results, token = await self.list_page(
                path, filters=filters, sort=sort, page=token, events=events
            )
            for item in results:
                yield item
            if token is None:
                return
            if token in seen:
                raise UpstreamError(f"GET {path}: BILL repeated a page token", system=SYSTEM)
            seen.add(token)

    async def list_all(
        self,
        path: str,
        *,
        filters: Sequence[str] = (),
        sort: str | None = None,
        events: bool = False,
    ) -> list[Any]:
        """Every record of a list."""
        return [
            item async for item in self.iterate(path, filters=filters, sort=sort, events=events)
        ]

    # --- Vendors ---------------------------------------------------------------------------------

    async def get_vendor(self, vendor_id: str) -> WireVendor | None:
        """``GET /v3/vendors/{id}``, ``None`` if BILL has no such vendor."""
        data = await self.get_or_none(f"/v3/vendors/{_segment(vendor_id)}")
        return None if data is None else self._model(WireVendor, data, "vendor")

    async def find_vendors(self, name: str) -> list[WireVendor]:
        """Vendors named ``name`` (case and spaces folded), oldest first.

        ``name:eq`` is the documented filter (bill.md §5). How a double quote inside a quoted
        value is escaped is not documented, nor whether a comma in one splits the filter list
        (it does for ``in``), so such a name is searched by its prefix before the first quote
        or comma (``name:sw``), or, with no prefix, among all vendors; the match is made here.
        """
        wanted = " ".join(name.casefold().split())
        prefix = re.split(r'[",]', name, maxsplit=1)[0].strip()
        if prefix == name.strip():
            filters = [f"name:eq:{quoted(prefix)}"]
        elif prefix:
            filters = [f"name:sw:{quoted(prefix)}"]
        else:
            filters = []
        found = await self.list_all("/v3/vendors", filters=filters, sort="createdTime:asc")
        vendors = [self._model(WireVendor, item, "vendor") for item in found]
        return [v for v in vendors if " ".join(v.name.casefold().split()) == wanted]

    async def create_vendor(self, body: Mapping[str, Any], record: RecordRef) -> WireVendor:
        """``POST /v3/vendors``."""
        data = await self.call("POST", "/v3/vendors", body=body, record=record)
        return self._model(WireVendor, data, "vendor")

    async def update_vendor(
        self, vendor_id: str, body: Mapping[str, Any], record: RecordRef
    ) -> WireVendor | None:
        """``PATCH /v3/vendors/{id}``, ``None`` if BILL has no such vendor."""
        try:
            data = await self.call(
                "PATCH", f"/v3/vendors/{_segment(vendor_id)}", body=body, record=record
            )
        except NotFoundError as exc:
            if exc.code == NO_SUCH_API:
                raise
            return None
        return self._model(WireVendor, data, "vendor")

    # --- Bills -----------------------------------------------------------------------------------

    async def get_bill(self, bill_id: str) -> WireBill | None:
        """``GET /v3/bills/{id}``, ``None`` if BILL has no such bill."""
        data = await self.get_or_none(f"/v3/bills/{_segment(bill_id)}")
        return None if data is None else self._model(WireBill, data, "bill")

    async def find_bills(self, vendor_id: str, invoice_number: str) -> list[WireBill]:
        """A vendor's bills with that invoice number, oldest first.

        Filtering on ``invoice.invoiceNumber`` is not documented (bill.md §5, §8), so the
        vendor's bills are listed and matched here.
        """
        wanted = invoice_number.strip()
        found = []
        async for item in self.iterate(
            "/v3/bills", filters=[f"vendorId:eq:{quoted(vendor_id)}"], sort="createdTime:asc"
        ):
            bill = self._model(WireBill, item, "bill")
            if (bill.invoice_number or "").strip() == wanted:
                found.append(bill)
        return found

    async def create_bill(self, body: Mapping[str, Any], record: RecordRef) -> WireBill:
        """``POST /v3/bills``."""
        data = await self.call("POST", "/v3/bills", body=body, record=record)
        return self._model(WireBill, data, "bill")

    async def replace_bill(
        self, bill_id: str, body: Mapping[str, Any], record: RecordRef
    ) -> WireBill:
        """``PUT /v3/bills/{id}``: lines without ids replace the old ones (bill.md §5)."""
        data = await self.call("PUT", f"/v3/bills/{_segment(bill_id)}", body=body, record=record)
        return self._model(WireBill, data, "bill")

    async def create_bills(
        self, bodies: Sequence[Mapping[str, Any]], record: RecordRef
    ) -> list[WireBill]:
        """``POST /v3/bills/bulk``: all or nothing, results in the order sent (bill.md §4)."""
        data = await self.call("POST", "/v3/bills/bulk", body=list(bodies), record=record)
        if isinstance(data, dict):  # tolerate a wrapped array
            data = data.get("results", data.get("bills"))
        if not isinstance(data, list):
            raise UpstreamError("BILL answered a bulk create without an array", system=SYSTEM)
        return [self._model(WireBill, item, "bill") for item in data]

    # --- Chart of accounts and classifications ---------------------------------------------------

    async def chart_of_accounts(self) -> list[WireChartOfAccount]:
        """Every chart-of-accounts entry, archived ones included."""
        found = await self.list_all("/v3/classifications/chart-of-accounts")
        return [self._model(WireChartOfAccount, item, "chart-of-accounts entry") for item in found]

    async def classifications(self, resource: str) -> list[WireClassification]:
        """Every value of one classification (``departments``, ``locations``, …).

        An organization without that classification answers 404; it then has none.
        """
        try:
            found = await self.list_all(f"/v3/classifications/{resource}")
        except NotFoundError:
            log.warning("BILL has no %s classification here; treating it as empty", resource)
            return []
        return [self._model(WireClassification, item, "classification") for item in found]

    async def create_chart_of_account(
        self, body: Mapping[str, Any], record: RecordRef
    ) -> WireChartOfAccount:
        """``POST /v3/classifications/chart-of-accounts``."""
        data = await self.call(
            "POST", "/v3/classifications/chart-of-accounts", body=body, record=record
        )
        return self._model(WireChartOfAccount, data, "chart-of-accounts entry")

    # --- Payments --------------------------------------------------------------------------------

    async def payments_page(
        self, filters: Sequence[str], sort: str, page: str | None
    ) -> tuple[list[Any], str | None]:
        """One page of ``GET /v3/payments`` as raw JSON objects (each is checked by the caller)."""
        return await self.list_page("/v3/payments", filters=filters, sort=sort, page=page)

    async def get_payment(self, payment_id: str) -> Any:
        """``GET /v3/payments/{id}`` as raw JSON, ``None`` if BILL has no such payment."""
        return await self.get_or_none(f"/v3/payments/{_segment(payment_id)}")

    # --- Webhook subscriptions (the connect-events API) ------------------------------------------

    async def session_details(self) -> Any:
        """``GET /v3/login/session``: organization and user of the session (bill.md §2)."""
        return await self.call("GET", "/v3/login/session")

    async def subscriptions(self) -> list[WireSubscription]:
        """Every webhook subscription of the organization."""
        found = await self.list_all("/v3/subscriptions", events=True)
        return [self._model(WireSubscription, item, "subscription") for item in found]

    async def get_subscription(self, subscription_id: str) -> WireSubscription | None:
        """One subscription, ``None`` if it is gone."""
        data = await self.get_or_none(f"/v3/subscriptions/{_segment(subscription_id)}", events=True)
        return None if data is None else self._model(WireSubscription, data, "subscription")

    async def create_subscription(
        self, body: Mapping[str, Any], idempotency_key: str
    ) -> WireSubscription:
        """``POST /v3/subscriptions``; the same key replays the first answer (bill.md §6)."""
        data = await self.call(
            "POST",
            "/v3/subscriptions",
            events=True,
            body=body,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        return self._model(WireSubscription, data, "subscription")

    async def update_subscription(
        self, subscription_id: str, body: Mapping[str, Any]
    ) -> WireSubscription:
        """``PATCH /v3/subscriptions/{id}`` with every field (bill.md §6)."""
        data = await self.call(
            "PATCH", f"/v3/subscriptions/{_segment(subscription_id)}", events=True, body=body
        )
        return self._model(WireSubscription, data, "subscription")

    async def delete_subscription(self, subscription_id: str) -> None:
        """``DELETE /v3/subscriptions/{id}``; a subscription already gone is fine."""
        try:
            await self.call("DELETE", f"/v3/subscriptions/{_segment(subscription_id)}", events=True)
        except NotFoundError as exc:
            if exc.code == NO_SUCH_API:
                raise

    async def rotate_security_key(self, subscription_id: str, idempotency_key: str) -> SecretStr:
        """A new signing key for a subscription (shown only in this answer, bill.md §6).

        The reference writes ``security_key``, guides write ``security-key`` (UNCONFIRMED, §8):
        the first is tried, the second on "API not supported".

        Raises:
            UpstreamError: BILL answered without a key.
        """
        headers = {IDEMPOTENCY_HEADER: idempotency_key}
        base = f"/v3/subscriptions/{_segment(subscription_id)}"
        try:
            data = await self.call("POST", f"{base}/security_key", events=True, headers=headers)
        except NotFoundError as exc:
            if exc.code == RECORD_NOT_FOUND:
                raise
            data = await self.call("POST", f"{base}/security-key", events=True, headers=headers)
        key = data.get("securityKey") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            raise UpstreamError("BILL rotated the signing key but sent none back", system=SYSTEM)
        return SecretStr(key)
