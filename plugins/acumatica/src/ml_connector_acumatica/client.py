"""The HTTP client for Acumatica's contract-based REST API (facts: acumatica.md).

What it takes care of, so :mod:`ml_connector_acumatica.plugin` only translates records:

- **Sign-in**: OAuth 2.0 password grant at the identity server,
  refreshed before expiry, or the legacy cookie session; on a 401 the client signs in again once
  (concurrent callers share that one sign-in) and replays the call once. Sessions are logged out
  on :meth:`AcumaticaClient.close`, so licence API-user slots are not leaked (§2).
- **Sessions that survive a crash**: each session is saved (cookies or tokens, encrypted by the
  core) after sign-in; a run after a ``kill -9`` reuses it or signs it out before it signs in,
  so killed runs do not pile up in the licence's API-user slots. A sign-in that finds every slot
  taken ("API Login Limit") says so (``ConnectionContext.report_wait``) and waits for one at
  most ``login_wait_seconds``, then fails with an :class:`~ml_connector.errors.AuthenticationError`
  that says why.
- **Versioned paths**: ``<instance>/entity/<Name>/<Version>/<Entity>``; a 404 (or redirect)
  there is checked against ``GET /entity`` and reported as a settings problem when the pinned
  version is not served (§1, §8).
- **Errors** mapped onto :mod:`ml_connector.errors` (§3), naming the record and the field.
- **Paging** with ``$top``/``$skip`` that loses nothing when records change between pages
  (:meth:`AcumaticaClient.read_window`).
- **Long-running actions** (``202`` + status URL) polled to completion while the session's other
  requests wait, since Acumatica fails them meanwhile (§5 "Actions").
- **Slow answers**: the licence queues requests and delays them past half its per-minute budget
  (§4); the read timeout (:data:`HTTP_TIMEOUT`) outlasts the queue's ten minutes, so a slow
  answer is waited for rather than retried. A 429 (declined) becomes a
  :class:`~ml_connector.errors.ThrottledError` with its Retry-After, for the engine to wait.
- **Values wrapped** as ``{"value": …}`` in every body sent (:func:`~.schemas.wrap`); system
  fields (``id``, ``rowNumber``, ``delete``, …) bare (§5).

Messages never carry secrets: they are built from statuses and Acumatica's texts, and any echo
of the password or client secret in those texts is blanked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from ml_connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRecordError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UpstreamError,
)
from ml_connector.http import retry_after_seconds
from ml_connector_acumatica.schemas import (
    ErrorBody,
    dumps,
    field_errors,
    loads,
    served_endpoints,
    wrap,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from ml_connector.context import SessionKeeper
    from ml_connector_acumatica.schemas import AcumaticaCredentials, AcumaticaSettings

__all__ = ["SYSTEM", "AcumaticaClient", "Record", "odata_datetimeoffset", "odata_string"]

log = logging.getLogger("ml_connector_acumatica")

SYSTEM = "acumatica"

Record = tuple[str, str | None]
"""``(record type, record id)``: what a request is about, so its errors can name it."""

#: How long before an access token's expiry it is refreshed.
REFRESH_MARGIN = timedelta(seconds=60)
#: The cookie session's idle timeout, as commonly quoted (UNCONFIRMED, acumatica.md §2).
COOKIE_IDLE = timedelta(minutes=20)
#: OAuth scopes: REST access, plus a refresh token (acumatica.md §2).
OAUTH_SCOPE = "api offline_access"
#: Seconds between sign-in attempts while waiting for a free licence slot, when Acumatica's
#: "API Login Limit" comes without Retry-After (the wait as a whole: ``login_wait_seconds``).
LOGIN_LIMIT_POLL = 15.0
#: What a sign-in waits for while the licence's API users are all signed in (acumatica.md §4).
LICENCE_SLOT = "a free Acumatica API-user licence slot (API Login Limit)"
#: The cheapest signed-in read, to learn whether a saved session is still alive.
PROBE = "Account?$top=1&$select=AccountCD"
#: Delays between polls of a running action's status URL; the last one repeats.
POLL_DELAYS = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)
#: The longest a long-running action (e.g. releasing a check) is waited for.
ACTION_TIMEOUT = timedelta(minutes=10)
#: How often one paged read may start over from the first record before it gives up.
MAX_RESTARTS = 3
#: The longest a request waits in the instance's request queue before Acumatica declines it
#: (429): over the licence's concurrency limit requests queue, past half the per-minute budget
#: each is delayed, and "the application that makes a request should stay connected and wait
#: for the response" (acumatica.md §4, IDG "License Restrictions for API Users").
QUEUE_WAIT = 600.0
#: How long an answer may take once the request is out: the queue's ten minutes plus the 30 s
#: a request may take to be processed. A shorter read timeout would give up on answers that
#: are slow but coming, and each retry would join the queue again, adding load.
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=QUEUE_WAIT + 30.0, write=30.0, pool=30.0)

# Texts Acumatica puts in error bodies (acumatica.md §2; CSC VerifyResponseAsync).
_LOGIN_LIMIT = re.compile(r"API Login Limit|license limit|licen[cs]e.*exceeded", re.IGNORECASE)
_BAD_LOGIN = re.compile(
    r"Invalid credentials|locked out|account is disabled|password|not authorized", re.IGNORECASE
)
_BUSINESS = re.compile(
    r"PXException|PXSetPropertyException|PXRowPersistingException|PXOuterException|"
    r"PXInvalidOperationException|OutcomeEntityHasErrorsException|PXArgumentException",
)
#: Left as they are in query values: OData reads them literally; spaces go as %20, not "+".
_QUERY_SAFE = ",/'()"
#: A long-running action still holds the session (acumatica.md §5; wording UNCONFIRMED).
_BUSY = re.compile(
    r"not (?:been )?completed yet|operation is (?:still )?in progress", re.IGNORECASE
)
_QUOTED = re.compile(r"'([^']{1,60})'")
#: The body could not be read as the entity (e.g. a bare value where ``{"value": …}`` belongs):
#: ASP.NET's and Json.NET's wording; a retry would fail the same way.
_UNREADABLE = re.compile(
    r"JsonSerializationException|JsonReaderException|Error converting value|"
    r"could not be (?:converted|deserialized)|request is invalid",
    re.IGNORECASE,
)
_TAGS = re.compile(r"<[^>]+>")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def odata_string(value: str) -> str:
    """A string literal for ``$filter`` (OData doubles single quotes)."""
    return "'" + value.replace("'", "''") + "'"


def odata_datetimeoffset(value: datetime) -> str:
    """A ``datetimeoffset'…'`` literal in UTC, to the millisecond (acumatica.md §6)."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return f"datetimeoffset'{text}'"


