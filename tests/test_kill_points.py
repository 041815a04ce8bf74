"""``kill -9`` at chosen points across a whole run, against the real emulators over HTTP, then a
rerun: nothing created twice, nothing lost.

Each case seeds the ERP and BILL emulators (served from this process, so what they hold survives
the kill), brings them to the case's start, then a child process runs one sync and dies with
SIGKILL at the case's point (:mod:`tests.kill_child`). Right after the kill no cursor may have
moved past a record that is not written; then a rerun in this process must go through, and
everything is counted in the emulators' own records (:meth:`Served.audit`): every approved bill
once in BILL with the ERP's amount, every vendor and account once, every bill paid in BILL one
payment in the ERP, no open write intent and nothing left in the exception queue.

Starts: ``new``, the first run (vendors and bills created); ``accounts``, the first run with
missing BILL accounts created; ``changed``, after a first run, a vendor and two bills changed in
the ERP (vendor and bill updates); ``paid``, after a first run, bills paid in BILL (payments
recorded in the ERP).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e_support import SOURCES
from tests.kill_child import KillPoint
from tests.kill_support import Served

from ml_connector.store import RunStatus

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCES, reason="no ERP emulator installed"),
]

BILLS = 24
PAID = 5


@dataclass(frozen=True)
class Case:
    """Where the run starts from, where it dies, and whether it creates bills in bulk."""

    start: str
    point: KillPoint
    bulk: bool = False


CASES = {
    # After the intent is committed, before the create is sent.
    "intent_vendor": Case("new", KillPoint("intent", "vendor", 2)),
    "intent_bill": Case("new", KillPoint("intent", "bill", 3)),
    "intent_bill_bulk": Case("new", KillPoint("intent", "bill", 1), bulk=True),
    "intent_account": Case("accounts", KillPoint("intent", "account", 1)),
    "intent_payment": Case("paid", KillPoint("intent", "payment", 2)),
    # The other system did the write; its answer never reached the plugin.
    "unanswered_account_create": Case("accounts", KillPoint("response", "account_create", 1)),
    "unanswered_vendor_create": Case("new", KillPoint("response", "vendor_create", 2)),
    "unanswered_vendor_update": Case("changed", KillPoint("response", "vendor_update", 1)),
    "unanswered_bill_create": Case("new", KillPoint("response", "bill_create", 4)),
    "unanswered_bill_update": Case("changed", KillPoint("response", "bill_update", 1)),
    "unanswered_bulk_create": Case("new", KillPoint("response", "bill_bulk_create", 1), bulk=True),
    "unanswered_payment_record": Case("paid", KillPoint("response", "payment_record", 2)),
    "unanswered_payment_post": Case("paid", KillPoint("response", "payment_post", 2)),
    # Inside the ledger's commit (an intent with completions waiting for it), and right after.
    "in_ledger_commit": Case("new", KillPoint("ledger_commit", on_call=8)),
    "after_ledger_commit": Case("new", KillPoint("ledger_commit", on_call=8, when="after")),
    # Inside the cursor's commit, and right after.
    "in_payables_cursor_commit": Case("new", KillPoint("cursor_commit", "payables")),
    "after_payables_cursor_commit": Case(
        "new", KillPoint("cursor_commit", "payables", when="after")
    ),
    "in_payments_cursor_commit": Case("paid", KillPoint("cursor_commit", "payments")),
}


async def _start(served: Served, start: str) -> dict[str, Any]:
    """Bring the systems to ``start``; what the final check must also find (a vendor's phone)."""
    served.accounts = start == "accounts"
    if start in ("new", "accounts"):
        return {}
    first = await served.sync(bulk=False)
    assert first.status is RunStatus.SUCCEEDED, first.error
    if start == "paid":
        served.paid = served.bill.pay_bills(PAID)
        assert len(served.paid) == PAID
        return {}
    assert start == "changed"
    one, other = sorted(served.erp.eligible_bills())[:2]
    if other[0] == one[0]:
        other = next(k for k in sorted(served.erp.eligible_bills()) if k[0] != one[0])
    phone = served.erp.change_vendor(one[0])
    served.erp.change_bill(one)
    served.erp.change_bill(other)
    return {"vendor": one[0], "phone": phone}


def _found(audit: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {name: found for name, found in audit.items() if found}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
async def test_killed_at_a_point_then_rerun(tmp_path: Path, source: str, case: Case) -> None:
    with Served.start(tmp_path, source, BILLS) as served:
        changed = await _start(served, case.start)
        before = served.cursors()

        killed = await asyncio.to_thread(served.child, case.point, bulk=case.bulk)
        assert killed.killed, killed.describe()
        assert served.cursor_problems(before) == []
        if case.point.kind == "intent":  # died between the intent's commit and the send
            assert any(i.startswith(f"{case.point.target}:") for i in served.open_intents())
        if case.point.kind == "cursor_commit":
            stream = case.point.target
            moved = served.cursors().get(stream) != before.get(stream)
            assert moved == (case.point.when == "after"), f"{stream} cursor moved: {moved}"

        rerun = await served.sync(bulk=case.bulk)
        assert rerun.status is RunStatus.SUCCEEDED, rerun.error
        assert _found(served.audit()) == {}
        if changed:
            vendors = [v for v in served.bill.vendors.values() if v["name"] == changed["vendor"]]
            assert [v.get("phone") for v in vendors] == [changed["phone"]]


@pytest.mark.parametrize("source", SOURCES)
async def test_killed_again_and_again_then_rerun(tmp_path: Path, source: str) -> None:
    """Four runs in a row die mid-run (more than the ERP licence's three API sessions): each
    next run must still start, pick up where the last one died, and the rerun finish the job."""
    with Served.start(tmp_path, source, BILLS) as served:
        for n in (2, 3, 4, 5):
            before = served.cursors()
            killed = await asyncio.to_thread(
                served.child, KillPoint("response", "bill_create", n), bulk=False
            )
            assert killed.killed, killed.describe()
            assert served.cursor_problems(before) == []
            assert _found(served.lasting()) == {}
        rerun = await served.sync(bulk=False)
        assert rerun.status is RunStatus.SUCCEEDED, rerun.error
        assert _found(served.audit()) == {}
