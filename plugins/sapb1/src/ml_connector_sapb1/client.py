"""The HTTP client for the SAP Business One Service Layer (facts: shared/api/sapb1.md).

What it takes care of, so :mod:`ml_connector_sapb1.plugin` only translates records:

- **Sessions** (§2): ``POST /Login {CompanyDB, UserName, Password}`` answers the ``B1SESSION``
  cookie (equal to ``SessionId``) and a ``ROUTEID`` cookie for a load balancer. ``B1SESSION``'s
  ``Set-Cookie`` has no ``Path``, so the cookies are read from the answer by hand and sent as an
  explicit ``Cookie`` header on every request (httpx's cookie jar is emptied after every
  answer, so it never sends a stale one). The session is reused for the client's life; each
  session holds a B1 licence seat, so it is saved (``ctx.saved_session``) after every sign-in:
  a run killed before its ``POST /Logout`` leaves a session the next run reuses or signs out,
  instead of one more seat taken until ``SessionTimeout`` idle minutes pass. A session idle for
  longer than its ``SessionTimeout`` is dead on the server: the client signs in again before
  it sends anything.
- **Expiry** (§2, §8): any 401 (the documented one is code 301, as an int in v1 and a string in
  v2) signs in again once, shared by concurrent callers, and replays the request once. A write
  that must not be blind-retried (``POST /VendorPayments``) is not replayed: the client signs in
  again and raises :class:`~ml_connector.errors.SessionExpiredError`, for the caller to look the
  write up before it sends it again. A failed login (any answer but 200) is an
  :class:`~ml_connector.errors.AuthenticationError`, never retried (a retried bad password can
  lock the B1 user).
- **Errors** (§3): the v1 body ``{"error":{"code":<int>,"message":{"lang","value"}}}`` and the v2
  body ``{"error":{"code":"<string>","message":"<string>"}}`` both, and HTML pages from a load
  balancer, mapped onto :mod:`ml_connector.errors`. ``-5002`` (a business validation, 400) and
  every other 400 on a write is an :class:`~ml_connector.errors.InvalidRecordError` naming the
  record; 404 (``-2028``) on a read by key is "none".
- **Paging** (§4): ``Prefer: odata.maxpagesize=N``, then ``odata.nextLink`` (v1) or
  ``@odata.nextLink`` (v2), resolved against the service root (a link may be relative,
  ``PurchaseInvoices?$skip=20``, or a path, ``/b1s/v1/…``); a link to another host is refused
  rather than sent the session cookie. A link that dropped the query's ``$filter`` or
  ``$orderby`` gets them back.
- **Dates in filters** (§6, §8): v1 takes the quoted form (``UpdateDate ge '2024-01-01'``,
  CONFIRMED); for v2 the form is UNCONFIRMED, so the client tries the OData v4 literal first
  and, on a 400, the quoted form, which it then keeps.
- **TLS**: a certificate the client cannot verify is a configuration problem (the company's own
  CA needs ``ca_bundle``), not a transient failure, so it is reported as one.

Messages never carry secrets: the password goes only into the login body, the session id only
into the ``Cookie`` header, and neither is logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from ml_connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRecordError,
    NotFoundError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.http import retry_after_seconds

from ml_connector_sapb1.schemas import SYSTEM, dumps, loads

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ml_connector.context import SessionKeeper

    from ml_connector_sapb1.schemas import Credentials, Settings

__all__ = [
    "SESSION_COOKIE",
    "SapB1Client",
    "odata_string",
    "parse_error",
    "tls_verify",
]

log = logging.getLogger("ml_connector_sapb1")

Record = tuple[str, str | None]
"""``(record type, record id)``: what a request is about, so its errors can name it."""

SESSION_COOKIE = "B1SESSION"
ROUTE_COOKIE = "ROUTEID"
#: ``SessionTimeout`` when the login answer does not say (b1s.conf's default, SAP-UG §6.1).
DEFAULT_SESSION_MINUTES = 30
#: The cheapest signed-in read, to learn whether a saved session is still alive.
PROBE = ("ChartOfAccounts", {"$top": "1", "$select": "Code"})
#: Left as they are in query values: OData literals and paths read them as written.
_QUERY_SAFE = "'(),:/"
_TAGS = re.compile(r"<[^>]+>")
_PROPERTY = re.compile(r"[Pp]roperty '([A-Za-z_][\w.]*)'")
_CERTIFICATE = re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", re.IGNORECASE)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def odata_string(value: str) -> str:
    """A string literal for ``$filter`` (OData doubles single quotes)."""
    return "'" + value.replace("'", "''") + "'"


def tls_verify(settings: Settings) -> ssl.SSLContext | bool:
    """What ``verify`` the HTTP client gets: the CA bundle's context, or a bool.

    The context is built here, so a missing or unreadable bundle is reported at sign-in naming
    the setting, not as a failed connection.

    Raises:
        ConfigurationError: The bundle cannot be read as PEM certificates.
    """
    path = settings.ca_bundle_path()
    if path is None:
        return settings.verify_tls
    if not path.is_file():
        raise ConfigurationError(f"{SYSTEM}: ca_bundle {str(path)!r} is not a file")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{SYSTEM}: ca_bundle {str(path)!r} is not a PEM file of CA certificates "
            f"({type(exc).__name__})"
        ) from None


# --- Error bodies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorInfo:
    """What an error answer says: B1's code (as text, ``"-5002"``) and its message."""

    code: str | None
    message: str