# --- Sessions ----------------------------------------------------------------------------------


class _Session:
    """A signed-in state and how to renew it; subclasses speak OAuth or cookies.

    Each session holds one of the licence's API-user slots until it is signed out or times out
    (acumatica.md §2, §4). So that a run killed before its sign-out does not leave a slot taken
    for the next runs, what reuses or ends the session (cookies, tokens) is kept in the client's
    :class:`~ml_connector.context.SessionKeeper` after every sign-in; the next client reuses it
    if the instance still knows it, else signs it out, before it opens a new one.
    """

    mode: str = ""

    def __init__(self, client: AcumaticaClient) -> None:
        self.client = client
        self.generation = 0
        self.expires_at: datetime | None = None
        self._lock = asyncio.Lock()
        self._saved_checked = False

    async def sign_in(self) -> None:
        """Sign in (again) from scratch; the first time, a saved session is reused if alive."""
        async with self._lock:
            if not self._saved_checked:
                reused = await self._resume_saved()
                self._saved_checked = True  # not before: a failed look is tried again
                if reused:
                    self.generation += 1
                    self._keep()
                    return
            await self._sign_in_waiting()
            self.generation += 1
            self._keep()

    async def renew(self, seen: int) -> None:
        """Renew the session of generation ``seen``, after a 401 or ahead of a known expiry.

        Concurrent callers share one renewal: whoever comes second finds a newer generation.
        """
        async with self._lock:
            if self.generation != seen:
                return  # someone else renewed it meanwhile
            log.info("acumatica: renewing the %s session", self.mode)
            await self._renew()
            self.generation += 1
            self._keep()

    async def ensure_fresh(self) -> None:
        """Renew ahead of a known expiry (OAuth tokens); cookies slide and need nothing."""

    def headers(self) -> dict[str, str]:
        """Headers that authenticate a request."""
        return {}

    async def sign_out(self) -> None:
        """End the session on the server; never raises.

        The saved copy is forgotten only once the instance confirmed the end (or no longer knew
        the session): after a failed logout the next run still finds it, and ends it.
        """
        if self.generation == 0:
            return  # never signed in: nothing holds a licence slot
        if await self._logout(self.headers()):
            self._forget()

    async def _logout(self, headers: Mapping[str, str]) -> bool:
        """``POST entity/auth/logout``; whether the session is gone. Never raises."""
        try:
            response = await self.client.http.post(
                "entity/auth/logout",
                # IIS answers 411 to a bodiless POST without Content-Length (acumatica.md §2).
                content=b"",
                headers={**headers, "Content-Length": "0"},
            )
        except Exception as exc:  # a logout that fails must not fail the run's end
            log.debug("acumatica: logout failed: %s", type(exc).__name__)
            return False
        log.debug("acumatica: logout -> %s", response.status_code)
        # 401: the instance does not know the session (any more), so it holds no slot either.
        return response.is_success or response.status_code == 401

    async def _sign_in(self) -> None:
        raise NotImplementedError

    async def _renew(self) -> None:
        await self._sign_in_waiting()

    async def _sign_in_waiting(self) -> None:
        """:meth:`_sign_in`, waiting for a free licence slot for at most ``login_wait_seconds``.

        While the licence's API users are all signed in, Acumatica refuses new sign-ins ("API
        Login Limit") until one signs out or times out (20 idle minutes, acumatica.md §2). The
        wait is reported before every pause, so that it is seen on screen and in the log, and
        ends in an error that says why: a silent wait looks like a hung run.

        Raises:
            AuthenticationError: No slot came free within ``login_wait_seconds``.
        """
        client = self.client
        limit = client.settings.login_wait_seconds
        waited = 0.0
        while True:
            try:
                await self._sign_in()
                return
            except ThrottledError as exc:
                if waited >= limit:
                    raise AuthenticationError(
                        f"gave up after waiting {waited:.0f} s for {LICENCE_SLOT}: "
                        f"{exc.message}. End the sessions that hold the slots on the License "
                        "Monitoring Console (SM604000), or raise the login_wait_seconds setting",
                        system=SYSTEM,
                        status=exc.status,
                    ) from None
                client.report_wait(LICENCE_SLOT, waited, limit)
                pause = min(exc.retry_after or LOGIN_LIMIT_POLL, limit - waited)
                await client._sleep(pause)
                waited += pause

    # --- The saved session --------------------------------------------------------------------

    def _saved_state(self) -> dict[str, Any]:
        """What reuses or ends this session from another process (mode-specific)."""
        return {}

    def _keep(self) -> None:
        """Save the session just opened or renewed, replacing any saved before."""
        keeper = self.client.keeper
        if keeper is not None:
            keeper.save({"mode": self.mode, "owner": self.client.owner, **self._saved_state()})

    def _forget(self) -> None:
        keeper = self.client.keeper
        if keeper is not None:
            keeper.clear()

    async def _resume_saved(self) -> bool:
        """Reuse the session a previous process saved, or sign it out; whether it was reused."""
        keeper = self.client.keeper
        saved = keeper.load() if keeper is not None else None
        if saved is None:
            return False
        if saved.get("owner") != self.client.owner:
            # Saved for another instance, tenant or user (the settings changed): not a session
            # to use or end here. The sign-in that follows saves over it.
            log.info("acumatica: the saved session belongs to other settings; not used")
            return False
        reused = await self._adopt(saved) if saved.get("mode") == self.mode else None
        if reused:
            log.info("acumatica: reusing the %s session a previous run left open", self.mode)
            return True
        self._drop()
        # False: the instance no longer knows it. None: unusable, but it may hold a slot.
        if reused is False or await self._logout(_saved_credentials(saved)):
            log.info("acumatica: the session a previous run left open is ended")
            self._forget()
        return False

    async def _adopt(self, saved: Mapping[str, Any]) -> bool | None:
        """Take ``saved`` up: ``True`` if it works, ``False`` if the instance ended it."""
        return None

    def _drop(self) -> None:
        """Forget what :meth:`_adopt` took up."""

    async def _probe(self) -> int:
        """The status of the cheapest signed-in read (one GL account number)."""
        client = self.client
        response = await client._send("GET", f"{client.base_path}/{PROBE}", None)
        return response.status_code


