"""A protocol-faithful fake of the SAP Business One Service Layer (facts: shared/api/sapb1.md).

Served as ``ml-connector emulate sapb1``; tests use it in process through
:meth:`~ml_connector.emulation.Emulator.transport`, or over HTTPS with
:meth:`SapB1Emulator.serve_tls` / :func:`serve_in_thread_tls`. Each behaviour names the fact it
follows (§n of sapb1.md); where the sources are silent it is marked UNCONFIRMED and follows §8's
"emulator choice" column. What it reproduces:

- **Both service roots at once** (§1, §8 "serve both"): ``/b1s/v1`` answers OData v3 JSON
  (``odata.metadata``, ``odata.nextLink``, ``odata.count`` as a string, dates ``YYYY-MM-DD``,
  errors ``{"error":{"code":<int>,"message":{"lang":"en-us","value":…}}}``); ``/b1s/v2`` OData
  v4 (``@odata.context``, ``@odata.nextLink``, ``@odata.count``, ``@odata.etag``, dates
  ``YYYY-MM-DDT00:00:00Z``, errors ``{"error":{"code":"<string>","message":"<string>"}}``).
  A session from either root's ``Login`` is valid on both (one Service Layer; the cookie's
  default path is the caller's business, see below).
- **Sessions** (§2, §7): ``POST /Login`` with the exact case only (``/login`` is an unknown path,
  so 401 code 301 without a session: CORROBORATED, §1) and ``{CompanyDB, UserName, Password}``
  answers 200 with ``SessionId``/``Version``/``SessionTimeout`` and the two cookies of SAP-UG
  §3.1, ``B1SESSION=<id>;HttpOnly;`` (no Path) and ``ROUTEID=.node1; path=/b1s``. A wrong user,
  password or company is 401 code -304 "Login failed" (§8 choice, as the BAL mock). Every other
  path needs a live ``B1SESSION`` cookie, else 401 code 301 "Invalid session or session already
  timeout." (SAP-UG §3.1.1; the v2 body is the §8 choice). Sessions end after ``SessionTimeout``
  idle minutes on the emulator's clock (default 30, SAP-UG §6.1). ``POST /Logout`` → 204 and a
  reset ``B1SESSION`` cookie (OCG §4.2; the reset's exact form is UNCONFIRMED).
- **Entity sets** (§5): ``PurchaseInvoices``, ``Drafts`` (documents awaiting approval live here
  with ``DocObjectCode`` oPurchaseInvoices, never in PurchaseInvoices), ``PurchaseOrders``,
  ``BusinessPartners``, ``ChartOfAccounts``, ``ProfitCenters``, ``DistributionRules``,
  ``VendorPayments``: collections, keys ``(123)`` / ``('V001')``, ``/$count``, and the query
  options of ``_emulator_query`` (``$filter`` on dates ignoring the time part, §6). A missing key
  is 404 code -2028 (§3). Unknown sets are 404 code -1 (UNCONFIRMED wording); refused queries
  and bodies with a property the type does not have are 400 code -1000 (UNCONFIRMED code).
- **Paging** (§4, SAP-UG §3.7.6, OCG §8): 20 per page by default (option ``page_size``);
  ``Prefer: odata.maxpagesize=N`` is honoured and echoed in ``Preference-Applied``; ``0`` turns
  paging off; ``B1S-PageSize: N`` overrides the configured size (the preference beats it). The
  nextLink is relative to the service root (``PurchaseInvoices?$filter=…&$skip=20``, the other
  options kept, as OCG §8 and B1SL show); option ``next_link="path"`` gives SAP-UG §3.7.6's v1
  form ``/b1s/v1/PurchaseInvoices?…`` instead. With ``$top`` the link carries what is left of it.
- **Writes** (§5, SAP-UG §3.5): ``POST`` → 201 + entity + ``Location`` (204 + ``Location`` +
  ``Preference-Applied: return-no-content`` with ``Prefer: return-no-content``); ``PATCH`` → 204
  (``B1S-ReplaceCollectionsOnPatch: true`` replaces ``DocumentLines``, else rows merge by
  ``LineNum``); ``PUT`` on business partners resets what it leaves out; an added A/P invoice's
  amounts, lines and dates cannot change (400 -1029 "Field cannot be updated", general B1
  knowledge, UNCONFIRMED); ``If-Match`` is checked against the ETag (412 -2039, SAP-UG §5.2.3)
  and optional (PATCH overwrites by default). ETags (``W/"…"``, ``@odata.etag``) are served in v2
  for PurchaseInvoices and BusinessPartners only (MD); ``DataVersion`` counts every write.
  Actions: ``PurchaseInvoices(n)/Cancel``, ``VendorPayments(n)/Cancel`` and
  ``/CancelbyCurrentSystemDate`` → 204. Other methods on a set are 400 -5006 "The requested
  action is not supported for this object." (SAP-UG §3.5.4).
- **Vendor payments** (§5): see :meth:`Books.create_payment
  <ml_connector_sapb1._emulator_books.Books.create_payment>` for the validations (400 -5002);
  a payment raises each invoice's ``PaidToDate``, closes it (``bost_Close``) when fully paid and
  stamps its ``UpdateDate``/``UpdateTime``. No idempotency. No ``UpdateDate`` on payments (§5).
- **Changes** are stamped ``UpdateDate``/``UpdateTime`` from the emulator's clock in the
  company's local time (option ``utc_offset_minutes``, default 0), to the second (filters
  compare hours and minutes only, §6).
- **Headers** ``B1S-CaseInsensitive: true`` (string comparisons in ``$filter`` ignore case),
  ``B1S-PageSize``, ``B1S-ReplaceCollectionsOnPatch`` (§4, §7).
- **Faults**: ``faults`` (HttpFaults) with kinds ``session`` (401 code 301), ``throttled``,
  ``server`` (the version's JSON error), ``proxy`` (an Apache proxy-error HTML page, as the load
  balancer in front of the Service Layer sends) and ``malformed`` (200 with HTML);
  ``credentials_valid`` refuses every login while false; :meth:`~SapB1Emulator.expire_sessions`.

Options (``EmulatorOptions.extra``): ``session_timeout`` (minutes, 30; ``session_idle_seconds``
overrides the idle time itself), ``page_size`` (20), ``next_link`` (``"relative"`` or
``"path"``), ``currency`` (``"USD"``), ``utc_offset_minutes`` (0), ``cancellation_documents``
(True: cancelling an invoice adds its cancellation document, as B1 does).

Not emulated: ``$metadata`` (501), ``$expand``, ``$apply``, batch requests, approval templates,
checks, credit cards, account payments, incoming payments, user-defined fields.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ml_connector.emulation import (
    Emulator,
    EmulatorOptions,
    FaultAction,
    RunningEmulator,
    SessionStore,
)
from starlette.responses import Response
from starlette.routing import Route

from ml_connector_sapb1._emulator_books import (
    DOCUMENT_EDITABLE,
    B1Error,
    Books,
    line_inputs,
)
from ml_connector_sapb1._emulator_model import (
    BUSINESS_PARTNER,
    CHART_OF_ACCOUNT,
    DISTRIBUTION_RULE,
    DOCUMENT,
    PAYMENT,
    PROFIT_CENTER,
    Row,
    Schema,
    dumps,
    loads,
    render,
    snapshot,
)
from ml_connector_sapb1._emulator_query import QueryError, parse_query, sort_rows
from ml_connector_sapb1._emulator_seed import (
    DEMO_ACCOUNTS,
    DEMO_UNMAPPED_ACCOUNT,
    DemoScenario,
    seed_demo,
    seed_sample,
)
from ml_connector_sapb1._emulator_tls import serve_in_thread_tls

if TYPE_CHECKING:
    from ml_connector.emulation import Session
    from starlette.requests import Request
    from starlette.routing import BaseRoute
    from starlette.types import Receive, Scope, Send

__all__ = [
    "BANK_ACCOUNT",
    "CASH_ACCOUNT",
    "COMPANY_DB",
    "PASSWORD",
    "TAX_ACCOUNT",
    "USERNAME",
    "SapB1Emulator",
    "create_emulator",
    "serve_in_thread_tls",
]

COMPANY_DB = "SBODEMOUS"
USERNAME = "manager"
PASSWORD = "B1-Emulator-1234"  # noqa: S105 - the emulator's own test login
SERVER_VERSION = "1000191"  # a 10.0 FP 21xx build: v2 is the preferred root (OCG §1)
BANK_ACCOUNT = "1020"
"""The G/L account of the company's bank (a ``TransferAccount`` payments can use)."""
CASH_ACCOUNT = "1010"
"""The G/L account of the company's cash (a ``CashAccount`` payments can use)."""
TAX_ACCOUNT = "6900"
"""An expense account for purchase tax: where a connection codes an invoice's VatSum."""
ROUTE_ID = ".node1"
VERSIONS = ("v1", "v2")
SESSION_EXPIRED = "Invalid session or session already timeout."
_NOT_SUPPORTED = "The requested action is not supported for this object."
_MODIFIED = (
    "Another user or another operation modified data; to continue, open the window again "
    "(ODBC -2039)"
)
_OPTIONS = frozenset(
    {
        "session_timeout", "page_size", "next_link", "currency", "utc_offset_minutes",
        "cancellation_documents",
    }
)  # fmt: skip

