"""A protocol-faithful fake of Epicor Kinetic's REST API v2 (facts: shared/api/epicor.md).

Served as ``ml-connector emulate epicor``; tests use it in process through
:meth:`~ml_connector.emulation.Emulator.transport`. What it reproduces:

- **Paths** (§1): ``/{instance}/api/v2/odata/{Company}/{Service}/{EntitySet|Method}``, composite
  keys in parentheses with quoted strings (``APInvoices('EPIC06',101,'INV-1')``), GL key column
  ``GLAccount1``; ``/{instance}/TokenResource.svc/``; an OAuth2 token endpoint at
  ``/idp/connect/token`` standing in for Kinetic cloud's identity provider.
- **Identity** (§2): every v2 call needs ``x-api-key`` (valid for the company in the URL) *and*
  Basic or Bearer; the three 401s carry the captured messages, the invalid-key one echoing the
  key. Tokens expire (absolute lifetime, moved by the emulator's clock).
- **OData** (§4, §7): ``$filter``, ``$select``, ``$expand``, ``$orderby``, ``$top``, ``$skip``
  (case-sensitive: ``$Filter`` is ignored), ``{"value": […]}`` with ``@odata.context``, a row cap
  of 100, ``/$count`` as plain text; switchable, seeded 500s on direct reads of the services
  known for them, whose ``GetRows`` method keeps working (flat tables, every table's rows).
- **Navigations** as SNO's schema lists them: ``$expand`` is OData v4 (``APInvDtls($expand=
  APInvExps;$select=…)``); the AP distribution is a child of the *line*, so ``$expand=APInvExps``
  on ``APInvoices`` is a 400 ``ODataException`` "Could not find a property named 'APInvExps' on
  type 'Erp.Tablesets.APInvHedRow'.", as is any unknown navigation and the v3 path form
  ``APInvDtls/APInvExps``. Real navigations the emulator keeps no rows for expand empty.
- **Errors** (§3): ``HttpStatus``/``ReasonPhrase``/``ErrorMessage``/``ErrorType``/
  ``ErrorDetails``/``CorrelationId``; business rules as 400 ``BusinessObjectException``.
- **Payment entry** (§5): payment groups (create, lock, post), ``CreateNewCheckHed`` and the
  ``OnChange…`` methods over the dataset, ``Update``, and group posting through
  ``Erp.PROC.APPaymentPostSvc``, which reduces the invoices' balances: ``GetNewParameters`` is a
  GET (a POST is a 405) answering the ``APPaymentPostTableset`` (``APPaymentPostProcess``);
  ``RunDirect {ds}`` refuses a tableset without an ``APPaymentPostProcess`` row (400).
- **Chart segments**: ``Erp.BO.COASegValuesSvc/COASegValues`` (segment values and their names)
  beside GL accounts with ``SegValue1``..``SegValue20``.

Options (``EmulatorOptions.extra``): ``invoices`` (posted invoices to seed, default 40),
``token_lifetime_seconds`` (3600), ``odata_500`` (share of direct OData reads of the 500-prone
services that fail, default 0), ``odata_500_services``, ``date_literal`` (``"v4"``, or ``"v3"``
to accept only ``datetime'…'``), ``token_answer`` (``"json"`` or ``"xml"``),
``expired_token_status`` (401 or 410), ``getrows_page_base`` (0, or 1 where page 0 repeats
page 1), ``next_link`` (emit ``@odata.nextLink``), ``row_cap`` (100).
"""

from __future__ import annotations

import base64
import functools
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlencode

