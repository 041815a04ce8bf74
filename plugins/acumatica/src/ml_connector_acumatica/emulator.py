"""A protocol-faithful emulator of Acumatica's contract-based REST API (facts: acumatica.md).

Served under an instance path (``/AcumaticaDB``), as a site in a virtual directory is:

- ``GET /entity``: the endpoint listing (§1); ``/entity/Default/<version>/…`` for each served
  version, and 404 for any other (§8: UNCONFIRMED, the emulator picks 404);
- ``POST /entity/auth/login`` / ``logout`` (cookie sessions, 20 minutes idle) and
  ``POST /identity/connect/token`` (OAuth password and refresh grants, one-hour tokens) (§2),
  a licence limit on concurrent API sessions, and 401 for anything not signed in;
- ``Vendor``, ``Bill``, ``Check``, ``Account``, ``Subaccount``, ``PurchaseOrder``: lists with
  ``$filter``/``$expand``/``$select``/``$top``/``$skip`` (bare arrays, key order), key GETs,
  ``PUT`` upserts with ``If-Match``/``If-None-Match``, the ``ReleaseBill``/``ReleaseCheck``
  actions (202 + status URL), 422 bodies with per-field errors, 500 exception bodies (§3-§5);
- the licence's request limits as Acumatica applies them (§4, :class:`Licence`): one queue per
  instance in front of ``max_concurrent`` processing cores, requests delayed past half the
  per-minute budget, and 429 only for the 21st request in the queue or after ten minutes there;
- bodies whose general fields are not wrapped as ``{"value": …}`` refused with 400 (§5);
- seeded data: vendors, GL accounts and subaccounts, bills of every type and status (multi-line,
  with tax), purchase orders (never to be synced), and one released check.

Every general field is wrapped as ``{"value": …}`` (``{}`` for null) and numbers are exact.
Options (``EmulatorOptions.extra``) are listed in :class:`AcumaticaEmulatorConfig`; test helpers
(``add_bill``, ``edit_bill``, ``expire_sessions``, …) change the data as a clerk would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import random
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ml_connector.emulation import Emulator, EmulatorOptions, SessionStore
from ml_connector_acumatica.schemas import dumps

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from ml_connector.emulation import Session

__all__ = ["AcumaticaEmulator", "AcumaticaEmulatorConfig", "create_emulator"]

INSTANCE_PATH = "/AcumaticaDB"
ENDPOINT_NAME = "Default"
BUILD_VERSION = "24.207.0012"
CLIENT_GUID = "8E0761D9-F4EC-2D4B-A60F-BCE2708C6FDD"  # the IDG's example client id
COOKIE = "session"  # UNCONFIRMED (acumatica.md §8): real cookie names; one opaque cookie here
CENT = Decimal("0.01")

#: Key fields of each entity, in key order (lists are sorted by them).
KEYS: dict[str, tuple[str, ...]] = {
    "Vendor": ("VendorID",),
    "Bill": ("Type", "ReferenceNbr"),
    "Check": ("Type", "ReferenceNbr"),
    "Account": ("AccountCD",),
    "Subaccount": ("SubaccountCD",),
    "PurchaseOrder": ("Type", "OrderNbr"),
}
ACTIONS = {"Bill": ("ReleaseBill",), "Check": ("ReleaseCheck",)}
UNRELEASED_BILL = frozenset({"On Hold", "Balanced", "Pending Approval", "Rejected", "Scheduled"})
APPLICABLE_TYPES = frozenset({"Bill", "Credit Adj.", "Debit Adj.", "Prepayment"})  # §8 choice


@dataclass
class AcumaticaEmulatorConfig:
    """The emulator's own options, read from ``EmulatorOptions.extra`` (same names).

    Attributes:
        tenants: Tenant names; the first holds the seeded data, the others are empty.
        branch: The branch of the seeded documents.
        username: The API user.
        password: Its password.
        client_secret: The OAuth connected application's secret.
        versions: The ``Default`` endpoint versions served.
        requests_per_minute: The licence's request budget per instance (``None``: unlimited).
            UNCONFIRMED numbers (§8): 100 by default, as the notes suggest. Past half of it,
            requests are delayed, not refused (see :class:`Licence`).
        max_concurrent: Requests processed at once (the licence's API processing cores); more
            wait in the queue.
        queue_limit: A request that finds this many already waiting is declined with 429
            (§4: "more than 20" in the queue).
        queue_wait_seconds: A request that has waited this long in the queue is declined with
            429 (§4: ten minutes).
        minute_seconds: The length of the budget's "minute" (60; shorter compresses the
            licence's timings for demos).
        processing_seconds: How long each request holds a processing core (0: answered at
            once), so that the concurrency queue fills as it does on a busy instance.
        sleep: How the emulator waits (delays, processing, the queue's time limit):
            ``asyncio.sleep`` by default; tests pass one that moves their clock instead.
        max_sessions: The licence's concurrent API users (§4; a trial licence has 2).
        action_polls: How many requests an action stays running for: status polls answer 202
            that often (and other requests of its session fail meanwhile); 0 answers 204 at once.
        bills: How many extra open bills to generate beyond the fixed set.
        numbers_as_strings: Send numbers as JSON strings (UNCONFIRMED tolerance test).
        masked_subaccounts_on_lines: Bill lines show ``ADM-000`` (True) or ``ADM000``.
        legacy_listing: ``GET /entity`` answers a bare array, as older builds do (§1).
        utc_offset_minutes: The offset timestamps are written in.
        token_lifetime: Seconds an OAuth access token lives (§2: 3600).
    """

    tenants: tuple[str, ...] = ("Acme", "AcmeSandbox")
    branch: str = "HQ"
    username: str = "api-bot"
    password: str = "Acu-Emulator-1!"  # noqa: S105 - the emulator's own test login
    client_secret: str = "s3cr3t-Acumatica-app"  # noqa: S105 - likewise
    versions: tuple[str, ...] = ("23.200.001", "24.200.001", "25.200.001")
    requests_per_minute: int | None = 100
    max_concurrent: int = 3
    queue_limit: int = 20
    queue_wait_seconds: float = 600.0
    minute_seconds: float = 60.0
    processing_seconds: float = 0.0
    sleep: Callable[[float], Awaitable[None]] | None = None
    max_sessions: int = 3
    action_polls: int = 1
    bills: int = 12
    numbers_as_strings: bool = False
    masked_subaccounts_on_lines: bool = True
    legacy_listing: bool = False
    utc_offset_minutes: int = 0
    token_lifetime: float = 3600.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> AcumaticaEmulatorConfig:
        """Read the options; unknown names are refused (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ValueError(f"unknown acumatica emulator options: {', '.join(unknown)}")
        values = dict(extra)
        for name in ("tenants", "versions"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @property
    def client_id(self) -> str:
        """The OAuth client id of the first tenant, ``GUID@Tenant`` (§2)."""
        return f"{CLIENT_GUID}@{self.tenants[0]}"


# --- Errors as Acumatica words them ------------------------------------------------------------


class ApiError(Exception):
    """Ends a request with an Acumatica-shaped error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers=headers, media_type="application/json")


def exception_body(message: str, exception_type: str, status: int = 500) -> ApiError:
    """A 500-style body: message, exceptionMessage, exceptionType (§3, CSC ErrorMessage)."""
    body = {
        "message": "An error has occurred.",
        "exceptionMessage": message,
        "exceptionType": exception_type,
        "stackTrace": "   at PX.Api.ContractBased…",
    }
    return ApiError(_json(body, status))


def no_entity() -> ApiError:
    """A key GET of a missing record: 500, not 404 (§3, CORROBORATED)."""
    return exception_body(
        "No entity satisfies the condition.",
        "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
    )


def business_error(message: str) -> ApiError:
    """A business rule refused the operation; Acumatica answers those with 500 too."""
    return exception_body(message, "PX.Data.PXException")


def not_found(path: str) -> ApiError:
    # UNCONFIRMED (acumatica.md §8): an unknown endpoint or entity answers 404; ASP.NET's text.
    return ApiError(
        _json(
            {"message": f"No HTTP resource was found that matches the request URI '{path}'."}, 404
        )
    )


# --- Values ------------------------------------------------------------------------------------


def _money(value: str | int | Decimal) -> Decimal:
    return Decimal(value).quantize(CENT)


def _parse_value(value: Any) -> Any:
    """A value from a request body: dates and times recognised, numbers kept exact."""
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
        if match:
            month, day, year = (int(g) for g in match.groups())
            return date(year, month, day)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})?", value):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


#: System fields, written bare (IDG "Representation of a Record in JSON Format"; CSC
#: ``Entity.cs``: ``id``, ``rowNumber``, ``delete``, ``error``, ``custom``, ``files``; ``_links``
#: in answers). ``note`` is not one of them: the IDG says to write it "in the same way as any
#: general field", and CSC's fixtures show ``"note": {"value": ""}``.
SYSTEM_FIELDS = frozenset({"id", "rowNumber", "delete", "error", "custom", "files", "_links"})
#: System fields whose value is a scalar, never an object.
_BARE_SYSTEM_FIELDS = frozenset({"id", "rowNumber", "delete", "error"})
_WRAPPER_KEYS = frozenset({"value", "error"})


def wrapping_problems(record: Any, path: str = "") -> list[tuple[str, str]]:
    """Where a record sent in a request breaks the JSON rules, as ``(JSON path, problem)``.

    General fields must be wrapped, ``{"value": …}`` (``{}`` is null); linked entities are
    objects of fields; detail entities are arrays of such objects; system fields are bare
    (acumatica.md §5, IDG "Representation of a Record in JSON Format").
    """
    if not isinstance(record, dict):
        return [(path or "$", "An entity must be a JSON object.")]
    problems: list[tuple[str, str]] = []
    for name, value in record.items():
        where = f"{path}.{name}" if path else name
        if name in SYSTEM_FIELDS:
            if name in _BARE_SYSTEM_FIELDS and isinstance(value, dict | list):
                problems.append((where, f"'{name}' is a system field: it is written bare."))
            elif name == "custom":
                problems += _custom_problems(value, where)
            continue
        if isinstance(value, list):  # a detail entity: an array of records
            for index, row in enumerate(value):
                problems += wrapping_problems(row, f"{where}[{index}]")
        elif isinstance(value, dict) and set(value) <= _WRAPPER_KEYS:  # a wrapped value
            if isinstance(value.get("value"), dict | list):
                problems.append((where, "A field's value cannot be an object or an array."))
        elif isinstance(value, dict):  # a linked entity
            problems += wrapping_problems(value, where)
        else:
            problems.append(
                (
                    where,
                    f"Error converting value {json.dumps(value, default=str)} to a field value: "
                    f"general fields are written as {{\"value\": …}}. Path '{where}'.",
                )
            )
    return problems


def _custom_problems(custom: Any, where: str) -> list[tuple[str, str]]:
    # "custom": {"<View>": {"<Field>": {"type": …, "value": …}}} (IDG, custom fields).
    views = custom if isinstance(custom, dict) else None
    if views is None or not all(isinstance(f, dict) for f in views.values()):
        return [(where, 'Custom fields are written as {"<View>": {"<Field>": {…}}}.')]
    return [
        (f"{where}.{view}.{name}", 'A custom field is written as {"type": …, "value": …}.')
        for view, values in views.items()
        for name, value in values.items()
        if not (isinstance(value, dict) and "value" in value)
    ]


def refuse_unwrapped(body: Any, prefix: str = "") -> None:
    """Answer 400 when a request's record has bare general values.

    UNCONFIRMED: no source shows the real answer to a bare value. The Default endpoint's
    OpenAPI error model is ASP.NET's ``HttpError`` (``message``, ``modelState``; CSC
    ``HttpError.cs``), which is how a body that does not bind is refused: 400, "The request is
    invalid.", and the offending paths in ``modelState``. The client copes with a 400, a 422 or
    a 500 serialisation error alike (none of them is retried).
    """
    problems = wrapping_problems(body, prefix)
    if problems:
        state: dict[str, list[str]] = {}
        for where, message in problems:
            state.setdefault(where, []).append(message)
        raise ApiError(_json({"message": "The request is invalid.", "modelState": state}, 400))


def unwrap(body: Any) -> Any:
    """A request body with ``{"value": …}`` unwrapped, detail rows and linked records too."""
    if isinstance(body, list):
        return [unwrap(row) for row in body]
    if not isinstance(body, dict):
        return body
    if set(body) <= {"value", "error"} and body:
        return _parse_value(body.get("value"))
    return {k: (v if k in ("id", "rowNumber", "delete") else unwrap(v)) for k, v in body.items()}


# --- The books: one tenant's data --------------------------------------------------------------


@dataclass
class Books:
    """One tenant's records, as plain dicts of field values (PascalCase, like the API)."""

    records: dict[str, dict[tuple[str, ...], dict[str, Any]]] = field(
        default_factory=lambda: {entity: {} for entity in KEYS}
    )
    counters: dict[str, int] = field(default_factory=dict)
    _order: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    def key(self, entity: str, record: Mapping[str, Any]) -> tuple[str, ...]:
        """A record's key tuple, folded as SQL Server's case-insensitive collation compares."""
        return tuple(str(record.get(k) or "").casefold() for k in KEYS[entity])

    def put(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a record (new or replaced), giving it an id."""
        record.setdefault("id", str(uuid.uuid4()))
        key = self.key(entity, record)
        if key not in self.records[entity]:
            self._order.pop(entity, None)
        self.records[entity][key] = record
        return record

    def remove(self, entity: str, record: Mapping[str, Any]) -> None:
        """Delete a record."""
        del self.records[entity][self.key(entity, record)]
        self._order.pop(entity, None)

    def get(self, entity: str, *key: str) -> dict[str, Any] | None:
        """A record by its key (case-insensitive)."""
        return self.records[entity].get(tuple(k.casefold() for k in key))

    def by_id(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """A record by its ``id``."""
        return next(
            (
                r
                for r in self.records[entity].values()
                if r["id"].casefold() == record_id.casefold()
            ),
            None,
        )

    def ordered(self, entity: str) -> list[dict[str, Any]]:
        """Every record in key order.

        UNCONFIRMED (acumatica.md §4 documents no $orderby): lists come in key order, as the
        primary views sort by their keys.
        """
        order = self._order.get(entity)
        if order is None:  # keys never change, so the order changes only with inserts
            order = self._order[entity] = sorted(self.records[entity])
        return [self.records[entity][k] for k in order]

    def next_number(self, sequence: str) -> str:
        """The next number of a numbering sequence, zero-padded like Acumatica's."""
        self.counters[sequence] = self.counters.get(sequence, 0) + 1
        return f"{self.counters[sequence]:06d}"


# --- Seed data ---------------------------------------------------------------------------------

_VENDORS = (
    ("ACMEOFFICE", "Acme Office Supply Co.", "orders@acmeoffice.example", "Chicago", "IL", "US"),
    ("BAYCLEAN", "Bay Area Cleaning Services", "billing@bayclean.example", "Oakland", "CA", "US"),
    ("CITYPOWER", "City Power & Light", "accounts@citypower.example", "Sacramento", "CA", "US"),
    ("DATAFLOW", "DataFlow Cloud Hosting Inc.", "ar@dataflow.example", "Austin", "TX", "US"),
    (
        "FASTFREIGHT",
        "Fast Freight Logistics",
        "invoices@fastfreight.example",
        "Memphis",
        "TN",
        "US",
    ),
    ("GREENLEAF", "Greenleaf Landscaping", "office@greenleaf.example", "Portland", "OR", "US"),
    (
        "HILLTOPLAW",
        "Hilltop Legal Partners LLP",
        "billing@hilltoplaw.example",
        "Boston",
        "MA",
        "US",
    ),
    ("OLDSUPPLY", "Old Supplier Inc.", "closed@oldsupply.example", "Reno", "NV", "US"),
)
_ACCOUNTS = (
    ("10200", "Company Checking Account", "Asset", True),
    ("20000", "Accounts Payable", "Liability", True),
    ("40000", "Sales Revenue", "Income", True),
    ("50000", "Cost of Goods Sold", "Expense", True),
    ("61000", "Office Supplies", "Expense", True),
    ("62000", "Rent Expense", "Expense", True),
    ("63000", "Utilities", "Expense", True),
    ("64000", "Professional Fees", "Expense", True),
    ("65000", "Freight In", "Expense", True),
    ("66000", "Cleaning and Maintenance", "Expense", True),
    ("67000", "Software and Hosting", "Expense", True),
    ("68000", "Sales and Use Tax", "Expense", True),
    ("69000", "Legacy Expenses", "Expense", False),
    ("69900", "Suspense Expense", "Expense", True),  # the demo's deliberately unmapped account
)
DEMO_UNMAPPED_ACCOUNT = "69900"
_SUBACCOUNTS = (
    ("000-000", "Company Wide", True),
    ("ADM-000", "Administration", True),
    ("SLS-000", "Sales", True),
    ("OPS-000", "Operations", True),
    ("OPS-WH1", "Operations - Warehouse 1", True),
    ("MKT-000", "Marketing", True),
    ("RND-000", "Research", False),
)
#: What each vendor's lines are usually coded to.
_CODING = {
    "ACMEOFFICE": ("61000", "ADM-000", "Copy paper, toner and desk supplies"),
    "BAYCLEAN": ("66000", "OPS-000", "Office and warehouse cleaning"),
    "CITYPOWER": ("63000", "OPS-WH1", "Electricity"),
    "DATAFLOW": ("67000", "000-000", "Cloud hosting subscription"),
    "FASTFREIGHT": ("65000", "OPS-WH1", "Inbound freight"),
    "GREENLEAF": ("66000", "ADM-000", "Grounds maintenance"),
    "HILLTOPLAW": ("64000", "ADM-000", "Legal services"),
    "OLDSUPPLY": ("61000", "ADM-000", "Sundries"),
}
TAX_ID, TAX_RATE = "CASALES", Decimal("8.25")


def _seed(books: Books, rng: random.Random, now: datetime, extra_bills: int, branch: str) -> None:
    """Realistic data: the fixed cast, then ``extra_bills`` generated open bills."""
    created = now - timedelta(days=400)
    for vendor_id, name, email, city, state, country in _VENDORS:
        books.put(
            "Vendor",
            {
                "VendorID": vendor_id,
                "VendorName": name,
                "LegalName": name,
                "Status": "Inactive" if vendor_id == "OLDSUPPLY" else "Active",
                "VendorClass": "DEFAULT",
                "Terms": "30D",
                "CurrencyID": "USD",
                "CashAccount": "10200",
                "PaymentMethod": "CHECK",
                "APAccount": "20000",
                "APSubaccount": "000-000",
                "MainContact": {
                    "id": str(uuid.uuid4()),
                    "Email": email,
                    "Phone1": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                    "Address": {
                        "id": str(uuid.uuid4()),
                        "AddressLine1": f"{rng.randint(10, 9999)} Market Street",
                        "AddressLine2": None,
                        "City": city,
                        "State": state,
                        "PostalCode": f"{rng.randint(10000, 99999)}",
                        "Country": country,
                    },
                },
                "CreatedDateTime": created,
                "LastModifiedDateTime": created + timedelta(days=rng.randint(0, 300)),
            },
        )
    for code, name, kind, active in _ACCOUNTS:
        books.put(
            "Account",
            {
                "AccountCD": code,
                "AccountID": int(code),
                "Description": name,
                "Type": kind,
                "Active": active,
                "CashAccount": code == "10200",
                "CurrencyID": "USD",
                "CreatedDateTime": created,
                "LastModifiedDateTime": created,
            },
        )
    for number, (code, name, active) in enumerate(_SUBACCOUNTS, start=1):
        books.put(
            "Subaccount",
            {"SubaccountCD": code, "SubaccountID": number, "Description": name, "Active": active},
        )

    def when() -> datetime:
        return now - timedelta(
            minutes=rng.randint(60, 30 * 24 * 60), milliseconds=rng.randint(0, 999)
        )

    def lines(vendor: str, count: int) -> list[tuple[str, str, Decimal, str]]:
        account, sub, text = _CODING[vendor]
        return [
            (account, sub, _money(rng.randint(2_500, 250_000)) / 100, f"{text} #{i + 1}")
            for i in range(count)
        ]

    fixed: list[tuple[str, str, str, int, bool]] = [
        # vendor, type, status, lines, taxed
        ("ACMEOFFICE", "Bill", "Open", 3, True),
        ("DATAFLOW", "Bill", "Open", 1, False),
        ("CITYPOWER", "Bill", "Open", 2, False),
        ("HILLTOPLAW", "Bill", "Open", 2, False),
        ("FASTFREIGHT", "Bill", "Open", 4, True),
        ("BAYCLEAN", "Bill", "On Hold", 1, False),
        ("GREENLEAF", "Bill", "Balanced", 2, False),
        ("ACMEOFFICE", "Bill", "Pending Approval", 1, True),
        ("DATAFLOW", "Bill", "Rejected", 1, False),
        ("CITYPOWER", "Bill", "Closed", 1, False),
        ("HILLTOPLAW", "Bill", "Voided", 1, False),
        ("BAYCLEAN", "Bill", "Scheduled", 1, False),
        ("FASTFREIGHT", "Bill", "Reserved", 1, False),
        ("ACMEOFFICE", "Credit Adj.", "Open", 1, False),
        ("DATAFLOW", "Debit Adj.", "Open", 1, False),
        ("GREENLEAF", "Prepayment", "Open", 1, False),
    ]
    generated = [
        (rng.choice(list(_CODING)[:7]), "Bill", "Open", rng.randint(1, 5), rng.random() < 0.4)
        for _ in range(extra_bills)
    ]
    used: set[str] = set()
    # Five digits while they are plenty; a range ten times the bills beyond that, so that drawing
    # an unused number stays quick (90,000 five-digit numbers cannot number 100,000 bills).
    top = max(99_999, 10_000 + 10 * (len(fixed) + len(generated)))

    def invoice_number() -> str:
        # A vendor's invoice numbers are unique: with the vendor, the bill's natural key in BILL.
        number = f"INV-{rng.randint(10_000, top)}"
        while number in used:
            number = f"INV-{rng.randint(10_000, top)}"
        used.add(number)
        return number

    for vendor, doc_type, status, count, taxed in [*fixed, *generated]:
        store_bill(
            books,
            vendor,
            lines(vendor, count),
            modified=when(),
            doc_type=doc_type,
            status=status,
            tax_rate=TAX_RATE if taxed else None,
            branch=branch,
            vendor_ref=invoice_number(),
        )
    closed = next(b for b in books.ordered("Bill") if b["Status"] == "Closed")
    check = books.put(
        "Check",
        {
            "Type": "Payment",
            "ReferenceNbr": books.next_number("Check"),
            "Status": "Closed",
            "Hold": False,
            "Vendor": closed["Vendor"],
            "PaymentMethod": "CHECK",
            "CashAccount": "10200",
            "PaymentRef": "100231",
            "PaymentAmount": closed["Amount"],
            "UnappliedBalance": Decimal("0.00"),
            "ApplicationDate": closed["Date"] + timedelta(days=20),
            "Description": "Check run",
            "CurrencyID": "USD",
            # Released: its application is history, "Documents to Apply" is blank (UG AP302000).
            "Details": [],
            "History": [
                {
                    "id": str(uuid.uuid4()),
                    "DocType": "Bill",
                    "ReferenceNbr": closed["ReferenceNbr"],
                    "AmountPaid": closed["Amount"],
                    "Balance": Decimal("0.00"),
                    "CashDiscountTaken": Decimal("0.00"),
                    "VendorRef": closed.get("VendorRef"),
                }
            ],
            "LastModifiedDateTime": closed["LastModifiedDateTime"],
        },
    )
    closed["Applications"] = [_application(check, closed["Amount"])]
    for i, vendor in enumerate(("ACMEOFFICE", "FASTFREIGHT", "DATAFLOW")):
        account, sub, text = _CODING[vendor]
        books.put(
            "PurchaseOrder",
            {
                "Type": "Normal",
                "OrderNbr": f"PO{i + 1:06d}",
                "Status": "Open",
                "VendorID": vendor,
                "Date": (now - timedelta(days=10 + i)).date(),
                "OrderTotal": _money(rng.randint(10_000, 500_000)) / 100,
                "Description": f"Purchase order for {text.lower()}",
                "Details": [{"id": str(uuid.uuid4()), "Account": account, "Subaccount": sub}],
                "LastModifiedDateTime": when(),
            },
        )


def store_bill(
    books: Books,
    vendor: str,
    lines: list[tuple[str, str, Decimal, str]],
    *,
    modified: datetime,
    doc_type: str = "Bill",
    status: str = "Open",
    tax_rate: Decimal | None = None,
    branch: str = "HQ",
    vendor_ref: str | None = None,
    bill_date: date | None = None,
) -> dict[str, Any]:
    """Store a bill with its lines (account, subaccount, amount, text) and optional tax."""
    line_sum = sum((amount for _, _, amount, _ in lines), Decimal(0))
    tax = (line_sum * tax_rate / 100).quantize(CENT) if tax_rate else Decimal("0.00")
    total = line_sum + tax
    bill_date = bill_date or (modified - timedelta(days=3)).date()
    bill = {
        "Type": doc_type,
        "ReferenceNbr": books.next_number(f"Bill:{doc_type}"),
        "Status": status,
        "Hold": status == "On Hold",
        "ApprovedForPayment": status not in ("Pending Approval", "Rejected"),
        "Vendor": vendor,
        "VendorRef": vendor_ref,
        "LocationID": "MAIN",
        "Date": bill_date,
        "DueDate": bill_date + timedelta(days=30),
        "PostPeriod": f"{bill_date.month:02d}{bill_date.year}",
        "Terms": "30D",
        "CurrencyID": "USD",
        "BranchID": branch,
        "Description": f"{vendor.title()} invoice {vendor_ref or ''}".strip(),
        "Amount": total,
        "Balance": Decimal("0.00") if status in ("Closed", "Voided") else total,
        "TaxTotal": tax,
        "IsTaxValid": True,
        "CreatedDateTime": modified - timedelta(hours=2),
        "LastModifiedDateTime": modified,
        "Details": [
            {
                "id": str(uuid.uuid4()),
                "Branch": branch,
                "Account": account,
                "Subaccount": sub,
                "Amount": amount,
                "ExtendedCost": amount,
                "Qty": Decimal("1.00"),
                "UnitCost": amount,
                "UOM": "EA",
                "TransactionDescription": text,
                "TaxCategory": "TAXABLE" if tax_rate else "EXEMPT",
                "POOrderNbr": None,
            }
            for account, sub, amount, text in lines
        ],
        "TaxDetails": (
            [
                {
                    "id": str(uuid.uuid4()),
                    "TaxID": TAX_ID,
                    "TaxRate": tax_rate,
                    "TaxableAmount": line_sum,
                    "TaxAmount": tax,
                }
            ]
            if tax_rate
            else []
        ),
        "Applications": [],
    }
    return books.put("Bill", bill)


def _application(check: Mapping[str, Any], amount: Decimal) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "DocType": check["Type"],
        "ReferenceNbr": check["ReferenceNbr"],
        "AmountPaid": amount,
        "Status": check["Status"],
    }


# --- $filter: a small OData v3 subset ----------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<typed>(?:datetimeoffset|datetime|date|guid)'[^']*')"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][\w/.]*))"
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
Predicate = Callable[[Mapping[str, Any]], bool]


class FilterError(ValueError):
    """The ``$filter`` uses syntax or fields the emulator does not know."""


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"cannot read $filter at {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def _literal(kind: str, text: str) -> Any:
    if kind == "string":
        return text[1:-1].replace("''", "'")
    if kind == "number":
        return Decimal(text)
    if kind == "typed":
        prefix, value = text.split("'", 1)
        value = value[:-1]
        if prefix == "date":
            return date.fromisoformat(value)
        if prefix == "guid":
            return value
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    raise FilterError(f"not a value: {text!r}")


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, datetime) and isinstance(right, date) and not isinstance(right, datetime):
        return left.date(), right
    if isinstance(right, datetime) and isinstance(left, date) and not isinstance(left, datetime):
        return left, right.date()
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold(), right.casefold()  # SQL Server's usual case-insensitive collation
    if isinstance(left, bool | int) and isinstance(right, Decimal):
        return Decimal(int(left)), right
    return left, right


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return (left is None and right is None) if op == "eq" else (op == "ne" and left != right)
    left, right = _comparable(left, right)
    try:
        return bool(
            {
                "eq": left == right,
                "ne": left != right,
                "gt": left > right,
                "ge": left >= right,
                "lt": left < right,
                "le": left <= right,
            }[op]
        )
    except TypeError:
        raise FilterError(f"cannot compare {left!r} with {right!r}") from None


class _FilterParser:
    """A recursive-descent parser of the ``$filter`` subset the emulator understands.

    ``or`` of ``and`` of comparisons, ``not``, parentheses, and the functions ``substringof``,
    ``startswith`` and ``endswith`` (acumatica.md §4).
    """

    def __init__(
        self, text: str, fields: frozenset[str], details: frozenset[str] = frozenset()
    ) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.fields = fields
        self.details = details

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.position != len(self.tokens):
            raise FilterError(f"unexpected {self.tokens[self.position][1]!r} in $filter")
        return predicate

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise FilterError("$filter ends too early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _expect(self, text: str) -> None:
        if self._take()[1] != text:
            raise FilterError(f"expected {text!r} in $filter")

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek() == "or":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._peek() == "and":
            self._take()
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def _unary(self) -> Predicate:
        if self._peek() == "not":
            self._take()
            inner = self._unary()
            return lambda r: not inner(r)
        if self._peek() == "(":
            self._take()
            inner = self._or()
            self._expect(")")
            return inner
        return self._comparison()

    def _operand(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, text = self._take()
        if kind == "word" and text not in ("true", "false", "null"):
            if text.split("/")[0] in self.details:
                # acumatica.md §4 (IDG): filtering on detail records is not supported.
                raise FilterError(f"cannot filter on the detail entity {text!r}")
            if text.split("/")[0] not in self.fields:
                raise FilterError(f"unknown field {text!r} in $filter")
            return lambda r: _field(r, text)
        value = _literal(kind, text)
        return lambda r: value

    def _comparison(self) -> Predicate:
        word = self._peek()
        if word in ("substringof", "startswith", "endswith"):
            self._take()
            self._expect("(")
            first = self._operand()
            self._expect(",")
            second = self._operand()
            self._expect(")")
            tests: dict[str, Callable[[str, str], bool]] = {
                "substringof": lambda a, b: a in b,  # substringof(needle, haystack)
                "startswith": lambda a, b: a.startswith(b),
                "endswith": lambda a, b: a.endswith(b),
            }
            test = tests[word]
            return lambda r: test(str(first(r) or "").casefold(), str(second(r) or "").casefold())
        left = self._operand()
        op = self._take()[1]
        if op not in _COMPARE:
            raise FilterError(f"unknown operator {op!r} in $filter")
        right = self._operand()
        return lambda r: _compare(op, left(r), right(r))


def _field(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("/"):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


# --- The licence's request limits --------------------------------------------------------------


class Declined(Exception):
    """The licence declined a request: answered 429, and not counted as processed."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Licence:
    """The licence's request limits, applied as Acumatica applies them (acumatica.md §4).

    IDG "License Restrictions for API Users", section by section:

    - Every request (sign-out aside) enters one queue per instance; ``cores`` requests are
      processed at once and the others wait their turn, in order of arrival.
    - When a request enters the queue, the requests processed in the past minute (counted back
      from its arrival) are counted. From half of the per-minute budget on, the request is
      delayed by the time left until a minute has passed since the first of them, divided by
      the requests left in the budget (the IDG's example: 25 of 50 processed, the first 40 s
      ago: 20 s / 25 = 0.8 s). A delayed request waits in the queue.
    - A request is declined (429) only if the queue holds more than ``queue_limit`` requests
      (it would be the 21st), or once it has been in the queue for ``queue_wait`` seconds.
      A declined request is not counted as processed.

    UNCONFIRMED, chosen here: once the whole budget is used (the IDG's division would be by
    zero), a request waits until the first request of the past minute leaves it. The 429's
    body and its ``Retry-After`` (see :meth:`retry_after`) are not documented either.

    Args:
        per_minute: The budget (``None``: no budget, no delays).
        minute: The budget's window in seconds (60; shorter compresses the timings).
        cores: Requests processed at once.
        queue_limit: Requests the queue holds; one more is declined.
        queue_wait: Seconds a request may wait in the queue before it is declined.
        clock: The current time in seconds (the emulator's clock).
        sleep: How to wait a number of seconds (virtual time in tests).
    """

    def __init__(
        self,
        *,
        per_minute: int | None,
        minute: float,
        cores: int,
        queue_limit: int,
        queue_wait: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.per_minute = per_minute
        self.minute = minute
        self.cores = cores
        self.queue_limit = queue_limit
        self.queue_wait = queue_wait
        self.clock = clock
        self.sleep = sleep
        self.waiting = 0
        self.processing = 0
        #: Every delay imposed, in seconds, in order (the Statistics tab's "delayed requests").
        self.delays: list[float] = []
        #: Why each declined request was declined ("queue full", "waited too long").
        self.declined: list[str] = []
        self._hits: list[float] = []  # when each request of the past minute started processing
        self._turns: list[asyncio.Future[None]] = []  # requests waiting for a core, in order

    def delay(self, now: float) -> float:
        """The delay of a request entering the queue at ``now`` (0 below half the budget)."""
        if not self.per_minute:
            return 0.0
        self._hits = [t for t in self._hits if t > now - self.minute]
        processed = len(self._hits)
        if processed * 2 < self.per_minute:
            return 0.0
        time_left = max(0.0, self._hits[0] + self.minute - now)
        requests_left = self.per_minute - processed
        return time_left / requests_left if requests_left > 0 else time_left

    def retry_after(self) -> float:
        """What a 429 says to wait (UNCONFIRMED): until the budget's window has room again."""
        now = self.clock()
        live = [t for t in self._hits if t > now - self.minute]
        if self.per_minute and len(live) * 2 >= self.per_minute:
            return max(1.0, live[0] + self.minute - now)
        return 1.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a processing core for one request, after its delay and its turn in the queue.

        Raises:
            Declined: The queue was full, or the request waited there too long.
        """
        if self.waiting >= self.queue_limit:
            self.declined.append("queue full")
            raise Declined("queue full", self.retry_after())
        arrived = self.clock()
        deadline = arrived + self.queue_wait
        self.waiting += 1
        try:
            delay = self.delay(arrived)
            if delay > 0:
                self.delays.append(delay)
                await self.sleep(min(delay, self.queue_wait))
            admitted = delay < self.queue_wait and await self._core(deadline)
        finally:
            self.waiting -= 1
        if not admitted:
            self.declined.append("waited too long")
            raise Declined("waited too long", self.retry_after())
        self._hits.append(self.clock())
        try:
            yield
        finally:
            self._release()

    async def _core(self, deadline: float) -> bool:
        """Wait for a free core until ``deadline``; whether one was taken."""
        if self.processing < self.cores and not self._turns:
            self.processing += 1
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        timer = asyncio.ensure_future(self.sleep(max(0.0, deadline - self.clock())))
        try:
            await asyncio.wait({turn, timer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the request went away (its client hung up): give back its turn
            timer.cancel()
            if turn.done():
                self._release()
            else:
                self._leave(turn)
            raise
        timer.cancel()
        if turn.done() and not turn.cancelled():
            return True  # a core was handed over (also if the time ran out in the same turn)
        self._leave(turn)
        return False

    def _leave(self, turn: asyncio.Future[None]) -> None:
        turn.cancel()
        if turn in self._turns:
            self._turns.remove(turn)

    def _release(self) -> None:
        """Hand the core to the first request waiting for one, or free it."""
        while self._turns:
            turn = self._turns.pop(0)
            if not turn.done():
                turn.set_result(None)  # the core passes on: processing stays the same
                return
        self.processing -= 1


# --- The emulator ------------------------------------------------------------------------------


@dataclass
class _Action:
    status_id: str
    ticks: int


class AcumaticaEmulator(Emulator):
    """Acumatica's contract-based REST API, in process or on loopback.

    Attributes:
        config: The options in force.
        tenants: Each tenant's books; :attr:`books` is the first (seeded) one.
        logins: Successful sign-ins (cookie logins and OAuth password grants).
        refreshes: Successful OAuth refresh grants.
        logouts: Sessions ended by logout.
    """

    system: ClassVar[str] = "acumatica"
    base_path: ClassVar[str] = INSTANCE_PATH

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        options = options or EmulatorOptions()
        self.config = AcumaticaEmulatorConfig.from_extra(options.extra)
        super().__init__(options)
        config = self.config
        idle = timedelta(seconds=options.session_idle_seconds or 20 * 60)
        # UNCONFIRMED (§8): the cookie idle timeout; 20 minutes, sliding on every request.
        self.cookies = SessionStore(idle, clock=self.now)
        self.access_tokens = SessionStore(
            None, lifetime=timedelta(seconds=config.token_lifetime), clock=self.now
        )
        # UNCONFIRMED: refresh tokens are one-time use (IdentityServer's default), and the
        # chain ends 30 days after the first sign-in (§2).
        self.refresh_tokens = SessionStore(None, lifetime=timedelta(days=30), clock=self.now)
        self.sleep = config.sleep or asyncio.sleep
        self.licence = Licence(
            per_minute=config.requests_per_minute,
            minute=config.minute_seconds,
            cores=config.max_concurrent,
            queue_limit=config.queue_limit,
            queue_wait=config.queue_wait_seconds,
            clock=lambda: self.now().timestamp(),
            sleep=self.sleep,
        )
        self.tenants = {name: Books() for name in config.tenants}
        self.books = self.tenants[config.tenants[0]]
        self.logins = self.refreshes = self.logouts = 0
        self.demo = False
        self._demo_eligible: set[tuple[str, str]] = set()
        self._demo_held: set[tuple[str, str]] = set()
        self.credentials_valid = True
        self._issued: list[tuple[SessionStore, str]] = []
        self._refresh_of: dict[str, str] = {}  # licence session id -> its live refresh token
        self._actions: dict[str, _Action] = {}  # licence session id -> running action
        rng = random.Random(options.seed)  # noqa: S311 - seed data, not cryptography
        _seed(self.books, rng, self.now(), config.bills, config.branch)

    # --- What the toolkit asks for ------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The instance's routes, below its site path."""
        return [
            Mount(
                INSTANCE_PATH,
                routes=[
                    Route("/entity", self._listing, methods=["GET"]),
                    Route("/entity/auth/login", self._login, methods=["POST"]),
                    Route("/entity/auth/logout", self._logout, methods=["POST"]),
                    Route("/identity/connect/token", self._token, methods=["POST"]),
                    Route("/identity/.well-known/openid-configuration", self._discovery),
                    Route(
                        "/entity/{endpoint}/{version}/{rest:path}",
                        self._entity,
                        methods=["GET", "PUT", "POST", "PATCH", "DELETE"],
                    ),
                ],
            )
        ]

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        """An injected fault, worded as Acumatica would.

        Kinds: ``server`` (500 exception body), ``throttled`` (429), ``session`` (401),
        ``html`` and ``malformed`` (an HTML page where JSON belongs).
        """
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        if kind == "session":
            return Response(b"", 401)  # UNCONFIRMED (§8): the 401 body; empty here
        if kind == "throttled":
            body = {"message": "API request limit reached", "exceptionMessage": message}
            return _json(body, status, headers)
        if kind in ("html", "malformed"):
            page = f"<html><head><title>Error</title></head><body><h1>{message}</h1></body></html>"
            return Response(page, status, headers=headers, media_type="text/html")
        return exception_body(message, "System.Exception", status).response

    def credentials(self) -> dict[str, str]:
        """The API user and the OAuth application, usable as a connection's credentials."""
        return {
            "username": self.config.username,
            "password": self.config.password,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
        }

    def settings(self, base_url: str) -> dict[str, Any]:
        """A connection's settings for this emulator served at ``base_url``.

        After :meth:`seed_demo`, subaccounts are left out: the demo's BILL gets a chart of
        accounts only, and its check counts bills by account alone.
        """
        settings = {
            "instance_url": base_url,
            "tenant": self.config.tenants[0],
            "branch": self.config.branch,
            "endpoint_name": ENDPOINT_NAME,
            "endpoint_version": "24.200.001",
            "auth_mode": "oauth",
            "tax_account": "68000",
        }
        if self.demo:
            settings["subaccount_maps_to"] = "none"
        return settings

    # --- The demo (ml_connector.emulation's DemoSource protocol) ------------------------------

    def seed_demo(self, bills: int, seed: int) -> None:
        """Start over: the fixed cast, ``bills`` generated open bills, and one more open bill.

        That one is coded to the account BILL does not get (:meth:`unmapped_account`).
        """
        self.demo = True
        # The demo and the end-to-end benchmarks show the sync at BILL's pace, not the licence's
        # request budget; the tests of the licence's delays keep it (tests/test_licence.py).
        self.licence.per_minute = None
        self.books = self.tenants[self.config.tenants[0]] = Books()
        rng = random.Random(seed)  # noqa: S311 - seed data, not cryptography
        _seed(self.books, rng, self.now(), bills, self.config.branch)
        self.add_bill(
            "ACMEOFFICE", [(DEMO_UNMAPPED_ACCOUNT, "000-000", Decimal("75.00"), "Unsorted")]
        )
        # What must move is a fact of the scenario as seeded: bills the demo then pays close.
        bills_ = self.books.ordered("Bill")
        self._demo_eligible = {
            self._bill_key(b) for b in bills_ if _sendable(b) and not self._unmapped(b)
        }
        self._demo_held = {self._bill_key(b) for b in bills_ if not _sendable(b)} | {
            self._order_key(o) for o in self.books.ordered("PurchaseOrder")
        }

    def eligible_bills(self) -> set[tuple[str, str]]:
        """(vendor name, invoice number) of every seeded bill that must reach BILL."""
        return set(self._demo_eligible)

    def held_bill_keys(self) -> set[tuple[str, str]]:
        """(vendor name, invoice number) of the seeded documents that must not move.

        Unreleased bills (on hold, balanced, pending approval, rejected, scheduled), paid,
        voided and reserved ones, other document types, and purchase orders.
        """
        return set(self._demo_held)

    def payments_posted(self) -> dict[tuple[str, str], int]:
        """How many checks are applied to each bill."""
        return {
            self._bill_key(b): len(self.checks_for(b["ReferenceNbr"]))
            for b in self.books.ordered("Bill")
            if b["Type"] == "Bill"
        }

    def bill_totals(self) -> dict[tuple[str, str], Decimal]:
        """Each eligible bill's total as the books have it now."""
        return {
            key: Decimal(b["Amount"])
            for b in self.books.ordered("Bill")
            if (key := self._bill_key(b)) in self._demo_eligible
        }

    def change_bill(self, key: tuple[str, str]) -> None:
        """Add 1.00 to the first line of a bill (tax and totals follow), as a clerk would."""
        bill = next(b for b in self.books.ordered("Bill") if self._bill_key(b) == key)
        line = bill["Details"][0]
        for name in ("Amount", "ExtendedCost", "UnitCost"):
            line[name] = line[name] + Decimal("1.00")
        line_sum = sum((d["Amount"] for d in bill["Details"]), Decimal(0))
        tax = Decimal("0.00")
        for detail in bill["TaxDetails"]:
            tax = (line_sum * detail["TaxRate"] / 100).quantize(CENT)
            detail.update(TaxableAmount=line_sum, TaxAmount=tax)
        total = line_sum + tax
        self.edit_bill(bill["ReferenceNbr"], Amount=total, Balance=total, TaxTotal=tax)

    def change_vendor(self, name: str) -> str:
        """Give the vendor named ``name`` a new phone number, as a clerk would; returns it.

        Its bills are not touched: the connector sees the change with the vendor's next bill.
        """
        vendor = next(v for v in self.books.ordered("Vendor") if v["VendorName"] == name)
        contact = vendor["MainContact"]
        last = int(contact["Phone1"][-4:]) if contact["Phone1"][-4:].isdigit() else 0
        contact["Phone1"] = f"+1 555 010 {(last + 1) % 10_000:04d}"
        vendor["LastModifiedDateTime"] = self.now()
        return str(contact["Phone1"])

    def account_numbers(self) -> dict[str, str]:
        """GL account number to name, for BILL's chart of accounts."""
        return {a["AccountCD"]: a["Description"] for a in self.books.ordered("Account")}

    def unmapped_account(self) -> str:
        """The account BILL must not get, so one bill shows the exception queue."""
        return DEMO_UNMAPPED_ACCOUNT

    def _unmapped(self, bill: Mapping[str, Any]) -> bool:
        return any(d["Account"] == DEMO_UNMAPPED_ACCOUNT for d in bill["Details"])

    def _bill_key(self, bill: Mapping[str, Any]) -> tuple[str, str]:
        # What BILL would hold: the plugin names the vendor by VendorName and numbers the
        # invoice by VendorRef.
        vendor = self.books.get("Vendor", bill["Vendor"]) or {}
        return (str(vendor.get("VendorName") or bill["Vendor"]), str(bill.get("VendorRef") or ""))

    def _order_key(self, order: Mapping[str, Any]) -> tuple[str, str]:
        # A purchase order has no vendor invoice number: were one to move, its OrderNbr is the
        # only number it could carry.
        vendor = self.books.get("Vendor", order["VendorID"]) or {}
        return (str(vendor.get("VendorName") or order["VendorID"]), str(order["OrderNbr"]))

    # --- Test helpers: what a clerk or an administrator does ----------------------------------

    def add_bill(
        self,
        vendor: str,
        lines: list[tuple[str, str, Decimal, str]],
        *,
        status: str = "Open",
        doc_type: str = "Bill",
        tax_rate: Decimal | None = None,
        vendor_ref: str | None = None,
        bill_date: date | None = None,
    ) -> str:
        """Enter a bill now; returns its ReferenceNbr."""
        bill = store_bill(
            self.books, vendor, lines, modified=self.now(), doc_type=doc_type, status=status,
            tax_rate=tax_rate, branch=self.config.branch,
            vendor_ref=vendor_ref or self._new_invoice_number(),
            bill_date=bill_date,
        )  # fmt: skip
        return str(bill["ReferenceNbr"])

    def _new_invoice_number(self) -> str:
        taken = {b.get("VendorRef") for b in self.books.records["Bill"].values()}
        while (number := f"INV-{secrets.randbelow(900_000) + 100_000}") in taken:
            pass
        return number

    def bill(self, reference_nbr: str, doc_type: str = "Bill") -> dict[str, Any]:
        """A bill's stored fields (a live dict)."""
        bill = self.books.get("Bill", doc_type, reference_nbr)
        if bill is None:
            raise KeyError(reference_nbr)
        return bill

    def edit_bill(self, reference_nbr: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a bill; its LastModifiedDateTime becomes now."""
        bill = self.bill(reference_nbr)
        bill.update(changes)
        bill["LastModifiedDateTime"] = self.now()
        return bill

    def delete_bill(self, reference_nbr: str) -> None:
        """Delete a bill, as a clerk deletes an unreleased one."""
        bill = self.bill(reference_nbr)
        self.books.remove("Bill", bill)

    def checks_for(self, reference_nbr: str) -> list[dict[str, Any]]:
        """The checks applied to a bill (any status; released or not)."""
        return [c for c in self.books.ordered("Check") if reference_nbr in _applied_bills(c)]

    def payments_unfinished(self) -> set[tuple[str, str]]:
        """Bills with a check applied that was never released (still pays nothing)."""
        return {
            self._bill_key(bill)
            for check in self.books.ordered("Check")
            if check["Status"] in ("On Hold", "Balanced")
            for reference_nbr in _applied_bills(check)
            if (bill := self.books.get("Bill", "Bill", reference_nbr)) is not None
        }

    def payments_carrying(self, payment_ref: str) -> dict[tuple[str, str], int]:
        """How many checks with this ``PaymentRef`` (a BILL payment id) each bill has.

        By (vendor name, invoice number), every check counted whatever its status: the truth a
        test counts duplicates in, read from the books rather than from what the connector says.
        """
        counts: dict[tuple[str, str], int] = {}
        for check in self.books.ordered("Check"):
            if check.get("PaymentRef") != payment_ref:
                continue
            for reference_nbr in _applied_bills(check):
                bill = self.books.get("Bill", "Bill", reference_nbr)
                key = self._bill_key(bill) if bill is not None else ("", reference_nbr)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def expire_sessions(self) -> None:
        """End every cookie session and access token, as an idle timeout or a restart does."""
        self.cookies.expire_all()
        self.access_tokens.expire_all()

    def live_sessions(self) -> int:
        """API sessions holding a licence slot now (cookie sessions and OAuth sessions)."""
        return len(self._live_sids())

    def _live_sids(self) -> set[str]:
        live: set[str] = set()
        kept: list[tuple[SessionStore, str]] = []
        for store, token in self._issued:
            session = store.get(token, touch=False)
            if session is not None:
                live.add(session.data["sid"])
                kept.append((store, token))
        self._issued = kept
        return live

    # --- Listing, login, logout, tokens -------------------------------------------------------

    async def _listing(self, request: Request) -> Response:
        endpoints = [
            {
                "name": ENDPOINT_NAME,
                "version": v,
                "href": f"{INSTANCE_PATH}/entity/{ENDPOINT_NAME}/{v}/",
            }
            for v in self.config.versions
        ]
        if self.config.legacy_listing:
            return _json(endpoints)
        version = {
            "acumaticaBuildVersion": BUILD_VERSION,
            "oemBuildVersion": BUILD_VERSION,
            "databaseVersion": BUILD_VERSION,
        }
        return _json({"version": version, "endpoints": endpoints})

    def _tenant_named(self, name: str | None) -> str:
        if not name:
            return self.config.tenants[0]  # empty or omitted: the default tenant (§2)
        for tenant in self.config.tenants:
            if tenant.casefold() == name.casefold():
                return tenant
        raise exception_body(
            f"The company '{name}' is not defined.", "PX.Data.PXUndefinedCompanyException"
        )

    def _check_user(self, username: str | None, password: str | None) -> None:
        if not (
            self.credentials_valid
            and username == self.config.username
            and password == self.config.password
        ):
            # UNCONFIRMED (§2): the status of a refused login; 500 with the text CSC checks.
            raise exception_body("Invalid credentials. Please try again.", "PX.Data.PXException")

    def _open_slot(self) -> str:
        if self.live_sessions() >= self.config.max_sessions:
            # The text the official client maps to 429 (CSC VerifyResponseAsync); status 500.
            raise exception_body("API Login Limit", "PX.Data.PXException")
        return uuid.uuid4().hex

    async def _login(self, request: Request) -> Response:
        # A sign-in is an API request like any other: it waits its turn in the licence's queue,
        # and the API-user limit is checked when a core takes it (IDG "Limitation of API
        # Connections"). Logouts skip the queue ("processed immediately").
        try:
            async with self.licence.slot():
                return await self._sign_in(request)
        except Declined as declined:
            return self._throttled(declined)

    async def _sign_in(self, request: Request) -> Response:
        try:
            body = await _read_body(request)
            if "tenant" in body and "company" in body:
                return _json({"message": "Specify either tenant or company, not both."}, 400)
            tenant = self._tenant_named(body.get("tenant", body.get("company")))
            self._check_user(body.get("name"), body.get("password"))
            sid = self._open_slot()
        except ApiError as error:
            return error.response
        session = self.cookies.create(
            str(body["name"]), tenant=tenant, branch=body.get("branch"), sid=sid
        )
        self._issued.append((self.cookies, session.token))
        self.logins += 1
        response = Response(status_code=204)  # 204 + cookies, no body (§2)
        response.set_cookie(COOKIE, session.token, path=INSTANCE_PATH, httponly=True)
        return response

    async def _logout(self, request: Request) -> Response:
        if "content-length" not in request.headers and "transfer-encoding" not in request.headers:
            # IIS refuses a bodiless POST without Content-Length (§2, CORROBORATED).
            return Response("<h2>Length Required</h2>", 411, media_type="text/html")
        session = self._session(request)
        if session is not None:
            self._end(session)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path=INSTANCE_PATH)
        return response

    def _end(self, session: Session) -> None:
        sid = session.data["sid"]
        for store, token in list(self._issued):
            live = store.get(token, touch=False)
            if live is not None and live.data["sid"] == sid:
                store.end(token)
        # UNCONFIRMED: signing out revokes the session's refresh token too, so a signed-out
        # session cannot come back by a refresh past the licence's limit.
        self.refresh_tokens.end(self._refresh_of.pop(sid, None))
        self._actions.pop(sid, None)
        self.logouts += 1

    async def _token(self, request: Request) -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _json({"error": "invalid_request"}, 400)
        form = await _read_form(request)
        grant = form.get("grant_type")
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        guid, _, tenant_name = client_id.partition("@")
        tenants = {t.casefold(): t for t in self.config.tenants}
        if (
            guid.upper() != CLIENT_GUID
            or tenant_name.casefold() not in tenants
            or secret != self.config.client_secret
        ):
            return _json({"error": "invalid_client"}, 400)
        tenant = tenants[tenant_name.casefold()]
        if grant == "password":
            scope = str(form.get("scope", ""))
            if "api" not in scope.split():
                return _json({"error": "invalid_scope"}, 400)
            if not (
                self.credentials_valid
                and form.get("username") == self.config.username
                and form.get("password") == self.config.password
            ):
                return _json(
                    {"error": "invalid_grant", "error_description": "invalid_username_or_password"},
                    400,
                )
            if self.live_sessions() >= self.config.max_sessions:
                return _json(
                    {"error": "invalid_grant", "error_description": "API Login Limit"}, 400
                )
            self.logins += 1
            return self._issue(str(form["username"]), tenant, uuid.uuid4().hex, scope)
        if grant == "refresh_token":
            old = self.refresh_tokens.get(str(form.get("refresh_token", "")), touch=False)
            # A disabled or changed login cannot refresh either (the user is checked again).
            if old is None or old.data["tenant"] != tenant or not self.credentials_valid:
                return _json({"error": "invalid_grant"}, 400)
            open_sids = self._live_sids()
            if old.data["sid"] not in open_sids and len(open_sids) >= self.config.max_sessions:
                # UNCONFIRMED: a session whose access token ran out takes a slot again when
                # refreshed, so it waits for a free one like a new sign-in.
                return _json(
                    {"error": "invalid_grant", "error_description": "API Login Limit"}, 400
                )
            self.refresh_tokens.end(old.token)
            for store, token in list(self._issued):  # the session goes on with a new token
                live = store.get(token, touch=False)
                if store is self.access_tokens and live and live.data["sid"] == old.data["sid"]:
                    store.end(token)
            self.refreshes += 1
            return self._issue(old.principal, tenant, old.data["sid"], old.data["scope"])
        # No client_credentials grant (§2: not among the documented flows).
        return _json({"error": "unsupported_grant_type"}, 400)

    def _issue(self, principal: str, tenant: str, sid: str, scope: str) -> Response:
        access = self.access_tokens.create(principal, tenant=tenant, sid=sid, branch=None)
        self._issued.append((self.access_tokens, access.token))
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": int(self.config.token_lifetime),
            "token_type": "Bearer",
            "scope": scope,
        }
        if "offline_access" in scope.split():  # a refresh token only with offline_access (§2)
            refresh = self.refresh_tokens.create(principal, tenant=tenant, sid=sid, scope=scope)
            self._refresh_of[sid] = refresh.token
            body["refresh_token"] = refresh.token
        return JSONResponse(body)

    async def _discovery(self, request: Request) -> Response:
        root = str(request.base_url).rstrip("/") + INSTANCE_PATH
        return JSONResponse(
            {
                "issuer": f"{root}/identity",
                "token_endpoint": f"{root}/identity/connect/token",
                "authorization_endpoint": f"{root}/identity/connect/authorize",
                "grant_types_supported": [
                    "authorization_code", "implicit", "password", "refresh_token", "hybrid",
                ],
                "scopes_supported": ["api", "offline_access", "api:concurrent_access"],
            }
        )  # fmt: skip

    def _session(self, request: Request) -> Session | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return self.access_tokens.get(auth[7:].strip())
        return self.cookies.get(request.cookies.get(COOKIE))

    # --- Entities -----------------------------------------------------------------------------

    async def _entity(self, request: Request) -> Response:
        params = request.path_params
        if params["endpoint"] != ENDPOINT_NAME or params["version"] not in self.config.versions:
            return not_found(str(request.url)).response
        session = self._session(request)
        if session is None:
            return Response(b"", 401)  # UNCONFIRMED (§8): empty body
        segments = [s for s in str(params["rest"]).split("/") if s]
        try:
            async with self.licence.slot():
                busy = self._busy(session, request.method, segments)
                if busy is not None:
                    return busy
                try:
                    response = await self._dispatch(request, session, segments)
                except ApiError as error:
                    response = error.response
                if self.config.processing_seconds > 0:
                    await self.sleep(self.config.processing_seconds)
                return response
        except Declined as declined:
            return self._throttled(declined)

    def _throttled(self, declined: Declined) -> Response:
        """429: the licence declined the request (§4).

        UNCONFIRMED: the body and Retry-After of a declined request are not documented; the
        client reads any 429 as throttled and honours a Retry-After when there is one.
        """
        why = (
            "the API request queue is full"
            if declined.reason == "queue full"
            else "the request waited in the API request queue for too long"
        )
        return _json(
            {
                "message": "API request limit reached",
                "exceptionMessage": f"The request was declined: {why} (license limits).",
            },
            429,
            {"Retry-After": str(max(1, math.ceil(declined.retry_after)))},
        )

    def _busy(self, session: Session, method: str, segments: list[str]) -> Response | None:
        """While an action runs, the session's other requests fail (§5 "Actions")."""
        action = self._actions.get(session.data["sid"])
        if action is None:
            return None
        is_poll = len(segments) == 4 and segments[2] == "status" and method == "GET"
        if is_poll and segments[3] == action.status_id:
            return None
        action.ticks -= 1  # UNCONFIRMED: time passes per request; the job ends after a few
        if action.ticks <= 0:
            del self._actions[session.data["sid"]]
        return exception_body(
            "The previous operation has not been completed yet.", "PX.Data.PXException"
        ).response

    async def _dispatch(self, request: Request, session: Session, segments: list[str]) -> Response:
        books = self.tenants[session.data["tenant"]]
        entity = segments[0] if segments else ""
        if entity not in KEYS:
            raise not_found(str(request.url))
        method = request.method
        query = request.query_params
        if method == "GET" and len(segments) == 1:
            return self._list(books, entity, query)
        if method == "GET" and len(segments) == 4 and segments[2] == "status":
            return self._action_status(session, segments[3])
        if method == "GET":
            return self._get(books, entity, segments[1:], query)
        if method == "PUT" and len(segments) == 1:
            body = await _read_body(request)
            return self._put(books, entity, body, request, query)
        if method == "POST" and len(segments) == 2 and segments[1] in ACTIONS.get(entity, ()):
            body = await _read_body(request)
            return self._action(books, session, request, entity, segments[1], body)
        if method == "POST" and len(segments) == 2:
            raise not_found(str(request.url))  # no such action (§3: 404)
        return _json({"message": f"The requested resource does not support {method}."}, 405)

    # --- Reading ------------------------------------------------------------------------------

    def _list(self, books: Books, entity: str, query: Mapping[str, str]) -> Response:
        records = books.ordered(entity)
        text = query.get("$filter")
        if text:
            try:
                details = _DETAILS.get(entity, frozenset()) | {
                    k for r in records[:1] for k, v in r.items() if isinstance(v, list)
                }
                known = _SCHEMA.get(entity) or (
                    frozenset(k for r in records[:1] for k in r)
                    | frozenset(KEYS[entity])
                    | _FIELDS.get(entity, frozenset())
                )
                predicate = _FilterParser(text, known - details, details).parse()
                records = [r for r in records if predicate(r)]
            except FilterError as exc:
                # UNCONFIRMED: how a bad $filter is answered; 400 with the reason here.
                return _json({"message": f"Invalid $filter: {exc}"}, 400)
        try:
            skip = int(query.get("$skip", "0"))
            top = int(query["$top"]) if "$top" in query else None
        except ValueError:
            return _json({"message": "$top and $skip must be integers"}, 400)
        records = records[skip:] if top is None else records[skip : skip + top]
        expand, select = _names(query.get("$expand")), _names(query.get("$select"))
        return _json(
            [self._render(r, expand, select, row) for row, r in enumerate(records, start=1)]
        )

    def _get(
        self, books: Books, entity: str, keys: list[str], query: Mapping[str, str]
    ) -> Response:
        record = None
        if len(keys) == 1 and _GUID.fullmatch(keys[0]):
            record = books.by_id(entity, keys[0])
        elif len(keys) == len(KEYS[entity]):
            record = books.get(entity, *keys)
        if record is None:
            raise no_entity()
        expand, select = _names(query.get("$expand")), _names(query.get("$select"))
        return _json(self._render(record, expand, select, None))

    def _render(
        self, record: Mapping[str, Any], expand: set[str], select: set[str], row: int | None,
        prefix: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """A record as the API writes it: values wrapped, details only when expanded."""
        out: dict[str, Any] = {"id": record.get("id")}
        if row is not None:
            out["rowNumber"] = row
        for name, value in record.items():
            if name in ("id", "rowNumber"):
                continue
            path = f"{prefix}{name}"
            if isinstance(value, list):
                if path in expand:  # §4: every detail wanted must be in $expand
                    out[name] = [
                        self._render(v, expand, set(), i, f"{path}/")
                        for i, v in enumerate(value, start=1)
                    ]
            elif isinstance(value, dict):
                if path in expand:
                    out[name] = self._render(value, expand, set(), None, f"{path}/")
            elif not select or name in select or prefix:
                out[name] = self._wrap(name, value)
        return out

    def _wrap(self, name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}  # null fields come back as empty objects (§3 example: "InventoryID":{})
        if isinstance(value, Decimal) and self.config.numbers_as_strings:
            return {"value": format(value, "f")}
        if name == "Subaccount" and not self.config.masked_subaccounts_on_lines:
            return {"value": str(value).replace("-", "")}
        minutes = self.config.utc_offset_minutes
        if isinstance(value, datetime):
            zone = timezone(timedelta(minutes=minutes))
            # ISO-8601 with an offset (§8: the emulator's choice of output format).
            return {"value": value.astimezone(zone).isoformat(timespec="milliseconds")}
        if isinstance(value, date):
            sign = "+" if minutes >= 0 else "-"
            offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            return {"value": f"{value.isoformat()}T00:00:00{offset}"}
        return {"value": value}

    # --- Writing ------------------------------------------------------------------------------

    def _put(
        self,
        books: Books,
        entity: str,
        body: dict[str, Any],
        request: Request,
        query: Mapping[str, str],
    ) -> Response:
        writers = {"Vendor": self._put_vendor, "Bill": self._put_bill, "Check": self._put_check}
        writer = writers.get(entity)
        if writer is None:
            return _json({"message": f"The emulator does not write {entity} records."}, 405)
        refuse_unwrapped(body)
        values = unwrap(body)
        existing = self._existing(books, entity, values)
        if request.headers.get("if-match") == "*" and existing is None:
            return _json({"message": "The record does not exist."}, 412)
        if request.headers.get("if-none-match") == "*" and existing is not None:
            return _json({"message": "The record already exists."}, 412)
        record = writer(books, values, existing, body)
        expand = _names(query.get("$expand")) | {
            k for k, v in values.items() if isinstance(v, list)
        }
        return _json(self._render(record, expand, set(), None))

    def _existing(
        self, books: Books, entity: str, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if values.get("id"):
            return books.by_id(entity, str(values["id"]))
        keys = KEYS[entity]
        if all(values.get(k) for k in keys) and values.get("ReferenceNbr") != "<NEW>":
            return books.get(entity, *(str(values[k]) for k in keys))
        return None

    def _refuse(self, entity: str, body: Mapping[str, Any], errors: dict[str, str]) -> ApiError:
        """422: the entity back, with a top-level error and the fields' errors (§3)."""
        out = copy.deepcopy(dict(body))
        for path, message in errors.items():
            target: Any = out
            parts = path.split(".")
            for part in parts[:-1]:
                target = (
                    target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
                )
            slot = target.get(parts[-1]) if isinstance(target, dict) else None
            target[parts[-1]] = {**(slot if isinstance(slot, dict) else {}), "error": message}
        out.setdefault("ReferenceNbr", {"value": "<NEW>"})
        out["error"] = (
            f"Inserting '{entity}' record raised at least one error. Please review the errors."
        )
        return ApiError(_json(out, 422))

    def _put_vendor(
        self,
        books: Books,
        values: dict[str, Any],
        existing: dict[str, Any] | None,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        if existing is None:
            if not values.get("VendorID") or not values.get("VendorName"):
                raise self._refuse("Vendor", body, {"VendorName": "'Vendor Name' cannot be empty."})
            existing = {"Status": "Active", "CurrencyID": "USD", "CreatedDateTime": self.now()}
        _merge(existing, values)
        existing["LastModifiedDateTime"] = self.now()
        return books.put("Vendor", existing)

    def _put_bill(
        self,
        books: Books,
        values: dict[str, Any],
        existing: dict[str, Any] | None,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        if existing is not None and existing["Status"] not in UNRELEASED_BILL:
            raise self._refuse("Bill", body, {"Status": "A released document cannot be changed."})
        vendor_id = values.get("Vendor") or (existing or {}).get("Vendor")
        vendor = books.get("Vendor", str(vendor_id or ""))
        if vendor is None:
            raise self._refuse("Bill", body, {"Vendor": "'Vendor' cannot be found in the system."})
        if existing is None:
            duplicate = any(
                b["Vendor"] == vendor["VendorID"] and b.get("VendorRef") == values.get("VendorRef")
                for b in books.records["Bill"].values()
            )
            if values.get("VendorRef") and duplicate:
                # UNCONFIRMED (§8): a second bill with the same vendor and VendorRef fails so.
                raise exception_body(
                    "Inserting 'Bill' record raised at least one error.",
                    "PX.Api.ContractBased.OutcomeEntityHasErrorsException",
                )
            lines = [
                (str(d.get("Account")), str(d.get("Subaccount") or "000-000"),
                 _money(d.get("Amount") or d.get("ExtendedCost") or 0),
                 str(d.get("TransactionDescription") or ""))
                for d in values.get("Details") or ()
            ]  # fmt: skip
            hold = values.get("Hold", True) is not False
            return store_bill(
                books, vendor["VendorID"], lines, modified=self.now(),
                doc_type=str(values.get("Type") or "Bill"),
                status="On Hold" if hold else "Balanced", branch=self.config.branch,
                vendor_ref=values.get("VendorRef"), bill_date=values.get("Date"),
            )  # fmt: skip
        for name in ("VendorRef", "Description", "Date", "DueDate", "Hold"):
            if name in values:
                existing[name] = values[name]
        if "Hold" in values:
            existing["Status"] = "On Hold" if values["Hold"] else "Balanced"
        existing["LastModifiedDateTime"] = self.now()
        return existing

    def _put_check(
        self,
        books: Books,
        values: dict[str, Any],
        existing: dict[str, Any] | None,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        if existing is not None:
            if existing["Status"] not in ("On Hold", "Balanced"):
                raise self._refuse(
                    "Check", body, {"Status": "A released document cannot be changed."}
                )
            merged = {**existing, **{k: v for k, v in values.items() if k != "Details"}}
            if "Details" in values:
                merged["Details"] = values["Details"]
            return self._save_check(books, merged, body, existing)
        # A new check is a new payment, whatever its PaymentRef: Acumatica checks a reference's
        # uniqueness only where the payment method asks for it ("Require Unique Payment Ref.",
        # UG AP302000), which this emulator does not, so only the connector's look-before-write
        # keeps a BILL payment from being posted twice.
        check = {
            "Type": values.get("Type") or "Payment",
            # UNCONFIRMED: "hold documents on entry" is on unless the body says otherwise.
            "Hold": values.get("Hold", True) is not False,
            **{k: v for k, v in values.items() if k not in ("Type", "Hold", "ReferenceNbr")},
        }
        return self._save_check(books, check, body, None)

    def _save_check(
        self,
        books: Books,
        check: dict[str, Any],
        body: dict[str, Any],
        existing: dict[str, Any] | None,
    ) -> dict[str, Any]:
        errors: dict[str, str] = {}
        vendor = books.get("Vendor", str(check.get("Vendor") or ""))
        if vendor is None or vendor["Status"] == "Inactive":
            errors["Vendor"] = "'Vendor' cannot be found in the system."
        else:
            check.setdefault("PaymentMethod", vendor.get("PaymentMethod"))
            check.setdefault("CashAccount", vendor.get("CashAccount"))
            check["Vendor"] = vendor["VendorID"]
        if not check.get("PaymentMethod"):
            errors["PaymentMethod"] = "'Payment Method' cannot be empty."
        if not check.get("CashAccount"):
            errors["CashAccount"] = "'Cash Account' cannot be empty."
        try:
            amount = _money(check.get("PaymentAmount") or 0)
        except (InvalidOperation, TypeError):
            errors["PaymentAmount"] = "The value is not a number."
            amount = Decimal(0)
        applied = Decimal(0)
        rows = []
        for index, row in enumerate(check.get("Details") or ()):
            rows.append(self._check_row(books, check, row, index, errors))
            applied += rows[-1].get("AmountPaid") or Decimal(0)
        if amount <= 0:
            errors.setdefault("PaymentAmount", "The payment amount must be greater than zero.")
        hold = check.get("Hold") is not False
        if not hold and applied != amount:
            # UG Finance_PayingAPBills: off hold only with a zero unapplied balance.
            errors.setdefault(
                "PaymentAmount", "The document is out of balance: unapplied balance is not zero."
            )
        if errors:
            raise self._refuse("Check", body, errors)
        check.update(
            PaymentAmount=amount,
            Details=rows,
            UnappliedBalance=amount - applied,
            Status="On Hold" if hold else "Balanced",
            CurrencyID=check.get("CurrencyID") or "USD",
            ApplicationDate=check.get("ApplicationDate") or self.now().date(),
            LastModifiedDateTime=self.now(),
        )
        if existing is None:
            check["ReferenceNbr"] = books.next_number("Check")
        else:
            check["id"] = existing["id"]
        return books.put("Check", check)

    def _check_row(
        self,
        books: Books,
        check: Mapping[str, Any],
        row: Mapping[str, Any],
        index: int,
        errors: dict[str, str],
    ) -> dict[str, Any]:
        where = f"Details.{index}"
        doc_type = str(row.get("DocType") or "Bill")
        if doc_type not in APPLICABLE_TYPES:
            errors[f"{where}.DocType"] = f"'{doc_type}' is not a valid document type."
            return dict(row)
        bill = books.get("Bill", doc_type, str(row.get("ReferenceNbr") or ""))
        if bill is None or bill["Status"] != "Open" or bill["Vendor"] != check.get("Vendor"):
            errors[f"{where}.ReferenceNbr"] = "'Reference Nbr.' cannot be found in the system."
            return dict(row)
        try:
            given = row.get("AmountPaid")
            paid = _money(bill["Balance"] if given is None else given)
        except (InvalidOperation, TypeError):
            errors[f"{where}.AmountPaid"] = "The value is not a number."
            return dict(row)
        if paid <= 0 or paid > bill["Balance"]:
            errors[f"{where}.AmountPaid"] = (
                f"The amount paid cannot exceed the document balance ({bill['Balance']})."
            )
        return {
            "id": row.get("id") or str(uuid.uuid4()),
            "DocType": doc_type,
            "ReferenceNbr": bill["ReferenceNbr"],
            "AmountPaid": paid,
            "Balance": bill["Balance"] - paid,
        }

    # --- Actions ------------------------------------------------------------------------------

    def _action(
        self,
        books: Books,
        session: Session,
        request: Request,
        entity: str,
        action: str,
        body: Mapping[str, Any],
    ) -> Response:
        # Both "entity" (the docs) and "Entity" (seen in production) are accepted (§5).
        name = "entity" if "entity" in body else "Entity"
        refuse_unwrapped(body.get(name) or {}, name)
        # Parameters are fields too, wrapped like any other (IDG action examples).
        refuse_unwrapped(body.get("parameters") or {}, "parameters")
        target = unwrap(body.get(name) or {})
        record = self._existing(books, entity, target) if isinstance(target, dict) else None
        if record is None:
            raise no_entity()
        if action == "ReleaseBill":
            self._release_bill(record)
        else:
            self._release_check(books, record)
        if self.config.action_polls <= 0:
            return Response(status_code=204)
        status_id = str(uuid.uuid4())
        self._actions[session.data["sid"]] = _Action(status_id, self.config.action_polls)
        location = f"{request.url.path}/status/{status_id}"
        return Response(status_code=202, headers={"Location": location})

    def _action_status(self, session: Session, status_id: str) -> Response:
        action = self._actions.get(session.data["sid"])
        if action is None or action.status_id != status_id:
            return Response(status_code=204)  # finished (or forgotten): done
        action.ticks -= 1
        if action.ticks < 0:
            del self._actions[session.data["sid"]]
            return Response(status_code=204)
        return Response(status_code=202)

    def _release_bill(self, bill: dict[str, Any]) -> None:
        if bill["Status"] == "On Hold":
            raise business_error("The document is on hold and cannot be released.")
        if bill["Status"] not in ("Balanced", "Scheduled"):
            raise business_error("The document has already been released.")
        bill.update(
            Status="Open", Hold=False, Balance=bill["Amount"], LastModifiedDateTime=self.now()
        )

    def _release_check(self, books: Books, check: dict[str, Any]) -> None:
        if check["Status"] == "On Hold":
            raise business_error("The document is on hold and cannot be released.")
        if check["Status"] != "Balanced":
            raise business_error("The document has already been released.")
        bills = []
        for row in check.get("Details") or ():
            bill = books.get("Bill", row["DocType"], row["ReferenceNbr"])
            if bill is None or bill["Status"] != "Open" or row["AmountPaid"] > bill["Balance"]:
                raise business_error(
                    f"Document {row['DocType']} {row['ReferenceNbr']} cannot be paid: "
                    "it is not open or its balance is lower than the amount paid."
                )
            bills.append((bill, row))
        now = self.now()
        history = check.setdefault("History", [])
        for bill, row in bills:
            # Releasing applies the payment: balances fall, a bill at zero closes (§7).
            bill["Balance"] -= row["AmountPaid"]
            bill["Status"] = "Closed" if bill["Balance"] == 0 else "Open"
            bill["LastModifiedDateTime"] = now
            bill.setdefault("Applications", []).append(_application(check, row["AmountPaid"]))
            # ...and moves the row from "Documents to Apply" (Details) to "Application History"
            # (History): after release, Details is blank (UG AP302000), so a client that looks
            # for its check by Details alone finds none and pays the bill again.
            history.append(
                {
                    "id": str(uuid.uuid4()),
                    "DocType": row["DocType"],
                    "ReferenceNbr": row["ReferenceNbr"],
                    "AmountPaid": row["AmountPaid"],
                    "Balance": bill["Balance"],
                    "CashDiscountTaken": Decimal("0.00"),
                    "VendorRef": bill.get("VendorRef"),
                }
            )
        check.update(
            Details=[],
            Status="Closed" if check["UnappliedBalance"] == 0 else "Open",
            LastModifiedDateTime=now,
        )


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CHECK_FIELDS = frozenset({
    "ApplicationDate", "CashAccount", "CurrencyID", "Description", "Hold", "PaymentAmount",
    "PaymentMethod", "PaymentRef", "ReferenceNbr", "Status", "Type", "UnappliedBalance", "Vendor",
    "LastModifiedDateTime",
})  # fmt: skip
#: An entity's whole list of header fields, where the emulator knows it: a $filter may name
#: these and no other (Check: the 24.200.001 contract's DataMembers, acumatica.md §5).
_SCHEMA: dict[str, frozenset[str]] = {"Check": _CHECK_FIELDS}
#: Detail entities (arrays of rows), which a $filter may not name (acumatica.md §4).
_DETAILS: dict[str, frozenset[str]] = {
    "Bill": frozenset({"Details", "TaxDetails", "Applications"}),
    "Check": frozenset({"Details", "History"}),
    "PurchaseOrder": frozenset({"Details"}),
}
#: Fields a $filter may name even when no stored record carries them yet.
_FIELDS: dict[str, frozenset[str]] = {
    "Bill": frozenset({"LastModifiedDateTime", "Date", "Status", "VendorRef", "Vendor", "Type"}),
    "Vendor": frozenset({"VendorID", "VendorName", "Status", "LastModifiedDateTime"}),
}


def _applied_bills(check: Mapping[str, Any]) -> list[str]:
    """The bills a check is applied to: in ``Details`` before release, ``History`` after."""
    rows = [*(check.get("Details") or ()), *(check.get("History") or ())]
    return [str(r.get("ReferenceNbr")) for r in rows if r.get("DocType") == "Bill"]


def _sendable(bill: Mapping[str, Any]) -> bool:
    return bool(bill["Type"] == "Bill" and bill["Status"] == "Open")


def _names(text: str | None) -> set[str]:
    return {part.strip() for part in (text or "").split(",") if part.strip()}


def _merge(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(name), dict):
            _merge(target[name], value)
        else:
            target[name] = value


async def _read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(await _read_form(request))
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise ApiError(_json({"message": "The request is invalid."}, 400)) from None
    if not isinstance(body, dict):
        raise ApiError(_json({"message": "The request is invalid."}, 400))
    return body


async def _read_form(request: Request) -> dict[str, str]:
    # Starlette's request.form() needs python-multipart; a urlencoded body needs only this.
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def create_emulator(options: EmulatorOptions) -> AcumaticaEmulator:
    """The entry point of ``ml-connector emulate acumatica`` (group ``ml_connector.emulators``)."""
    return AcumaticaEmulator(options)