# The root a request came to, so an injected fault is worded in its version's error shape.
_VERSION: contextvars.ContextVar[str] = contextvars.ContextVar("sapb1_version", default="v1")


def _version_of(path: str) -> str:
    return "v2" if path.startswith("/b1s/v2") else "v1"


@dataclass(frozen=True)
class _EntitySet:
    name: str
    schema: Schema
    key: str
    rows: Callable[[], dict[Any, Row]]
    etag: bool = False


class SapB1Emulator(Emulator):
    """One SAP Business One company (``SBODEMOUS``) behind a Service Layer.

    Attributes:
        books: The company's data (``_emulator_books.Books``).
        sessions: The Service Layer sessions (B1SESSION ids).
        credentials_valid: While false, every login fails (401 -304).
        session_timeout: ``SessionTimeout`` in minutes, as the login answers it.
        page_size: The configured page size (``PageSize`` of b1s.conf; 0 = no paging).
        ca_bundle_path: The CA's PEM file after :meth:`serve_tls`.
    """

    system: ClassVar[str] = "sapb1"
    base_path: ClassVar[str] = "/b1s/v1"

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        options = options or EmulatorOptions()
        extra = dict(options.extra)
        unknown = set(extra) - _OPTIONS
        if unknown:
            raise ValueError(f"unknown sapb1 emulator options: {sorted(unknown)}")
        super().__init__(options)
        self.password = PASSWORD
        self.credentials_valid = True
        self.session_timeout = int(extra.get("session_timeout", 30))
        idle = options.session_idle_seconds or self.session_timeout * 60
        self.sessions = SessionStore(timedelta(seconds=idle), clock=self.now)
        self.page_size = int(extra.get("page_size", 20))
        self.next_link = str(extra.get("next_link", "relative"))
        if self.next_link not in ("relative", "path"):
            raise ValueError("next_link is 'relative' or 'path'")
        self.currency = str(extra.get("currency", "USD"))
        self.utc_offset = timedelta(minutes=int(extra.get("utc_offset_minutes", 0)))
        self.cancellation_documents = bool(extra.get("cancellation_documents", True))
        self.ca_bundle_path: str | None = None
        self.logins = 0
        self._scenario = DemoScenario()
        self.books = self._new_books()

    def _new_books(self) -> Books:
        books = Books(
            self.local_now,
            currency=self.currency,
            cancellation_documents=self.cancellation_documents,
        )
        self.books = books
        cash: dict[str, Any] = {"CashAccount": "tYES", "AccountType": "at_Other"}
        self.add_account(BANK_ACCOUNT, "Operating Bank Account", **cash)
        self.add_account(CASH_ACCOUNT, "Petty Cash", **cash)
        self.add_account(TAX_ACCOUNT, "Sales and Use Tax")
        self._sets = self._entity_sets()
        return books

    def _entity_sets(self) -> dict[str, _EntitySet]:
        books = self.books
        return {
            s.name: s
            for s in (
                _EntitySet("PurchaseInvoices", DOCUMENT, "DocEntry", lambda: books.invoices, True),
                _EntitySet("Drafts", DOCUMENT, "DocEntry", lambda: books.drafts),
                _EntitySet("PurchaseOrders", DOCUMENT, "DocEntry", lambda: books.orders),
                _EntitySet(
                    "BusinessPartners", BUSINESS_PARTNER, "CardCode", lambda: books.partners, True
                ),
                _EntitySet("ChartOfAccounts", CHART_OF_ACCOUNT, "Code", lambda: books.accounts),
                _EntitySet(
                    "ProfitCenters", PROFIT_CENTER, "CenterCode", lambda: books.profit_centers
                ),
                _EntitySet(
                    "DistributionRules",
                    DISTRIBUTION_RULE,
                    "FactorCode",
                    lambda: books.distribution_rules,
                ),
                _EntitySet("VendorPayments", PAYMENT, "DocEntry", lambda: books.payments),
            )
        }

    # --- The Emulator contract -------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The Service Layer's paths, both roots (§1)."""
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return [
            Route("/b1s/{version}", self._serve, methods=methods),
            Route("/b1s/{version}/{rest:path}", self._serve, methods=methods),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: note which root the request came to, for the error shape of faults."""
        token = _VERSION.set(_version_of(str(scope.get("path", ""))))
        try:
            await super().__call__(scope, receive, send)
        finally:
            _VERSION.reset(token)

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """An injected fault as the Service Layer (or its load balancer) would answer it.

        Kinds: ``session`` (401 code 301), ``malformed`` (200, an HTML page), ``proxy`` (an
        Apache proxy-error page at ``status``), ``throttled`` and ``server`` (the version's JSON
        error at ``status``; the Service Layer documents no throttling, §4: UNCONFIRMED).
        """
        version = _VERSION.get()
        headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
        if kind == "session":
            return self._error(version, 401, 301, SESSION_EXPIRED)
        if kind == "malformed":
            return Response("<html><body>Service Layer</body></html>", 200, media_type="text/html")
        if kind == "proxy":
            page = (
                '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
                f"<title>{status} Proxy Error</title>\n</head><body>\n<h1>Proxy Error</h1>\n"
                f"<p>{message}</p>\n</body></html>\n"
            )
            return Response(page, status, headers=headers, media_type="text/html")
        text = "Too many requests" if kind == "throttled" else message
        return self._error(version, status, -1, text, headers)

    def credentials(self) -> dict[str, str]:
        """The B1 user: ``{"username": "manager", "password": …}``."""
        return {"username": USERNAME, "password": self.password}

    def settings(self, base_url: str) -> dict[str, Any]:
        """A connection's settings; ``base_url`` is the service root, e.g. ``…/b1s/v1``.

        Beside the service root and the company: the bank account payments are recorded from
        (:data:`BANK_ACCOUNT`) and the account tax is coded to (:data:`TAX_ACCOUNT`). No secret.
        """
        return {
            "service_url": base_url,
            "company_db": COMPANY_DB,
            "transfer_account": BANK_ACCOUNT,
            "tax_account": TAX_ACCOUNT,
        }

    # --- Serving over HTTPS ----------------------------------------------------------------------

    def serve_tls(self, port: int = 0, *, directory: Path | None = None) -> RunningEmulator:
        """Serve over HTTPS with a CA made now; its PEM path is then :attr:`ca_bundle_path`."""
        running, ca_path = serve_in_thread_tls(self, port, directory=directory)
        self.ca_bundle_path = ca_path
        return running

    # --- Test controls: what a clerk or an administrator does ------------------------------------

    def local_now(self) -> datetime:
        """The company's local time now (the emulator's clock, ``utc_offset_minutes`` east)."""
        return self.now().astimezone(timezone(self.utc_offset))

    def expire_sessions(self) -> None:
        """End every session, as the idle timeout does."""
        self.sessions.expire_all()

    def fail_next(self, kind: str) -> None:
        """Fail as the conformance suite's kinds say.

        ``unauthorized`` (logins fail from now on and sessions end), ``throttled`` (429),
        ``server_error`` (503), ``malformed`` (200 with HTML), ``session`` (401 code 301).
        """
        if kind == "unauthorized":
            self.credentials_valid = False
            self.expire_sessions()
            return
        actions = {
            "throttled": FaultAction(429, kind="throttled", retry_after=1.0),
            "server_error": FaultAction(503, kind="server"),
            "malformed": FaultAction(200, kind="malformed"),
            "session": FaultAction(401, kind="session"),
        }
        self.faults.add(actions[kind])

    @staticmethod
    def _helper(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except B1Error as exc:
            raise ValueError(exc.message) from None

    def _next_code(self, prefix: str, start: int) -> str:
        n = start
        while f"{prefix}{n:05d}" in self.books.partners:
            n += 1
        return f"{prefix}{n:05d}"

    def add_supplier(
        self, card_code: str | None = None, *, name: str | None = None, **fields: Any
    ) -> str:
        """Add a supplier (``CardType`` cSupplier); returns its CardCode (``V00001``… if none)."""
        code = card_code or self._next_code("V", 1)
        self._helper(
            lambda: self.books.add_partner(code, "cSupplier", name or f"Supplier {code}", fields)
        )
        return code

    def add_customer(
        self, card_code: str | None = None, *, name: str | None = None, **fields: Any
    ) -> str:
        """Add a customer (``CardType`` cCustomer); returns its CardCode (``C00001``… if none)."""
        code = card_code or self._next_code("C", 1)
        self._helper(
            lambda: self.books.add_partner(code, "cCustomer", name or f"Customer {code}", fields)
        )
        return code

    def update_partner(self, card_code: str, **fields: Any) -> None:
        """Change a business partner as a clerk does (its UpdateDate/UpdateTime become now)."""
        self._helper(lambda: self.books.patch_partner(card_code, fields))

    def add_account(self, code: str, name: str, *, active: bool = True, **fields: Any) -> None:
        """Add a G/L account (postable; ``active=False`` freezes it: FrozenFor tYES).

        ``ActiveAccount="tNO"`` in ``fields`` makes a title account (not postable).
        """
        self.books.add_account(code, name, active, fields)

    def add_profit_center(
        self, code: str, name: str, dimension: int, *, active: bool = True
    ) -> None:
        """Add a profit center of dimension 1..5, and its direct distribution rule."""
        self.books.add_profit_center(code, name, dimension, active)

    def add_distribution_rule(
        self,
        code: str,
        name: str,
        dimension: int,
        centers: dict[str, Decimal],
        *,
        active: bool = True,
    ) -> None:
        """Add a distribution rule spreading over profit centers (code to share)."""
        self.books.add_distribution_rule(code, name, dimension, centers, active)

    def _add(
        self,
        set_name: str,
        card_code: str,
        lines: list[dict[str, Any]],
        doc_type: str,
        num_at_card: str | None,
        authorization: str,
        vat_sum: Decimal,
        fields: dict[str, Any],
    ) -> int:
        record = self._helper(
            lambda: self.books.add_document(
                set_name,
                card_code,
                lines,
                doc_type=doc_type,
                num_at_card=num_at_card,
                authorization=authorization,
                vat_sum=vat_sum,
                fields=fields,
            )
        )
        return int(record["DocEntry"])

    def add_invoice(
        self,
        card_code: str,
        lines: list[dict[str, Any]],
        *,
        doc_type: str = "dDocument_Service",
        num_at_card: str | None = None,
        authorization: str = "dasWithout",
        cancelled: bool = False,
        vat_sum: Decimal = Decimal(0),
        **fields: Any,
    ) -> int:
        """Add an A/P invoice to ``PurchaseInvoices``; returns its DocEntry.

        ``lines`` use Service Layer names: service lines ``AccountCode``, ``ItemDescription``,
        ``LineTotal``; item lines ``ItemCode``, ``Quantity``, ``Price`` (and ``AccountCode``,
        else the inventory account 1400); both ``CostingCode``…``CostingCode5``, ``TaxCode``,
        ``VatGroup``, ``TaxTotal``. ``vat_sum`` is spread over the lines unless they state their
        ``TaxTotal``; DocTotal = sum(LineTotal) + VatSum. ``authorization`` is dasWithout,
        dasApproved, dasGenerated or dasGeneratedbyAuthorizer: documents awaiting approval are
        drafts (:meth:`add_draft`). ``cancelled`` cancels it as B1 does (:meth:`cancel_invoice`).
        ``fields``: other header properties (``DocDate``, ``DocDueDate``, ``Comments``, …).
        """
        entry = self._add(
            "PurchaseInvoices", card_code, lines, doc_type, num_at_card, authorization, vat_sum,
            fields,
        )  # fmt: skip
        if cancelled:
            self.cancel_invoice(entry)
        return entry

    def add_draft(
        self,
        card_code: str,
        lines: list[dict[str, Any]],
        *,
        doc_type: str = "dDocument_Service",
        num_at_card: str | None = None,
        authorization: str = "dasPending",
        cancelled: bool = False,
        vat_sum: Decimal = Decimal(0),
        **fields: Any,
    ) -> int:
        """Add an A/P invoice draft (awaiting approval by default) to ``Drafts``; its DocEntry.

        Drafts number their DocEntry apart from PurchaseInvoices. A draft is not cancelled in
        B1 (it is deleted): ``cancelled=True`` is refused.
        """
        if cancelled:
            raise ValueError("a draft is deleted, not cancelled")
        return self._add(
            "Drafts", card_code, lines, doc_type, num_at_card, authorization, vat_sum, fields
        )

    def add_purchase_order(
        self,
        card_code: str,
        lines: list[dict[str, Any]],
        *,
        doc_type: str = "dDocument_Service",
        num_at_card: str | None = None,
        authorization: str = "dasWithout",
        cancelled: bool = False,
        vat_sum: Decimal = Decimal(0),
        **fields: Any,
    ) -> int:
        """Add a purchase order to ``PurchaseOrders``; returns its DocEntry.

        ``cancelled=True`` cancels it (Cancelled tYES, CancelStatus csYes, closed; B1 adds no
        cancellation document for an order: general B1 knowledge, UNCONFIRMED).
        """
        entry = self._add(
            "PurchaseOrders", card_code, lines, doc_type, num_at_card, authorization, vat_sum,
            fields,
        )  # fmt: skip
        if cancelled:
            closed = {"Cancelled": "tYES", "CancelStatus": "csYes", "DocumentStatus": "bost_Close"}
            self.books.update_document("PurchaseOrders", entry, closed)
            for line in self.books.orders[entry]["DocumentLines"]:
                line["LineStatus"] = "bost_Close"
        return entry

    def approve_draft(self, doc_entry: int, *, authorization: str = "dasApproved") -> int:
        """Approve a draft and add the document it becomes; returns the new DocEntry.

        UNCONFIRMED workflow (§5): the draft closes (keeping dasApproved) and the invoice (or
        order) added from it has ``authorization``.
        """
        record = self._helper(lambda: self.books.approve_draft(doc_entry, authorization))
        return int(record["DocEntry"])

    def update_invoice(self, doc_entry: int, **fields: Any) -> None:
        """Change an A/P invoice as a clerk does; its UpdateDate/UpdateTime become now.

        Header properties by their Service Layer names; ``DocumentLines`` (or ``lines``)
        replaces the lines, ``VatSum`` (or ``vat_sum``) the tax; totals follow. B1 itself
        refuses to change an added invoice's amounts: this stands for whatever correction a
        clerk makes (the emulator's PATCH refuses it, 400 -1029).
        """
        if "lines" in fields:
            fields["DocumentLines"] = fields.pop("lines")
        if "vat_sum" in fields:
            fields["VatSum"] = fields.pop("vat_sum")
        self._helper(lambda: self.books.update_document("PurchaseInvoices", doc_entry, fields))

    def cancel_invoice(self, doc_entry: int) -> None:
        """Cancel an A/P invoice as B1 does.

        The invoice becomes Cancelled tYES, CancelStatus csYes, bost_Close; B1 adds a
        cancellation document to PurchaseInvoices (CancelStatus csCancellation, Cancelled tNO,
        bost_Close, same CardCode/NumAtCard/amounts, lines with BaseEntry = the invoice). Both
        are stamped now. A paid or already cancelled invoice is refused (ValueError).
        """
        self._helper(lambda: self.books.cancel_invoice(doc_entry))

    def pay_invoice(
        self,
        doc_entry: int,
        amount: Decimal | None = None,
        *,
        reference: str | None = None,
        account: str = BANK_ACCOUNT,
    ) -> int:
        """Pay an invoice in B1 (a bank transfer), as a clerk would; returns the payment's DocEntry.

        ``amount`` defaults to the open balance.
        """
        invoice = self._helper(lambda: self.books.document("PurchaseInvoices", doc_entry))
        due = invoice["DocTotal"] - invoice["PaidToDate"] if amount is None else amount
        body = {
            "CardCode": invoice["CardCode"], "TransferAccount": account, "TransferSum": due,
            "TransferReference": reference,
            "PaymentInvoices": [
                {"DocEntry": doc_entry, "SumApplied": due, "InvoiceType": "it_PurchaseInvoice"}
            ],
        }  # fmt: skip
        record = self._helper(lambda: self.books.create_payment(body))
        return int(record["DocEntry"])

    def invoice(self, doc_entry: int) -> dict[str, Any]:
        """A stored A/P invoice (a copy, Python values: date, time, Decimal, enum names)."""
        return snapshot(self._helper(lambda: self.books.document("PurchaseInvoices", doc_entry)))

    def draft(self, doc_entry: int) -> dict[str, Any]:
        """A stored draft (a copy)."""
        return snapshot(self._helper(lambda: self.books.document("Drafts", doc_entry)))

    def purchase_order(self, doc_entry: int) -> dict[str, Any]:
        """A stored purchase order (a copy)."""
        return snapshot(self._helper(lambda: self.books.document("PurchaseOrders", doc_entry)))

    def partner(self, card_code: str) -> dict[str, Any]:
        """A stored business partner (a copy)."""
        return snapshot(self.books.partners[card_code])

    def payment(self, doc_entry: int) -> dict[str, Any]:
        """A stored vendor payment (a copy)."""
        return snapshot(self._helper(lambda: self.books.payment(doc_entry)))

    def payments_for(
        self, doc_entry: int, *, include_cancelled: bool = False
    ) -> list[dict[str, Any]]:
        """The vendor payments applying to A/P invoice ``doc_entry`` (copies), oldest first."""
        found = self.books.payments_applying_to(doc_entry, include_cancelled=include_cancelled)
        return [snapshot(p) for p in found]

    # --- The demo (ml_connector.emulation.DemoSource) --------------------------------------------

    def seed_demo(self, bills: int, seed: int) -> None:
        """Start over with ``bills`` approved invoices and the records that must not move.

        Those: drafts awaiting approval (and a rejected one), cancelled invoices with their
        cancellation documents, paid invoices and purchase orders; plus exactly one approved
        invoice on :meth:`unmapped_account`.
        """
        self._new_books()
        self._scenario = seed_demo(self, bills, seed)

    def _key(self, record: Row) -> tuple[str, str]:
        # What BILL would hold: the vendor's CardName and the vendor's invoice number NumAtCard.
        return str(record["CardName"]), str(record.get("NumAtCard") or "")

    def _current(self, key: tuple[str, str]) -> Row:
        entry = self._scenario.eligible_entries[key]
        return self.books.invoices[entry]

    def eligible_bills(self) -> set[tuple[str, str]]:
        """(CardName, NumAtCard) of every seeded invoice that must reach BILL."""
        return set(self._scenario.eligible)

    def held_bill_keys(self) -> set[tuple[str, str]]:
        """(CardName, NumAtCard) of the seeded records that must not move.

        Drafts (awaiting approval, rejected), cancelled invoices (and their cancellation
        documents, which share the key), paid invoices; purchase orders by (CardName, DocNum),
        as an order has no vendor invoice number.
        """
        return set(self._scenario.held)

    def payments_posted(self) -> dict[tuple[str, str], int]:
        """Vendor payments (not cancelled) applied to each A/P invoice, by its key."""
        counts: dict[tuple[str, str], int] = {}
        for entry, invoice in self.books.invoices.items():
            if invoice["CancelStatus"] == "csCancellation":
                continue
            found = len(self.books.payments_applying_to(entry, include_cancelled=False))
            if found:
                key = self._key(invoice)
                counts[key] = counts.get(key, 0) + found
        return counts

    def payments_unfinished(self) -> set[tuple[str, str]]:
        """Invoices with a payment entered but not posted: none in B1.

        A vendor payment is posted when it is added (payment drafts are not emulated).
        """
        return set()

    def payments_carrying(self, reference: str) -> dict[tuple[str, str], int]:
        """How many payments (not cancelled) with this ``TransferReference`` each invoice has.

        The truth a test counts duplicates in: B1 never refuses a second payment with the same
        reference, so only the connector's look before it writes keeps it from paying twice.
        """
        counts: dict[tuple[str, str], int] = {}
        for payment in self.books.payments.values():
            if payment["TransferReference"] != reference or payment["Cancelled"] == "tYES":
                continue
            for entry in {row["DocEntry"] for row in payment["PaymentInvoices"]}:
                invoice = self.books.invoices.get(entry)
                key = self._key(invoice) if invoice is not None else ("", str(entry))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def unmapped_bills(self) -> set[tuple[str, str]]:
        """(CardName, NumAtCard) of the invoices coded to :meth:`unmapped_account`."""
        return {
            self._key(invoice)
            for invoice in self.books.invoices.values()
            if invoice["CancelStatus"] == "csNo"
            and any(
                line["AccountCode"] == DEMO_UNMAPPED_ACCOUNT for line in invoice["DocumentLines"]
            )
        }

    def change_vendor(self, name: str) -> str:
        """Give the supplier named ``name`` a new phone number, as a clerk would; returns it.

        Its invoices are not touched: the connector sees the change with the vendor's next one.
        """
        partner = next(
            p
            for p in self.books.partners.values()
            if p["CardName"] == name and p["CardType"] == "cSupplier"
        )
        phone = str(partner.get("Phone1") or "")
        last = int(phone[-4:]) if phone[-4:].isdigit() else 0
        new = f"206-555-{(last + 1) % 10_000:04d}"
        self.update_partner(partner["CardCode"], Phone1=new)
        return new

    def account_numbers(self) -> dict[str, str]:
        """The G/L accounts lines and tax are coded to (Code to Name), the unmapped one included."""
        numbers = {c: n for c, n in DEMO_ACCOUNTS.items() if c in self.books.accounts}
        numbers[TAX_ACCOUNT] = self.books.accounts[TAX_ACCOUNT]["Name"]  # VatSum is coded here
        if DEMO_UNMAPPED_ACCOUNT in self.books.accounts:
            numbers[DEMO_UNMAPPED_ACCOUNT] = self.books.accounts[DEMO_UNMAPPED_ACCOUNT]["Name"]
        return numbers

    def unmapped_account(self) -> str:
        """The account BILL's chart must not get (the deliberate exception)."""
        return DEMO_UNMAPPED_ACCOUNT

    def bill_totals(self) -> dict[tuple[str, str], Decimal]:
        """Each eligible invoice's DocTotal as the company has it now."""
        return {key: self._current(key)["DocTotal"] for key in self._scenario.eligible}

    def change_bill(self, key: tuple[str, str]) -> None:
        """Raise an eligible invoice's first line by 10.00 (its stamps become now).

        A service line's LineTotal grows by 10.00; an item line's Price by 10.00. B1 does not
        let an added invoice's amounts change; this stands for a clerk's correction.
        """
        invoice = self._current(key)
        lines = [line_inputs(line) for line in invoice["DocumentLines"]]
        for line in lines:
            line.pop("TaxTotal", None)
        first = lines[0]
        if invoice["DocType"] == "dDocument_Items":
            first["Price"] += Decimal("10.00")
            first.pop("LineTotal", None)
        else:
            first["LineTotal"] += Decimal("10.00")
        self.update_invoice(int(invoice["DocEntry"]), DocumentLines=lines)

    # --- Responses -------------------------------------------------------------------------------

    @staticmethod
    def _headers(version: str) -> dict[str, str]:
        if version == "v2":
            return {"OData-Version": "4.0"}
        return {"DataServiceVersion": "3.0"}

    def _json(
        self,
        version: str,
        body: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        media = (
            "application/json;odata.metadata=minimal;charset=utf-8"
            if version == "v2"
            else "application/json;odata=minimalmetadata;charset=utf-8"
        )
        return Response(
            dumps(body), status, headers={**self._headers(version), **(headers or {})},
            media_type=media,
        )  # fmt: skip

    def _error(
        self,
        version: str,
        status: int,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """v1: ``{code:int, message:{lang,value}}``; v2: ``{code:str, message:str}`` (§3)."""
        if version == "v2":
            body: Row = {"error": {"code": str(code), "message": message}}
        else:
            body = {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}
        return self._json(version, body, status, headers)

    @staticmethod
    def _root(request: Request, version: str) -> str:
        return f"{str(request.base_url).rstrip('/')}/b1s/{version}"

    def _etag(self, entity_set: _EntitySet, record: Row) -> str:
        seed = f"{entity_set.name}:{record[entity_set.key]}:{record.get('DataVersion', 0)}"
        return 'W/"' + hashlib.sha1(seed.encode()).hexdigest() + '"'  # noqa: S324 - a tag

    def _entity_body(
        self,
        request: Request,
        version: str,
        entity_set: _EntitySet,
        record: Row,
        select: list[str] | None = None,
    ) -> Row:
        root = self._root(request, version)
        if version == "v1":
            head: Row = {"odata.metadata": f"{root}/$metadata#{entity_set.name}/@Element"}
        else:
            head = {"@odata.context": f"{root}/$metadata#{entity_set.name}/$entity"}
            if entity_set.etag:
                head["@odata.etag"] = self._etag(entity_set, record)
        return head | render(entity_set.schema, record, version, select)

    # --- Sessions --------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get("B1SESSION"))

    async def _login(self, request: Request, version: str) -> Response:
        try:
            body = loads(await request.body())
        except ValueError:
            raise B1Error(400, -1000, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise B1Error(400, -1000, "The request body must be a JSON object")
        if not (
            self.credentials_valid
            and body.get("CompanyDB") == COMPANY_DB
            and body.get("UserName") == USERNAME
            and body.get("Password") == self.password
        ):
            # §8 emulator choice: 401 -304 "Login failed" (as the BAL mock; on-premise
            # status and wording UNCONFIRMED, a cloud tenant answers code 100000027).
            raise B1Error(401, -304, "Login failed")
        session = self.sessions.create(USERNAME, company=COMPANY_DB, language=body.get("Language"))
        self.logins += 1
        root = self._root(request, version)
        answer: Row = {"SessionId": session.token, "Version": SERVER_VERSION}
        answer["SessionTimeout"] = self.session_timeout
        if version == "v1":  # SAP-UG §3.1
            answer = {"odata.metadata": f"{root}/$metadata#B1Sessions/@Element", **answer}
        else:  # CORROBORATED (§2)
            answer = {"@odata.context": f"{root}/$metadata#B1Sessions/$entity", **answer}
        response = self._json(version, answer)
        # Exactly SAP-UG §3.1's cookies: B1SESSION without a Path, ROUTEID for /b1s.
        response.headers.append("set-cookie", f"B1SESSION={session.token};HttpOnly;")
        response.headers.append("set-cookie", f"ROUTEID={ROUTE_ID}; path=/b1s")
        return response

    def _logout(self, request: Request, version: str) -> Response:
        self.sessions.end(request.cookies.get("B1SESSION"))
        response = Response(status_code=204, headers=self._headers(version))
        # OCG §4.2: the server resets the session cookie (its exact form: UNCONFIRMED).
        response.headers.append(
            "set-cookie", "B1SESSION=; expires=Thu, 01 Jan 1970 00:00:00 GMT;HttpOnly;"
        )
        return response

    # --- Dispatch --------------------------------------------------------------------------------

    async def _serve(self, request: Request) -> Response:
        version = request.path_params["version"]
        if version not in VERSIONS:
            return self._error("v1", 404, -1, f"Resource not found for the segment '{version}'.")
        rest = str(request.path_params.get("rest", ""))
        try:
            if rest == "Login" and request.method == "POST":  # the exact case only (§1)
                return await self._login(request, version)
            if self._session(request) is None:
                raise B1Error(401, 301, SESSION_EXPIRED)
            if rest == "Logout" and request.method == "POST":
                return self._logout(request, version)
            return await self._resource(request, version, rest)
        except B1Error as exc:
            return self._error(version, exc.status, exc.code, exc.message)
        except QueryError as exc:
            return self._error(version, 400, -1000, str(exc))

    async def _resource(self, request: Request, version: str, rest: str) -> Response:
        method = request.method
        if rest in ("", "/"):
            if method != "GET":
                raise B1Error(405, -1, "Method not allowed")
            return self._service_document(request, version)
        if rest == "$metadata":
            raise B1Error(501, -1, "$metadata is not emulated")
        name, key, tail = _split_resource(rest)
        entity_set = self._sets.get(name)
        if entity_set is None:
            raise B1Error(404, -1, f"Resource not found for the segment '{name}'.")
        if key is None:
            if tail == "$count" and method == "GET":
                return self._count(request, version, entity_set)
            if tail:
                raise B1Error(404, -1, f"Resource not found for the segment '{tail}'.")
            if method == "GET":
                return self._collection(request, version, entity_set)
            if method == "POST":
                return await self._create(request, version, entity_set)
            raise B1Error(400, -5006, _NOT_SUPPORTED)
        key_value = _key_value(entity_set, key)
        if tail:
            if method != "POST":
                raise B1Error(400, -5006, _NOT_SUPPORTED)
            return self._action(version, entity_set, key_value, tail)
        if method == "GET":
            return self._entity(request, version, entity_set, key_value)
        if method in ("PATCH", "PUT"):
            return await self._update(request, version, entity_set, key_value)
        if method == "DELETE":
            return self._delete(version, entity_set, key_value)
        raise B1Error(400, -5006, _NOT_SUPPORTED)

    def _service_document(self, request: Request, version: str) -> Response:
        # SAP-UG §3.4: {"value":[{"name":…,"kind":"EntitySet","url":…}, …]}.
        root = self._root(request, version)
        sets = [{"name": n, "kind": "EntitySet", "url": n} for n in sorted(self._sets)]
        context = "odata.metadata" if version == "v1" else "@odata.context"
        return self._json(version, {context: f"{root}/$metadata", "value": sets})

    def _record(self, entity_set: _EntitySet, key: Any) -> Row:
        record = entity_set.rows().get(key)
        if record is None:
            raise B1Error(404, -2028, "No matching records found (ODBC -2028)")  # §3
        return record

    # --- Reads -----------------------------------------------------------------------------------

    def _query_items(self, request: Request) -> list[tuple[str, str]]:
        return list(request.query_params.multi_items())

    @staticmethod
    def _flag(request: Request, header: str) -> bool:
        return request.headers.get(header, "").strip().lower() == "true"

    def _page_size(self, request: Request) -> tuple[int, str | None]:
        """The page size and the ``Preference-Applied`` it earns (§4).

        ``Prefer: odata.maxpagesize=N`` beats ``B1S-PageSize: N``, which beats the configured
        size. A malformed preference is ignored, as HTTP preferences are.
        """
        for part in ",".join(request.headers.getlist("prefer")).split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                size = int(value.strip())
                return size, f"odata.maxpagesize={size}"
        header = request.headers.get("b1s-pagesize", "").strip()
        if header.isdigit():
            return int(header), None
        return self.page_size, None

    def _filtered(self, request: Request, version: str, entity_set: _EntitySet) -> Any:
        query = parse_query(
            self._query_items(request),
            entity_set.schema,
            version,
            case_insensitive=self._flag(request, "b1s-caseinsensitive"),
        )
        rows = list(entity_set.rows().values())
        if query.predicate is not None:
            rows = [r for r in rows if query.predicate(r)]
        return query, rows

    def _count(self, request: Request, version: str, entity_set: _EntitySet) -> Response:
        _, rows = self._filtered(request, version, entity_set)
        return Response(
            str(len(rows)), 200, headers=self._headers(version), media_type="text/plain"
        )

    def _collection(self, request: Request, version: str, entity_set: _EntitySet) -> Response:
        query, rows = self._filtered(request, version, entity_set)
        # Without $orderby, rows come in key order.
        rows = sort_rows(rows, query.orderby or [(entity_set.key, False)])
        total = len(rows)
        window = rows[query.skip :]
        if query.top is not None:
            window = window[: query.top]
        size, applied = self._page_size(request)
        page = window if size == 0 else window[:size]
        more = len(page) < len(window)
        root = self._root(request, version)
        context = f"{root}/$metadata#{entity_set.name}"
        values = []
        for record in page:
            value = render(entity_set.schema, record, version, query.select)
            if version == "v2" and entity_set.etag:
                value = {"@odata.etag": self._etag(entity_set, record)} | value
            values.append(value)
        body: Row
        if version == "v1":
            select = f"&$select={','.join(query.select)}" if query.select else ""
            body = {"odata.metadata": context + select}
            if query.count:
                body["odata.count"] = str(total)  # a string in v1 (§4)
            body["value"] = values
        else:
            select = f"({','.join(query.select)})" if query.select else ""
            body = {"@odata.context": context + select}
            if query.count:
                body["@odata.count"] = total
            body["value"] = values
        if more:
            left = None if query.top is None else query.top - len(page)
            link = _next_link(entity_set.name, query.passed_on, query.skip + len(page), left)
            if self.next_link == "path":
                link = f"/b1s/{version}/{link}"
            body["odata.nextLink" if version == "v1" else "@odata.nextLink"] = link
        headers = {"Preference-Applied": applied} if applied else None
        return self._json(version, body, headers=headers)

    def _entity(self, request: Request, version: str, entity_set: _EntitySet, key: Any) -> Response:
        items = self._query_items(request)
        for name, _ in items:
            if name.startswith("$") and name not in ("$select", "$format"):
                raise QueryError(f"The query option '{name}' does not apply to a single entity")
        query = parse_query(items, entity_set.schema, version)
        record = self._record(entity_set, key)
        body = self._entity_body(request, version, entity_set, record, query.select)
        headers = {"ETag": self._etag(entity_set, record)} if entity_set.etag else None
        if version == "v1":
            headers = None  # ETags are documented for v2 (SAP-UG §5.2)
        return self._json(version, body, headers=headers)

    # --- Writes ----------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> Row:
        try:
            body = loads(await request.body())
        except ValueError:
            raise B1Error(400, -1000, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise B1Error(400, -1000, "The request body must be a JSON object")
        return body

    @staticmethod
    def _prefers_no_content(request: Request) -> bool:
        prefer = ",".join(request.headers.getlist("prefer")).split(",")
        return any(p.strip().lower() == "return-no-content" for p in prefer)

    async def _create(self, request: Request, version: str, entity_set: _EntitySet) -> Response:
        body = await self._body(request)
        record = self._create_record(entity_set.name, body)
        key = record[entity_set.key]
        location = f"/b1s/{version}/{entity_set.name}({_key_literal(key)})"
        if self._prefers_no_content(request):
            # SAP-UG §3.5.1: 204, Location, Preference-Applied: return-no-content.
            headers = {
                **self._headers(version),
                "Location": location,
                "Preference-Applied": "return-no-content",
            }
            return Response(status_code=204, headers=headers)
        body = self._entity_body(request, version, entity_set, record)
        headers = {"Location": location}
        if version == "v2" and entity_set.etag:
            headers["ETag"] = self._etag(entity_set, record)
        return self._json(version, body, 201, headers)

    def _create_record(self, set_name: str, body: Row) -> Row:
        books = self.books
        try:
            if set_name == "VendorPayments":
                return books.create_payment(body)
            if set_name == "BusinessPartners":
                fields = dict(body)
                code = fields.pop("CardCode", None)
                card_type = BUSINESS_PARTNER.fields["CardType"].parse(
                    fields.pop("CardType", "cCustomer")  # B1's default type is the customer
                )
                name = fields.pop("CardName", None) or ""
                if not isinstance(code, str):
                    raise B1Error(400, -5002, "Enter a business partner code")
                return books.add_partner(code, card_type, name, fields)
            if set_name in ("PurchaseInvoices", "Drafts", "PurchaseOrders"):
                fields = dict(body)
                lines = fields.pop("DocumentLines", None)
                if not isinstance(lines, list):
                    raise B1Error(400, -5002, "Document must have at least one row")
                if "AuthorizationStatus" in fields:
                    raise B1Error(400, -1029, "Field cannot be updated (ODBC -1029)")
                return books.add_document(
                    set_name,
                    str(fields.pop("CardCode", "")),
                    lines,
                    doc_type=fields.pop("DocType", "dDocument_Items"),  # B1's default type
                    num_at_card=fields.pop("NumAtCard", None),
                    authorization="dasPending" if set_name == "Drafts" else "dasWithout",
                    vat_sum=None,
                    fields=fields,
                )
        except ValueError as exc:
            code = -1000 if "is invalid" in str(exc) else -5002
            raise B1Error(400, code, str(exc)) from None
        raise B1Error(400, -5006, _NOT_SUPPORTED)

    def _check_if_match(self, request: Request, entity_set: _EntitySet, record: Row) -> None:
        # If-Match is optional (PATCH overwrites by default); a stale one is 412 -2039 (§5).
        wanted = request.headers.get("if-match")
        if wanted is None or wanted.strip() == "*":
            return
        if wanted.strip() != self._etag(entity_set, record):
            raise B1Error(412, -2039, _MODIFIED)

    async def _update(
        self, request: Request, version: str, entity_set: _EntitySet, key: Any
    ) -> Response:
        record = self._record(entity_set, key)
        self._check_if_match(request, entity_set, record)
        body = await self._body(request)
        put = request.method == "PUT"
        try:
            if entity_set.name == "BusinessPartners":
                self.books.patch_partner(key, body, replace=put)
            elif entity_set.name in ("PurchaseInvoices", "Drafts", "PurchaseOrders") and not put:
                self._patch_document(request, entity_set.name, key, body)
            else:
                raise B1Error(400, -5006, _NOT_SUPPORTED)
        except ValueError as exc:
            code = -1000 if "is invalid" in str(exc) else -5002
            raise B1Error(400, code, str(exc)) from None
        return Response(status_code=204, headers=self._headers(version))

    def _patch_document(self, request: Request, set_name: str, key: int, body: Row) -> None:
        for name in body:
            if name not in DOCUMENT.fields:
                raise B1Error(400, -1000, f"Property '{name}' of 'Document' is invalid")
        frozen = set(body) - DOCUMENT_EDITABLE
        if set_name == "PurchaseInvoices":
            # An added A/P invoice keeps its amounts and posting dates (general B1
            # knowledge, UNCONFIRMED): only reference fields change.
            frozen |= set(body) & {"DocumentLines", "VatSum", "DocDate", "TaxDate"}
        if frozen:
            raise B1Error(400, -1029, "Field cannot be updated (ODBC -1029)")
        replace = self._flag(request, "b1s-replacecollectionsonpatch")
        self.books.update_document(set_name, key, body, replace_lines=replace)

    def _delete(self, version: str, entity_set: _EntitySet, key: Any) -> Response:
        self._record(entity_set, key)
        if entity_set.name == "Drafts":
            del self.books.drafts[key]
            return Response(status_code=204, headers=self._headers(version))
        raise B1Error(400, -5006, _NOT_SUPPORTED)

    def _action(self, version: str, entity_set: _EntitySet, key: Any, action: str) -> Response:
        self._record(entity_set, key)
        if entity_set.name == "PurchaseInvoices" and action == "Cancel":
            self.books.cancel_invoice(key)
        elif entity_set.name == "VendorPayments" and action in (
            "Cancel",
            "CancelbyCurrentSystemDate",
        ):
            self.books.cancel_payment(key)
        elif action.isidentifier():
            raise B1Error(400, -5006, _NOT_SUPPORTED)
        else:
            raise B1Error(404, -1, f"Resource not found for the segment '{action}'.")
        return Response(status_code=204, headers=self._headers(version))


# --- Paths ---------------------------------------------------------------------------------------


def _split_resource(rest: str) -> tuple[str, str | None, str]:
    """``PurchaseInvoices(12)/Cancel`` -> name, the key text (``12``, ``'V1'``), the tail."""
    pos = 0
    while pos < len(rest) and (rest[pos].isalnum() or rest[pos] in "_$"):
        pos += 1
    name = rest[:pos]
    if not name:
        raise B1Error(404, -1, f"Resource not found for the segment '{rest}'.")
    key = None
    if rest.startswith("(", pos):
        end, quoted = pos + 1, False
        while end < len(rest) and (quoted or rest[end] != ")"):
            if rest[end] == "'":
                quoted = not quoted
            end += 1
        if end >= len(rest):
            raise QueryError(f"Unterminated key in '{rest}'")
        key, pos = rest[pos + 1 : end], end + 1
    tail = rest[pos:]
    if tail and not tail.startswith("/"):
        raise B1Error(404, -1, f"Resource not found for the segment '{rest}'.")
    return name, key, tail[1:]


def _key_value(entity_set: _EntitySet, text: str) -> Any:
    """The key of ``Set(12)`` (integer keys) or ``Set('V001')`` (string keys, §5)."""
    kind = entity_set.schema.fields[entity_set.key]
    text = text.strip()
    if kind == "int":
        if not text.lstrip("-").isdigit():
            raise QueryError(f"The key of {entity_set.name} is a number, not {text}")
        return int(text)
    if len(text) < 2 or text[0] != "'" or text[-1] != "'":
        raise QueryError(f"The key of {entity_set.name} is a quoted string, not {text}")
    return text[1:-1].replace("''", "'")


def _key_literal(key: Any) -> str:
    return str(key) if isinstance(key, int) else "'" + str(key).replace("'", "''") + "'"


def _next_link(set_name: str, passed_on: list[tuple[str, str]], skip: int, top: int | None) -> str:
    """``PurchaseInvoices?$filter=…&$orderby=…&$skip=20``: the other options first, as sent."""
    parts = [f"{n}={quote(v, safe=_SAFE)}" for n, v in passed_on]
    if top is not None:
        parts.append(f"$top={top}")
    parts.append(f"$skip={skip}")
    return f"{set_name}?{'&'.join(parts)}"


# Kept as written in the link (what OData literals use); spaces and the rest are %-encoded.
_SAFE = "'(),:$/=-._~*@!"


def create_emulator(options: EmulatorOptions) -> SapB1Emulator:
    """The ``ml_connector.emulators`` entry point: a small sample company.

    A few suppliers and customers, the chart and profit centers, two invoices and a draft.
    ``seed_demo`` starts over from an empty company.
    """
    emulator = SapB1Emulator(options)
    seed_sample(emulator)
    return emulator
