"""A protocol-faithful emulator of BILL's v3 AP API and webhook API (shared/api/bill.md).

The same paths (``/connect/v3/…`` and ``/connect-events/v3/…``), headers (``devKey`` and
``sessionId``), JSON shapes, error *array* and ``BDC_`` codes as the real service, for everything
the plugin's client uses:

- sessions that end after 35 idle minutes (``options.session_idle_seconds`` overrides) and
  answer ``401`` with ``BDC_1109``, exactly as bill.md §2 shows;
- at most 3 requests in flight per developer key and organization (``BDC_1322``), 20,000 requests
  per developer key per clock hour (``BDC_1144``), 200 sign-ins per hour (§4);
- lists with ``max`` 1-100 (default 20), ``filters`` and ``sort`` as documented, and opaque
  ``nextPage`` tokens (keyset: a record changed while a list is read is never skipped);
- creates answer 201, unknown ids 404 ``BDC_1205``, unknown paths 404 ``BDC_1121``; bulk creates
  are all or nothing (vendors 20, bills 200);
- webhook subscriptions with ``X-Idempotent-Key``, the ``securityKey`` shown only on create and
  rotation, at most 10 per organization; deliveries of minified JSON signed with HMAC-SHA256 in
  ``x-bill-sha-signature``, retried after 2, 4, 8 and 16 seconds, then the subscription disabled.

Where BILL's behaviour is UNCONFIRMED the emulator picks one and says so in a comment; cheap
alternatives are options (``EmulatorOptions.extra``, see :class:`BillEmulatorConfig`).

Test hooks: :meth:`BillEmulator.pay` (payments with ``billPayments``), :meth:`expire_sessions`,
:meth:`expire_sessions_after`, :meth:`refuse_invoice`, ``reject_logins``, ``faults`` (latency, 5xx
bursts, responses lost after the write was applied), :meth:`deliver_pending`, and the demo's
:class:`~ml_connector.emulation.DemoSink` protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ml_connector.emulation import (
    ConcurrencyGate,
    Emulator,
    EmulatorOptions,
    SessionStore,
    decode_page_token,
    encode_page_token,
)
from ml_connector_bill.schemas import (
    BULK_BILLS_LIMIT,
    DESCRIPTION_MAX,
    IDEMPOTENCY_HEADER,
    MAX_IN_FLIGHT,
    PAGE_MAX,
    REQUESTS_PER_HOUR,
    SIGNATURE_HEADER,
    SYSTEM,
    VENDOR_NAME_MAX,
    dumps,
    loads,
    sign,
)

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = [
    "DEV_KEY",
    "ORGANIZATION_ID",
    "PASSWORD",
    "USERNAME",
    "BillEmulator",
    "BillEmulatorConfig",
    "DeliveryAttempt",
    "Hold",
    "create_emulator",
]

log = logging.getLogger("ml_connector_bill.emulator")

BillKey = tuple[str, str]
"""A bill's natural key across systems, as the demo counts them: (vendor name, invoice number)."""

ORGANIZATION_ID = "00801EMULATEDORG001"
USER_ID = "00601EMULATEDUSER01"
USERNAME = "ap-bot@emulated-bill.example"
PASSWORD = "emulated-bill-password"  # noqa: S105 - the emulator's own, printed on purpose
DEV_KEY = "emulated-bill-dev-key"

SESSION_IDLE = timedelta(minutes=35)  # bill.md §2
VENDOR_BULK_LIMIT = 20  # bill.md §4
MAX_SUBSCRIPTIONS = 10  # bill.md §6
IDEMPOTENCY_TTL = timedelta(hours=24)  # bill.md §6
RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0)  # bill.md §6: retries after the first failed delivery
DEFAULT_PAGE = 20  # bill.md §4 (the reference page; a concepts page says 100)

# Codes (bill.md §3). VALIDATION is the emulator's choice for every 400 refusal:
# UNCONFIRMED (bill.md §8): which BDC code(s) mean "validation" is undocumented; BDC_1143.
SESSION_INVALID, WRONG_LOGIN, WRONG_DEV_KEY = "BDC_1109", "BDC_1101", "BDC_1102"
NO_SUCH_API, NOT_FOUND, VALIDATION = "BDC_1121", "BDC_1205", "BDC_1143"
CONCURRENT, HOURLY, SYSTEM_ERROR = "BDC_1322", "BDC_1144", "BDC_1001"

MESSAGES = {
    # bill.md §2 shows this body verbatim, two spaces after "invalid." included.
    SESSION_INVALID: "Session is invalid.  Please log in.",
    WRONG_LOGIN: "User name and/or password do not match our records.",
    WRONG_DEV_KEY: "Developer key is invalid.",
    NO_SUCH_API: "API not supported.",
    NOT_FOUND: "Record not found.",
    CONCURRENT: "Max number of concurrent requests per organization reached.",
    HOURLY: f"Max number of allowed requests per hour reached: {REQUESTS_PER_HOUR}.",
    SYSTEM_ERROR: "System error occurred.",
}
CATEGORIES = {
    SESSION_INVALID: "DOWNSTREAM",
    SYSTEM_ERROR: "SERVER",
    CONCURRENT: "APPLICATION",
    HOURLY: "APPLICATION",
}

#: Classification resources and their id prefixes (bill.md §1, §5).
CLASSIFICATIONS = {
    "chart-of-accounts": "0ca",
    "accounting-classes": "cls",
    "departments": "0de",
    "locations": "loc",
    "jobs": "job",
    "employees": "emp",
    "items": "0ii",
}
#: Which classification a bill line's key points into (bill.md §5; job/employee UNCONFIRMED,
#: accepted by the emulator).
LINE_KEYS = {
    "chartOfAccountId": "chart-of-accounts",
    "accountingClassId": "accounting-classes",
    "departmentId": "departments",
    "locationId": "locations",
    "itemId": "items",
    "jobId": "jobs",
    "employeeId": "employees",
}
#: singleStatus values (bill.md §5) that no longer count against the bills they pay.
NOT_COUNTED = frozenset(
    {
        "DISBURSEMENT_FAILED_ACTION_NEEDED",
        "DISBURSEMENT_FAILED_VENDOR_BANK_REJECTED",
        "FUNDING_FAILED_VOIDED",
        "CANCELED",
        "VOIDED",
    }
)
FAILED_STATUSES = NOT_COUNTED | {"FUNDING_FAILED_ACTION_NEEDED"}
SINGLE_STATUSES = NOT_COUNTED | {
    "SCHEDULED",
    "FUNDING_STARTED",
    "PROCESSED",
    "SENT",
    "CLEARED",
    "DELIVERED",
    "DISBURSEMENT_ON_HOLD",
    "FUNDING_FAILED_ACTION_NEEDED",
    "FUNDS_ESCHEATED",
}
#: The event catalog (bill.md §6), all version "1".
EVENT_TYPES = (
    "vendor.created",
    "vendor.updated",
    "vendor.archived",
    "vendor.restored",
    "bill.created",
    "bill.updated",
    "bill.archived",
    "bill.restored",
    "payment.updated",
    "payment.failed",
)

