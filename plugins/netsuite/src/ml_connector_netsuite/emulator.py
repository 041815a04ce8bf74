"""The Oracle NetSuite emulator: SuiteQL, the REST record API and OAuth 2.0 M2M tokens.

Built on ``ml_connector.emulation`` from /work/shared/api/netsuite.md (cited as §n below); where
that document marks a fact UNCONFIRMED, the emulator follows its "Emulator choice" column (§8) and
says so next to the behaviour. It serves paths only (``/services/rest/...``): the account host
``<account id, lower-case, _ -> ->.suitetalk.api.netsuite.com`` (§1) is what
:meth:`NetSuiteEmulator.host` returns; ``settings(base_url)`` puts the emulator's URL in
``base_url`` as the override of that host.

Routes (all but the token need ``Authorization: Bearer <access token>``)::

    POST /services/rest/auth/oauth2/v1/token               client credentials + JWT assertion
    POST /services/rest/query/v1/suiteql?limit=&offset=     {"q": "SELECT ..."}, Prefer: transient
    GET  /services/rest/record/v1/vendorBill/{id}           ?expandSubResources=true fills expense
    GET  /services/rest/record/v1/vendor/{id}
    GET  /services/rest/record/v1/vendorPayment/{id}
    POST /services/rest/record/v1/vendorPayment             204 + Location
    PUT  /services/rest/record/v1/vendorPayment/eid:{x}     upsert, 204 + Location

Options (``EmulatorOptions.extra``): ``account_id`` (default ``1234567_SB1``), ``oneworld``
(default True: subsidiaries 1 and 2, payments need subsidiary/apAcct/account),
``concurrency_limit`` (default 5, §4 standard tier), ``concurrency_status`` (429, or 400 for the
variant §3 mentions), ``token_lifetime_seconds`` (default 3600, §2).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

import jwt
from ml_connector.emulation import BillKey, ConcurrencyGate, Emulator, EmulatorOptions
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector_netsuite._emulator_auth import (
    AssertionError_,
    Integration,
    make_integration,
    verify_assertion,
)
from ml_connector_netsuite._emulator_books import (
    APPROVAL,
    BILL_STATUS,
    SCHEMA,
    Account,
    Books,
    Line,
    Txn,
    Vendor,
)
from ml_connector_netsuite._emulator_sql import Context, SqlError, render, run

__all__ = ["ErpEmulator", "NetSuiteEmulator", "create_emulator"]

REST = "/services/rest"
TOKEN_PATH = f"{REST}/auth/oauth2/v1/token"
SUITEQL_PATH = f"{REST}/query/v1/suiteql"
RECORD = f"{REST}/record/v1"
TOKEN_LIFETIME = 3600
"""§2 CONFIRMED: access tokens live 60 minutes; ``expires_in`` is always 3600 (a number, §8)."""
MAX_LIMIT = 1000
"""§4: 1000 rows per page at most (CORROBORATED), and the default."""
MAX_RESULTS = 100_000
"""§4 CONFIRMED: at most 100,000 results per query; §8 choice: 400 INVALID_PARAMETER past it."""
ERROR_TYPE = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"
ERROR_MEDIA = "application/vnd.oracle.resource+json; type=error"
"""§3 CONFIRMED: the error body's content type."""
INVALID_LOGIN = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at"
    " Setup > Users/Roles > User Management > View Login Audit Trail."
)
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
DEMO_UNMAPPED_ACCOUNT = "6999"
DEMO_ACCOUNTS = {
    "6100": "Office Supplies",
    "6200": "Rent Expense",
    "6300": "Utilities",
    "6400": "Professional Fees",
    "6500": "Travel",
    DEMO_UNMAPPED_ACCOUNT: "Suspense",
}

Handler = Callable[[Request], Awaitable[Response]]