def parse_error(response: httpx.Response) -> ErrorInfo | None:
    """The Service Layer's error body, v1 or v2 shape; ``None`` if the body is not one.

    v1: ``{"error":{"code":-5002,"message":{"lang":"en-us","value":"…"}}}``; v2:
    ``{"error":{"code":"-5002","message":"…"}}`` (sapb1.md §3). Code and message are read in
    either form, whichever version answered.
    """
    try:
        body = loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    message = error.get("message")
    if isinstance(message, dict):
        message = message.get("value")
    text = " ".join(str(message).split()) if message is not None else ""
    return ErrorInfo(None if code is None or code == "" else str(code).strip(), text)


def _snippet(response: httpx.Response) -> str:
    """An HTML or text body in a few words (a proxy's error page, sapb1.md §3 note)."""
    text = _TAGS.sub(" ", response.text)
    return " ".join(text.split())[:200]


# --- The client --------------------------------------------------------------------------------


class SapB1Client:
    """One connection side's session with one Service Layer and company.

    Args:
        http: Built with ``ConnectionContext.http_client(settings.service_url + "/")``, so tests
            and the demo reach the emulator; this client closes it.
        settings: Where and how to connect.
        credentials: The B1 user.
        keeper: Where the session is saved for the next process (``ctx.saved_session``).
        clock: "Now", for the session's idle timeout.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        credentials: Credentials,
        *,
        keeper: SessionKeeper | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.http = http
        self.settings = settings
        self.credentials = credentials
        self.keeper = keeper
        self.now = clock
        root = urlsplit(settings.service_url)
        self._origin = f"{root.scheme}://{root.netloc}"
        self._root = settings.service_url.rstrip("/")
        self._session_id: str | None = None
        self._route_id: str | None = None
        self._timeout = timedelta(minutes=DEFAULT_SESSION_MINUTES)
        self._last_used: datetime | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._saved_checked = False
        self._closed = False
        #: How ``$filter`` writes a date: ``quoted`` (v1, CONFIRMED) or, first on v2, the
        #: OData v4 literal (UNCONFIRMED which one v2 takes, sapb1.md §8).
        self.date_style = "quoted" if settings.version == "v1" else "v4"
        #: The Service Layer's ``Version`` from the login answer (for the connection check).
        self.server_version: str | None = None
        #: Whether the server serves ``PaymentDrafts`` (learnt on the first 404).
        self.serves_payment_drafts = True
        self.logins = 0

    @property
    def owner(self) -> dict[str, str]:
        """Whose sessions this client opens: a saved session of anyone else is not used."""
        return {
            "service_url": self.settings.service_url,
            "company_db": self.settings.company_db,
            "user": self.credentials.username,
        }

    @property
    def expires_at(self) -> datetime | None:
        """When the session ends if left idle."""
        return None if self._last_used is None else self._last_used + self._timeout

    # --- Session -----------------------------------------------------------------------------

    async def sign_in(self) -> None:
        """Sign in (the first time, reusing the session a previous run saved, if alive).

        Raises:
            AuthenticationError: The Service Layer refused the login.
            TransientError: The Service Layer could not be reached.
            ConfigurationError: Its TLS certificate is not trusted.
        """
        async with self._lock:
            if self._session_id is not None:
                return
            if not self._saved_checked:
                reused = await self._resume_saved()
                self._saved_checked = True
                if reused:
                    return
            await self._login()

    async def _renew(self, seen: int) -> None:
        """Sign in again after the session of generation ``seen`` was refused (401).

        Concurrent callers share one renewal: whoever comes second finds a newer generation.
        """
        async with self._lock:
            if self._generation != seen and self._session_id is not None:
                return
            log.info("%s: the session expired; signing in again", SYSTEM)
            self._session_id = None
            await self._login()

    async def _ensure_session(self) -> int:
        """A live session's generation, signing in first if there is none or it idled out."""
        idle_out = (
            self._last_used is not None
            and self._session_id is not None
            and self.now() - self._last_used >= self._timeout
        )
        if idle_out:
            # Dead on the server already (idle past SessionTimeout): a new one before sending,
            # rather than a 401 round trip (and no write sent into a dead session).
            seen = self._generation
            log.info("%s: the session idled past its timeout; signing in again", SYSTEM)
            await self._renew(seen)
        if self._session_id is None:
            await self.sign_in()
        return self._generation

    async def _login(self) -> None:
        settings, credentials = self.settings, self.credentials
        body = {
            "CompanyDB": settings.company_db,
            "UserName": credentials.username,
            "Password": credentials.password.get_secret_value(),
        }
        response = await self._raw("POST", f"{self._root}/Login", content=dumps(body), cookie=None)
        who = f"user {credentials.username} on company {settings.company_db}"
        if response.status_code != 200:
            info = parse_error(response)
            text = (info.message if info else _snippet(response)) or f"HTTP {response.status_code}"
            # sapb1.md §8: any answer but 200 is a refused login; never retried.
            raise AuthenticationError(
                f"the Service Layer refused the login of {who}: {self._scrub(text)}",
                system=SYSTEM,
                status=response.status_code,
                code=info.code if info else None,
            )
        answer = self._json_object(response, "Login")
        cookies = _set_cookies(response)
        session_id = cookies.get(SESSION_COOKIE) or answer.get("SessionId")
        if not isinstance(session_id, str) or not session_id:
            raise UpstreamError(
                "the login answer carries no B1SESSION cookie and no SessionId",
                system=SYSTEM,
                status=200,
            )
        self._session_id = session_id
        self._route_id = cookies.get(ROUTE_COOKIE)
        self._timeout = _session_timeout(answer.get("SessionTimeout"))
        version = answer.get("Version")
        self.server_version = str(version) if version is not None else None
        self._last_used = self.now()
        self._generation += 1
        self.logins += 1
        self._save()

    async def close(self) -> None:
        """Log out (``POST /Logout``: the session's licence seat) and close; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._session_id is not None and await self._logout(self._cookie()):
                self._forget()
        except Exception:  # closing must never fail a run
            log.debug("%s: logout failed", SYSTEM, exc_info=True)
        finally:
            self._session_id = None
            try:
                await self.http.aclose()
            except Exception:
                log.debug("%s: closing the HTTP client failed", SYSTEM, exc_info=True)

    async def _logout(self, cookie: str | None) -> bool:
        """``POST /Logout``; whether the session is gone (204, or 401: unknown to the server)."""
        try:
            response = await self._raw("POST", f"{self._root}/Logout", content=b"", cookie=cookie)
        except (UpstreamError, ConfigurationError):
            return False
        return response.is_success or response.status_code == 401

    # --- The saved session ---------------------------------------------------------------------

    def _save(self) -> None:
        if self.keeper is not None:
            self.keeper.save(
                {
                    "owner": self.owner,
                    "session_id": self._session_id,
                    "route_id": self._route_id,
                    "timeout_minutes": self._timeout.total_seconds() / 60,
                }
            )

    def _forget(self) -> None:
        if self.keeper is not None:
            self.keeper.clear()

    async def _resume_saved(self) -> bool:
        """Reuse the session a previous process saved, or sign it out; whether it was reused."""
        saved = self.keeper.load() if self.keeper is not None else None
        if not saved:
            return False
        if saved.get("owner") != self.owner:
            # Saved for another server, company or user (the settings changed): not a session
            # to use or end here. The sign-in that follows saves over it.
            log.info("%s: the saved session belongs to other settings; not used", SYSTEM)
            return False
        session_id, route_id = saved.get("session_id"), saved.get("route_id")
        if not isinstance(session_id, str) or not session_id:
            self._forget()
            return False
        cookie = _cookie_header(session_id, route_id if isinstance(route_id, str) else None)
        try:
            probe = await self._raw(
                "GET", self._url(PROBE[0], PROBE[1]), cookie=cookie, accept_json=True
            )
        except UpstreamError:
            probe = None
        if probe is not None and probe.is_success:
            log.info("%s: reusing the session a previous run left open", SYSTEM)
            self._session_id = session_id
            self._route_id = route_id if isinstance(route_id, str) else None
            self._timeout = _session_timeout(saved.get("timeout_minutes"))
            self._last_used = self.now()
            self._generation += 1
            return True
        # 401: the server no longer knows it (it holds no seat). Anything else: end it to be
        # sure, so that it frees its seat now rather than after SessionTimeout.
        if (probe is not None and probe.status_code == 401) or await self._logout(cookie):
            log.info("%s: the session a previous run left open is ended", SYSTEM)
            self._forget()
        return False

    # --- Requests ------------------------------------------------------------------------------

    def _cookie(self) -> str | None:
        if self._session_id is None:
            return None
        return _cookie_header(self._session_id, self._route_id)

    def _url(self, target: str, params: Mapping[str, str] | None = None) -> str:
        """An absolute URL for a path below the service root, a ``/b1s/…`` path or a URL.

        Raises:
            UpstreamError: ``target`` is a URL on another host (a next link pointing away would
                otherwise get the session cookie).
        """
        if "://" in target:
            parts = urlsplit(target)
            if f"{parts.scheme}://{parts.netloc}".lower() != self._origin.lower():
                raise UpstreamError(
                    f"refused to follow a link to another server ({parts.scheme}://"
                    f"{parts.netloc}): the session belongs to {self._origin}",
                    system=SYSTEM,
                )
            url = target
        elif target.startswith("/"):
            url = self._origin + target
        else:
            url = f"{self._root}/{target}"
        if params:
            query = "&".join(f"{k}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items())
            url += ("&" if "?" in url else "?") + query
        return url

    async def _raw(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        cookie: str | None,
        accept_json: bool = True,
        prefer: str | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"} if accept_json else {}
        if cookie is not None:
            headers["Cookie"] = cookie
        if content is not None:
            headers["Content-Type"] = "application/json"
        if prefer is not None:
            headers["Prefer"] = prefer
        try:
            response = await self.http.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException:
            raise TransientError(
                f"{method} {urlsplit(url).path}: timed out", system=SYSTEM
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        finally:
            # The cookies are ours to send (sapb1.md §8): nothing stays in httpx's jar.
            self.http.cookies.clear()
        log.debug("%s: %s %s -> %s", SYSTEM, method, urlsplit(url).path, response.status_code)
        return response

    def _unreachable(self, exc: httpx.HTTPError) -> Exception:
        """A network failure (no answer), without the request (which may hold the password)."""
        text = str(exc)
        chain: BaseException | None = exc
        certificate = False
        while chain is not None:
            if isinstance(chain, ssl.SSLCertVerificationError) or _CERTIFICATE.search(str(chain)):
                certificate = True
                break
            chain = chain.__cause__ or chain.__context__
        if certificate:
            return ConfigurationError(
                f"{SYSTEM}: the TLS certificate of {self._origin} is not trusted: set "
                "ca_bundle to the PEM file of the CA that signed it (an on-premise Service "
                "Layer often has the company's own CA), or verify_tls=false on a test server"
            )
        return TransientError(
            f"cannot reach {self._origin}: {type(exc).__name__}"
            + (f" ({self._scrub(text)[:160]})" if text else ""),
            system=SYSTEM,
        )

    async def request(
        self,
        method: str,
        target: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        record: Record | None = None,
        replay: bool = True,
        paged: bool = False,
    ) -> httpx.Response:
        """Send one request in the session, signing in again once after a 401.

        Args:
            method: The HTTP method.
            target: A path below the service root (``PurchaseInvoices(12)``), a ``/b1s/…``
                path, or a URL on the same server (a next link).
            params: Query options, encoded as OData reads them (``%20`` for spaces).
            body: A JSON body (Decimals exact).
            record: What the request is about, to name it in errors.
            replay: Replay the request after signing in again on a 401. ``False`` for writes
                that must be looked up before they are sent again.
            paged: Ask for ``settings.page_size`` records per page.

        Returns:
            The successful (2xx) answer.

        Raises:
            SessionExpiredError: A 401 on a request that is not replayed (signed in again).
            UpstreamError: Any other failure, as the matching subclass.
        """
        url = self._url(target, params)
        content = None if body is None else dumps(body)
        prefer = f"odata.maxpagesize={self.settings.page_size}" if paged else None
        seen = await self._ensure_session()
        response = await self._raw(
            method, url, content=content, cookie=self._cookie(), prefer=prefer
        )
        if response.status_code == 401:
            await self._renew(seen)
            if not replay:
                raise SessionExpiredError(
                    f"{method} {urlsplit(url).path}: the session had expired; signed in again, "
                    "not sent again (look it up first)",
                    system=SYSTEM,
                    status=401,
                )
            response = await self._raw(
                method, url, content=content, cookie=self._cookie(), prefer=prefer
            )
            if response.status_code == 401:
                raise AuthenticationError(
                    "the Service Layer answered 401 (no session) right after a new login",
                    system=SYSTEM,
                    status=401,
                )
        self._last_used = self.now()  # any answer in the session keeps it alive
        if response.status_code >= 300:
            raise self._error(response, record)
        return response

    # --- Answers -------------------------------------------------------------------------------

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            kind = response.headers.get("Content-Type") or "no content type"
            raise UpstreamError(
                f"{what}: expected a JSON object, got {kind}: {_snippet(response)}",
                system=SYSTEM,
                status=response.status_code,
            )
        return body

    def _error(self, response: httpx.Response, record: Record | None) -> Exception:
        status = response.status_code
        info = parse_error(response)
        text = self._scrub(info.message if info and info.message else _snippet(response))
        text = text or response.reason_phrase or f"HTTP {status}"
        code = info.code if info else None
        where = f"{record[0]} {record[1]}: " if record and record[1] else ""
        message = f"{where}{text}" + (f" (B1 code {code})" if code else "")
        kwargs: dict[str, Any] = {"system": SYSTEM, "status": status, "code": code}
        if status == 429 or (status == 503 and response.headers.get("Retry-After")):
            # No throttling is documented (§4); a 429, or a 503 that says when to come back.
            return ThrottledError(message, retry_after=retry_after_seconds(response), **kwargs)
        if status in (401, 403):
            return AuthenticationError(message, **kwargs)
        if status == 404:
            return NotFoundError(message, **kwargs)
        if status in (409, 412):  # 412 -2039: the ETag no longer matches (§3)
            return ConflictError(message, **kwargs)
        if status >= 500 or status == 408:
            return TransientError(message, **kwargs)
        if status in (400, 422) and record is not None:
            # -5002 is B1's generic business validation (never a session problem, §3); any
            # refused write names the record; the field where B1's message names a property.
            match = _PROPERTY.search(text)
            return InvalidRecordError(
                record[0],
                record[1],
                match.group(1) if match else None,
                f"{text}" + (f" (B1 code {code})" if code else ""),
                system=SYSTEM,
            )
        return UpstreamError(message, **kwargs)

    def _scrub(self, text: str) -> str:
        for secret in (self.credentials.password.get_secret_value(), self._session_id):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # --- Reading -------------------------------------------------------------------------------

    async def get_entity(
        self, entity_set: str, key: int | str, *, record: Record | None = None
    ) -> dict[str, Any] | None:
        """One record by its key; ``None`` if the Service Layer has none (404, ``-2028``)."""
        literal = str(key) if isinstance(key, int) else quote(odata_string(key), safe="'")
        try:
            response = await self.request("GET", f"{entity_set}({literal})", record=record)
        except NotFoundError:
            return None
        return self._json_object(response, entity_set)

    async def page(
        self, target: str, params: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a collection, and the link to the next (``None`` after the last).

        Args:
            target: The entity set (with ``params``), or a next link from an earlier page.
            params: The query options of the first page.
        """
        response = await self.request("GET", target, params=params, paged=True)
        body = self._json_object(response, urlsplit(target).path.rsplit("/", 1)[-1] or target)
        rows = body.get("value")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UpstreamError(
                f"{target.split('?', 1)[0]}: the answer has no 'value' list of records",
                system=SYSTEM,
                status=response.status_code,
            )
        link = body.get("@odata.nextLink") or body.get("odata.nextLink")
        if link is not None and not isinstance(link, str):
            raise UpstreamError("the next link is not a string", system=SYSTEM)
        return rows, link or None

    def follow(self, link: str, options: Mapping[str, str]) -> str:
        """A next link with the query options it must keep (a link that lost them gets them)."""
        query = dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))
        missing = {k: v for k, v in options.items() if k not in query}
        if not missing:
            return link
        log.info("%s: the next link lost %s; adding it back", SYSTEM, ", ".join(missing))
        return self._url(link, missing)

    async def collect(
        self, entity_set: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every record of a collection, page by page (for small, stable lists)."""
        options = dict(params or {})
        rows, link = await self.page(entity_set, options)
        seen = {link} if link else set()
        while link is not None:
            more, link = await self.page(self.follow(link, options))
            rows += more
            if link is not None:
                if link in seen:
                    raise UpstreamError(
                        f"{entity_set}: the Service Layer answered the same next link twice",
                        system=SYSTEM,
                    )
                seen.add(link)
        return rows

    def date_literal(self, day: date) -> str:
        """``day`` for ``$filter`` on a date property, in the form this server takes."""
        if self.date_style == "v4":
            return f"{day.isoformat()}T00:00:00Z"
        return odata_string(day.isoformat())

    async def first_page_by_date(
        self, entity_set: str, day: date | None, options: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], str | None, dict[str, str]]:
        """The first page of ``entity_set`` changed on or after ``day`` (``UpdateDate ge``).

        On v2 the OData v4 literal is tried first; a 400 switches this client to the quoted
        form for good (sapb1.md §8). Returns the rows, the next link and the options used.
        """
        params = dict(options)
        if day is not None:
            params["$filter"] = f"UpdateDate ge {self.date_literal(day)}"
        try:
            rows, link = await self.page(entity_set, params)
        except UpstreamError as exc:
            if day is None or exc.status != 400 or self.date_style != "v4":
                raise
            log.info(
                "%s: the OData v4 date literal was refused (%s); using the quoted form",
                SYSTEM,
                exc.message,
            )
            self.date_style = "quoted"
            params["$filter"] = f"UpdateDate ge {self.date_literal(day)}"
            rows, link = await self.page(entity_set, params)
        return rows, link, params

    # --- Writing -------------------------------------------------------------------------------

    async def create(
        self, entity_set: str, body: Mapping[str, Any], *, record: Record
    ) -> dict[str, Any]:
        """``POST`` a new record, never sent twice (a 401 raises SessionExpiredError).

        A ``201`` carries the record; a ``204`` (``Prefer: return-no-content``) only its
        ``Location``, whose key is returned as ``{"DocEntry": n}``.
        """
        response = await self.request(
            "POST", entity_set, body=dict(body), record=record, replay=False
        )
        if response.status_code == 204:
            match = re.search(r"\((\d+)\)\s*$", response.headers.get("Location", ""))
            if match is None:
                raise UpstreamError(
                    f"{entity_set}: created, but the answer has no record and no Location",
                    system=SYSTEM,
                    status=204,
                )
            return {"DocEntry": int(match.group(1))}
        return self._json_object(response, entity_set)


def _cookie_header(session_id: str, route_id: str | None) -> str:
    parts = [f"{SESSION_COOKIE}={session_id}"]
    if route_id:
        parts.append(f"{ROUTE_COOKIE}={route_id}")
    return "; ".join(parts)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """The cookies an answer sets, read by hand: B1SESSION's Set-Cookie has no Path (§2)."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        pair = header.split(";", 1)[0]
        name, sep, value = pair.partition("=")
        if sep and name.strip():
            found[name.strip()] = value.strip()
    return found


def _session_timeout(value: Any) -> timedelta:
    """``SessionTimeout`` (idle minutes, 30 or e.g. 1500 on a hosted tenant: sapb1.md §2)."""
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        minutes = DEFAULT_SESSION_MINUTES
    if not minutes > 0:
        minutes = DEFAULT_SESSION_MINUTES
    return timedelta(minutes=minutes)
