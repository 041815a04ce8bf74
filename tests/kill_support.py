"""The kill tests' side of the parent: served emulators, children killed at a point, the checks.

The ERP and BILL emulators are served on loopback from this process (``serve_in_thread``), so
what they hold survives each child's ``kill -9``. A child (:mod:`tests.kill_child`) runs one
sync of the stored connection and kills itself at the point it is given; it is forked from a
fork server that imported the engine and the plugins once (a fresh interpreter would spend
seconds importing them for every kill).

Every figure of :meth:`Served.audit` is counted in the emulators' own records, and in the state
store for the open intents: never in what the connector says it did.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import select
from tests.e2e_support import NAME, Pair, make_emulators
from tests.kill_child import ChildRun, KillPoint, child_main

from ml_connector.emulation import BillKey, RunningEmulator, serve_in_thread
from ml_connector.store import (
    CursorRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    WriteIntentRow,
)

__all__ = ["ChildResult", "Served", "run_child"]

ROOT = Path(__file__).resolve().parents[1]
#: Environment variables a child takes from the parent at the time it starts (the fork server's
#: own environment is the one of the moment it started).
_ENV = ("ML_CONNECTOR_HOME", "ML_CONNECTOR_MASTER_KEY", "ML_CONNECTOR_LOOP")
_UNMAPPED = "is not mapped"  # the reason the deliberately unmapped account's bill is queued for

_context: Any = None


def _fork_server() -> Any:
    """The ``forkserver`` context, its server importing :mod:`tests.kill_child` once."""
    global _context
    if _context is None:
        # The fork server imports the children's module by name, from the parent's sys.path.
        if str(ROOT) not in sys.path:
            sys.path.append(str(ROOT))
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tests.kill_child"])
        _context = context
    return _context


@dataclass(frozen=True)
class ChildResult:
    """How a child ended: killed at its point, ended its run, failed, or hung."""

    point: KillPoint | None
    exitcode: int | None
    summary: dict[str, Any] | None
    log: str

    @property
    def killed(self) -> bool:
        """Killed with SIGKILL (at its point: nothing else sends it)."""
        return self.exitcode == -signal.SIGKILL

    @property
    def ended(self) -> bool:
        """The run ended (whatever its status) without reaching the kill point."""
        return self.exitcode == 0 and self.summary is not None

    def describe(self) -> str:
        """For a failed assertion: the point, the exit and the end of the child's output."""
        point = self.point.label if self.point else "none"
        return f"kill point {point}, exit code {self.exitcode}:\n{self.log[-3000:]}"


def run_child(job: ChildRun, timeout: float) -> ChildResult:
    """Run ``job`` in a child process and wait for it (blocking; at most ``timeout`` s)."""
    process = _fork_server().Process(target=child_main, args=(job,), daemon=True)
    process.start()
    process.join(timeout)
    hung = process.is_alive()
    if hung:
        process.kill()
        process.join()
    log = Path(job.log).read_text(errors="replace") if Path(job.log).exists() else ""
    if hung:
        log += f"\n[the child still ran after {timeout} s: killed by the parent]"
    summary_path = Path(job.summary)
    summary = None
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    return ChildResult(job.point, None if hung else process.exitcode, summary, log)


def _enter_bill(erp: Any, like: BillKey, number: str, amount: Decimal) -> BillKey:
    """A new bill in the ERP of ``like``'s vendor, coded like ``like``'s first line."""
    if hasattr(erp, "enter_bill"):  # an emulator that knows how (NetSuite's)
        key: BillKey = erp.enter_bill(like, number, amount)
        return key
    if erp.system == "sapb1":
        invoice = next(
            i
            for i in erp.books.invoices.values()
            if (i["CardName"], i["NumAtCard"]) == like and i["CancelStatus"] == "csNo"
        )
        line = invoice["DocumentLines"][0]
        erp.add_invoice(
            invoice["CardCode"],
            [{"AccountCode": line["AccountCode"], "LineTotal": amount,
              "ItemDescription": "Soak test charge"}],
            num_at_card=number,
        )  # fmt: skip
        return (like[0], number)
    if hasattr(erp, "seeded"):  # Epicor: an invoice as AP entry and posting leave it
        vendors = erp.books.vendors
        key = next(k for k in erp.seeded.eligible if (vendors[k[0]]["Name"], k[1]) == like)
        account = erp.books.invoices[key].lines[0]["GLAccount"]
        erp.books.add_invoice(key[0], number, [(amount, account, "Soak test charge")])
        return (str(vendors[key[0]]["Name"]), number)
    bill = next(
        b
        for b in erp.books.ordered("Bill")
        if b["Type"] == "Bill"
        and b.get("VendorRef") == like[1]
        and (erp.books.get("Vendor", b["Vendor"]) or {}).get("VendorName") == like[0]
    )
    line = bill["Details"][0]
    erp.add_bill(
        bill["Vendor"],
        [(line["Account"], line["Subaccount"], amount, "Soak test charge")],
        vendor_ref=number,
    )
    return (like[0], number)