from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ml_connector.emulation import Emulator, EmulatorOptions, SessionStore
from ml_connector_epicor._emulator_books import Books, BusinessError, DuplicateRecord, wire
from ml_connector_epicor._emulator_query import (
    ExpandItem,
    QuerySyntaxError,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_where,
    sort_rows,
)
from ml_connector_epicor._emulator_seed import (
    ACCOUNTS,
    TAX_ACCOUNT,
    UNMAPPED_NATURAL,
    Seeded,
    seed_books,
)
from ml_connector_epicor.schemas import (
    AP_INVOICE_SVC,
    AP_PAYMENT_POST_SVC,
    CHECK_GROUP_SVC,
    COA_SEGMENT_SVC,
    GETROWS_TABLES,
    GL_ACCOUNT_SVC,
    PAYMENT_ENTRY_SVC,
    VENDOR_SVC,
    dumps,
    loads,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from starlette.requests import Request
    from starlette.routing import BaseRoute

__all__ = ["EpicorEmulator", "create_emulator"]

Row = dict[str, Any]

_UNAUTHORIZED = "System.UnauthorizedAccessException"
_BUSINESS = "Ice.Common.BusinessObjectException"
_ODATA = "Microsoft.OData.ODataException"
_API = "Epicor.RESTApi.ErrorHandling.ApiException"

#: Services some public code reports answering 500 on direct OData reads (§4, UNCONFIRMED).
FLAKY_SERVICES = frozenset(
    {AP_INVOICE_SVC, VENDOR_SVC, PAYMENT_ENTRY_SVC, GL_ACCOUNT_SVC, "Erp.BO.APInvGrpSvc"}
)

#: Columns of tables that start empty, so filters on them are checked before the first row.
_EMPTY_TABLE_COLUMNS = {
    "CheckHed": frozenset(
        {
            "Company",
            "HeadNum",
            "GroupID",
            "BankAcctID",
            "CheckDate",
            "CheckNum",
            "VendorNum",
            "VendorNumVendorID",
            "Name",
            "CurrencyCode",
            "ManualPrint",
            "CheckAmt",
            "DocCheckAmt",
            "CheckSrc",
            "Posted",
            "Voided",
            "XRefCheckNum",
            "Description",
            "SysRevID",
            "SysRowID",
        }
    ),
    "APTran": frozenset(
        {
            "Company",
            "TranType",
            "HeadNum",
            "APTranNo",
            "InvoiceNum",
            "VendorNum",
            "TranAmt",
            "DocTranAmt",
            "DiscAmt",
            "DocDiscAmt",
            "TranDate",
            "Posted",
        }
    ),
    "APChkGrp": frozenset(
        {
            "Company",
            "GroupID",
            "CreatedBy",
            "ActiveUserID",
            "BankAcctID",
            "CheckDate",
            "CurrencyCode",
            "PMUID",
            "PostInProcess",
            "SysRevID",
            "SysRowID",
        }
    ),
}


#: The verbs each method answers to; any other method is POST only. SNO (the v1 swagger of one
#: SaaS instance) lists GetNewParameters (no parameter) as GET only, and GetRows as GET with
#: its where clauses in the query string; the client posts GetRows (epicor.md §4), which the
#: emulator keeps accepting (UNCONFIRMED either way for v2).
_METHOD_VERBS: dict[str, frozenset[str]] = {
    "GetNewParameters": frozenset({"GET"}),
    "GetRows": frozenset({"GET", "POST"}),
}


def _seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography


@functools.cache
def _seeded_columns() -> dict[str, frozenset[str]]:
    """The columns of the tables seeding fills, known before the first row exists."""
    scratch = Books("X", lambda: datetime.now(UTC), _seeded(0))
    vendor = scratch.add_vendor("V", "Vendor")
    account = scratch.add_account("1000", "00", "Account")
    invoice = scratch.invoices[scratch.add_invoice(vendor, "I", [(Decimal(1), account, "x")])]
    segment = scratch.add_segment_value(2, "00", "Segment")
    return {
        "Vendor": frozenset(scratch.vendors[vendor]),
        "GLAccount": frozenset(scratch.accounts[account]),
        "COASegValues": frozenset(scratch.segment_values[segment]),
        "APInvHed": frozenset(invoice.head),
        "APInvDtl": frozenset(invoice.lines[0]),
        "APInvExp": frozenset(invoice.expenses[0]),
    }


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


class _MethodNotAllowed(Exception):
    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"The requested resource does not support http method '{method}'.")
        self.allowed = allowed


def _table_columns(table: str, rows: list[Row]) -> frozenset[str]:
    found = set(_EMPTY_TABLE_COLUMNS.get(table, ()))
    found.update(_seeded_columns().get(table, ()))
    for row in rows:
        found.update(row)
    return frozenset(found)


def _none(_: Row) -> list[Row]:
    return []


@dataclass
class _Nav:
    """A navigation property: a parent row's child rows, and the children's own navigations.

    ``type_name`` is the child's entity type (``Erp.Tablesets.<Table>Row``, as SNO's schema
    names them), which Kinetic's OData errors name.
    """

    table: str
    rows: Callable[[Row], list[Row]] = _none
    navs: dict[str, _Nav] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return f"Erp.Tablesets.{self.table}Row"


def _unserved(*pairs: tuple[str, str]) -> dict[str, _Nav]:
    """Navigations Kinetic has (SNO's schema) that the emulator keeps no rows for.

    ``(navigation, table)`` pairs: they are valid in ``$expand`` and expand to nothing.
    """
    return {name: _Nav(table) for name, table in pairs}


@dataclass
class _EntitySet:
    bo: str
    name: str
    table: str
    keys: tuple[str, ...]
    rows: Callable[[], list[Row]]
    navs: dict[str, _Nav] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return f"Erp.Tablesets.{self.table}Row"

    def columns(self, rows: list[Row] | None = None) -> frozenset[str]:
        return _table_columns(self.table, rows if rows is not None else self.rows())


def _split_entity(rest: str) -> tuple[str, list[Any] | None, str]:
    """``APInvoices('EPIC06',101,'INV-1')/$count`` -> name, key values, the rest."""
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
    if match is None:
        raise _NotFound(f"Resource not found for the segment '{rest}'.")
    name, pos = match.group(0), match.end()
    if pos >= len(rest) or rest[pos] != "(":
        return name, None, rest[pos:]
    keys: list[Any] = []
    pos += 1
    while True:
        if rest.startswith("'", pos):
            end = pos + 1
            text = []
            while True:
                quote = rest.find("'", end)
                if quote < 0:
                    raise _BadRequest("Unterminated string literal in the key.")
                text.append(rest[end:quote])
                if rest.startswith("''", quote):
                    text.append("'")
                    end = quote + 2
                    continue
                pos = quote + 1
                break
            keys.append("".join(text))
        else:
            match = re.match(r"-?\d+", rest[pos:])
            if match is None:
                raise _BadRequest(f"Bad key segment in '{rest}'.")
            keys.append(int(match.group(0)))
            pos += match.end()
        if rest.startswith(",", pos):
            pos += 1
            continue
        if rest.startswith(")", pos):
            return name, keys, rest[pos + 1 :]
        raise _BadRequest(f"Bad key segment in '{rest}'.")