#: A chart of accounts and classifications as a typical US ERP numbers them, so most accounts of
#: a demo ERP map by number without help.
SEED_CHART = (
    ("1000", "Operating Bank Account", "BANK"),
    ("2000", "Accounts Payable", "ACCOUNTS_PAYABLE"),
    ("5000", "Cost of Goods Sold", "COST_OF_GOODS_SOLD"),
    ("6000", "Office Supplies", "EXPENSE"),
    ("6050", "Postage and Delivery", "EXPENSE"),
    ("6100", "Rent", "EXPENSE"),
    ("6150", "Utilities", "EXPENSE"),
    ("6200", "Telephone and Internet", "EXPENSE"),
    ("6300", "Travel", "EXPENSE"),
    ("6350", "Meals and Entertainment", "EXPENSE"),
    ("6400", "Professional Fees", "EXPENSE"),
    ("6450", "Legal Fees", "EXPENSE"),
    ("6500", "Freight Inbound", "EXPENSE"),
    ("6600", "Software Subscriptions", "EXPENSE"),
    ("6700", "Repairs and Maintenance", "EXPENSE"),
    ("6800", "Insurance", "EXPENSE"),
    ("6900", "Advertising and Marketing", "EXPENSE"),
    ("7000", "Training and Education", "EXPENSE"),
)
SEED_CLASSIFICATIONS = {
    "departments": (
        ("ADMIN", "Administration"),
        ("SALES", "Sales"),
        ("OPS", "Operations"),
        ("RND", "Research and Development"),
        ("FIN", "Finance"),
    ),
    "locations": (("HQ", "Headquarters"), ("EAST", "East Region"), ("WEST", "West Region")),
    "accounting-classes": (("CORP", "Corporate"), ("FIELD", "Field Services")),
}

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_SEGMENT = re.compile(r"/(?=[^/]*\d)[^/]+")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO2 = re.compile(r"^[A-Z]{2}$")
_ISO3 = re.compile(r"^[A-Z]{3}$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def stamp(value: datetime) -> str:
    """A BILL timestamp: UTC, milliseconds, ``+00:00`` (bill.md §6 payload sample)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse_time(value: str) -> datetime | None:
    """A filter or record time in any of the formats bill.md §4 lists, as aware UTC."""
    text = value.strip().replace("Z", "+00:00")
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- Configuration -------------------------------------------------------------------------------


@dataclass
class BillEmulatorConfig:
    """BILL-specific emulator options, read from ``EmulatorOptions.extra``.

    Attributes:
        organization_id: The one organization served.
        username: The API user's name.
        password: The API user's password.
        dev_key: The developer key.
        max_in_flight: Requests in flight per developer key and organization (BILL: 3).
        requests_per_hour: Requests per developer key per clock hour (BILL: 20,000).
        logins_per_hour: Sign-ins per developer key per clock hour (BILL: 200).
        throttle_status: The HTTP status of ``BDC_1322`` and ``BDC_1144``. UNCONFIRMED
            (bill.md §8): undocumented; 429 by default, e.g. 400 or 503 to test a client.
        last_page: How the last page says so: ``"omit"`` the ``nextPage`` (default), ``"null"``
            or ``"empty"`` (UNCONFIRMED, bill.md §8).
        payments_updated_filter: Accept ``updatedTime`` filters on payments (UNCONFIRMED,
            bill.md §8); ``False`` answers 400 as an unsupported filter.
        seed_chart: Start with a typical chart of accounts and classifications.
        auto_deliver: Send webhook deliveries in the background as events happen; tests turn
            it off and call :meth:`BillEmulator.deliver_pending`.
        delivery_transport: The httpx transport deliveries go through (tests: in process).
        delivery_backoff_scale: Multiplies the 2/4/8/16 s retry delays (0 in tests).
        delivery_sleep: The sleep used between retries (tests pass one that does not wait).
        delivery_timeout: Seconds a receiver has to answer 200 (BILL: 10).
        duplicate_deliveries: Deliver every event twice (test mode, bill.md §7).
        shuffle_deliveries: Deliver queued events out of order (test mode, bill.md §7).
        allow_http_webhooks: Accept plain-http notification URLs (BILL requires HTTPS; loopback
            http is always accepted, for ``ml-connector serve`` on one machine).
    """

    organization_id: str = ORGANIZATION_ID
    username: str = USERNAME
    password: str = PASSWORD
    dev_key: str = DEV_KEY
    max_in_flight: int = MAX_IN_FLIGHT
    requests_per_hour: int = REQUESTS_PER_HOUR
    logins_per_hour: int = 200
    throttle_status: int = 429
    last_page: str = "omit"
    payments_updated_filter: bool = True
    seed_chart: bool = True
    auto_deliver: bool = True
    delivery_transport: httpx.AsyncBaseTransport | None = None
    delivery_backoff_scale: float = 1.0
    delivery_sleep: Callable[[float], Awaitable[None]] | None = None
    delivery_timeout: float = 10.0
    duplicate_deliveries: bool = False
    shuffle_deliveries: bool = False
    allow_http_webhooks: bool = False

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> BillEmulatorConfig:
        """Read the options, refusing unknown names (a typo must not pass silently).

        Raises:
            ValueError: An unknown option or a bad ``last_page``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ValueError(f"unknown BILL emulator options: {', '.join(unknown)}")
        config = cls(**dict(extra))
        if config.last_page not in ("omit", "null", "empty"):
            raise ValueError("last_page must be omit, null or empty")
        return config


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver a webhook event."""

    event_id: str
    subscription_id: str
    attempt: int
    status: int | None
    ok: bool


@dataclass
class Delivery:
    """A signed webhook delivery waiting to be sent (or sent)."""

    subscription_id: str
    event_id: str
    event_type: str
    url: str
    body: bytes
    headers: dict[str, str]
    delivered: bool = False


@dataclass
class Hold:
    """Requests held at a point of the emulator until :meth:`release` (tests only)."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    def release(self) -> None:
        """Let the held requests (and later ones) go on."""
        self.released.set()


@dataclass
class _Idempotent:
    """A ``X-Idempotent-Key``'s state: in flight, or its answer (kept 24 hours)."""

    started: datetime
    response: tuple[int, bytes] | None = None


class _Refusal(Exception):
    """Ends a handler early with BILL's answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


# --- The query language of lists (bill.md §4) ----------------------------------------------------

_RANGE = ("gt", "gte", "lt", "lte")
_TIMES = frozenset({"createdTime", "updatedTime"})
FILTERABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "vendors": {
        "id": ("eq", "ne", "in"),
        "archived": ("eq", "ne"),
        "name": ("eq", "sw"),
        "accountType": ("eq", "ne", "in", "nin"),
        "address.country": ("eq", "ne"),
        "billCurrency": ("eq", "ne", "in", "nin"),
        "createdTime": _RANGE,
        "updatedTime": _RANGE,
    },
    "bills": {
        "id": ("eq", "ne", "in"),
        "archived": ("eq", "ne"),
        "vendorId": ("eq", "in"),
        "dueDate": _RANGE,
        "paymentStatus": ("eq", "ne", "in"),
        "createdTime": _RANGE,
        "updatedTime": _RANGE,
    },
    "payments": {
        "id": ("eq", "ne", "in"),
        "vendorId": ("eq", "ne", "in"),
        "processDate": ("eq", *_RANGE),
        "createdTime": _RANGE,
        "updatedTime": _RANGE,
    },
    "classifications": {
        "id": ("eq", "ne", "in"),
        "archived": ("eq", "ne"),
        "name": ("eq", "sw"),
        "createdTime": _RANGE,
        "updatedTime": _RANGE,
    },
    "subscriptions": {},
}
SORTABLE = frozenset({"id", "name", "createdTime", "updatedTime", "dueDate", "processDate"})


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _filter_value(raw: str, op: str) -> Any:
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        inner = raw[1:-1]
        return [v for v in inner.split(",")] if op in ("in", "nin") else inner
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return Decimal(raw)
    except InvalidOperation:
        return raw


def _lookup(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


@dataclass(frozen=True)
class _Filter:
    field: str
    op: str
    value: Any

    def matches(self, record: Mapping[str, Any]) -> bool:
        actual = _lookup(record, self.field)
        expected = self.value
        if self.field in _TIMES:
            actual = _parse_time(actual) if isinstance(actual, str) else None
            expected = _parse_time(str(expected))
            if actual is None or expected is None:
                return False
        if self.op in ("in", "nin"):
            found = actual in expected or str(actual) in expected
            return found if self.op == "in" else not found
        # UNCONFIRMED (bill.md §4): case sensitivity of eq/sw; the emulator compares exactly.
        if self.op == "eq":
            return bool(actual == expected or str(actual) == str(expected))
        if self.op == "ne":
            return not (actual == expected or str(actual) == str(expected))
        if self.op == "sw":
            return isinstance(actual, str) and actual.startswith(str(expected))
        if actual is None:
            return False
        left, right = (actual, expected) if self.field in _TIMES else (str(actual), str(expected))
        return {
            "gt": left > right,
            "gte": left >= right,
            "lt": left < right,
            "lte": left <= right,
        }[self.op]


# --- The emulator --------------------------------------------------------------------------------


class BillEmulator(Emulator):
    """BILL's AP API (``/connect``) and webhook API (``/connect-events``) for one organization.

    Attributes:
        config: The BILL-specific options.
        sessions: Signed-in sessions (sliding idle expiry).
        gate: Requests in flight per developer key and organization.
        vendors: Vendors by id, as BILL returns them.
        bills: Bills by id.
        payments: Payments by id.
        classifications: Chart of accounts and classifications, by resource then id.
        subscriptions: Webhook subscriptions by id (without their keys).
        outbox: Webhook deliveries not yet sent.
        delivered: Webhook deliveries a receiver accepted.
        attempts: Every delivery attempt.
        reject_logins: Refuse every sign-in (as a changed password would).
    """

    system: ClassVar[str] = SYSTEM
    base_path: ClassVar[str] = "/connect"

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        options = options or EmulatorOptions()
        self.config = BillEmulatorConfig.from_extra(options.extra)
        idle = options.session_idle_seconds
        self.sessions = SessionStore(
            SESSION_IDLE if idle is None else timedelta(seconds=idle), clock=options.clock
        )
        self.gate = ConcurrencyGate(self.config.max_in_flight)
        self.vendors: dict[str, dict[str, Any]] = {}
        self.bills: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.classifications: dict[str, dict[str, dict[str, Any]]] = {
            r: {} for r in CLASSIFICATIONS
        }
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.outbox: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self.attempts: list[DeliveryAttempt] = []
        self.reject_logins = False
        self.throttled = Counter[str]()
        self._keys: dict[str, str] = {}
        self._idempotency: dict[str, _Idempotent] = {}
        self._hour_counts: Counter[tuple[str, str, int]] = Counter()
        self._refused_invoices: dict[str, tuple[str, str]] = {}
        self._expire_countdown: int | None = None
        self._rng = random.Random(options.seed)  # noqa: S311 - ids, not cryptography
        self._issued: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holds: dict[str, Hold] = {}
        super().__init__(options)
        if self.config.seed_chart:
            self._seed()

    # --- Toolkit hooks ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """BILL's routes under ``/connect/v3`` and ``/connect-events/v3``, then a catch-all."""
        ap, ev = "/connect/v3", "/connect-events/v3"
        table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str], str]] = [
            (f"{ap}/login", self._login, ["POST"], "login"),
            (f"{ap}/logout", self._logout, ["POST"], "ap"),
            (f"{ap}/login/session", self._session_details, ["GET"], "ap"),
            (f"{ap}/vendors", self._vendors, ["GET", "POST"], "ap"),
            (f"{ap}/vendors/bulk", self._vendors_bulk, ["POST"], "ap"),
            (f"{ap}/vendors/{{id}}", self._vendor, ["GET", "PATCH"], "ap"),
            (f"{ap}/bills", self._bills, ["GET", "POST"], "ap"),
            (f"{ap}/bills/bulk", self._bills_bulk, ["POST"], "ap"),
            (f"{ap}/bills/{{id}}", self._bill, ["GET", "PATCH", "PUT"], "ap"),
            (f"{ap}/payments", self._payments, ["GET", "POST"], "ap"),
            (f"{ap}/payments/{{id}}", self._payment, ["GET"], "ap"),
            (f"{ap}/classifications/{{resource}}", self._classifications, ["GET", "POST"], "ap"),
            (f"{ap}/classifications/{{resource}}/{{id}}", self._classification, ["GET"], "ap"),
            (f"{ev}/events/catalog", self._catalog, ["GET"], "events"),
            (f"{ev}/subscriptions", self._subscriptions, ["GET", "POST"], "events"),
            (
                f"{ev}/subscriptions/{{id}}",
                self._subscription,
                ["GET", "PATCH", "PUT", "DELETE"],
                "events",
            ),
            (f"{ev}/subscriptions/{{id}}/security_key", self._rotate_key, ["POST"], "events"),
            (f"{ev}/subscriptions/{{id}}/security-key", self._rotate_key, ["POST"], "events"),
        ]
        routes: list[BaseRoute] = [
            Route(path, self._guarded(handler, api), methods=methods)
            for path, handler, methods, api in table
        ]
        routes.append(Route("/{path:path}", self._not_supported))
        return routes

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """BILL's error array for an injected fault.

        ``kind``: ``server`` (``BDC_1001``), ``throttled`` (``BDC_1322``), ``hourly``
        (``BDC_1144``), ``session`` (``BDC_1109``), ``not_found`` (``BDC_1205``),
        ``no_such_api`` (``BDC_1121``), ``validation``, or ``malformed`` (an HTML body where
        JSON belongs).
        """
        if kind == "malformed":
            return Response(
                b"<html><body>502 Bad Gateway</body></html>", status, media_type="text/html"
            )
        code = {
            "throttled": CONCURRENT,
            "hourly": HOURLY,
            "session": SESSION_INVALID,
            "not_found": NOT_FOUND,
            "no_such_api": NO_SUCH_API,
            "validation": VALIDATION,
        }.get(kind, SYSTEM_ERROR)
        text = MESSAGES.get(code, "injected fault")
        return self._error(status, code, text, retry_after)

    def credentials(self) -> dict[str, str]:
        """Credentials a connection can use as they are."""
        return {
            "username": self.config.username,
            "password": self.config.password,
            "dev_key": self.config.dev_key,
        }

    def settings(self, base_url: str) -> dict[str, Any]:
        """A connection's settings for an emulator served at ``base_url`` (``…/connect``)."""
        return {
            "organization_id": self.config.organization_id,
            "environment": "custom",
            "base_url": base_url,
        }

    # --- Serving: limits before the toolkit's latency, faults and routing ------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against the hourly budget and the in-flight gate, then serve it.

        The gate is held while the request's latency elapses, so a client that keeps a fourth
        request in flight is refused with ``BDC_1322`` as BILL refuses it (bill.md §4).
        """
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._count_down_expiry()
        key = self._gate_key(scope)
        # UNCONFIRMED (bill.md §4): whether a sign-in counts against the 3 in flight; the
        # emulator gates only requests with a live session (the rest are refused anyway).
        if key is None:  # sign-in, or no valid session (refused by the handler)
            await super().__call__(scope, receive, send)
            return
        dev_key, organization = key
        # bill.md §4: over 20,000 per developer key per hour -> BDC_1144 until the next hour.
        if not self._spend(dev_key, "requests", self.config.requests_per_hour):
            await self._refuse_now(scope, receive, send, HOURLY)
            return
        gate_key = f"{dev_key}/{organization}"
        if not self.gate.try_enter(gate_key):
            await self._refuse_now(scope, receive, send, CONCURRENT)
            return
        try:
            await self._pause("gate")
            await super().__call__(scope, receive, send)
        finally:
            self.gate.leave(gate_key)

    def _gate_key(self, scope: Scope) -> tuple[str, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        dev_key, session_id = headers.get("devkey"), headers.get("sessionid")
        if not dev_key or not session_id:
            return None
        session = self.sessions.get(session_id, touch=False)
        if session is None:
            return None
        return dev_key, str(session.data["organization"])

    def _spend(self, dev_key: str, what: str, budget: int) -> bool:
        hour = int(self.now().timestamp() // 3600)
        key = (dev_key, what, hour)
        if self._hour_counts[key] >= budget:
            return False
        self._hour_counts[key] += 1
        return True

    async def _refuse_now(self, scope: Scope, receive: Receive, send: Send, code: str) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.throttled[code] += 1
        # UNCONFIRMED (bill.md §8): the status of BDC_1322/BDC_1144 is undocumented; the
        # emulator answers config.throttle_status (429 by default) and sends no Retry-After.
        message = MESSAGES[code]
        if code == HOURLY:
            budget = self.config.requests_per_hour
            message = f"Max number of allowed requests per hour reached: {budget}."
        response = self._error(self.config.throttle_status, code, message)
        await response(scope, receive, send)
        path = scope["path"]
        self.log.add(scope["method"], path, response.status_code, _ID_SEGMENT.sub("/{id}", path))

    def _count_down_expiry(self) -> None:
        if self._expire_countdown is None:
            return
        self._expire_countdown -= 1
        if self._expire_countdown <= 0:
            self._expire_countdown = None
            self.sessions.expire_all()

    # --- Answers ---------------------------------------------------------------------------------

    def _error(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> Response:
        """BILL's error body: always a JSON array (bill.md §3)."""
        body = [
            {
                "timestamp": stamp(self.now()),
                "code": code,
                "severity": "ERROR",
                "category": CATEGORIES.get(code, "REQUEST"),
                "message": message,
            }
        ]
        headers = {} if retry_after is None else {"Retry-After": str(round(retry_after))}
        return Response(dumps(body), status, headers=headers, media_type="application/json")

    def _refusal(self, status: int, code: str, message: str | None = None) -> _Refusal:
        return _Refusal(self._error(status, code, message or MESSAGES[code]))

    def _invalid(self, field_name: str, reason: str) -> _Refusal:
        # UNCONFIRMED (bill.md §8): validation answers 400 BDC_1143 "field: message".
        return self._refusal(400, VALIDATION, f"{field_name}: {reason}")

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(dumps(data), status, media_type="application/json")

    def _guarded(
        self, handler: Callable[[Request], Awaitable[Response]], api: str
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if api != "login":
                    self._authorise(request, events=api == "events")
                return await handler(request)
            except _Refusal as refusal:
                return refusal.response

        return endpoint

    def _authorise(self, request: Request, *, events: bool) -> None:
        dev_key, session_id = request.headers.get("devKey"), request.headers.get("sessionId")
        if events and (not dev_key or not session_id):
            # bill.md §2: the webhook API answers 400 when devKey/sessionId are missing.
            # UNCONFIRMED: its code; the emulator reuses BDC_1109.
            raise self._refusal(400, SESSION_INVALID)
        if dev_key != self.config.dev_key:
            raise self._refusal(401, WRONG_DEV_KEY)
        session = self.sessions.get(session_id)
        if session is None or session.data["dev_key"] != dev_key:
            raise self._refusal(401, SESSION_INVALID)  # exactly bill.md §2's answer

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            raise self._invalid("body", "is not valid JSON") from None

    async def _not_supported(self, request: Request) -> Response:
        return self._error(404, NO_SUCH_API, MESSAGES[NO_SUCH_API])

    def _new_id(self, prefix: str) -> str:
        while True:
            candidate = prefix + "01" + "".join(self._rng.choices(_ID_ALPHABET, k=15))
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate

    def _found(self, table: Mapping[str, dict[str, Any]], record_id: str) -> dict[str, Any]:
        record = table.get(record_id)
        if record is None:
            raise self._refusal(404, NOT_FOUND)
        return record

    # --- Lists (bill.md §4) ----------------------------------------------------------------------

    def _list(
        self, request: Request, kind: str, records: Iterable[dict[str, Any]], *, public: bool = True
    ) -> Response:
        query = request.query_params
        size = self._page_size(query.get("max"))
        filters = self._filters(kind, query.get("filters", ""))
        sort_field, descending = self._sort(query.get("sort"))
        fingerprint = hashlib.sha256(
            f"{query.get('filters', '')}|{query.get('sort', '')}|{size}".encode()
        ).hexdigest()[:16]
        after: list[str] | None = None
        if query.get("page"):
            state = decode_page_token(query["page"])
            if (
                state is None
                or state.get("q") != fingerprint
                or not isinstance(state.get("a"), list)
            ):
                raise self._invalid("page", "does not belong to this query")
            after = state["a"]

        def sort_key(record: Mapping[str, Any]) -> tuple[str, str]:
            value = record.get(sort_field)
            return ("" if value is None else str(value), str(record["id"]))

        matching = sorted(
            (r for r in records if all(f.matches(r) for f in filters)),
            key=sort_key,
            reverse=descending,
        )
        if after is not None:
            last = (str(after[0]), str(after[1]))
            matching = [
                r for r in matching if (sort_key(r) < last if descending else sort_key(r) > last)
            ]
        page, more = matching[:size], len(matching) > size
        body: dict[str, Any] = {"results": [self._public(r) if public else r for r in page]}
        if more:
            body["nextPage"] = encode_page_token({"a": list(sort_key(page[-1])), "q": fingerprint})
        elif self.config.last_page == "null":
            body["nextPage"] = None
        elif self.config.last_page == "empty":
            body["nextPage"] = ""
        # bill.md §4 also names prevPage; the client never pages backwards, so it is left out.
        return self._json(body)

    def _page_size(self, raw: str | None) -> int:
        if raw is None:
            return DEFAULT_PAGE
        try:
            size = int(raw)
        except ValueError:
            raise self._invalid("max", f"must be between 1 and {PAGE_MAX}") from None
        if not 1 <= size <= PAGE_MAX:  # bill.md §4: outside 1-100 -> 400
            raise self._invalid("max", f"must be between 1 and {PAGE_MAX}")
        return size

    def _filters(self, kind: str, raw: str) -> list[_Filter]:
        allowed = dict(FILTERABLE[kind])
        if kind == "payments" and not self.config.payments_updated_filter:
            allowed.pop("updatedTime")
        found = []
        for part in _split_outside_quotes(raw):
            pieces = part.split(":", 2)
            if len(pieces) != 3:
                raise self._invalid("filters", f"{part!r} is not field:op:value")
            name, op, value = (p.strip() for p in pieces)
            if op not in allowed.get(name, ()):
                raise self._invalid("filters", f"{name} cannot be filtered with {op}")
            parsed = _filter_value(value, op)
            if name in _TIMES and _parse_time(str(parsed)) is None:
                raise self._invalid("filters", f"{value} is not a date or time")
            found.append(_Filter(name, op, parsed))
        return found

    def _sort(self, raw: str | None) -> tuple[str, bool]:
        if not raw:
            return "createdTime", False
        # UNCONFIRMED (bill.md §4): multi-field sort syntax; the emulator takes one field.
        name, _, direction = raw.partition(":")
        direction = direction or "asc"
        if name not in SORTABLE or direction not in ("asc", "desc"):
            raise self._invalid("sort", f"{raw!r} is not a sortable field and direction")
        return name, direction == "desc"

    @staticmethod
    def _public(record: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    # --- Sign-in (bill.md §2) --------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise self._invalid("body", "must be a JSON object")
        dev_key = str(body.get("devKey") or "")
        # UNCONFIRMED (bill.md §8): the status of BDC_1101/BDC_1102; the emulator answers 401.
        if dev_key != self.config.dev_key:
            raise self._refusal(401, WRONG_DEV_KEY)
        # UNCONFIRMED: the code for the 200 sign-ins an hour (bill.md §4); BDC_1144.
        if not self._spend(dev_key, "logins", self.config.logins_per_hour):
            raise self._refusal(
                self.config.throttle_status,
                HOURLY,
                f"Max number of allowed logins per hour reached: {self.config.logins_per_hour}.",
            )
        if (
            self.reject_logins
            or body.get("username") != self.config.username
            or body.get("password") != self.config.password
            or body.get("organizationId") != self.config.organization_id
        ):
            raise self._refusal(401, WRONG_LOGIN)
        session = self.sessions.create(
            USER_ID, dev_key=dev_key, organization=self.config.organization_id
        )
        return self._json(
            {
                "sessionId": session.token,
                "organizationId": self.config.organization_id,
                "userId": USER_ID,
                "trusted": False,
            }
        )

    async def _logout(self, request: Request) -> Response:
        self.sessions.end(request.headers.get("sessionId"))
        return self._json({})

    async def _session_details(self, request: Request) -> Response:
        return self._json(
            {"organizationId": self.config.organization_id, "userId": USER_ID, "trusted": False}
        )

    # --- Vendors (bill.md §5) --------------------------------------------------------------------

    def _check_vendor(self, body: Any, *, create: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self._invalid("vendor", "must be a JSON object")
        name = body.get("name")
        if (create or "name" in body) and (
            not isinstance(name, str) or not 1 <= len(name.strip()) <= VENDOR_NAME_MAX
        ):
            raise self._invalid("name", f"must be 1-{VENDOR_NAME_MAX} characters")
        address = body.get("address")
        if create or "address" in body:
            if not isinstance(address, dict):
                raise self._invalid("address", "The address field is required")
            required = ["line1", "city", "country"]
            if address.get("country") == "US":
                required += ["stateOrProvince", "zipOrPostalCode"]
            for part in required:
                if not isinstance(address.get(part), str) or not address[part].strip():
                    raise self._invalid(f"address.{part}", "must not be blank")
            if not _ISO2.match(str(address.get("country"))):
                raise self._invalid("address.country", "must be an ISO 3166 alpha-2 code")
        if body.get("accountType", "BUSINESS") not in ("BUSINESS", "PERSON", "NONE"):
            raise self._invalid("accountType", "must be BUSINESS, PERSON or NONE")
        currency = body.get("billCurrency")
        if currency is not None and not _ISO3.match(str(currency)):
            raise self._invalid("billCurrency", "must be an ISO 4217 code")
        short = body.get("shortName")
        if short is not None and len(str(short)) > 40:
            raise self._invalid("shortName", "must be at most 40 characters")
        keep = ("name", "shortName", "accountType", "email", "phone", "address", "billCurrency")
        return {k: body[k] for k in keep if k in body}

    def _create_vendor(self, fields_: Mapping[str, Any]) -> dict[str, Any]:
        now = stamp(self.now())
        vendor = {
            "id": self._new_id("009"),
            "archived": False,
            "accountType": "BUSINESS",
            **fields_,
            "createdTime": now,
            "updatedTime": now,
        }
        self.vendors[vendor["id"]] = vendor
        self._emit("vendor.created", "vendor", vendor)
        return vendor

    async def _vendors(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list(request, "vendors", self.vendors.values())
        fields_ = self._check_vendor(await self._body(request), create=True)
        return self._json(self._create_vendor(fields_), 201)

    async def _vendors_bulk(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, list) or not 1 <= len(body) <= VENDOR_BULK_LIMIT:
            raise self._invalid("vendors", f"send 1-{VENDOR_BULK_LIMIT} vendors")
        checked = [self._check_vendor(item, create=True) for item in body]  # all or nothing
        return self._json([self._create_vendor(f) for f in checked], 201)

    async def _vendor(self, request: Request) -> Response:
        vendor = self._found(self.vendors, request.path_params["id"])
        if request.method == "GET":
            return self._json(vendor)
        changes = self._check_vendor(await self._body(request), create=False)
        vendor.update(changes, updatedTime=stamp(self.now()))
        self._emit("vendor.updated", "vendor", vendor)
        return self._json(vendor)

    # --- Bills (bill.md §5) ----------------------------------------------------------------------

    def _money(self, value: Any, where: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self._invalid(where, "must be a number")
        return Decimal(value)

    def _check_description(self, value: Any, where: str) -> None:
        """A bill's or line's ``description``: text of at most 4000 characters (bill.md §5).

        Refused whole, never stored cut, so a client that sends too much sees it. UNCONFIRMED:
        BILL's code and wording for it (bill.md §3: 400, a BDC code, ``field: message``).
        """
        if value is None:
            return
        if not isinstance(value, str):
            raise self._invalid(where, "must be a string")
        if len(value) > DESCRIPTION_MAX:
            raise self._invalid(where, f"must be at most {DESCRIPTION_MAX} characters")

    def _check_line(
        self, line: Any, index: int, old: Mapping[str, dict[str, Any]]
    ) -> dict[str, Any]:
        where = f"billLineItems[{index}]"
        if not isinstance(line, dict):
            raise self._invalid(where, "must be a JSON object")
        if line.get("amount") is not None:  # bill.md §5: amount wins over quantity x price
            amount = self._money(line["amount"], f"{where}.amount")
        elif line.get("quantity") is not None and line.get("price") is not None:
            amount = self._money(line["quantity"], f"{where}.quantity") * self._money(
                line["price"], f"{where}.price"
            )
        else:
            raise self._invalid(f"{where}.amount", "must not be null")
        self._check_description(line.get("description"), f"{where}.description")
        classifications = line.get("classifications") or {}
        if not isinstance(classifications, dict):
            raise self._invalid(f"{where}.classifications", "must be a JSON object")
        for key, value in classifications.items():
            resource = LINE_KEYS.get(key)
            if resource is None:
                raise self._invalid(f"{where}.classifications.{key}", "is not a classification")
            if value is not None and value not in self.classifications[resource]:
                raise self._invalid(f"{where}.classifications.{key}", f"{value} does not exist")
        line_id = line.get("id")
        if line_id is not None and line_id not in old:
            raise self._invalid(f"{where}.id", f"{line_id} is not a line of this bill")
        checked: dict[str, Any] = {
            "id": line_id or self._new_id("bli"),
            "amount": amount,
            "classifications": dict(classifications),
        }
        for name in ("description", "quantity", "price"):
            if line.get(name) is not None:
                checked[name] = line[name]
        return checked

    def _check_bill(self, body: Any, old: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self._invalid("bill", "must be a JSON object")
        vendor = self.vendors.get(str(body.get("vendorId")))
        if vendor is None:
            raise self._invalid("vendorId", f"vendor {body.get('vendorId')} does not exist")
        due = body.get("dueDate")
        if not isinstance(due, str) or not _DATE.match(due):
            raise self._invalid("dueDate", "must be a date in yyyy-MM-dd format")
        invoice = body.get("invoice")
        if not isinstance(invoice, dict):  # bill.md §5: invoice is nested and required
            raise self._invalid("invoice", "The invoice field is required")
        number = invoice.get("invoiceNumber")
        if not isinstance(number, str) or not number.strip():
            raise self._invalid("invoice.invoiceNumber", "must not be blank")
        if not isinstance(invoice.get("invoiceDate"), str) or not _DATE.match(
            invoice["invoiceDate"]
        ):
            raise self._invalid("invoice.invoiceDate", "must be a date in yyyy-MM-dd format")
        refused = self._refused_invoices.get(number)
        if refused is not None:
            raise self._invalid(*refused)
        description = body.get("description")
        self._check_description(description, "description")
        lines = body.get("billLineItems")
        if not isinstance(lines, list) or not lines:
            raise self._invalid("billLineItems", "at least one line item is required")
        old_lines = {line["id"]: line for line in (old or {}).get("billLineItems", [])}
        checked = [self._check_line(line, i, old_lines) for i, line in enumerate(lines)]
        return {
            "vendorId": vendor["id"],
            "vendorName": vendor["name"],
            "dueDate": due,
            "invoice": {"invoiceNumber": number, "invoiceDate": invoice["invoiceDate"]},
            "description": description,
            "billLineItems": checked,
            "amount": sum((line["amount"] for line in checked), Decimal(0)),
        }

    def _create_bill(self, fields_: Mapping[str, Any]) -> dict[str, Any]:
        now = stamp(self.now())
        bill = {
            "id": self._new_id("00n"),
            "archived": False,
            **fields_,
            "dueAmount": fields_["amount"],
            "paymentStatus": "UNPAID",
            "createdTime": now,
            "updatedTime": now,
        }
        self.bills[bill["id"]] = bill
        self._emit("bill.created", "bill", bill)
        return bill

    async def _bills(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list(request, "bills", self.bills.values())
        fields_ = self._check_bill(await self._body(request))
        return self._json(self._create_bill(fields_), 201)

    async def _bills_bulk(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, list) or not 1 <= len(body) <= BULK_BILLS_LIMIT:
            raise self._invalid("bills", f"send 1-{BULK_BILLS_LIMIT} bills")
        checked = [self._check_bill(item) for item in body]  # all or nothing (bill.md §4)
        return self._json([self._create_bill(f) for f in checked], 201)

    async def _bill(self, request: Request) -> Response:
        bill = self._found(self.bills, request.path_params["id"])
        if request.method == "GET":
            return self._json(bill)
        if bill["paymentStatus"] != "UNPAID":
            # UNCONFIRMED: how BILL refuses changing a paid bill; the emulator answers 400.
            raise self._invalid("bill", "a paid or partly paid bill cannot be changed")
        body = await self._body(request)
        if request.method == "PATCH" and isinstance(body, dict):
            body = self._patched(bill, body)
        fields_ = self._check_bill(body, bill)
        paid = bill["amount"] - bill["dueAmount"]
        bill.update(fields_, dueAmount=fields_["amount"] - paid, updatedTime=stamp(self.now()))
        self._emit("bill.updated", "bill", bill)
        return self._json(bill)

    @staticmethod
    def _patched(bill: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH keeps what is not sent; lines with an id change in place (bill.md §5)."""
        merged = {k: v for k, v in bill.items() if k not in ("billLineItems",)}
        merged.update({k: v for k, v in changes.items() if k != "billLineItems"})
        lines = {line["id"]: dict(line) for line in bill["billLineItems"]}
        order = list(lines)
        for line in changes.get("billLineItems") or []:
            if isinstance(line, dict) and line.get("id") in lines:
                lines[line["id"]].update(line)
            else:
                key = f"_new{len(order)}"
                lines[key] = dict(line) if isinstance(line, dict) else line
                order.append(key)
        merged["billLineItems"] = [
            {k: v for k, v in lines[key].items() if not (key.startswith("_new") and k == "id")}
            if isinstance(lines[key], dict)
            else lines[key]
            for key in order
        ]
        return merged

    # --- Classifications (bill.md §5) ------------------------------------------------------------

    async def _classifications(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in CLASSIFICATIONS:
            return await self._not_supported(request)
        table = self.classifications[resource]
        if request.method == "GET":
            return self._list(request, "classifications", table.values())
        body = await self._body(request)
        if not isinstance(body, dict):
            raise self._invalid(resource, "must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._invalid("name", "must not be blank")
        if resource == "items" and not body.get("type"):
            raise self._invalid("type", "must not be blank")
        parent = body.get("parentId")
        if parent is not None and parent not in table:
            raise self._invalid("parentId", f"{parent} does not exist")
        account = body.get("account")
        if account is not None and not isinstance(account, dict):
            raise self._invalid("account", "must be a JSON object")
        keep = ("name", "shortName", "description", "parentId", "account", "type")
        return self._json(self._add(resource, {k: body[k] for k in keep if k in body}), 201)

    async def _classification(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if resource not in CLASSIFICATIONS:
            return await self._not_supported(request)
        return self._json(self._found(self.classifications[resource], request.path_params["id"]))

    def _add(self, resource: str, fields_: Mapping[str, Any]) -> dict[str, Any]:
        now = stamp(self.now())
        record = {
            "id": self._new_id(CLASSIFICATIONS[resource]),
            "archived": False,
            **fields_,
            "createdTime": now,
            "updatedTime": now,
        }
        self.classifications[resource][record["id"]] = record
        return record

    def _seed(self) -> None:
        for number, name, kind in SEED_CHART:
            self._add(
                "chart-of-accounts", {"name": name, "account": {"number": number, "type": kind}}
            )
        for resource, values in SEED_CLASSIFICATIONS.items():
            for code, name in values:
                self._add(resource, {"name": name, "shortName": code})

    # --- Payments (bill.md §5) -------------------------------------------------------------------

    async def _payments(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list(request, "payments", self.payments.values())
        body = await self._body(request)
        if not isinstance(body, dict):
            raise self._invalid("payment", "must be a JSON object")
        funding = body.get("fundingAccount")
        if not isinstance(funding, dict) or funding.get("type") not in (
            "BANK_ACCOUNT",
            "CARD_ACCOUNT",
            "WALLET",
            "AP_CARD",
        ):
            raise self._invalid("fundingAccount", "must name a funding account and its type")
        if not isinstance(body.get("processingOptions"), dict):
            raise self._invalid("processingOptions", "must not be null")
        bill = self.bills.get(str(body.get("billId")))
        if bill is None:
            raise self._invalid("billId", f"bill {body.get('billId')} does not exist")
        amount = self._money(body.get("amount"), "amount")
        if not 0 < amount <= bill["dueAmount"]:
            raise self._invalid("amount", f"must be positive and at most {bill['dueAmount']}")
        payment = self._record_payment(
            {bill["id"]: amount},
            single_status="SCHEDULED",
            process_date=body.get("processDate"),
            transaction_number=body.get("transactionNumber"),
            description=body.get("description"),
        )
        return self._json(payment, 201)

    async def _payment(self, request: Request) -> Response:
        return self._json(self._found(self.payments, request.path_params["id"]))

    def _record_payment(
        self,
        amounts: Mapping[str, Decimal],
        *,
        single_status: str,
        process_date: str | date | None,
        transaction_number: str | None,
        description: str | None = None,
    ) -> dict[str, Any]:
        bills = [self.bills[bill_id] for bill_id in amounts]
        vendor = self.vendors[bills[0]["vendorId"]]
        now = self.now()
        applications = [
            {"id": self._new_id("blp"), "billId": b["id"], "amount": amounts[b["id"]]}
            for b in bills
        ]
        day = process_date.isoformat() if isinstance(process_date, date) else process_date
        payment = {
            "id": self._new_id("stp"),
            "vendorId": vendor["id"],
            "vendorName": vendor["name"],
            "billId": bills[0]["id"] if len(bills) == 1 else None,
            "billPayments": applications,
            "amount": sum((a["amount"] for a in applications), Decimal(0)),
            "processDate": day or now.date().isoformat(),
            "description": description,
            "transactionNumber": transaction_number,
            "fundingAccount": {"type": "BANK_ACCOUNT", "id": "bac01EMULATEDBANK01"},
            "createdTime": stamp(now),
        }
        self.payments[payment["id"]] = payment
        self._set_status(payment, single_status)
        return payment

    def _set_status(self, payment: dict[str, Any], single_status: str) -> None:
        # UNCONFIRMED (bill.md §8): ``status`` and ``disbursementStatus`` enums; the emulator
        # derives plain words from singleStatus, which is what clients should read.
        payment["singleStatus"] = single_status
        payment["status"] = (
            "SCHEDULED"
            if single_status == "SCHEDULED"
            else "FAILED"
            if single_status in FAILED_STATUSES
            else "PAID"
            if single_status in ("SENT", "CLEARED", "DELIVERED", "FUNDS_ESCHEATED")
            else "IN_PROCESS"
        )
        payment["disbursementStatus"] = single_status
        payment["updatedTime"] = stamp(self.now())
        for application in payment["billPayments"]:
            self._recount(self.bills[application["billId"]])
        self._emit("payment.updated", "payment", self.payment_event(payment))
        if single_status in FAILED_STATUSES:
            self._emit("payment.failed", "payment", self.payment_event(payment))

    def _recount(self, bill: dict[str, Any]) -> None:
        paid = sum(
            (
                a["amount"]
                for p in self.payments.values()
                if p["singleStatus"] not in NOT_COUNTED
                for a in p["billPayments"]
                if a["billId"] == bill["id"]
            ),
            Decimal(0),
        )
        bill["dueAmount"] = bill["amount"] - paid
        # UNCONFIRMED (bill.md §8): beyond UNPAID, the emulator assumes PARTIALLY_PAID and PAID.
        bill["paymentStatus"] = (
            "UNPAID" if paid == 0 else "PAID" if paid >= bill["amount"] else "PARTIALLY_PAID"
        )

    def payment_event(self, payment: Mapping[str, Any]) -> dict[str, Any]:
        """A payment as ``payment.updated`` carries it (bill.md §6)."""
        return {
            "id": payment["id"],
            "billIds": [a["billId"] for a in payment["billPayments"]],
            "transactionNumber": payment["transactionNumber"],
            "status": payment["singleStatus"],
            "createdBy": USER_ID,
            "createdTime": payment["createdTime"],
            "updatedTime": payment["updatedTime"],
            "processDate": payment["processDate"],
            "funding": {"type": "BANK_ACCOUNT", "id": payment["fundingAccount"]["id"]},
            "disbursement": {"type": "ACH"},
            "vendor": {"id": payment["vendorId"], "name": payment["vendorName"]},
            "billingType": "BDC",
        }

    # --- Webhook API (bill.md §6) ----------------------------------------------------------------

    async def _catalog(self, request: Request) -> Response:
        return self._json([{"type": t, "version": "1"} for t in EVENT_TYPES])

    def _check_subscription(self, body: Any, own_id: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self._invalid("subscription", "must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._invalid("name", "must not be blank")
        status = body.get("status")
        if not isinstance(status, dict) or not isinstance(status.get("enabled"), bool):
            raise self._invalid("status.enabled", "must be true or false")
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise self._invalid("events", "at least one event is required")
        types = []
        for i, event in enumerate(events):
            if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
                raise self._invalid(f"events[{i}].type", "is not in the event catalog")
            if str(event.get("version", "1")) != "1":
                raise self._invalid(f"events[{i}].version", "must be 1")
            types.append(event["type"])
        url = body.get("notificationUrl")
        parts = urlsplit(url) if isinstance(url, str) else None
        https = parts is not None and parts.scheme == "https" and bool(parts.netloc)
        local = (
            parts is not None
            and parts.scheme == "http"
            and (parts.hostname in _LOOPBACK or self.config.allow_http_webhooks)
        )
        if not (https or local):
            raise self._invalid("notificationUrl", "must be an HTTPS URL")
        for other in self.subscriptions.values():
            same = sorted(e["type"] for e in other["events"]) == sorted(types)
            if other["id"] != own_id and same and other["notificationUrl"] == url:
                # UNCONFIRMED (bill.md §8): the code of a duplicate; the emulator answers 400.
                raise self._invalid("notificationUrl", "a subscription with these events exists")
        return {
            "name": name,
            "status": {"enabled": status["enabled"]},
            "events": [{"type": t, "version": "1"} for t in types],
            "notificationUrl": url,
        }

    async def _idempotent(
        self, request: Request, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run a create or rotation once per ``X-Idempotent-Key`` (bill.md §6)."""
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        try:
            valid = uuid.UUID(key).version == 4
        except ValueError:
            valid = False
        if not valid:
            raise self._invalid(IDEMPOTENCY_HEADER, "must be a UUID4")
        slot = f"{self.config.organization_id}/{key}"
        now = self.now()
        known = self._idempotency.get(slot)
        if known is not None and now - known.started < IDEMPOTENCY_TTL:
            if known.response is None:  # the first request with this key is still running
                raise _Refusal(self._error(429, CONCURRENT, "Request with this key in progress."))
            status, content = known.response
            return Response(content, status, media_type="application/json")
        entry = self._idempotency[slot] = _Idempotent(started=now)
        await self._pause("idempotent")  # the work takes a moment: a second request can overlap
        try:
            response = await work()
        except _Refusal as refusal:
            del self._idempotency[slot]
            raise refusal from None
        entry.response = (response.status_code, bytes(response.body))
        return response

    def _subscription_view(self, sub: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
        view = self._public(sub)
        if key is not None:  # bill.md §6: shown only on create and rotation
            view["securityKey"] = key
        return view

    async def _subscriptions(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list(
                request,
                "subscriptions",
                (self._public(s) for s in self.subscriptions.values()),
                public=False,
            )

        async def create() -> Response:
            checked = self._check_subscription(await self._body(request), None)
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                # UNCONFIRMED (bill.md §8): the code when the limit is reached; 400.
                raise self._invalid("subscription", f"at most {MAX_SUBSCRIPTIONS} per organization")
            now = stamp(self.now())
            sub = {
                "id": self._new_id("sub"),
                "organizationId": self.config.organization_id,
                **checked,
                "createdTime": now,
                "updatedTime": now,
            }
            self.subscriptions[sub["id"]] = sub
            key = self._keys[sub["id"]] = secrets.token_urlsafe(32)
            return self._json(self._subscription_view(sub, key))  # webhook API: 200 (§6)

        return await self._idempotent(request, create)

    async def _subscription(self, request: Request) -> Response:
        sub = self._found(self.subscriptions, request.path_params["id"])
        if request.method == "GET":
            return self._json(self._subscription_view(sub))
        if request.method == "DELETE":
            del self.subscriptions[sub["id"]]
            self._keys.pop(sub["id"], None)
            return self._json({})
        # bill.md §6: PATCH and PUT both need name, status, events and notificationUrl.
        checked = self._check_subscription(await self._body(request), sub["id"])
        sub.update(checked, updatedTime=stamp(self.now()))
        return self._json(self._subscription_view(sub))

    async def _rotate_key(self, request: Request) -> Response:
        # UNCONFIRMED (bill.md §8): security_key vs security-key; the emulator accepts both.
        sub = self._found(self.subscriptions, request.path_params["id"])

        async def rotate() -> Response:
            key = self._keys[sub["id"]] = secrets.token_urlsafe(32)
            sub["updatedTime"] = stamp(self.now())
            return self._json(self._subscription_view(sub, key))

        return await self._idempotent(request, rotate)

    # --- Webhook deliveries (bill.md §6) ---------------------------------------------------------

    def _emit(self, event_type: str, entity_key: str, entity: Mapping[str, Any]) -> None:
        for sub in self.subscriptions.values():
            if not sub["status"]["enabled"]:
                continue
            if event_type not in {e["type"] for e in sub["events"]}:
                continue
            delivery = self.signed_delivery(sub["id"], event_type, entity_key, entity)
            copies = 2 if self.config.duplicate_deliveries else 1
            self.outbox += [delivery] * copies
        if self.outbox and self.config.auto_deliver:
            self._schedule_delivery()

    def signed_delivery(
        self, subscription_id: str, event_type: str, entity_key: str, entity: Mapping[str, Any]
    ) -> Delivery:
        """One event as BILL sends it: minified JSON, signed over exactly those bytes (§6)."""
        sub = self.subscriptions[subscription_id]
        event_id = self._new_id("evt")
        body = dumps(
            {
                "metadata": {
                    "eventId": event_id,
                    "subscriptionId": subscription_id,
                    "organizationId": self.config.organization_id,
                    "eventType": event_type,
                    "version": "1",
                },
                entity_key: self._public(entity),
            }
        )
        headers = {
            SIGNATURE_HEADER: sign(body, self._keys[subscription_id]),
            "content-type": "application/json",
        }
        return Delivery(
            subscription_id, event_id, event_type, sub["notificationUrl"], body, headers
        )

    def _schedule_delivery(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a test hook called from another thread than the server's
            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon_threadsafe(self._start_delivery)
            return
        if loop is self._loop or self._loop is None:
            self._start_delivery()

    def _start_delivery(self) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver_pending())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver_pending(self) -> int:
        """Send every queued delivery with BILL's retries; how many a receiver accepted.

        A delivery fails without an HTTP 200 within ``delivery_timeout``; it is retried after
        2, 4, 8 and 16 seconds (times ``delivery_backoff_scale``), and when the last retry fails
        the subscription is disabled (``status.enabled = false``) and sends nothing more.
        """
        accepted = 0
        async with httpx.AsyncClient(
            transport=self.config.delivery_transport, timeout=self.config.delivery_timeout
        ) as http:
            while self.outbox:
                batch, self.outbox = self.outbox, []
                if self.config.shuffle_deliveries:
                    self._rng.shuffle(batch)
                for delivery in batch:
                    accepted += await self._deliver(http, delivery)
        return accepted

    async def _deliver(self, http: httpx.AsyncClient, delivery: Delivery) -> bool:
        sleep = self.config.delivery_sleep or asyncio.sleep
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
            sub = self.subscriptions.get(delivery.subscription_id)
            if sub is None or not sub["status"]["enabled"]:
                return False
            if delay:
                await sleep(delay * self.config.delivery_backoff_scale)
            try:
                response = await http.post(
                    delivery.url, content=delivery.body, headers=delivery.headers
                )
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None
            ok = status == 200  # bill.md §6: anything but a 200 within 10 s is a failure
            self.attempts.append(
                DeliveryAttempt(delivery.event_id, delivery.subscription_id, attempt, status, ok)
            )
            if ok:
                delivery.delivered = True
                self.delivered.append(delivery)
                return True
        sub = self.subscriptions.get(delivery.subscription_id)
        if sub is not None:
            # UNCONFIRMED (bill.md §8): failures before auto-disable; after the 4th retry.
            sub["status"] = {"enabled": False}
            sub["updatedTime"] = stamp(self.now())
            log.info("BILL emulator disabled subscription %s after failed deliveries", sub["id"])
        return False

    async def drain(self) -> None:
        """Wait for background deliveries started by ``auto_deliver``."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def _pause(self, point: str) -> None:
        hold = self._holds.get(point)
        if hold is not None:
            hold.waiting += 1
            hold.reached.set()
            await hold.released.wait()

    # --- Test hooks ------------------------------------------------------------------------------

    def hold(self, point: str) -> Hold:
        """Keep requests waiting at ``point`` until the hold is released.

        ``"gate"``: after a request took its in-flight slot (so others meet the cap);
        ``"idempotent"``: after a create or rotation claimed its ``X-Idempotent-Key``.
        """
        if point not in ("gate", "idempotent"):
            raise ValueError(f"no hold point {point!r}")
        hold = self._holds[point] = Hold()
        return hold

    def release(self) -> None:
        """Let every held request go on, and hold nothing more."""
        for hold in self._holds.values():
            hold.release()
        self._holds.clear()

    def expire_sessions(self) -> None:
        """End every session, as 35 idle minutes would."""
        self.sessions.expire_all()

    def expire_sessions_after(self, requests: int) -> None:
        """End every session once ``requests`` more requests have arrived (mid-run expiry)."""
        self._expire_countdown = max(1, requests)

    def refuse_invoice(
        self,
        invoice_number: str,
        field_name: str = "invoice.invoiceNumber",
        reason: str = "refused",
    ) -> None:
        """Refuse any bill with this invoice number (single or bulk: the whole batch)."""
        self._refused_invoices[invoice_number] = (field_name, reason)

    def pay(
        self,
        amounts: Mapping[str, Decimal | None] | Sequence[str],
        *,
        single_status: str = "SENT",
        process_date: date | None = None,
        transaction_number: str | None = None,
    ) -> str:
        """Pay bills of one vendor with one payment (one ``billPayments`` entry per bill).

        Args:
            amounts: Bill ids (paid in full), or bill id to amount (``None``: what is owed).
            single_status: The payment's ``singleStatus`` (``SENT``: the money has left).
            process_date: The payment's process date (default: today).
            transaction_number: BILL's ``transactionNumber``.

        Returns:
            The payment's id (``stp…``).

        Raises:
            ValueError: Unknown status, no bills, bills of several vendors, or a bad amount.
        """
        if single_status not in SINGLE_STATUSES:
            raise ValueError(f"unknown singleStatus {single_status}")
        wanted = dict.fromkeys(amounts) if not isinstance(amounts, Mapping) else dict(amounts)
        bills = [self.bills[bill_id] for bill_id in wanted]
        if not bills or len({b["vendorId"] for b in bills}) != 1:
            raise ValueError("a payment pays one or more bills of a single vendor")
        resolved = {}
        for bill in bills:
            amount = wanted[bill["id"]]
            amount = bill["dueAmount"] if amount is None else amount
            if not 0 < amount <= bill["dueAmount"]:
                raise ValueError(f"cannot pay {amount} on bill {bill['id']}")
            resolved[bill["id"]] = amount
        payment = self._record_payment(
            resolved,
            single_status=single_status,
            process_date=process_date,
            transaction_number=transaction_number,
        )
        return str(payment["id"])

    def set_payment_status(self, payment_id: str, single_status: str) -> None:
        """Move a payment to another ``singleStatus`` (e.g. ``VOIDED``), as BILL would."""
        if single_status not in SINGLE_STATUSES:
            raise ValueError(f"unknown singleStatus {single_status}")
        self._set_status(self.payments[payment_id], single_status)

    def disable_subscription(self, subscription_id: str) -> None:
        """Disable a subscription, as BILL does after failed deliveries."""
        self.subscriptions[subscription_id]["status"] = {"enabled": False}

    def security_key(self, subscription_id: str) -> str:
        """A subscription's current signing key (what BILL showed once)."""
        return self._keys[subscription_id]

    def bills_for(self, vendor_id: str, invoice_number: str) -> list[dict[str, Any]]:
        """Every bill with that vendor and invoice number (more than one is a duplicate)."""
        return [
            b
            for b in self.bills.values()
            if b["vendorId"] == vendor_id and b["invoice"]["invoiceNumber"] == invoice_number
        ]

    def account_id(self, number: str) -> str:
        """The chart-of-accounts id of an account number.

        Raises:
            KeyError: No such number.
        """
        for record in self.classifications["chart-of-accounts"].values():
            if (record.get("account") or {}).get("number") == number:
                return str(record["id"])
        raise KeyError(number)

    # --- The demo's DemoSink protocol ------------------------------------------------------------

    def seed_chart(self, accounts: dict[str, str]) -> None:
        """Add chart-of-accounts entries (number to name) that are not there yet."""
        known = {
            (r.get("account") or {}).get("number")
            for r in self.classifications["chart-of-accounts"].values()
        }
        for number, name in accounts.items():
            if number not in known:
                kind = "ACCOUNTS_PAYABLE" if "payable" in name.lower() else "EXPENSE"
                self._add(
                    "chart-of-accounts", {"name": name, "account": {"number": number, "type": kind}}
                )

    def bills_by_key(self) -> dict[BillKey, int]:
        """How many unarchived bills there are per (vendor name, invoice number)."""
        counts: Counter[BillKey] = Counter()
        for bill in self.bills.values():
            if not bill["archived"]:
                counts[(bill["vendorName"], bill["invoice"]["invoiceNumber"])] += 1
        return dict(counts)

    def bill_totals(self) -> dict[BillKey, Decimal]:
        """Each unarchived bill's amount by (vendor name, invoice number); the newest wins."""
        totals: dict[BillKey, Decimal] = {}
        for bill in sorted(self.bills.values(), key=lambda b: (b["createdTime"], b["id"])):
            if not bill["archived"]:
                totals[(bill["vendorName"], bill["invoice"]["invoiceNumber"])] = bill["amount"]
        return totals

    def pay_bills(self, count: int) -> list[BillKey]:
        """Pay ``count`` unpaid bills in full, oldest first, one SENT payment each."""
        paid: list[BillKey] = []
        unpaid = [b for b in self.bills.values() if b["paymentStatus"] == "UNPAID"]
        for bill in sorted(unpaid, key=lambda b: (b["createdTime"], b["id"]))[:count]:
            self.pay([bill["id"]])
            paid.append((bill["vendorName"], bill["invoice"]["invoiceNumber"]))
        return paid


def create_emulator(options: EmulatorOptions | None = None) -> BillEmulator:
    """The ``ml_connector.emulators`` entry point: a BILL emulator with ``options``."""
    return BillEmulator(options)
