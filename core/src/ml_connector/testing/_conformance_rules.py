"""The conformance suite's rules: stable names, one way to fail, and the money arithmetic.

The money arithmetic (:func:`minor_units`, :func:`decimal_places`) is
:mod:`ml_connector.money`'s, re-exported here.

Every failure of the suite starts with the rule it breaks in brackets, then the record and the
field when there is one: ``[money-precision] payable AP-7, field lines.0.amount: …``. The names
are stable: a plugin's CI may grep for them, and the guide and the release check quote them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, NoReturn

import pytest

# The money arithmetic lives in the core (the engine's guards use it too); re-exported here so
# the suite and the tests that import it from this module keep working.
from ml_connector.money import decimal_places, minor_units

if TYPE_CHECKING:
    from ml_connector.models import RejectedRecord

__all__ = [
    "RULES",
    "decimal_places",
    "fail",
    "minor_units",
    "rejections",
]

# --- The rules (name -> what it asks) ----------------------------------------------------------

RULES: Mapping[str, str] = MappingProxyType(
    {
        # both roles
        "plugin-metadata": "PLUGIN_INFO is valid and describe_plugin agrees with it.",
        "contract-range": "The contract range admits this core, keeps the range rule "
        "(a lower bound from an existing contract, an upper bound before the next major) and "
        "its lower bound has every hook and capability the plugin uses.",
        "secrets-in-credentials": "Settings and credentials are pydantic models; secrets are "
        "SecretStr credentials, never settings, and never shown by repr.",
        "ping": "Signing in and the connection check work.",
        "close-twice": "Closing releases the session and may be done twice.",
        "reauthenticate-after-expiry": "After the system expires every session, the client "
        "signs in again by itself.",
        "error-mapping": "Refused credentials, throttling, 5xx and garbage map onto the core "
        "errors.",
        # source
        "page-shape": "list_changed_payables answers PayablePage with aware times and Decimal "
        "money.",
        "not-ready-never-returned": "Records that must not move (on hold, unapproved, purchase "
        "orders) are never among a page's items.",
        "money-precision": "Line amounts and totals have no more decimal places than the "
        "currency's minor units (ISO 4217).",
        "money-sign": "Every bill seeded ready to pay has a positive total: no sign turned; "
        "credit documents are left out by type or rejected naming the field.",
        "read-without-rejection": "A well-formed, ready record is read, never rejected.",
        "exactly-once-across-pages": "In a window nothing changes during, every ready record "
        "comes back exactly once, and paging ends.",
        "window-bounds": "Every payable read for [since, until) has since <= modified_at < until.",
        "change-during-paging-kept": "A record changed while pages are read is in the next window.",
        "accounts-cover-lines": "list_accounts reports every account the payable lines use.",
        "get-payable-matches-listing": "get_payable gives what the listing gave; an unknown "
        "id gives None.",
        "posting-once": "No payment posting is made twice: find_payment sees it, or "
        "record_payment looks first.",
        # sink
        "limits-declared": "A sink says how many requests it allows in flight, and per what.",
        "vendor-upsert": "A vendor is created once, found by lookup and updated in place.",
        "bill-upsert": "A bill is created once, found by vendor and invoice, updated while "
        "unpaid, then kept.",
        "bulk-all-or-nothing": "Bulk creates answer in order; a refused batch creates nothing.",
        "payments-listed": "A payment made in the sink is listed in its window, applied to its "
        "bill, and get_payment agrees.",
        "webhook-verification": "The signing key comes once; a signed delivery parses; a "
        "tampered one is refused.",
    }
)
"""Every rule the suites check, by its stable name."""


def fail(
    rule: str,
    detail: str,
    *,
    record: str | None = None,
    field: str | None = None,
    kind: str = "payable",
) -> NoReturn:
    """Fail the running test: ``[rule] payable <record>, field <field>: detail``.

    Args:
        rule: One of :data:`RULES`.
        detail: What was found, and what was expected.
        record: The record's id, if the failure is about one.
        field: The offending field as a dotted path, if there is one.
        kind: What the record is (``"payable"``, ``"bill"``, ``"plugin"``, …).
    """
    if rule not in RULES:  # a typo in the suite itself
        raise ValueError(f"unknown conformance rule {rule!r}")
    parts = []
    if record is not None:
        parts.append(f"{kind} {record}")
    if field is not None:
        parts.append(f"field {field}")
    where = f" {', '.join(parts)}:" if parts else ""
    pytest.fail(f"[{rule}]{where} {detail}")


def rejections(rejected: Sequence[RejectedRecord], *, limit: int = 5) -> str:
    """The page's rejected records in one sentence, so a test that found too few shows why."""
    if not rejected:
        return "the plugin rejected no record"
    shown = "; ".join(
        f"{r.record_type} {r.record_id}, field {r.field}: {r.reason}" for r in rejected[:limit]
    )
    more = f" (and {len(rejected) - limit} more)" if len(rejected) > limit else ""
    return f"the plugin rejected {len(rejected)} record(s): {shown}{more}"