def _saved_credentials(saved: Mapping[str, Any]) -> dict[str, str]:
    """Headers that present a saved session (a bearer token, cookies) to its instance."""
    headers: dict[str, str] = {}
    token = saved.get("access_token")
    if isinstance(token, str) and token:
        headers["Authorization"] = f"Bearer {token}"
    cookies = [
        f"{c['name']}={c['value']}"
        for c in saved.get("cookies") or ()
        if isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("name", "value"))
    ]
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    return headers


class _OAuthSession(_Session):
    """OAuth 2.0 resource-owner password grant at ``<instance>/identity/connect/token``."""

    mode = "oauth"

    def __init__(self, client: AcumaticaClient) -> None:
        super().__init__(client)
        self.access_token: str | None = None
        self.refresh_token: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    async def ensure_fresh(self) -> None:
        if self.expires_at is not None and self.client.now() >= self.expires_at - REFRESH_MARGIN:
            await self.renew(self.generation)

    def _client_fields(self) -> dict[str, str]:
        credentials, settings = self.client.credentials, self.client.settings
        if not credentials.client_id or credentials.client_secret is None:
            raise ConfigurationError(
                "acumatica: auth_mode oauth needs the credentials client_id and client_secret "
                "(a connected application on SM303010), or use auth_mode cookie"
            )
        client_id = credentials.client_id.strip()
        if "@" not in client_id:
            client_id = f"{client_id}@{settings.tenant}"  # the tenant picks the data (§1)
        elif client_id.rsplit("@", 1)[1].casefold() != settings.tenant.casefold():
            raise ConfigurationError(
                f"acumatica: the client id's tenant {client_id.rsplit('@', 1)[1]!r} differs "
                f"from the tenant setting {settings.tenant!r}"
            )
        return {
            "client_id": client_id,
            "client_secret": credentials.client_secret.get_secret_value(),
        }

    async def _sign_in(self) -> None:
        credentials = self.client.credentials
        await self._grant(
            {
                "grant_type": "password",
                **self._client_fields(),
                "username": credentials.username,
                "password": credentials.password.get_secret_value(),
                "scope": OAUTH_SCOPE,
            }
        )

    async def _renew(self) -> None:
        if await self._refresh():
            return
        await self._sign_in_waiting()

    async def _refresh(self) -> bool:
        """Renew with the refresh token (the same session, so the same licence slot)."""
        if not self.refresh_token:
            return False
        try:
            await self._grant(
                {
                    "grant_type": "refresh_token",
                    **self._client_fields(),
                    "refresh_token": self.refresh_token,
                }
            )
        except (AuthenticationError, ThrottledError):
            # Refused, or the session had ended and no slot is free for it: a new sign-in
            # follows, and waits for a slot if it must.
            log.info("acumatica: refresh token refused; signing in with the password")
            return False
        return True

    async def _grant(self, form: dict[str, str]) -> None:
        client = self.client
        try:
            response = await client.http.post("identity/connect/token", data=form)
        except httpx.HTTPError as exc:
            raise client.unreachable(exc) from exc
        log.debug("acumatica: token (%s) -> %s", form["grant_type"], response.status_code)
        if response.status_code != 200:
            raise client.login_error(response, "the identity server refused the token request")
        body = client.json_of(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError("the token answer has no access_token", system=SYSTEM)
        self.access_token = token
        self.refresh_token = body.get("refresh_token") or self.refresh_token
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self.expires_at = client.now() + timedelta(seconds=lifetime)

    async def sign_out(self) -> None:
        if self.access_token:
            await super().sign_out()
        self.access_token = self.refresh_token = None

    def _saved_state(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    async def _adopt(self, saved: Mapping[str, Any]) -> bool | None:
        token, refresh = saved.get("access_token"), saved.get("refresh_token")
        if not isinstance(token, str) or not token:
            return None
        self.access_token = token
        self.refresh_token = refresh if isinstance(refresh, str) and refresh else None
        self.expires_at = _parse_time(saved.get("expires_at"))
        fresh = self.expires_at is not None and self.client.now() < self.expires_at - REFRESH_MARGIN
        if fresh:
            status = await self._probe()
            if 200 <= status < 300:
                return True
            if status != 401:
                return None  # the token may still be good: end the session to be sure
        # An expired or refused token: its refresh token goes on with the same session.
        try:
            return await self._refresh()
        except UpstreamError:
            return None  # an answer that says nothing of the session: end it to be sure

    def _drop(self) -> None:
        self.access_token = self.refresh_token = None
        self.expires_at = None


class _CookieSession(_Session):
    """The legacy ``POST /entity/auth/login`` session; the cookie jar is httpx's."""

    mode = "cookie"

    async def _sign_in(self) -> None:
        client = self.client
        credentials, settings = client.credentials, client.settings
        body: dict[str, str] = {
            "name": credentials.username,
            "password": credentials.password.get_secret_value(),
            "tenant": settings.tenant,
        }
        if settings.branch:
            body["branch"] = settings.branch
        try:
            response = await client.http.post(
                "entity/auth/login",
                content=dumps(body),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise client.unreachable(exc) from exc
        log.debug("acumatica: login -> %s", response.status_code)
        if response.status_code not in (200, 204):
            raise client.login_error(response, "the login was refused")
        self.expires_at = client.now() + COOKIE_IDLE

    async def sign_out(self) -> None:
        await super().sign_out()
        self.client.http.cookies.clear()

    def _saved_state(self) -> dict[str, Any]:
        # The names are UNCONFIRMED (acumatica.md §8): the whole jar is the session.
        return {
            "cookies": [
                {"name": c.name, "value": c.value, "domain": c.domain, "path": c.path}
                for c in self.client.http.cookies.jar
            ]
        }

    async def _adopt(self, saved: Mapping[str, Any]) -> bool | None:
        cookies = [c for c in saved.get("cookies") or () if isinstance(c, dict)]
        if not cookies:
            return None
        jar = self.client.http.cookies
        for cookie in cookies:
            jar.set(
                str(cookie.get("name")),
                str(cookie.get("value")),
                domain=str(cookie.get("domain") or ""),
                path=str(cookie.get("path") or "/"),
            )
        status = await self._probe()
        if 200 <= status < 300:
            self.expires_at = self.client.now() + COOKIE_IDLE
            return True
        return False if status == 401 else None

    def _drop(self) -> None:
        self.client.http.cookies.clear()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- The action gate ---------------------------------------------------------------------------


class _ActionGate:
    """Ordinary requests share the session; a long-running action has it to itself.

    While an action runs, Acumatica fails the session's other requests (acumatica.md §5), so an
    action waits for requests in flight to finish and holds new ones back until it is done.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._requests = 0
        self._action = False
        self._actions_waiting = 0

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._action and not self._actions_waiting)
            self._requests += 1
        try:
            yield
        finally:
            async with self._cond:
                self._requests -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def action(self) -> AsyncIterator[None]:
        async with self._cond:
            self._actions_waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._action and not self._requests)
            finally:
                self._actions_waiting -= 1
            self._action = True
        try:
            yield
        finally:
            async with self._cond:
                self._action = False
                self._cond.notify_all()


# --- Paging state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PageState:
    skip: int
    anchors: tuple[str, ...]
    restarts: int


def _encode_token(state: _PageState, tag: str) -> str:
    raw = json.dumps(
        {"s": state.skip, "a": list(state.anchors), "r": state.restarts, "t": tag},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, tag: str) -> _PageState:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        state = _PageState(int(data["s"]), tuple(str(a) for a in data["a"]), int(data["r"]))
        same_query = data["t"] == tag
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise UpstreamError("invalid page token", system=SYSTEM) from None
    if not same_query:
        raise UpstreamError("the page token belongs to another query", system=SYSTEM)
    return state


# --- The client --------------------------------------------------------------------------------


class AcumaticaClient:
    """One connection side's access to one Acumatica instance, tenant and endpoint.

    Args:
        http: The HTTP client, built by ``ConnectionContext.http_client(settings.instance_url)``
            so tests can route it to the emulator; this client owns and closes it.
        settings: Where and how to connect.
        credentials: Who to sign in as.
        clock: The current time (token expiry); tests share the emulator's clock.
        sleep: How to wait between polls of a running action and for a licence slot; tests pass
            one that does not wait.
        keeper: Where the session is saved for the next process (``ctx.saved_session``).
        report_wait: Told what a sign-in waits for (``ctx.report_wait``); without it, the wait
            is logged here.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: AcumaticaSettings,
        credentials: AcumaticaCredentials,
        *,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        keeper: SessionKeeper | None = None,
        report_wait: Callable[[str, float, float], None] | None = None,
    ) -> None:
        self.http = http
        self.settings = settings
        self.credentials = credentials
        self.now = clock
        self._sleep = sleep
        self.keeper = keeper
        self._report_wait = report_wait
        self.session: _Session = (
            _OAuthSession(self) if settings.auth_mode == "oauth" else _CookieSession(self)
        )
        self._gate = _ActionGate()
        self._served: list[str] | None = None
        secrets = [credentials.password.get_secret_value()]
        if credentials.client_secret is not None:
            secrets.append(credentials.client_secret.get_secret_value())
        self._secrets = [s for s in secrets if s]

    @property
    def base_path(self) -> str:
        """The endpoint's path below the instance URL, e.g. ``entity/Default/24.200.001``."""
        return f"entity/{self.settings.endpoint_name}/{self.settings.endpoint_version}"

    @property
    def owner(self) -> dict[str, str]:
        """Whose sessions this client opens: a saved session of anyone else is not reused."""
        return {
            "instance": self.settings.instance_url,
            "tenant": self.settings.tenant,
            "user": self.credentials.username,
        }

    def report_wait(self, what: str, waited: float, limit: float) -> None:
        """Say that a call waits for ``what`` (``waited`` seconds so far, at most ``limit``)."""
        if self._report_wait is not None:
            self._report_wait(what, waited, limit)
        else:
            log.warning("acumatica: waiting for %s: %.0f s of at most %.0f s", what, waited, limit)

    # --- Session -----------------------------------------------------------------------------

    async def sign_in(self) -> None:
        """Sign in from scratch; the first time, reuse the saved session if it is still alive.

        Raises:
            AuthenticationError: Credentials or tenant refused, or no licence slot came free
                within ``login_wait_seconds``.
            ConfigurationError: The OAuth credentials are incomplete or name another tenant.
            TransientError: The instance could not be reached.
        """
        await self.session.sign_in()

    async def close(self) -> None:
        """Log out and close the HTTP client; never raises."""
        try:
            await self.session.sign_out()
        finally:
            try:
                await self.http.aclose()
            except Exception:  # closing must never fail a run
                log.debug("acumatica: closing the HTTP client failed", exc_info=True)

    # --- Reading -----------------------------------------------------------------------------

    async def served_endpoints(self) -> list[str]:
        """``Name/Version`` of every endpoint the instance serves (``GET /entity``), cached."""
        if self._served is None:
            self._served = served_endpoints(await self.endpoint_listing())
        return self._served

    async def endpoint_listing(self) -> Any:
        """The raw ``GET /entity`` answer (build versions and endpoints)."""
        response = await self.request("GET", str(self.http.base_url.join("entity")))
        listing = self.json_of(response)
        self._served = served_endpoints(listing)
        return listing

    async def list_page(
        self,
        entity: str,
        *,
        filter: str | None = None,
        expand: Sequence[str] = (),
        top: int,
        skip: int = 0,
    ) -> list[dict[str, Any]]:
        """One ``$top``/``$skip`` slice of a list (a bare JSON array, acumatica.md §4)."""
        params = {"$top": str(top), "$skip": str(skip)}
        if filter:
            params["$filter"] = filter
        if expand:
            params["$expand"] = ",".join(expand)
        response = await self.request("GET", entity, params=params)
        rows = self.json_of(response)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UpstreamError(
                f"the {entity} list is not a JSON array of records", system=SYSTEM, status=200
            )
        return rows

    async def list_all(
        self, entity: str, *, filter: str | None = None, expand: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every record of a list, page by page until a short page (for small, stable lists)."""
        rows: list[dict[str, Any]] = []
        size = self.settings.page_size
        while True:
            page = await self.list_page(
                entity, filter=filter, expand=expand, top=size, skip=len(rows)
            )
            rows += page
            if len(page) < size:
                return rows

    async def get(
        self, entity: str, *keys: str, expand: Sequence[str] = (), record: Record | None = None
    ) -> dict[str, Any] | None:
        """A record by its key fields (or ``id``); ``None`` if the instance has none.

        A key GET of a missing record answers 500 ``NoEntitySatisfiesTheConditionException``,
        not 404 (acumatica.md §3); both mean "none".
        """
        path = "/".join([entity, *(quote(k, safe="") for k in keys)])
        params = {"$expand": ",".join(expand)} if expand else None
        try:
            response = await self.request("GET", path, params=params, record=record)
        except NotFoundError:
            return None
        body = self.json_of(response)
        if not isinstance(body, dict):
            raise UpstreamError(f"the {entity} answer is not a record", system=SYSTEM)
        return body

    async def read_window(
        self,
        entity: str,
        *,
        filter: str,
        expand: Sequence[str],
        key: Callable[[dict[str, Any]], str],
        page_size: int,
        token: str | None,
        tag: str,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a filtered list, robust to records that change between pages.

        ``$skip`` counts positions, so when a record before the current position leaves the
        filtered set (paid, edited past the window's end, deleted), every later record moves
        back and a plain ``$skip`` would pass over one. So each page after the first starts a
        few positions early (the overlap) and continues after the last record of the previous
        page that is still there (its *anchors*). If none of them is found, more records moved
        than the overlap covers, and the read starts over from the first position; repeats are
        harmless (the engine deduplicates), losses are not. The order only has to be stable;
        Acumatica lists in key order (UNCONFIRMED, acumatica.md §4 documents no $orderby).

        Args:
            entity: The entity to list.
            filter: The ``$filter`` expression.
            expand: Detail and linked entities to include.
            key: A record's unique key (e.g. its ReferenceNbr).
            page_size: Records per page.
            token: ``None`` for the first page, else the previous page's token.
            tag: Identifies the query (e.g. its window); a token from another query is refused.

        Returns:
            The page's records that were not on an earlier page, and the next token (``None``
            after the last page).

        Raises:
            UpstreamError: The list kept moving faster than the read could follow.
        """
        overlap = max(2, page_size // 5)
        state = _PageState(0, (), 0) if token is None else _decode_token(token, tag)
        while True:
            start = max(0, state.skip - overlap) if state.anchors else state.skip
            top = page_size + (state.skip - start)
            rows = await self.list_page(entity, filter=filter, expand=expand, top=top, skip=start)
            keys = [key(row) for row in rows]
            fresh = self._after_anchor(rows, keys, state.anchors)
            if fresh is None and start > 0:
                if state.restarts >= MAX_RESTARTS:
                    raise UpstreamError(
                        f"the {entity} list changed too fast to page through; try again later",
                        system=SYSTEM,
                    )
                log.info("acumatica: %s list shifted past the overlap; reading it again", entity)
                state = _PageState(0, (), state.restarts + 1)
                continue
            fresh = rows if fresh is None else fresh
            if len(rows) < top:
                return fresh, None
            next_state = _PageState(start + len(rows), tuple(keys[-overlap:]), state.restarts)
            return fresh, _encode_token(next_state, tag)

    @staticmethod
    def _after_anchor(
        rows: list[dict[str, Any]], keys: list[str], anchors: tuple[str, ...]
    ) -> list[dict[str, Any]] | None:
        """The rows after the last anchor still present.

        ``None`` if no anchor is present, or if they appear out of order (the list's order is
        not stable).
        """
        if not anchors:
            return rows
        position = {k: i for i, k in enumerate(keys)}
        found = [position[a] for a in anchors if a in position]
        if not found or found != sorted(found):
            return None
        return rows[found[-1] + 1 :]

    # --- Writing -----------------------------------------------------------------------------

    async def put(
        self,
        entity: str,
        fields: Mapping[str, Any],
        *,
        expand: Sequence[str] = (),
        record: Record | None = None,
    ) -> dict[str, Any]:
        """Create or update a record (``PUT`` is an upsert, acumatica.md §5); fields wrapped."""
        params = {"$expand": ",".join(expand)} if expand else None
        response = await self.request("PUT", entity, params=params, body=fields, record=record)
        body = self.json_of(response)
        if not isinstance(body, dict):
            raise UpstreamError(f"the {entity} PUT answer is not a record", system=SYSTEM)
        return body

    async def invoke(
        self, entity: str, action: str, keys: Mapping[str, Any], *, record: Record | None = None
    ) -> None:
        """Run an action (e.g. ``ReleaseCheck``) on one record and wait until it is done.

        An action answers 204 when done, or 202 with a ``Location`` status URL that answers
        202 while it runs and 204 when done (acumatica.md §5 "Actions"). The session's other
        requests wait meanwhile.

        Raises:
            InvalidRecordError: Acumatica refused the action for this record.
            TransientError: The action did not finish within :data:`ACTION_TIMEOUT`.
        """
        async with self._gate.action():
            response = await self.request(
                "POST", f"{entity}/{action}", body={"entity": wrap(keys), "parameters": {}},
                record=record, gated=False, wrapped=False,
            )  # fmt: skip
            if response.status_code != 202:
                return
            location = response.headers.get("Location")
            if not location:
                raise UpstreamError(
                    f"{action} answered 202 without a Location", system=SYSTEM, status=202
                )
            status_url = str(response.request.url.join(location))
            deadline = self.now() + ACTION_TIMEOUT
            for attempt in itertools.count():
                await self._sleep(POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)])
                polled = await self.request("GET", status_url, record=record, gated=False)
                if polled.status_code != 202:
                    return
                if self.now() > deadline:
                    break
            raise TransientError(f"{action} is still running after {ACTION_TIMEOUT}", system=SYSTEM)

    # --- The request pipeline ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        record: Record | None = None,
        gated: bool = True,
        wrapped: bool = True,
    ) -> httpx.Response:
        """Send one request to the endpoint, signed in, replayed once after a 401.

        Args:
            method: The HTTP method.
            path: Below the endpoint (``Bill/Bill/000159``), or an absolute URL.
            params: Query options; encoded with ``%20`` for spaces (OData style).
            body: A record to send; wrapped into ``{"value": …}`` unless ``wrapped`` is false.
            record: What the request is about, to name it in errors.
            gated: Wait while a long-running action holds the session.
            wrapped: Whether ``body`` still needs wrapping.

        Returns:
            The successful response (2xx).

        Raises:
            UpstreamError: Any failure, as the matching subclass.
        """
        url = path if "://" in path else f"{self.base_path}/{path}"
        if params:
            url += "?" + "&".join(f"{k}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items())
        content = None if body is None else dumps(wrap(body) if wrapped else body)
        async with self._gate.request() if gated else _no_gate():
            await self.session.ensure_fresh()
            seen = self.session.generation
            response = await self._send(method, url, content)
            if response.status_code == 401:
                await self.session.renew(seen)
                response = await self._send(method, url, content)
                if response.status_code == 401:
                    raise AuthenticationError(
                        "Acumatica answered 401 (not signed in) right after a new sign-in",
                        system=SYSTEM,
                        status=401,
                    )
        if response.status_code >= 300:  # redirects are not followed: one means trouble
            raise await self._failure(response, record)
        return response

    async def _send(self, method: str, url: str, content: str | None) -> httpx.Response:
        headers = {"Accept": "application/json", **self.session.headers()}
        if self.settings.branch:
            headers["PX-CbApiBranch"] = self.settings.branch  # acumatica.md §1
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self.http.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        log.debug("acumatica: %s %s -> %s", method, response.request.url.path, response.status_code)
        return response

    # --- Errors ------------------------------------------------------------------------------

    def json_of(self, response: httpx.Response) -> Any:
        """The body as JSON (Decimals for numbers).

        Raises:
            UpstreamError: The body is not JSON (an HTML page, a proxy's answer).
        """
        try:
            return loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamError(
                f"expected JSON from {response.request.url.path}, got "
                f"{response.headers.get('Content-Type') or 'no content type'}: "
                f"{self._snippet(response)}",
                system=SYSTEM,
                status=response.status_code,
            ) from None

    def unreachable(self, exc: httpx.HTTPError) -> TransientError:
        """A network failure, without the request (which may hold a password)."""
        return TransientError(
            f"cannot reach {self.settings.instance_url}: {type(exc).__name__}", system=SYSTEM
        )

    def login_error(self, response: httpx.Response, what: str) -> Exception:
        """A failed login or token request, mapped: throttled, refused, or transient."""
        status = response.status_code
        text = self._body_text(response)
        if status == 429 and not re.search(r"API Login Limit", text, re.IGNORECASE):
            # The instance's request queue declined the sign-in itself (acumatica.md §4).
            return ThrottledError(
                f"{what}: declined by the licence's request limits ({text or status})",
                retry_after=retry_after_seconds(response, self.now()) or LOGIN_LIMIT_POLL,
                system=SYSTEM,
                status=status,
            )
        if status == 429 or _LOGIN_LIMIT.search(text):
            return ThrottledError(
                f"{what}: the licence's API-user limit is reached ({text or status}); "
                "sessions that were not logged out hold slots until they expire",
                retry_after=retry_after_seconds(response, self.now()) or LOGIN_LIMIT_POLL,
                system=SYSTEM,
                status=status,
            )
        if "PXUndefinedCompanyException" in text:
            return AuthenticationError(
                f"{what}: tenant {self.settings.tenant!r} is not known to this instance",
                system=SYSTEM,
                status=status,
            )
        if status in (400, 401, 403) or _BAD_LOGIN.search(text):
            return AuthenticationError(f"{what}: {text or status}", system=SYSTEM, status=status)
        if status >= 500:
            return TransientError(f"{what}: {text or status}", system=SYSTEM, status=status)
        return UpstreamError(f"{what}: {text or status}", system=SYSTEM, status=status)

    async def _failure(self, response: httpx.Response, record: Record | None) -> Exception:
        status = response.status_code
        # An unknown endpoint may answer 404, a redirect, or a 500 page (acumatica.md §1, §8):
        # ask the instance which endpoints it serves before blaming the record.
        endpoint_path = f"/{self.base_path}/" in response.request.url.path
        redirected = 300 <= status < 400
        suspicious = redirected or status == 404 or (status == 500 and not _error_body(response))
        if endpoint_path and suspicious:
            problem = await self.endpoint_problem()
            if problem is not None:
                return ConfigurationError(f"acumatica: {problem}")
        if status == 404:
            return NotFoundError(
                f"not found: {response.request.url.path}", system=SYSTEM, status=404
            )
        if redirected:
            return UpstreamError(
                f"redirected to {response.headers.get('Location')}: is the endpoint available?",
                system=SYSTEM,
                status=status,
            )
        return self._error(response, record)

    async def endpoint_problem(self) -> str | None:
        """Why the pinned endpoint cannot answer, or ``None`` if the instance serves it."""
        try:
            served = await self.served_endpoints()
        except UpstreamError:
            return None
        if self.settings.endpoint in served:
            return None
        return (
            f"endpoint version {self.settings.endpoint} not served by this instance; "
            f"it serves: {', '.join(served) or 'nothing'}"
        )

    def _error(self, response: httpx.Response, record: Record | None) -> Exception:
        status = response.status_code
        text = self._body_text(response)
        if status == 429 or (_LOGIN_LIMIT.search(text) and status >= 400):
            return ThrottledError(
                f"throttled by the licence limits: {text or 'HTTP 429'}",
                retry_after=retry_after_seconds(response, self.now()),
                system=SYSTEM,
                status=status,
            )
        if status == 401:
            return AuthenticationError("not signed in", system=SYSTEM, status=401)
        if status == 403:
            return AuthenticationError(
                f"the API user lacks rights to the form behind {response.request.url.path}",
                system=SYSTEM,
                status=403,
            )
        if status == 412:
            return ConflictError(f"precondition failed: {text}", system=SYSTEM, status=412)
        if status == 422:
            return self._validation_error(response, record)
        if status == 400:
            return self._bad_request(response, record, text)
        if status == 500:
            return self._server_error(response, record, text)
        if status in (502, 503, 504) or status > 500:
            return TransientError(text or f"HTTP {status}", system=SYSTEM, status=status)
        return UpstreamError(text or f"HTTP {status}", system=SYSTEM, status=status)

    def _validation_error(self, response: httpx.Response, record: Record | None) -> Exception:
        try:
            body = loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        errors = field_errors(body)
        top = body.get("error") if isinstance(body, dict) else None
        reasons = [f"{path}: {self._scrub(message)}" for path, message in errors]
        reason = "; ".join(reasons) or self._scrub(str(top or "validation failed"))
        if top and errors:
            reason = f"{self._scrub(str(top))} {reason}"
        field = errors[0][0] if errors else None
        if record is None:
            return UpstreamError(f"validation failed: {reason}", system=SYSTEM, status=422)
        return InvalidRecordError(record[0], record[1], field, reason, system=SYSTEM)

    def _bad_request(self, response: httpx.Response, record: Record | None, text: str) -> Exception:
        """400: the request could not be read (a body that does not bind, a bad ``$filter``).

        A body Acumatica cannot bind is answered with ASP.NET's ``modelState`` naming the
        fields (UNCONFIRMED for bare values, where ``{"value": …}`` belongs: the client never
        sends them, and the emulator refuses them so).
        """
        body = _error_body(response)
        errors = body.binding_errors() if body else []
        field = errors[0][0] if errors else None
        reason = f"refused as invalid: {text}"
        if record is None:
            return UpstreamError(reason, system=SYSTEM, status=400)
        return InvalidRecordError(*record, field, reason, system=SYSTEM)

    def _server_error(
        self, response: httpx.Response, record: Record | None, text: str
    ) -> Exception:
        body = _error_body(response)
        kind = body.text() if body else ""
        if "NoEntitySatisfiesTheCondition" in kind:
            return NotFoundError(text, system=SYSTEM, status=500)
        if body is not None and _UNREADABLE.search(kind):
            # The body was refused as unreadable: the same body fails the same way again.
            if record is None:
                return UpstreamError(f"refused as invalid: {text}", system=SYSTEM, status=500)
            return InvalidRecordError(*record, None, f"refused as invalid: {text}", system=SYSTEM)
        if _BUSY.search(kind):
            # An action of this session (e.g. a release whose answer was lost) is still
            # running; the same request succeeds once it is done.
            return TransientError(text, system=SYSTEM, status=500)
        if "PXUndefinedCompanyException" in kind:
            return AuthenticationError(
                f"tenant {self.settings.tenant!r} is not known to this instance",
                system=SYSTEM,
                status=500,
            )
        if body is not None and _BUSINESS.search(kind):
            # Acumatica answers business-rule failures with 500 too; they repeat on a retry.
            message = self._scrub(body.innermost().exception_message or body.message or text)
            if record is None:
                return UpstreamError(message, system=SYSTEM, status=500)
            match = _QUOTED.search(message)
            return InvalidRecordError(
                record[0], record[1], match.group(1) if match else None, message, system=SYSTEM
            )
        if body is not None and "PXSetupNotEnteredException" in kind:
            return UpstreamError(f"Acumatica setup incomplete: {text}", system=SYSTEM, status=500)
        return TransientError(text or "HTTP 500", system=SYSTEM, status=500)

    def _body_text(self, response: httpx.Response) -> str:
        """A one-line account of an error body: Acumatica's message, OAuth's error, or text."""
        body = _error_body(response)
        if body is not None:
            inner = body.innermost()
            parts = [inner.exception_message or body.exception_message or body.message]
            if inner.exception_type:
                parts.append(f"({inner.exception_type.rsplit('.', 1)[-1]})")
            parts += [f"{path}: {message}" for path, message in body.binding_errors()]
            return self._scrub(" ".join(p for p in parts if p))
        try:
            data = loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return self._snippet(response)
        if isinstance(data, dict) and "error" in data:  # OAuth: {"error", "error_description"}
            described = [data.get("error"), data.get("error_description")]
            return self._scrub(": ".join(str(d) for d in described if d))
        return self._snippet(response)

    def _snippet(self, response: httpx.Response) -> str:
        # An HTML error page: strip the tags, keep the first words (acumatica.md §3).
        text = _TAGS.sub(" ", response.text)
        return self._scrub(" ".join(text.split())[:200])

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield


def _error_body(response: httpx.Response) -> ErrorBody | None:
    try:
        data = loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not ({"message", "exceptionMessage"} & set(data)):
        return None
    try:
        return ErrorBody.model_validate(data)
    except ValidationError:
        return None