class EpicorEmulator(Emulator):
    """Epicor Kinetic REST v2 for one company, seeded with realistic AP data.

    Attributes:
        books: The company's data (tests seed and inspect it).
        tokens: Issued bearer tokens.
    """

    system: ClassVar[str] = "epicor"
    base_path: ClassVar[str] = ""

    INSTANCE: ClassVar[str] = "KineticDemo"
    COMPANY: ClassVar[str] = "EPIC06"
    API_KEY: ClassVar[str] = "kZx8Qm2VtR7bN4wLpE9sHc3Y"
    USER: ClassVar[str] = "ap.integration"
    PASSWORD: ClassVar[str] = "Kinetic-AP-2024!"  # noqa: S105 - the emulator's own test user
    CLIENT_ID: ClassVar[str] = "ml-connector-ap"
    CLIENT_SECRET: ClassVar[str] = "cs-7f3e9a1b5d2c8e4f"  # noqa: S105 - a test client
    BANK: ClassVar[str] = "BILLPAY"

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        self._rng = _seeded(self.options.seed)
        self.users = {self.USER: self.PASSWORD}
        self.clients = {self.CLIENT_ID: self.CLIENT_SECRET}
        self.api_keys: dict[str, set[str]] = {self.API_KEY: {self.COMPANY}}
        self.denied: dict[str, set[str]] = {}
        lifetime = float(
            extra.get("token_lifetime_seconds") or self.options.session_idle_seconds or 3600
        )
        self.token_lifetime = timedelta(seconds=lifetime)
        self.tokens = SessionStore(
            None, lifetime=self.token_lifetime, clock=self.now, prefix="eyJ0eXAiOiJKV1Qi."
        )
        self.date_literal = str(extra.get("date_literal", "v4"))
        self.answer_format = str(extra.get("token_answer", "json"))
        self.expired_status = int(extra.get("expired_token_status", 401))
        self.getrows_page_base = int(extra.get("getrows_page_base", 0))
        self.next_link = bool(extra.get("next_link", False))
        self.row_cap = int(extra.get("row_cap", 100))
        self.odata_500_rate = float(extra.get("odata_500", 0.0))
        self.odata_500_services = set(extra.get("odata_500_services", FLAKY_SERVICES))
        self._malformed = 0
        self.books = Books(self.COMPANY, self.now, _seeded(self.options.seed + 1))
        self.seeded = Seeded()
        invoices = int(extra.get("invoices", 40))
        if invoices:
            self.seeded = seed_books(self.books, invoices=invoices, rng=_seeded(self.options.seed))
        self._sets = self._entity_sets()
        self._methods = self._method_table()

    # --- The Emulator contract -------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Kinetic's paths (epicor.md §1, §2)."""
        return [
            Route("/idp/connect/token", self._oauth_token, methods=["POST"]),
            Route("/{instance}/TokenResource.svc/", self._token_resource, methods=["POST"]),
            Route("/{instance}/TokenResource.svc", self._token_resource, methods=["POST"]),
            Route(
                "/{instance}/api/v2/odata/{company}/{service}/{rest:path}",
                self._v2,
                methods=["GET", "POST"],
            ),
        ]

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """Kinetic's error body; a 502 is plain text, as a gateway in front of Kinetic sends it."""
        if status == 502:
            return PlainTextResponse("502 Bad Gateway", status_code=502)
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        if kind == "session":
            return self._expired()
        error_type = "Ice.Common.EpicorServerException" if status >= 500 else _API
        if kind == "throttled":
            message = "Too many requests. " + message
        return self._error(status, message, error_type, headers=headers)

    def credentials(self) -> dict[str, str]:
        """API key and the integration user (works for ``basic`` and ``token_resource``)."""
        return {"api_key": self.API_KEY, "username": self.USER, "password": self.PASSWORD}

    def settings(self, base_url: str) -> dict[str, Any]:
        """Settings for this emulator at ``base_url``: TokenResource tokens, the seeded chart."""
        return {
            "server_url": base_url,
            "instance": self.INSTANCE,
            "company": self.COMPANY,
            "auth": "token_resource",
            "tax_account": TAX_ACCOUNT,
            "payment_bank_account": self.BANK,
        }

    # --- Test controls ---------------------------------------------------------------------------

    def oauth_settings(self, base_url: str) -> dict[str, Any]:
        """Settings for OAuth2 client credentials against this emulator's token endpoint."""
        return self.settings(base_url) | {
            "auth": "oauth",
            "token_url": base_url + "/idp/connect/token",
        }

    def oauth_credentials(self) -> dict[str, str]:
        """API key and the OAuth2 client."""
        return {
            "api_key": self.API_KEY,
            "client_id": self.CLIENT_ID,
            "client_secret": self.CLIENT_SECRET,
        }

    def expire_tokens(self) -> None:
        """End every issued token, as their expiry would."""
        self.tokens.expire_all()

    def revoke_credentials(self) -> None:
        """Reject every password and client secret from now on, and end every token."""
        self.users = {u: "revoked-" + uuid.uuid4().hex for u in self.users}
        self.clients = {c: "revoked-" + uuid.uuid4().hex for c in self.clients}
        self.expire_tokens()

    def deny(self, principal: str, method: str) -> None:
        """Take a right away, e.g. ``deny("ap.integration", "Erp.BO.PaymentEntry.Update")``."""
        self.denied.setdefault(principal, set()).add(method)

    def malform_next(self, count: int = 1) -> None:
        """Answer the next v2 calls with a 200 HTML page, as a misconfigured proxy does."""
        self._malformed += count

    def set_odata_500(self, rate: float, services: set[str] | None = None) -> None:
        """Fail this share of direct OData reads of ``services`` (default: the known ones)."""
        self.odata_500_rate = rate
        if services is not None:
            self.odata_500_services = set(services)

    # --- Errors ----------------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        message: str,
        error_type: str,
        details: list[Row] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body: Row = {
            "HttpStatus": status,
            "ReasonPhrase": "REST API Exception",
            "ErrorMessage": message,
            "ErrorType": error_type,
            "CorrelationId": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
        }
        if details is not None:
            body["ErrorDetails"] = details
        return Response(
            dumps(body),
            status,
            headers=dict(headers or {}),
            media_type="application/json; charset=utf-8",
        )

    def _unauthorized(self, message: str) -> Response:
        return self._error(401, message, _UNAUTHORIZED)

    def _expired(self) -> Response:
        # UNCONFIRMED (§2, §8): how an expired token is reported; 401 by default, 410
        # InvalidSessionException as the option.
        if self.expired_status == 410:
            return self._error(410, "Session has expired.", "Ice.Common.InvalidSessionException")
        return self._unauthorized("The access token is invalid or has expired.")

    def _business(self, exc: BusinessError) -> Response:
        detail = {
            "Message": exc.message,
            "Type": "Error",
            "Table": exc.table,
            "Field": exc.column,
            "Program": "",
            "Method": "",
        }
        return self._error(400, exc.message, _BUSINESS, [detail])

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(dumps(body), status, media_type="application/json; charset=utf-8")

    # --- Identity --------------------------------------------------------------------------------

    def _identity(self, request: Request, company: str) -> str | Response:
        key = request.headers.get("x-api-key")
        if not key:
            # UNCONFIRMED (§2, §8): status and body for a missing key; 401 "Invalid API Key.".
            return self._unauthorized("Invalid API Key.")
        if company not in self.api_keys.get(key, set()):
            # The captured message names the refused key and the company (§2).
            return self._unauthorized(f"Invalid API Key {key}.\r\nCompany {company}.")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return self._unauthorized("Invalid username or password.")
            if self.users.get(user) != password:
                return self._unauthorized("Invalid username or password.")
            return user
        if scheme.lower() == "bearer":
            session = self.tokens.get(value.strip())
            return self._expired() if session is None else session.principal
        return self._unauthorized("Invalid username or password.")

    def _check_right(self, user: str, method: str) -> None:
        if method in self.denied.get(user, set()):
            raise PermissionError(f"Access denied ({method}).")

    async def _form(self, request: Request) -> dict[str, str]:
        fields = parse_qs((await request.body()).decode(), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    def _token_body(self, token: str) -> Response:
        seconds = int(self.token_lifetime.total_seconds())
        if self.answer_format == "xml":
            # UNCONFIRMED (§2, §8): some servers answer XML read as Token.AccessToken.
            xml = (
                '<Token xmlns="http://schemas.datacontract.org/2004/07/Epicor.Token">'
                f"<AccessToken>{token}</AccessToken><ExpiresIn>{seconds}</ExpiresIn>"
                "<TokenType>Bearer</TokenType></Token>"
            )
            return Response(xml, media_type="application/xml")
        # UNCONFIRMED (§8): the emulator answers JSON {"AccessToken","ExpiresIn","TokenType"}.
        return self._json({"AccessToken": token, "ExpiresIn": seconds, "TokenType": "Bearer"})

    async def _token_resource(self, request: Request) -> Response:
        if request.path_params["instance"] != self.INSTANCE:
            return self._error(404, "Not found.", _API)
        form = await self._form(request)
        # Both forms seen in public clients (§2): a password-grant form, or headers.
        user = form.get("username") or request.headers.get("username", "")
        password = form.get("password") or request.headers.get("password", "")
        if not user or self.users.get(user) != password:
            return self._unauthorized("Invalid username or password.")
        return self._token_body(self.tokens.create(user).token)

    async def _oauth_token(self, request: Request) -> Response:
        form = await self._form(request)
        client, secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client, _, secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                client = secret = ""
        if form.get("grant_type") != "client_credentials":
            return self._json({"error": "unsupported_grant_type"}, 400)
        if not client or self.clients.get(client) != secret:
            return self._json(
                {"error": "invalid_client", "error_description": "Client authentication failed."},
                401,
            )
        token = self.tokens.create(client).token
        seconds = int(self.token_lifetime.total_seconds())
        return self._json({"access_token": token, "token_type": "Bearer", "expires_in": seconds})

    # --- REST v2 ---------------------------------------------------------------------------------

    async def _v2(self, request: Request) -> Response:
        params = request.path_params
        if params["instance"] != self.INSTANCE:
            return self._error(404, f"Instance {params['instance']} not found.", _API)
        identity = self._identity(request, params["company"])
        if isinstance(identity, Response):
            return identity
        if self._malformed:
            self._malformed -= 1
            return HTMLResponse("<html><body><h1>Sign in</h1></body></html>")
        try:
            service, rest = params["service"], params["rest"]
            if rest in self._methods.get(service, {}):
                return await self._call_method(identity, service, rest, request)
            if request.method == "GET":
                return self._odata_get(identity, service, rest, request.query_params)
            return await self._call_method(identity, service, rest, request)
        except _MethodNotAllowed as exc:
            # UNCONFIRMED: what Kinetic answers a method called with the other verb. SNO lists
            # GetNewParameters as GET only (and RunDirect as POST only), and a POST to it is
            # refused; the emulator answers as HTTP says (405 with Allow) in Kinetic's body.
            return self._error(405, str(exc), _API, headers={"Allow": exc.allowed})
        except PermissionError as exc:
            return self._unauthorized(str(exc))
        except BusinessError as exc:
            return self._business(exc)
        except DuplicateRecord as exc:
            return self._error(409, str(exc), "Ice.Common.DuplicateRecordException")
        except QuerySyntaxError as exc:
            return self._error(400, f"The query specified in the URI is not valid. {exc}", _ODATA)
        except _BadRequest as exc:
            return self._error(400, str(exc), _API)
        except _NotFound as exc:
            return self._error(404, str(exc), _API)

    def _entity_sets(self) -> dict[str, _EntitySet]:
        """The entity sets served, with their navigations as SNO's schema lists them.

        The AP invoice's GL distribution is a navigation of the *line* (``APInvDtls(…)/
        APInvExps``), not of the header: ``$expand=APInvExps`` on ``APInvoices`` is refused.
        """
        books = self.books
        lines = _Nav(
            "APInvDtl",
            lambda r: books.invoice_children(r, "APInvDtl"),
            {
                "APInvExps": _Nav("APInvExp", books.line_expenses),
                **_unserved(
                    ("APInvDtlDEASches", "APInvDtlDEASch"), ("APInvJobs", "APInvJob"),
                    ("APInvMscs", "APInvMsc"), ("APInvPBs", "APInvPB"), ("APLnTaxes", "APLnTax"),
                    ("APInvDtlTGLCs", "APInvDtlTGLC"), ("APInvDtlAttches", "APInvDtlAttch"),
                ),
            },
        )  # fmt: skip
        return {
            AP_INVOICE_SVC: _EntitySet(
                "Erp.BO.APInvoice",
                "APInvoices",
                "APInvHed",
                ("Company", "VendorNum", "InvoiceNum"),
                books.invoice_heads,
                {
                    "APInvDtls": lines,
                    **_unserved(
                        ("APIHAPInvExps", "APIHAPInvExp"),
                        ("APIHAPInvMscs", "APIHAPInvMsc"),
                        ("APIHAPLnTaxes", "APIHAPLnTax"),
                        ("APInvHedMscTaxes", "APInvHedMscTax"),
                        ("APInvScheds", "APInvSched"),
                        ("APInvTaxes", "APInvTax"),
                        ("PESUNATDtls", "PESUNATDtl"),
                        ("EntityGLCs", "EntityGLC"),
                        ("PEAPInvTaxes", "PEAPInvTax"),
                        ("APInvHedAttches", "APInvHedAttch"),
                    ),
                },
            ),
            VENDOR_SVC: _EntitySet(
                "Erp.BO.Vendor",
                "Vendors",
                "Vendor",
                ("Company", "VendorNum"),
                lambda: list(books.vendors.values()),
                _unserved(
                    ("VendBanks", "VendBank"),
                    ("VendCntMains", "VendCntMain"),
                    ("VendorPPs", "VendorPP"),
                    ("VendRestrictions", "VendRestriction"),
                    ("VendorAttches", "VendorAttch"),
                    ("EntityGLCs", "EntityGLC"),
                    ("TaxExempts", "TaxExempt"),
                    ("PEVendWhldHists", "PEVendWhldHist"),
                    ("VenMFBills", "VenMFBill"),
                    ("VenUPSEmails", "VenUPSEmail"),
                ),
            ),
            GL_ACCOUNT_SVC: _EntitySet(
                "Erp.BO.GLAccount",
                "GLAccounts",
                "GLAccount",
                ("Company", "COACode", "GLAccount1"),
                lambda: list(books.accounts.values()),
            ),
            COA_SEGMENT_SVC: _EntitySet(
                "Erp.BO.COASegValues",
                "COASegValues",
                "COASegValues",
                ("Company", "COACode", "SegmentNbr", "SegmentCode"),
                lambda: list(books.segment_values.values()),
                _unserved(
                    ("COASegAccts", "COASegAcct"),
                    ("COASegOpts", "COASegOpt"),
                    ("COASegRes", "COASegRes"),
                ),
            ),
            PAYMENT_ENTRY_SVC: _EntitySet(
                "Erp.BO.PaymentEntry",
                "PaymentEntries",
                "CheckHed",
                ("Company", "HeadNum"),
                books.check_heads,
                {
                    "APTrans": _Nav("APTran", books.check_trans),
                    **_unserved(
                        ("BankTrans", "BankTran"),
                        ("CheckHedAttches", "CheckHedAttch"),
                        ("TaxDtls", "TaxDtl"),
                    ),
                },
            ),
            CHECK_GROUP_SVC: _EntitySet(
                "Erp.BO.APChkGrp",
                "APChkGrps",
                "APChkGrp",
                ("Company", "GroupID"),
                lambda: list(books.groups.values()),
                _unserved(("APChkGrpAttches", "APChkGrpAttch")),
            ),
        }

    def _check_expand(
        self, type_name: str, table: str, navs: dict[str, _Nav], items: tuple[ExpandItem, ...]
    ) -> None:
        """Refuse an ``$expand`` as Microsoft's OData library (Kinetic v2's) words it.

        An unknown name, a column that is no navigation, the v3 path form.
        """
        for item in items:
            name = item.path[0]
            nav = navs.get(name)
            if nav is None:
                if name in _table_columns(table, []):
                    raise QuerySyntaxError(
                        f"Property '{name}' on type '{type_name}' is not a navigation property "
                        "or complex property. Only navigation properties can be expanded."
                    )
                raise QuerySyntaxError(
                    f"Could not find a property named '{name}' on type '{type_name}'."
                )
            if len(item.path) > 1:
                # OData v3's A/B: in v4 each level of a multi-navigation path is nested.
                raise QuerySyntaxError(
                    "Found a path with multiple navigation properties or a bad complex property "
                    "path in a select clause. Please reiterate your query such that each level "
                    "of expand/select is specified in its own parenthesis."
                )
            for column in item.select or ():
                if column not in _table_columns(nav.table, []):
                    raise QuerySyntaxError(
                        f"Could not find a property named '{column}' on type '{nav.type_name}'."
                    )
            self._check_expand(nav.type_name, nav.table, nav.navs, item.expand)

    def _render(
        self,
        navs: dict[str, _Nav],
        row: Row,
        select: list[str] | tuple[str, ...] | None,
        expand: tuple[ExpandItem, ...],
    ) -> Row:
        out = wire({k: v for k, v in row.items() if select is None or k in select})
        for item in expand:
            nav = navs[item.path[0]]
            out[item.path[0]] = [
                self._render(nav.navs, child, item.select, item.expand) for child in nav.rows(row)
            ]
        return out

    def _odata_get(self, user: str, service: str, rest: str, query: Mapping[str, str]) -> Response:
        entity = self._sets.get(service)
        if entity is None:
            raise _NotFound(f"Service {service} not found.")
        name, keys, tail = _split_entity(rest)
        if name != entity.name:
            raise _NotFound(f"Resource not found for the segment '{name}'.")
        self._check_right(user, f"{entity.bo}.{'GetByID' if keys else 'GetRows'}")
        if (
            service in self.odata_500_services
            and self.odata_500_rate
            and (self._rng.random() < self.odata_500_rate)
        ):
            # UNCONFIRMED (§4): some services fail direct OData reads; GetRows still works.
            return self._error(
                500, "An unexpected internal problem occurred.", "Ice.Common.EpicorServerException"
            )
        rows = entity.rows()
        columns = entity.columns(rows)
        # $-options are case-sensitive (§4); a wrong-case one is ignored (§7, UNCONFIRMED).
        select = query["$select"].split(",") if "$select" in query else None
        expand = parse_expand(query["$expand"]) if "$expand" in query else ()
        for column in select or []:
            if column not in columns:
                raise QuerySyntaxError(
                    f"Could not find a property named '{column}' on type '{entity.type_name}'."
                )
        self._check_expand(entity.type_name, entity.table, entity.navs, expand)
        if keys is not None:
            if len(keys) != len(entity.keys) or keys[0] != self.COMPANY:
                raise _NotFound("Record not found.")
            match = [
                r
                for r in rows
                if all(r.get(k) == v for k, v in zip(entity.keys, keys, strict=True))
            ]
            if not match:
                return self._error(404, "Record not found.", "Ice.Common.RecordNotFoundException")
            found = self._render(entity.navs, match[0], select, expand)
            found["@odata.context"] = f"$metadata#{entity.name}/$entity"
            return self._json(found)
        if "$filter" in query:
            predicate = parse_filter(query["$filter"], columns, v3_dates=self.date_literal == "v3")
            rows = [r for r in rows if predicate(r)]
        if tail == "/$count":
            return PlainTextResponse(str(len(rows)))  # UNCONFIRMED (§4): served as plain text
        if tail:
            raise _NotFound(f"Resource not found for the segment '{tail}'.")
        if "$orderby" in query:
            rows = [dict(r) for r in sort_rows(rows, parse_orderby(query["$orderby"], columns))]
        try:
            skip = int(query.get("$skip", "0"))
            top = min(int(query.get("$top", str(self.row_cap))), self.row_cap)
        except ValueError:
            raise QuerySyntaxError("$top and $skip take whole numbers") from None
        page = rows[skip : skip + top]
        body: Row = {
            "@odata.context": f"$metadata#{entity.name}",
            "value": [self._render(entity.navs, r, select, expand) for r in page],
        }
        if self.next_link and skip + top < len(rows):
            following = dict(query) | {"$skip": str(skip + top)}
            body["@odata.nextLink"] = f"{entity.name}?{urlencode(following)}"
        return self._json(body)

    # --- Business-object methods -----------------------------------------------------------------

    async def _call_method(
        self, user: str, service: str, method: str, request: Request
    ) -> Response:
        handlers = self._methods.get(service)
        if handlers is None or method not in handlers:
            raise _NotFound(f"Method {method} of {service} not found.")
        verbs = _METHOD_VERBS.get(method, frozenset({"POST"}))
        if request.method not in verbs:
            raise _MethodNotAllowed(request.method, ", ".join(sorted(verbs)))
        bo = service.removesuffix("Svc")
        self._check_right(user, f"{bo}.{method}")
        if request.method == "GET":
            # Parameters of a GET method come in the query string (SNO: get_GetRows(...)).
            params: Any = dict(request.query_params)
        else:
            try:
                params = loads(await request.body() or b"{}")
            except ValueError:
                raise _BadRequest("The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            # Kinetic wants an object of named parameters, {} when there are none (§1).
            raise _BadRequest("The request body must be an object of named parameters.")
        return self._json(handlers[method](user, params))

    @staticmethod
    def _param(params: Row, name: str) -> Any:
        if name not in params:
            raise _BadRequest(f"Parameter {name} is not found in the input object")
        return params[name]

    def _ds(self, params: Row) -> Row:
        ds = self._param(params, "ds")
        if not isinstance(ds, dict):
            raise _BadRequest("Parameter ds must be a dataset object.")
        return ds

    def _method_table(self) -> dict[str, dict[str, Callable[[str, Row], Row]]]:
        books, p, ds = self.books, self._param, self._ds

        def out(value: Row, **extra: Any) -> Row:
            return {"parameters": {"ds": value, **extra}}

        payment: dict[str, Callable[[str, Row], Row]] = {
            "GetRows": lambda u, a: self._get_rows(PAYMENT_ENTRY_SVC, a),
            "CreateNewCheckHed": lambda u, a: out(books.create_check(p(a, "pcGroupID"), ds(a), u)),
            "OnChangeVendor": lambda u, a: out(books.on_change_vendor(p(a, "pcVendorID"), ds(a))),
            "OnChangeCheckDate": lambda u, a: out(
                books.on_change_head(ds(a), "CheckDate", p(a, "pdtCheckDate"))
            ),
            "OnChangeManualPrint": lambda u, a: out(
                books.on_change_head(ds(a), "ManualPrint", bool(p(a, "plManualPrint")))
            ),
            "GetNewAPTran": lambda u, a: out(
                books.new_tran(ds(a), p(a, "headNum"), p(a, "invoiceNum"))
            ),
            "OnChangeInvoiceNum": lambda u, a: out(
                books.on_change_invoice(str(p(a, "pcInvoiceNum")), ds(a)), pcQuestion=""
            ),
            "OnChangeDocTranAmt": lambda u, a: out(
                books.on_change_amount(p(a, "pdDocTranAmt"), ds(a))
            ),
            "PreUpdate": lambda u, a: out(ds(a), requiresUserInput=False),
            "Update": lambda u, a: out(books.update_checks(ds(a))),
        }
        groups: dict[str, Callable[[str, Row], Row]] = {
            "GetRows": lambda u, a: self._get_rows(CHECK_GROUP_SVC, a),
            "GetNewAPChkGrp": lambda u, a: out(books.new_group(ds(a), u)),
            "Update": lambda u, a: out(books.update_groups(ds(a))),
            "LockGroup": lambda u, a: self._lock(u, str(p(a, "pcGroupID"))),
            "UnLockGroup": lambda u, a: {
                "parameters": {"plSuccess": books.unlock_group(str(p(a, "pcGroupID")), u)}
            },
        }
        posting: dict[str, Callable[[str, Row], Row]] = {
            "GetNewParameters": lambda u, a: {"returnObj": self._new_posting_parameters(u)},
            "RunDirect": lambda u, a: self._run_posting(ds(a)),
        }

        def reader(service: str) -> Callable[[str, Row], Row]:
            return lambda u, a: self._get_rows(service, a)

        reads = {
            s: {"GetRows": reader(s)}
            for s in (AP_INVOICE_SVC, VENDOR_SVC, GL_ACCOUNT_SVC, COA_SEGMENT_SVC)
        }
        return reads | {
            PAYMENT_ENTRY_SVC: payment,
            CHECK_GROUP_SVC: groups,
            AP_PAYMENT_POST_SVC: posting,
        }

    def _lock(self, user: str, group_id: str) -> Row:
        success = self.books.lock_group(group_id, user)
        group = self.books.groups[group_id]
        return {"returnObj": {"APChkGrp": [wire(group)]}, "parameters": {"plSuccess": success}}

    def _new_posting_parameters(self, user: str) -> Row:
        """``GetNewParameters``: the ``APPaymentPostTableset`` with one new process row.

        SNO's schema: one table, ``APPaymentPostProcess`` (GroupID, ActType, AutoAction, agent,
        report and formatting columns, RowMod), beside ``ExtensionTables``.
        """
        row: Row = {
            "GroupID": "", "ActType": "", "AutoAction": "", "PrinterName": "",
            "AgentSchedNum": 0, "AgentID": "", "AgentTaskNum": 0, "RecurringTask": False,
            "RptPageSettings": "", "RptPrinterSettings": "", "RptVersion": "",
            "ReportStyleNum": 0, "WorkstationID": "", "TaskNote": "", "ArchiveCode": 0,
            "DateFormat": "m/d/yyyy", "NumericFormat": ",.", "AgentCompareString": "",
            "ProcessID": "", "ProcessCompany": self.COMPANY, "ProcessSystemCode": "Erp",
            "ProcessTaskNum": 0, "DecimalsGeneral": 2, "DecimalsCost": 5, "DecimalsPrice": 5,
            "ReportCurrencyCode": "USD", "ReportCultureCode": "en-US", "SSRSRenderFormat": "",
            "UIXml": "", "PrintReportParameters": False, "SSRSEnableRouting": False,
            "DesignMode": False, "SysRowID": "00000000-0000-0000-0000-000000000000",
            "RowMod": "A",
        }  # fmt: skip
        return {"APPaymentPostProcess": [row], "ExtensionTables": []}

    def _run_posting(self, ds: Row) -> Row:
        """``RunDirect {ds}``: post the group its ``APPaymentPostProcess`` row names.

        A tableset without that row is refused (400, naming the table): UNCONFIRMED wording,
        as Kinetic's process has nothing to run (a table of another name, e.g. the
        ``APPaymentPostParam`` an older client sent, is not read).
        """
        rows = ds.get("APPaymentPostProcess")
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            raise BusinessError(
                "There is no APPaymentPostProcess record to run: the process has no parameters.",
                "APPaymentPostProcess",
                "GroupID",
            )
        group = str(rows[0].get("GroupID") or "").strip()
        if not group:
            raise BusinessError("Group ID is required.", "APPaymentPostProcess", "GroupID")
        self.books.post_group(group)
        return {}

    def _get_rows(self, service: str, params: Row) -> Row:
        """``GetRows``: a where clause per dataset table, ``pageSize``, ``absolutePage`` (§4)."""
        entity = self._sets[service]
        tables = GETROWS_TABLES[service]
        clauses = {t: str(self._param(params, f"whereClause{t}")) for t in tables}
        try:
            size = int(self._param(params, "pageSize"))
            page = int(self._param(params, "absolutePage"))
        except (TypeError, ValueError):
            raise _BadRequest("pageSize and absolutePage take whole numbers") from None
        rows = entity.rows()
        predicate, order = parse_where(clauses[entity.table], entity.columns(rows))
        rows = [r for r in rows if predicate(r)]
        rows = [dict(r) for r in sort_rows(rows, order or [(k, False) for k in entity.keys])]
        # UNCONFIRMED (§8): absolutePage counts from 0 here; with getrows_page_base=1 pages
        # count from 1 and page 0 repeats page 1.
        index = max(0, page - self.getrows_page_base)
        chosen = rows if size <= 0 else rows[index * size : (index + 1) * size]
        more = size > 0 and (index + 1) * size < len(rows)
        dataset: Row = {t: [] for t in tables}
        dataset[entity.table] = [wire(r) for r in chosen]
        # Flat tables: every descendant row of the page's rows, in the table it belongs to (an
        # APInvExp row is in APInvExp, under no line), each table's where clause applied.
        descendants: dict[str, list[Row]] = {}

        def collect(navs: dict[str, _Nav], parents: list[Row]) -> None:
            for nav in navs.values():
                kids = [k for p in parents for k in nav.rows(p)]
                descendants.setdefault(nav.table, []).extend(kids)
                collect(nav.navs, kids)

        collect(entity.navs, chosen)
        for table, kids in descendants.items():
            clause = clauses.get(table, "1=0").strip()
            if table not in dataset or clause == "1=0":
                continue
            if clause:
                kid_filter, _ = parse_where(clause, _table_columns(table, kids))
                kids = [k for k in kids if kid_filter(k)]
            dataset[table] = [wire(k) for k in kids]
        return {"returnObj": dataset, "parameters": {"morePages": more}}

    # --- The demo (ml_connector.emulation.DemoSource) --------------------------------------------

    def seed_demo(self, bills: int, seed: int) -> None:
        """Start over with ``bills`` payable invoices and the ones that must not move.

        Also one posted invoice on an account BILL's chart will not have (the deliberate
        exception the demo shows).
        """
        self.books = Books(self.COMPANY, self.now, _seeded(seed + 1))
        self.seeded = seed_books(self.books, invoices=bills, rng=_seeded(seed), unmapped=True)
        self._sets = self._entity_sets()
        self._methods = self._method_table()

    def _bill_key(self, key: tuple[int, str]) -> tuple[str, str]:
        return self.books.vendors[key[0]]["Name"], key[1]

    def eligible_bills(self) -> set[tuple[str, str]]:
        """(vendor name, invoice number) of every invoice that must reach BILL."""
        return {self._bill_key(k) for k in self.seeded.eligible}

    def held_bill_keys(self) -> set[tuple[str, str]]:
        """(vendor name, invoice number) of the invoices that must not move.

        Unposted (unapproved, in an AP entry group), held, on payment hold, debit memos and paid
        ones. The plugin names the vendor by ``Name`` and numbers the bill by ``InvoiceNum``.
        """
        return {self._bill_key(k) for k in self.seeded.held}

    def payments_posted(self) -> dict[tuple[str, str], int]:
        """Payments applied to each invoice, by (vendor name, invoice number)."""
        counts: dict[tuple[str, str], int] = {}
        for key in self.books.invoices:
            found = len(self.books.payments_against(key))
            if found:
                counts[self._bill_key(key)] = found
        return counts

    def payments_unfinished(self) -> set[tuple[str, str]]:
        """Invoices with a payment entered whose group was never posted (pays nothing yet)."""
        return {
            self._bill_key(key)
            for key in self.books.invoices
            if any(not head["Posted"] for head, _ in self.books.payments_against(key))
        }

    def payments_carrying(self, payment_id: str) -> dict[tuple[str, str], int]:
        """How many payments with this ``XRefCheckNum`` (a BILL payment id) each invoice has.

        By (vendor name, invoice number), every ``CheckHed`` counted, posted or not, voided or
        not: the truth a test counts duplicates in. The emulator never refuses a second payment
        with the same reference: ``XRefCheckNum`` is an informational cross-reference ("not used
        by MfgSys", SNO's schema), not known to be kept unique, so only the connector's look
        before it writes keeps a BILL payment from being entered twice.
        """
        counts: dict[tuple[str, str], int] = {}
        for check in self.books.checks.values():
            if check.head.get("XRefCheckNum") != payment_id:
                continue
            for key in {(t["VendorNum"], t["InvoiceNum"]) for t in check.trans}:
                bill = self._bill_key(key) if key[0] in self.books.vendors else ("", key[1])
                counts[bill] = counts.get(bill, 0) + 1
        return counts

    def account_numbers(self) -> dict[str, str]:
        """Natural account number to name: what BILL's chart is seeded with."""
        numbers = dict(ACCOUNTS)
        if any(a["SegValue1"] == UNMAPPED_NATURAL for a in self.books.accounts.values()):
            numbers[UNMAPPED_NATURAL] = "Suspense - Unclassified"
        return numbers

    def unmapped_account(self) -> str:
        """The account number BILL's chart must not get (the deliberate exception)."""
        return UNMAPPED_NATURAL

    def bill_totals(self) -> dict[tuple[str, str], Decimal]:
        """Each eligible invoice's total (``DocInvoiceAmt``) as the company has it now."""
        return {
            self._bill_key(k): self.books.invoices[k].head["DocInvoiceAmt"]
            for k in self.seeded.eligible
        }

    def change_bill(self, key: tuple[str, str]) -> None:
        """Raise an eligible invoice's first line by 10.00; its change time becomes now.

        Kinetic does not let a posted invoice be edited; this stands for the correction a clerk
        makes some other way, which the connector must carry to BILL while the bill is unpaid.
        """
        (found,) = [k for k in self.seeded.eligible if self._bill_key(k) == key]
        self.books.adjust(found, Decimal("10.00"))

    def change_vendor(self, name: str) -> str:
        """Give the vendor named ``name`` a new phone number, as a clerk would; returns it.

        Its invoices are not touched: the connector sees the change with the vendor's next one.
        """
        vendor = next(v for v in self.books.vendors.values() if v["Name"] == name)
        last = int(vendor["PhoneNum"][-4:]) if vendor["PhoneNum"][-4:].isdigit() else 0
        vendor["PhoneNum"] = f"555-010-{(last + 1) % 10_000:04d}"
        vendor["SysRevID"] += 1
        return str(vendor["PhoneNum"])

    def expire_sessions(self) -> None:
        """End every token, as their lifetime would."""
        self.expire_tokens()


def create_emulator(options: EmulatorOptions) -> EpicorEmulator:
    """The ``ml_connector.emulators`` entry point."""
    return EpicorEmulator(options)