def unmapped_bills(erp: Any) -> set[BillKey]:
    """The ERP bills coded to the account BILL's chart lacks (they move once it is created)."""
    number = erp.unmapped_account()
    if hasattr(erp, "unmapped_bills"):  # SAP B1's and NetSuite's emulators say
        found: set[BillKey] = erp.unmapped_bills()
        return found
    if hasattr(erp, "seeded"):  # Epicor: the seed notes the invoice
        return {(erp.books.vendors[k[0]]["Name"], k[1]) for k in erp.seeded.unmapped}
    found = set()
    for bill in erp.books.ordered("Bill"):
        if bill["Type"] == "Bill" and any(d["Account"] == number for d in bill["Details"]):
            vendor = erp.books.get("Vendor", bill["Vendor"]) or {}
            found.add((str(vendor.get("VendorName")), str(bill.get("VendorRef") or "")))
    return found


@dataclass
class Served:
    """A seeded ERP emulator and the BILL emulator on loopback, the connection between them.

    ``paid``: the bills paid in BILL so far (each must be one payment in the ERP).
    ``entered``: bills entered in the ERP after seeding (they must reach BILL too).
    ``accounts``: runs create missing BILL accounts, so the bill on the unmapped account must
    reach BILL too.
    """

    pair: Pair
    servers: list[RunningEmulator]
    folder: Path
    paid: list[BillKey] = field(default_factory=list)
    entered: set[BillKey] = field(default_factory=set)
    accounts: bool = False
    _children: int = 0

    @classmethod
    @contextmanager
    def start(cls, folder: Path, source: str, bills: int) -> Iterator[Served]:
        """Seed and serve both emulators, and store the connection in ``folder``."""
        erp, bill = make_emulators(source, bills)
        servers = [serve_in_thread(erp), serve_in_thread(bill)]
        try:
            urls = (servers[0].root_url, servers[1].root_url)
            pair = Pair.create(folder, source, urls=urls, emulators=(erp, bill))
            try:
                yield cls(pair, servers, folder)
            finally:
                pair.store.dispose()
        finally:
            for server in servers:
                server.stop()

    @property
    def erp(self) -> Any:
        return self.pair.erp

    @property
    def bill(self) -> Any:
        return self.pair.bill

    # --- Runs --------------------------------------------------------------------------------

    def child(self, point: KillPoint | None, *, bulk: bool, timeout: float = 120.0) -> ChildResult:
        """One run in a child process, killed at ``point`` if the run gets there (blocking)."""
        self._children += 1
        name = f"child-{self._children:04d}"
        job = ChildRun(
            db=str(self.folder / "state.db"),
            connection=NAME,
            log=str(self.folder / f"{name}.log"),
            summary=str(self.folder / f"{name}.json"),
            point=point,
            bulk=bulk,
            create_missing_accounts=self.accounts,
            env={var: os.environ.get(var) for var in _ENV},
        )
        return run_child(job, timeout)

    async def sync(self, *, bulk: bool) -> Any:
        """One run in this process (the rerun after a kill)."""
        return await self.pair.sync(bulk=bulk, create_missing_accounts=self.accounts)

    # --- What people do between runs ---------------------------------------------------------

    def enter_bills(self, count: int, rng: random.Random) -> list[BillKey]:
        """Enter ``count`` new approved bills in the ERP, each coded like an eligible one."""
        templates = sorted(self.erp.eligible_bills())
        keys = []
        for _ in range(count):
            number = f"SOAK-{len(self.entered) + 1:05d}"
            amount = Decimal(rng.randint(2_500, 250_000)) / 100
            key = _enter_bill(self.erp, rng.choice(templates), number, amount)
            self.entered.add(key)
            keys.append(key)
        return keys

    # --- What the state store holds ----------------------------------------------------------

    def cursors(self) -> dict[str, datetime | None]:
        """Each stream's cursor."""
        with self.pair.store.session(read_only=True) as session:
            return {row.stream: row.position for row in session.exec(select(CursorRow))}

    def open_intents(self) -> list[str]:
        """``type:source_id`` of every open write intent."""
        with self.pair.store.session(read_only=True) as session:
            rows = session.exec(
                select(WriteIntentRow).where(WriteIntentRow.status == IntentStatus.OPEN.value)
            )
            return sorted(f"{r.object_type}:{r.source_id}" for r in rows)

    def queued(self) -> list[str]:
        """``type:source_id: reason`` of open exceptions but the deliberately unmapped bill's."""
        with self.pair.store.session(read_only=True) as session:
            rows = session.exec(
                select(ExceptionItemRow).where(
                    ExceptionItemRow.status == ExceptionStatus.OPEN.value
                )
            )
            return sorted(
                f"{r.object_type}:{r.source_id}: {r.reason}"
                for r in rows
                if _UNMAPPED not in r.reason
            )

    # --- What the systems hold ---------------------------------------------------------------

    def expected_bills(self) -> set[BillKey]:
        """The bills that must be in BILL once a run went through."""
        expected: set[BillKey] = set(self.erp.eligible_bills()) | self.entered
        return expected | unmapped_bills(self.erp) if self.accounts else expected

    def bill_problems(self) -> dict[str, list[Any]]:
        """Bills doubled, missing, unexpected or with another amount than the ERP's, in BILL."""
        in_bill: dict[BillKey, int] = self.bill.bills_by_key()
        expected = self.expected_bills()
        erp_totals, bill_totals = self.erp.bill_totals(), self.bill.bill_totals()
        return {
            "duplicates": sorted(k for k, n in in_bill.items() if n > 1),
            "missing": sorted(expected - set(in_bill)),
            "unexpected": sorted(set(in_bill) - expected),
            "wrong_amounts": sorted(
                k for k in erp_totals if k in bill_totals and bill_totals[k] != erp_totals[k]
            ),
        }

    def vendor_duplicates(self) -> list[str]:
        """Vendor names BILL holds more than once."""
        names = Counter(v["name"] for v in self.bill.vendors.values() if not v.get("archived"))
        return sorted(n for n, count in names.items() if count > 1)

    def account_duplicates(self) -> list[str]:
        """Account numbers BILL's chart holds more than once."""
        numbers = Counter(
            (r.get("account") or {}).get("number")
            for r in self.bill.classifications["chart-of-accounts"].values()
        )
        return sorted(str(n) for n, count in numbers.items() if count > 1)

    def payment_problems(self) -> dict[str, list[BillKey]]:
        """Bills paid in BILL with more or fewer than one payment in the ERP; unpaid ones with
        one."""
        posted: dict[BillKey, int] = self.erp.payments_posted()
        paid = set(self.paid)
        return {
            "payments_duplicated": sorted(k for k in paid if posted.get(k, 0) > 1),
            "payments_missing": sorted(k for k in paid if posted.get(k, 0) == 0),
            "payments_unexpected": sorted(
                k for k in self.expected_bills() - paid if posted.get(k, 0) > 0
            ),
            # Entered but never released or posted: the ERP bill is still open.
            "payments_unfinished": sorted(self.erp.payments_unfinished()),
        }

    def audit(self) -> dict[str, list[Any]]:
        """Everything that must be empty once a run went through to the end."""
        return {
            **self.bill_problems(),
            "vendor_duplicates": self.vendor_duplicates(),
            "account_duplicates": self.account_duplicates(),
            **self.payment_problems(),
            "open_intents": self.open_intents(),
            "queued": self.queued(),
        }

    def lasting(self) -> dict[str, list[Any]]:
        """What must be empty at any moment, even right after a kill: things made twice."""
        return {
            "duplicates": self.bill_problems()["duplicates"],
            "vendor_duplicates": self.vendor_duplicates(),
            "account_duplicates": self.account_duplicates(),
            "payments_duplicated": self.payment_problems()["payments_duplicated"],
        }

    def cursor_problems(self, before: dict[str, datetime | None]) -> list[str]:
        """A cursor that moved (since ``before``) past a record not written yet.

        A bill missing in BILL or with the ERP's old amount behind a moved ``payables`` cursor,
        or a paid bill without its ERP payment behind a moved ``payments`` cursor. A record in
        the exception queue may be passed (it is listed by :meth:`queued`, which must be empty
        after a rerun): only unwritten bills beyond the queued ones count here.
        """
        after = self.cursors()
        problems = []
        if after.get("payables") != before.get("payables"):
            bills = self.bill_problems()
            unwritten = bills["missing"] + bills["wrong_amounts"]
            queued = sum(1 for q in self.queued() if q.startswith("bill:"))
            if len(unwritten) > queued:
                problems.append(
                    f"payables cursor moved past {len(unwritten)} unwritten bills "
                    f"({queued} queued): {unwritten[:5]}"
                )
        if after.get("payments") != before.get("payments"):
            missing = self.payment_problems()["payments_missing"]
            if missing:
                problems.append(f"payments cursor moved past unrecorded payments {missing[:5]}")
        return problems