class _Refused(Exception):
    """An error answer, raised by helpers and turned into NetSuite's error body per route."""

    def __init__(self, status: int, code: str, detail: str, path: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.path = status, code, detail, path


class NetSuiteEmulator(Emulator):
    """A NetSuite account (OneWorld by default) behind SuiteQL and the REST record API."""

    system = "netsuite"
    base_path = ""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        options = options or EmulatorOptions()
        extra = options.extra
        self.account_id = str(extra.get("account_id", "1234567_SB1"))
        self.oneworld = bool(extra.get("oneworld", True))
        idle = options.session_idle_seconds
        self.token_lifetime = timedelta(
            seconds=float(extra.get("token_lifetime_seconds", idle or TOKEN_LIFETIME))
        )
        self.gate = ConcurrencyGate(int(extra.get("concurrency_limit", 5)))
        self.concurrency_status = int(extra.get("concurrency_status", 429))
        self.credentials_valid = True
        """False: every assertion is refused (a removed M2M mapping, §2: a sandbox refresh)."""
        self.integration: Integration = make_integration(options.clock())
        self._tokens: dict[str, datetime] = {}
        self._token_key = secrets.token_bytes(32)
        self._held: asyncio.Event | None = None
        self.books = Books()
        self._rng = random.Random(options.seed)  # noqa: S311 - test data
        super().__init__(options)
        self._seed_reference_data()

    # --- Emulator ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """§1: the account's REST host, the id lower-cased with ``_`` -> ``-``."""
        return f"{self.account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com"

    @property
    def token_url(self) -> str:
        """§2: the token endpoint on the account host (an assertion's ``aud``)."""
        return f"https://{self.host}{TOKEN_PATH}"

    def routes(self) -> list[BaseRoute]:
        """The REST routes NetSuite serves, under ``/services/rest``."""
        api = self._authenticated
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(SUITEQL_PATH, api(self._suiteql), methods=["POST"]),
            Route(f"{RECORD}/vendorBill/{{rid}}", api(self._get_bill), methods=["GET"]),
            Route(f"{RECORD}/vendor/{{rid}}", api(self._get_vendor), methods=["GET"]),
            Route(f"{RECORD}/vendorPayment", api(self._post_payment), methods=["POST"]),
            Route(f"{RECORD}/vendorPayment/{{rid}}", api(self._get_payment), methods=["GET"]),
            Route(f"{RECORD}/vendorPayment/{{rid}}", api(self._put_payment), methods=["PUT"]),
        ]

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """An injected fault as NetSuite answers it.

        ``session``: the 401 INVALID_LOGIN of an expired token (§2); ``throttled``: the
        concurrency error (§3, status as injected, Retry-After only when the fault gives one,
        even 0 — NetSuite sends none, §8); ``malformed``: 200 with an HTML page; anything else:
        the error body at ``status``.
        """
        headers = {} if retry_after is None else {"Retry-After": str(max(0, round(retry_after)))}
        if kind == "session":
            return self._invalid_login()
        if kind == "malformed":
            return Response(
                "<html><body>NetSuite is unavailable</body></html>", 200, media_type="text/html"
            )
        if kind == "throttled":
            return self._error(
                status,
                "CONCURRENCY_LIMIT_EXCEEDED",
                "Concurrent request limit exceeded. Request blocked.",
                headers=headers,
                title="Bad Request",
            )
        code = "UNEXPECTED_ERROR" if status >= 500 else kind.upper()
        return self._error(status, code, message, headers=headers)

    def credentials(self) -> dict[str, str]:
        """The integration's client id, the certificate id and the private key (PEM)."""
        return {
            "client_id": self.integration.client_id,
            "certificate_id": self.integration.certificate_id,
            "private_key": self.integration.private_key_pem,
        }

    def settings(self, base_url: str) -> dict[str, Any]:
        """A connection's settings (``base_url`` overrides the account host, §1/§8)."""
        return {
            "account_id": self.account_id,
            "base_url": base_url.rstrip("/"),
            "subsidiary_id": "1" if self.oneworld else None,
            "ap_account_id": str(self._ap_account),
            "bank_account_id": str(self._bank_account),
        }

    # --- Plumbing ------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> Response:
        """§3 CONFIRMED: ``type``, ``title``, ``status``, ``o:errorDetails[]``, error media type."""
        item: dict[str, Any] = {"detail": detail, "o:errorCode": code}
        if path is not None:
            item["o:errorPath"] = path
        body = {
            "type": ERROR_TYPE,
            "title": title or TITLES.get(status, "Error"),
            "status": status,
            "o:errorDetails": [item],
        }
        return Response(json.dumps(body), status, headers=headers, media_type=ERROR_MEDIA)

    def _invalid_login(self) -> Response:
        # §2 CONFIRMED body; ADDED: the WWW-Authenticate header on rejected bearer tokens.
        header = (
            f'Bearer realm="{self.account_id}", error="invalid_token", '
            'error_description="Invalid login attempt."'
        )
        return self._error(
            401, "INVALID_LOGIN", INVALID_LOGIN, headers={"WWW-Authenticate": header}
        )

    def _authenticated(self, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            expires = self._tokens.get(token or "")
            if expires is None or self.now() >= expires:
                return self._invalid_login()
            # §4: concurrency is governed per account; the excess is refused at once (§3).
            if not self.gate.try_enter(self.account_id):
                return self._error(
                    self.concurrency_status,
                    "CONCURRENCY_LIMIT_EXCEEDED",
                    "Concurrent request limit exceeded. Request blocked.",
                    title="Bad Request",
                )
            try:
                if self._held is not None:
                    await self._held.wait()
                return await handler(request)
            except _Refused as refused:
                return self._error(refused.status, refused.code, refused.detail, path=refused.path)
            finally:
                self.gate.leave(self.account_id)

        return wrapped

    # --- OAuth 2.0 client credentials (§2) -------------------------------------------------

    async def _token(self, request: Request) -> Response:
        def refuse(status: int, error: str, description: str) -> Response:
            headers = (
                {"WWW-Authenticate": f'Basic realm="{self.account_id}"'} if status == 401 else None
            )
            return JSONResponse(
                {"error": error, "error_description": description}, status, headers=headers
            )

        # §7: form body only.
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return refuse(400, "invalid_request", "The body must be form-encoded")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return refuse(400, "invalid_request", "grant_type must be client_credentials")
        if form.get(
            "client_assertion_type"
        ) != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" or not form.get(
            "client_assertion"
        ):
            return refuse(400, "invalid_request", "A JWT client assertion is required")
        # The aud claim is the token URL (§2): the account host's, or the URL actually called
        # (a base_url override, as tests and the demo use).
        called = str(request.url).split("?")[0]
        try:
            verify_assertion(
                form["client_assertion"], self.integration, (self.token_url, called), self.now()
            )
        except AssertionError_ as refused:
            return refuse(
                401 if refused.error == "invalid_client" else 400,
                refused.error,
                refused.description,
            )
        if not self.credentials_valid:
            return refuse(401, "invalid_client", "The M2M mapping is not set up")
        now = self.now()
        token = jwt.encode(
            {
                "sub": self.integration.client_id,
                "iat": int(now.timestamp()),
                "exp": int((now + self.token_lifetime).timestamp()),
                "jti": secrets.token_hex(8),
            },
            self._token_key,
            algorithm="HS256",
        )
        self._tokens[token] = now + self.token_lifetime
        # §2: no refresh token; expires_in is a number (§8 choice).
        return JSONResponse(
            {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}
        )

    # --- SuiteQL (§4) ----------------------------------------------------------------------

    async def _suiteql(self, request: Request) -> Response:
        # §4 CONFIRMED: SuiteQL requires Prefer: transient.
        if "transient" not in request.headers.get("prefer", "").lower():
            raise _Refused(
                400,
                "INVALID_PARAMETER",
                "The request is missing the 'Prefer: transient' header.",
                None,
            )
        limit = self._int_param(request, "limit", MAX_LIMIT)
        offset = self._int_param(request, "offset", 0)
        if limit < 1:
            raise _Refused(400, "INVALID_PARAMETER", "Invalid value for limit.", None)
        # §4/§7: limit capped at 1000 (emulator choice: a larger one is cut to 1000).
        limit = min(limit, MAX_LIMIT)
        # §4 ADDED (UNCONFIRMED, one report): offset must be a multiple of limit; enforced.
        if offset < 0 or offset % limit:
            raise _Refused(
                400,
                "INVALID_PARAMETER",
                "Invalid value for offset: it must be a multiple of limit.",
                None,
            )
        # §4/§8: at most 100,000 results per query; offset >= 100,000 is refused.
        if offset >= MAX_RESULTS:
            raise _Refused(
                400,
                "INVALID_PARAMETER",
                "Invalid value for offset: queries are limited to 100000 results.",
                None,
            )
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            raise _Refused(400, "INVALID_CONTENT", "The request body is not valid JSON.") from exc
        query = body.get("q") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip():
            raise _Refused(400, "INVALID_CONTENT", "The request body must have a 'q' value.", "q")
        ctx = Context(SCHEMA, self.books.table, self.books.display, self.books.criteria)
        try:
            names, rows = run(query, ctx)
        except SqlError as exc:
            raise _Refused(400, "INVALID_PARAMETER", str(exc)) from exc
        total = len(rows)
        page = rows[offset : offset + limit]
        items = []
        for values in page:
            item: dict[str, Any] = {"links": []}  # §4: every row carries "links": []
            for name, value in zip(names, values, strict=True):
                shown = render(value)
                if shown is not None:  # null columns are left out (emulator choice)
                    item[name] = shown
            items.append(item)
        has_more = offset + len(page) < total
        base = f"https://{self.host}{SUITEQL_PATH}"

        def link(rel: str, at: int) -> dict[str, str]:
            return {"rel": rel, "href": f"{base}?limit={limit}&offset={at}"}

        last = max(0, (total - 1) // limit * limit)
        links = [link("first", 0)]
        if offset > 0:
            links.append(link("prev", max(0, offset - limit)))
        if has_more:
            links.append(link("next", offset + limit))
        links += [link("last", last), link("self", offset)]
        return JSONResponse(
            {
                "links": links,
                "count": len(page),
                "hasMore": has_more,
                "items": items,
                "offset": offset,
                "totalResults": total,
            }
        )

    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise _Refused(400, "INVALID_PARAMETER", f"Invalid value for {name}.") from exc

    # --- REST record API (§5) --------------------------------------------------------------

    def _ref(self, kind: str, rid: int | None, name: str | None) -> dict[str, Any] | None:
        """§7: refs serialise as ``{id, refName, links}``."""
        if rid is None:
            return None
        href = f"https://{self.host}{RECORD}/{kind}/{rid}"
        return {
            "id": str(rid),
            "refName": name or str(rid),
            "links": [{"rel": "self", "href": href}],
        }

    def _account_ref(self, rid: int | None) -> dict[str, Any] | None:
        account = self.books.accounts.get(rid) if rid is not None else None
        return self._ref("account", rid, f"{account.number} {account.name}" if account else None)

    def _record(self, kind: str, raw: str) -> Txn:
        try:
            rid = int(raw)
        except ValueError:
            rid = -1
        txn = self.books.txns.get(rid)
        wanted = {"vendorBill": "VendBill", "vendorPayment": "VendPymt"}[kind]
        if txn is None or txn.type != wanted:
            raise _Refused(
                404,
                "NONEXISTENT_ID",
                "The record instance does not exist. Provide a valid record instance ID.",
            )
        return txn

    async def _get_bill(self, request: Request) -> Response:
        bill = self._record("vendorBill", request.path_params["rid"])
        b = self.books
        expand = request.query_params.get("expandSubResources", "").lower() == "true"
        self_href = f"https://{self.host}{RECORD}/vendorBill/{bill.id}"
        expense: dict[str, Any] = {"links": [{"rel": "self", "href": f"{self_href}/expense"}]}
        if expand:  # §4/§7: sublists only with expandSubResources=true
            lines = [
                _drop_none(
                    {
                        "links": [],
                        "line": seq,
                        "account": self._account_ref(line.account),
                        "amount": float(line.amount),
                        "memo": line.memo,
                        "isBillable": False,
                        "department": self._ref(
                            "department", line.department, b.departments.get(line.department or 0)
                        ),
                        "class": self._ref(
                            "classification", line.klass, b.classes.get(line.klass or 0)
                        ),
                        "location": self._ref(
                            "location", line.location, b.locations.get(line.location or 0)
                        ),
                    }
                )
                for seq, line in enumerate(bill.lines, start=1)
            ]
            expense.update(
                {
                    "items": lines,
                    "totalResults": len(lines),
                    "count": len(lines),
                    "hasMore": False,
                    "offset": 0,
                }
            )
        vendor = b.vendors.get(bill.entity)
        body = _drop_none(
            {
                "links": [{"rel": "self", "href": self_href}],
                "id": str(bill.id),
                "externalId": bill.externalid,
                "tranId": bill.tranid,
                "tranDate": bill.trandate.isoformat(),
                "dueDate": bill.duedate.isoformat() if bill.duedate else None,
                "entity": self._ref("vendor", bill.entity, vendor.companyname if vendor else None),
                "subsidiary": self._ref(
                    "subsidiary", bill.subsidiary, b.subsidiaries.get(bill.subsidiary)
                ),
                "currency": self._ref("currency", bill.currency, b.currencies.get(bill.currency)),
                "account": self._account_ref(bill.apacct),
                "memo": bill.memo,
                "total": float(bill.total),
                "userTotal": float(bill.total),
                "paymentHold": bill.paymenthold,
                # §5: approvalStatus = {id: "1".."3", refName}; status = {id: letter, refName}.
                "approvalStatus": None
                if bill.approvalstatus is None
                else {"id": str(bill.approvalstatus), "refName": APPROVAL[bill.approvalstatus]},
                "status": {"id": bill.status, "refName": BILL_STATUS.get(bill.status or "", "")},
                "createdDate": _iso(bill.created),
                "lastModifiedDate": _iso(bill.modified),
                "expense": expense,
            }
        )
        return JSONResponse(body)

    async def _get_vendor(self, request: Request) -> Response:
        try:
            vendor = self.books.vendors[int(request.path_params["rid"])]
        except (ValueError, KeyError) as exc:
            raise _Refused(
                404,
                "NONEXISTENT_ID",
                "The record instance does not exist. Provide a valid record instance ID.",
            ) from exc
        return JSONResponse(
            _drop_none(
                {
                    "links": [
                        {"rel": "self", "href": f"https://{self.host}{RECORD}/vendor/{vendor.id}"}
                    ],
                    "id": str(vendor.id),
                    "entityId": vendor.companyname,
                    "companyName": vendor.companyname,
                    "legalName": vendor.companyname,
                    "email": vendor.email,
                    "phone": vendor.phone,
                    "isPerson": False,
                    "isInactive": vendor.inactive,
                    "defaultAddress": None
                    if vendor.address is None
                    else "\n".join(
                        str(v) for k, v in vendor.address.items() if v and k != "country"
                    ),
                    "externalId": vendor.externalid,
                    "subsidiary": self._ref(
                        "subsidiary",
                        vendor.subsidiary,
                        self.books.subsidiaries.get(vendor.subsidiary),
                    ),
                    "currency": self._ref(
                        "currency", vendor.currency, self.books.currencies.get(vendor.currency)
                    ),
                    "dateCreated": _iso(vendor.created),
                    "lastModifiedDate": _iso(vendor.modified),
                }
            )
        )

    async def _get_payment(self, request: Request) -> Response:
        raw = request.path_params["rid"]
        if raw.startswith("eid:"):
            pay = self._payment_by_eid(raw[4:])
            if pay is None:
                raise _Refused(
                    404,
                    "NONEXISTENT_ID",
                    "The record instance does not exist. Provide a valid record instance ID.",
                )
        else:
            pay = self._record("vendorPayment", raw)
        b = self.books
        return JSONResponse(
            _drop_none(
                {
                    "links": [
                        {
                            "rel": "self",
                            "href": f"https://{self.host}{RECORD}/vendorPayment/{pay.id}",
                        }
                    ],
                    "id": str(pay.id),
                    "externalId": pay.externalid,
                    "tranId": pay.tranid,
                    "tranDate": pay.trandate.isoformat(),
                    "memo": pay.memo,
                    "entity": self._ref("vendor", pay.entity, b.vendors[pay.entity].companyname),
                    "subsidiary": self._ref(
                        "subsidiary", pay.subsidiary, b.subsidiaries.get(pay.subsidiary)
                    ),
                    "account": self._account_ref(pay.account),
                    "apAcct": self._account_ref(pay.apacct),
                    "total": float(pay.total),
                    "status": {"id": pay.status, "refName": "Confirmed"},
                    "createdDate": _iso(pay.created),
                    "lastModifiedDate": _iso(pay.modified),
                    "apply": {
                        "items": [
                            {
                                "links": [],
                                "doc": self._ref("vendorBill", bill_id, None),
                                "apply": True,
                                "amount": float(amount),
                            }
                            for bill_id, amount in pay.applied.items()
                        ]
                    },
                }
            )
        )

    def _payment_by_eid(self, eid: str) -> Txn | None:
        return next(
            (t for t in self.books.txns.values() if t.type == "VendPymt" and t.externalid == eid),
            None,
        )

    async def _post_payment(self, request: Request) -> Response:
        return self._write_payment(await self._json(request), None, None)

    async def _put_payment(self, request: Request) -> Response:
        raw = request.path_params["rid"]
        # §5: upsert only with PUT and eid: in the URL (vendorPayment upsert UNCONFIRMED; §8
        # choice: supported). A PUT on an internal id is an update, which we do not emulate.
        if not raw.startswith("eid:") or not raw[4:]:
            raise _Refused(
                400, "INVALID_PARAMETER", "Upsert requires an external ID in the URL (eid:<value>)."
            )
        eid = raw[4:]
        if "|" in eid or not all(c.isalnum() or c in "_-" for c in eid):
            # §5: external ids may contain letters, digits, _ and -.
            raise _Refused(400, "INVALID_PARAMETER", f"Invalid external ID '{eid}'.")
        return self._write_payment(await self._json(request), eid, self._payment_by_eid(eid))

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}", parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise _Refused(400, "INVALID_CONTENT", "The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise _Refused(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        return body

    def _ref_id(self, body: dict[str, Any], name: str) -> int | None:
        ref = body.get(name)
        if ref is None:
            return None
        raw = ref.get("id") if isinstance(ref, dict) else None
        try:
            return int(str(raw))
        except ValueError as exc:
            raise _Refused(
                400, "INVALID_CONTENT", f"Invalid reference for field '{name}'.", name
            ) from exc

    def _write_payment(
        self, body: dict[str, Any], eid: str | None, existing: Txn | None
    ) -> Response:
        b = self.books
        if body.get("externalId") is not None and eid is not None and body["externalId"] != eid:
            raise _Refused(400, "INVALID_CONTENT", "externalId differs from the URL.", "externalId")
        entity = self._ref_id(body, "entity") or (existing.entity if existing else None)
        if entity is None:
            raise _Refused(400, "USER_ERROR", "Please enter value(s) for: Payee", "entity")
        if entity not in b.vendors:
            raise _Refused(400, "USER_ERROR", f"Invalid entity reference key {entity}.", "entity")
        subsidiary = self._ref_id(body, "subsidiary") or (existing.subsidiary if existing else None)
        apacct = self._ref_id(body, "apAcct") or (existing.apacct if existing else None)
        account = self._ref_id(body, "account") or (existing.account if existing else None)
        # §8 choice: require the bank `account`; in OneWorld also `subsidiary` and (as the
        # brief asks; UNCONFIRMED, `apAcct` spelling per §5) the A/P account.
        if self.oneworld and subsidiary is None:
            raise _Refused(400, "USER_ERROR", "Please enter value(s) for: Subsidiary", "subsidiary")
        if not self.oneworld:
            subsidiary = subsidiary or 1
        if subsidiary not in b.subsidiaries:
            raise _Refused(
                400, "USER_ERROR", f"Invalid subsidiary reference key {subsidiary}.", "subsidiary"
            )
        if self.oneworld and apacct is None:
            raise _Refused(400, "USER_ERROR", "Please enter value(s) for: A/P Account", "apAcct")
        if apacct is not None and (
            apacct not in b.accounts or b.accounts[apacct].type != "AcctPay"
        ):
            raise _Refused(400, "USER_ERROR", f"Invalid apAcct reference key {apacct}.", "apAcct")
        if account is None:
            raise _Refused(400, "USER_ERROR", "Please enter value(s) for: Account", "account")
        if account not in b.accounts or b.accounts[account].type != "Bank":
            raise _Refused(
                400, "USER_ERROR", f"Invalid account reference key {account}.", "account"
            )
        vendor = b.vendors[entity]
        if self.oneworld and subsidiary not in vendor.subsidiaries | {vendor.subsidiary}:
            raise _Refused(
                400, "USER_ERROR", "The vendor is not associated with the subsidiary.", "subsidiary"
            )
        # §5: apply.items[] = {doc: {id}, apply: true, amount}, keyed by doc.
        apply = body.get("apply")
        items = apply.get("items") if isinstance(apply, dict) else None
        applied: dict[int, Decimal] = {}
        if items is None and existing is not None:
            applied = dict(existing.applied)
        elif not isinstance(items, list):
            raise _Refused(400, "INVALID_CONTENT", "apply.items must be a list.", "apply.items")
        else:
            for n, item in enumerate(items):
                where = f"apply.items[{n}]"
                if not isinstance(item, dict):
                    raise _Refused(
                        400, "INVALID_CONTENT", "An apply line must be an object.", where
                    )
                if item.get("apply") is False:
                    continue
                doc = self._ref_id(item, "doc")
                if doc is None:
                    raise _Refused(400, "INVALID_CONTENT", "Missing doc.", f"{where}.doc")
                bill = b.txns.get(doc)
                if bill is None or bill.type != "VendBill":
                    raise _Refused(
                        400, "USER_ERROR", f"Invalid doc reference key {doc}.", f"{where}.doc"
                    )
                try:
                    amount = Decimal(str(item.get("amount", bill.unpaid)))
                except InvalidOperation as exc:
                    raise _Refused(
                        400, "INVALID_CONTENT", "Invalid amount.", f"{where}.amount"
                    ) from exc
                applied[doc] = applied.get(doc, Decimal(0)) + amount
        if not applied:
            raise _Refused(
                400,
                "USER_ERROR",
                "You must enter at least one line item for this transaction.",
                "apply.items",
            )
        for doc, amount in applied.items():
            bill = b.txns[doc]
            already = existing.applied.get(doc, Decimal(0)) if existing else Decimal(0)
            if bill.entity != entity or bill.subsidiary != subsidiary:
                raise _Refused(
                    400,
                    "USER_ERROR",
                    f"Bill {doc} does not belong to this payee and subsidiary.",
                    "apply.items",
                )
            if bill.approvalstatus != 2 or bill.status not in ("A", "B") or bill.paymenthold:
                raise _Refused(400, "USER_ERROR", f"Bill {doc} cannot be paid.", "apply.items")
            if amount <= 0 or amount > bill.unpaid + already:
                raise _Refused(
                    400,
                    "USER_ERROR",
                    f"The amount applied to bill {doc} exceeds its amount due.",
                    "apply.items",
                )
        now = self.now()
        if existing is None:
            pay = Txn(
                id=b.new_id(),
                type="VendPymt",
                tranid=None,
                entity=entity,
                trandate=now.date(),
                subsidiary=subsidiary,
                created=now,
                modified=now,
                status="C",
                approvalstatus=None,
                externalid=eid or body.get("externalId"),
            )
            pay.tranid = str(pay.id)
            b.txns[pay.id] = pay
        else:
            pay = existing
            for doc, amount in pay.applied.items():  # undo the old application
                self._apply(b.txns[doc], -amount, now)
        pay.entity, pay.subsidiary, pay.apacct, pay.account = entity, subsidiary, apacct, account
        pay.memo = body.get("memo", pay.memo)
        if body.get("tranDate"):
            try:
                pay.trandate = date.fromisoformat(str(body["tranDate"]))
            except ValueError as exc:
                raise _Refused(400, "INVALID_CONTENT", "Invalid tranDate.", "tranDate") from exc
        pay.applied = applied
        pay.total_override = sum(applied.values(), Decimal(0))
        pay.modified = now
        for doc, amount in applied.items():
            self._apply(b.txns[doc], amount, now)
        # §5 CONFIRMED: 204, no body, the record's URL in Location.
        return Response(
            status_code=204,
            headers={"Location": f"https://{self.host}{RECORD}/vendorPayment/{pay.id}"},
        )

    @staticmethod
    def _apply(bill: Txn, amount: Decimal, now: datetime) -> None:
        # §7: applying reduces foreignamountunpaid; at zero the bill moves to status B.
        bill.paid += amount
        bill.status = "B" if bill.unpaid <= 0 else "A"
        bill.modified = now

    # --- Control API ---------------------------------------------------------------------

    def hold_requests(self) -> None:
        """Make admitted REST/SuiteQL requests wait (in flight) until :meth:`release_requests`."""
        self._held = asyncio.Event()

    def release_requests(self) -> None:
        """Let the requests :meth:`hold_requests` held go on."""
        if self._held is not None:
            self._held.set()
        self._held = None

    def expire_tokens(self) -> None:
        """End every access token, as their 60 minutes passing does."""
        self._tokens.clear()

    def expire_sessions(self) -> None:
        """Alias of :meth:`expire_tokens` (DemoSource)."""
        self.expire_tokens()

    def add_subsidiary(self, name: str) -> int:
        """Another subsidiary (OneWorld); returns its id."""
        sid = max(self.books.subsidiaries, default=0) + 1
        self.books.subsidiaries[sid] = name
        return sid

    def add_vendor(self, name: str, *, subsidiary: int = 1, **fields: Any) -> int:
        """A vendor (``email``, ``phone``, ``externalid``, ``inactive``, ``subsidiaries``)."""
        now = self.now()
        vid = self.books.new_id()
        vendor = Vendor(vid, name, subsidiary, now, now)
        for key, value in fields.items():
            setattr(vendor, key, value)
        vendor.subsidiaries = set(vendor.subsidiaries) | {subsidiary}
        self.books.vendors[vid] = vendor
        return vid

    def add_account(
        self,
        number: str,
        name: str,
        *,
        type: str = "Expense",
        active: bool = True,
    ) -> int:
        """A GL account (``type``: Expense, Bank, AcctPay); returns its internal id."""
        aid = self.books.new_id()
        self.books.accounts[aid] = Account(aid, number, name, type, active)
        return aid

    def add_department(self, name: str) -> int:
        """A department; returns its id."""
        return self._segment(self.books.departments, name)

    def add_class(self, name: str) -> int:
        """A class (SuiteQL table ``classification``); returns its id."""
        return self._segment(self.books.classes, name)

    def add_location(self, name: str) -> int:
        """A location; returns its id."""
        return self._segment(self.books.locations, name)

    def _segment(self, table: dict[int, str], name: str) -> int:
        sid = self.books.new_id()
        table[sid] = name
        return sid

    def _lines(self, lines: list[dict[str, Any]]) -> list[Line]:
        return [
            Line(
                self.books.new_id(),
                ln.get("account"),
                Decimal(str(ln["amount"])),
                ln.get("department"),
                ln.get("class"),
                ln.get("location"),
                ln.get("memo"),
            )
            for ln in lines
        ]

    def add_bill(
        self,
        vendor_id: int,
        lines: list[dict[str, Any]],
        *,
        tranid: str | None = None,
        approved: bool = True,
        status: str = "open",
        subsidiary: int = 1,
        **fields: Any,
    ) -> int:
        """A vendor bill. ``status``: open, paid, cancelled, rejected, pending (or a letter).

        ``approved=False`` makes it Pending Approval (approvalstatus 1, status D). Other fields:
        ``trandate``, ``duedate``, ``memo``, ``externalid``, ``paymenthold``, ``currency``.
        """
        now = self.now()
        bid = self.books.new_id()
        letter = {"open": "A", "paid": "B", "cancelled": "C", "pending": "D", "rejected": "E"}.get(
            status, status
        )
        approval = 2 if approved else 1
        if not approved and letter == "A":
            letter = "D"
        if letter == "E":
            approval = 3
        bill = Txn(
            id=bid,
            type="VendBill",
            tranid=tranid or f"INV-{bid}",
            entity=vendor_id,
            trandate=now.date(),
            subsidiary=subsidiary,
            created=now,
            modified=now,
            lines=self._lines(lines),
            status=letter,
            approvalstatus=approval,
            duedate=now.date() + timedelta(days=30),
            apacct=self._ap_account,
        )
        for key, value in fields.items():
            setattr(bill, key, value)
        if letter == "B":
            bill.paid = bill.total
        self.books.txns[bid] = bill
        return bid

    def add_purchase_order(self, vendor_id: int, lines: list[dict[str, Any]], **fields: Any) -> int:
        """A purchase order (type PurchOrd, status B Pending Receipt)."""
        now = self.now()
        pid = self.books.new_id()
        order = Txn(
            id=pid,
            type="PurchOrd",
            tranid=f"PO{pid}",
            entity=vendor_id,
            trandate=now.date(),
            subsidiary=int(fields.pop("subsidiary", 1)),
            created=now,
            modified=now,
            lines=self._lines(lines),
            status="B",
            approvalstatus=2,
        )
        for key, value in fields.items():
            setattr(order, key, value)
        self.books.txns[pid] = order
        return pid

    def update_bill(self, bill_id: int, **fields: Any) -> None:
        """Change a bill as a clerk would (``lines`` replaces the lines); modified = now."""
        bill = self.books.txns[bill_id]
        for key, value in fields.items():
            if key == "lines":
                bill.lines = self._lines(value)
            elif key == "approved":
                bill.approvalstatus = 2 if value else 1
                if value and bill.status == "D":
                    bill.status = "A"
            else:
                setattr(bill, key, value)
        bill.modified = self.now()

    def payments_for(self, bill_id: int) -> list[dict[str, Any]]:
        """The payments applied to a bill: id, externalid, amount, memo, account, apacct…."""
        return [
            {
                "id": p.id,
                "externalid": p.externalid,
                "amount": amount,
                "memo": p.memo,
                "entity": p.entity,
                "subsidiary": p.subsidiary,
                "account": p.account,
                "apacct": p.apacct,
                "trandate": p.trandate,
            }
            for p in self.books.txns.values()
            if p.type == "VendPymt" and not p.voided
            for doc, amount in p.applied.items()
            if doc == bill_id
        ]

    # --- Demo (ml_connector.emulation.DemoSource) -----------------------------------------

    def _seed_reference_data(self) -> None:
        self.books.subsidiaries[1] = "Parent Company"
        if self.oneworld:
            self.books.subsidiaries[2] = "Honeycomb Mfg. (Canada)"
        self._ap_account = self.add_account("2000", "Accounts Payable", type="AcctPay")
        self._bank_account = self.add_account("1000", "Checking", type="Bank")

    def _key(self, txn: Txn) -> BillKey:
        return (self.books.vendors[txn.entity].companyname, txn.tranid or str(txn.id))

    def _account_number(self, aid: int | None) -> str | None:
        account = self.books.accounts.get(aid) if aid is not None else None
        return account.number if account else None

    def _is_unmapped(self, txn: Txn) -> bool:
        return any(self._account_number(ln.account) == DEMO_UNMAPPED_ACCOUNT for ln in txn.lines)

    def _eligible(self, txn: Txn) -> bool:
        """Approved, open or paid through the API, unheld, in subsidiary 1, mapped accounts.

        Subsidiary 1 is the connection's scope (``settings()["subsidiary_id"]``).
        """
        return (
            txn.type == "VendBill"
            and txn.approvalstatus == 2
            and (txn.status == "A" or (txn.status == "B" and self._has_payment(txn.id)))
            and not txn.paymenthold
            and txn.subsidiary == 1
            and not self._is_unmapped(txn)
        )

    def _has_payment(self, bill_id: int) -> bool:
        return any(
            t.type == "VendPymt" and not t.voided and bill_id in t.applied
            for t in self.books.txns.values()
        )

    def seed_demo(self, bills: int, seed: int) -> None:
        """Vendors, accounts, segments, ``bills`` eligible bills and the held ones."""
        rng = random.Random(seed)  # noqa: S311
        accounts = [self.add_account(n, name) for n, name in DEMO_ACCOUNTS.items()]
        mapped = [a for a in accounts if self.books.accounts[a].number != DEMO_UNMAPPED_ACCOUNT]
        unmapped = accounts[-1]
        # Segment names as BILL's seeded classifications name them, so the demo maps them by name.
        depts = [self.add_department(n) for n in ("Administration", "Sales", "Operations")]
        classes = [self.add_class(n) for n in ("Corporate", "Field Services")]
        locs = [self.add_location(n) for n in ("Headquarters", "East Region", "West Region")]
        names = [
            "Acme Office Supply",
            "Bluebird Logistics",
            "Cascade Utilities",
            "Delta Consulting",
            "Evergreen Properties",
        ]
        vendors = [
            self.add_vendor(
                n,
                email=f"ap@{n.split()[0].lower()}.example",
                phone=f"206-555-{1000 + i:04d}",
                subsidiaries={1, 2} if self.oneworld else set(),
                address={
                    "addr1": f"{100 + i} Main St",
                    "addr2": None,
                    "city": "Seattle",
                    "state": "WA",
                    "zip": "98101",
                    "country": "US",
                },
            )
            for i, n in enumerate(names)
        ]

        def lines(account: int | None = None) -> list[dict[str, Any]]:
            return [
                {
                    "account": account or rng.choice(mapped),
                    "amount": Decimal(rng.randint(500, 250_000)) / 100,
                    "department": rng.choice(depts),
                    "class": rng.choice(classes),
                    "location": rng.choice(locs),
                    "memo": f"Line {i + 1}",
                }
                for i in range(rng.randint(1, 3))
            ]

        for n in range(bills):
            self.add_bill(rng.choice(vendors), lines(), tranid=f"INV-{seed}-{n + 1:05d}")
        v = rng.choice(vendors)
        self.add_bill(v, lines(), tranid=f"HOLD-{seed}-1", paymenthold=True)
        self.add_bill(v, lines(), tranid=f"HOLD-{seed}-2", approved=False)
        self.add_bill(v, lines(), tranid=f"HOLD-{seed}-3", status="rejected")
        self.add_purchase_order(v, lines(), tranid=f"PO-{seed}-1")
        if self.oneworld:  # another subsidiary: out of the connection's scope
            self.add_bill(v, lines(), tranid=f"HOLD-{seed}-4", subsidiary=2)
        self.add_bill(v, lines(unmapped), tranid=f"UNMAPPED-{seed}-1")

    def eligible_bills(self) -> set[BillKey]:
        """Approved open bills of subsidiary 1, not on hold, on mapped accounts."""
        return {self._key(t) for t in self.books.txns.values() if self._eligible(t)}

    def held_bill_keys(self) -> set[BillKey]:
        """Bills and orders that must not move (hold, unapproved, rejected, PO, sub 2)."""
        return {
            self._key(t)
            for t in self.books.txns.values()
            if t.type in ("VendBill", "PurchOrd")
            and not self._eligible(t)
            and not (t.type == "VendBill" and self._is_unmapped(t))
        }

    def enter_bill(self, like: BillKey, number: str, amount: Decimal) -> BillKey:
        """A new approved bill of ``like``'s vendor, coded like its first line (kill tests)."""
        bill = next(
            t for t in self.books.txns.values() if t.type == "VendBill" and self._key(t) == like
        )
        line = bill.lines[0]
        self.add_bill(
            bill.entity,
            [{"account": line.account, "amount": amount, "department": line.department,
              "class": line.klass, "location": line.location, "memo": "Soak test charge"}],
            tranid=number,
            subsidiary=bill.subsidiary,
        )  # fmt: skip
        return (like[0], number)

    def unmapped_bills(self) -> set[BillKey]:
        """Bills with a line on :meth:`unmapped_account`."""
        return {
            self._key(t)
            for t in self.books.txns.values()
            if t.type == "VendBill" and self._is_unmapped(t)
        }

    def payments_posted(self) -> dict[BillKey, int]:
        """How many payments are applied to each bill."""
        counts: dict[BillKey, int] = {}
        for pay in self.books.txns.values():
            if pay.type != "VendPymt" or pay.voided:
                continue
            for doc in pay.applied:
                key = self._key(self.books.txns[doc])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def payments_unfinished(self) -> set[BillKey]:
        """None: a vendor payment is posted by the one call that writes it."""
        return set()

    def payments_carrying(self, reference: str) -> dict[BillKey, int]:
        """How many payments with this externalId (or memo) each bill has."""
        counts: dict[BillKey, int] = {}
        for pay in self.books.txns.values():
            if pay.type != "VendPymt" or pay.voided or reference not in (pay.externalid, pay.memo):
                continue
            for doc in pay.applied:
                key = self._key(self.books.txns[doc])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def change_vendor(self, name: str) -> str:
        """Give the vendor named ``name`` a new phone number; returns it."""
        vendor = next(v for v in self.books.vendors.values() if v.companyname == name)
        last = int(vendor.phone[-4:]) if vendor.phone and vendor.phone[-4:].isdigit() else 0
        vendor.phone = f"206-555-{(last + 1) % 10_000:04d}"
        vendor.modified = self.now()
        return vendor.phone

    def account_numbers(self) -> dict[str, str]:
        """Expense account numbers to names, the unmapped one included."""
        return {a.number: a.name for a in self.books.accounts.values() if a.type == "Expense"}

    def unmapped_account(self) -> str:
        """The account BILL does not get."""
        return DEMO_UNMAPPED_ACCOUNT

    def bill_totals(self) -> dict[BillKey, Decimal]:
        """Each eligible bill's total now."""
        return {self._key(t): t.total for t in self.books.txns.values() if self._eligible(t)}

    def change_bill(self, key: BillKey) -> None:
        """Add 1.00 to the bill's first line; its lastmodifieddate becomes now."""
        bill = next(
            t for t in self.books.txns.values() if t.type == "VendBill" and self._key(t) == key
        )
        bill.lines[0].amount += Decimal("1.00")
        bill.modified = self.now()


ErpEmulator = NetSuiteEmulator
"""The template's name, kept for tests rendered from the kit."""


def create_emulator(options: EmulatorOptions | None = None) -> NetSuiteEmulator:
    """The ``ml_connector.emulators`` entry point."""
    return NetSuiteEmulator(options)


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
