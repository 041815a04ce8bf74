"""Fault soak: random ``kill -9`` points over a 1,000-bill sync with payments, rerun every time.

For each source, the ERP emulator is seeded with ``--bills`` approved bills and BILL with its
chart (all but one account), both served on loopback from this process (their records outlive
every kill), and a connection that creates missing BILL accounts is stored. Then ``--kills``
times:

1. people work between runs (but before the first): a few new bills are entered in the ERP,
   a few unpaid bills are paid in BILL (so payments flow back), now and then unpaid bills change
   in the ERP, and a vendor with one of its bills (updates);
2. a child process runs a sync (single or bulk creates, at random) and dies with SIGKILL at a
   random point of the work outstanding: the kind drawn among those with work to do (after an
   intent's commit; an account, vendor or bill create, a vendor or bill update, a bulk create,
   a payment record or its release/post answered but unread; inside or right after a ledger
   commit; inside or right after a cursor's commit), the call drawn over that work;
3. right after the kill, nothing may exist twice (bills, vendors, accounts, ERP payments) and
   no cursor may have moved past an unwritten record;
4. now and then (``--chain``, a quarter of the time) the rerun is killed too, at a point drawn
   the same way (a crash while recovering from one), and checked the same way, up to three
   kills in a row;
5. a rerun in a child process runs to the end, and everything is counted in the emulators' own
   records (``tests.kill_support.Served.audit``): every bill once in BILL with the ERP's amount,
   every paid bill one payment in the ERP, no open write intent, nothing in the exception queue.

The first killed run is the 1,000-bill sync itself; the later ones carry what people did
meanwhile (new bills, payments, changes), so every kind of kill point has work to land in.
A run that cannot start (say, every licence slot of the ERP held by killed runs' sessions)
counts in ``reruns_not_succeeded``; if runs keep ending so, the soak of that source stops
(``stuck``).

A kill point the run ends without reaching (its work turned out smaller) is not a kill: another
is drawn, until ``--kills`` kills happened. Each figure is the number of distinct records ever
found wrong (a bill doubled at the 5th kill counts once, not at every later audit); all must
be 0, or the script exits with status 1. Prints one JSON line per source (progress on stderr).

    uv run python bench/fault_soak.py                       # 100 kills, 1,000 bills, both sources
    uv run python bench/fault_soak.py --sources epicor --bills 60 --kills 8 --seed 3
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the kill tests' support

from _world import emit, machine, progress
from tests.e2e_support import SOURCES
from tests.kill_child import KillPoint
from tests.kill_support import ChildResult, Served

from ml_connector_bill.schemas import BULK_BILLS_LIMIT

#: What an audit lists; each is a figure of the result (distinct records ever found).
FIGURES = (
    "duplicates",
    "missing",
    "unexpected",
    "wrong_amounts",
    "vendor_duplicates",
    "account_duplicates",
    "payments_duplicated",
    "payments_missing",
    "payments_unexpected",
    "payments_unfinished",
    "open_intents",
    "queued",
)


class Stuck(Exception):
    """Runs keep ending before any kill point: the soak cannot go on."""


class Soak:
    """One source's soak: the served world, the random draws, and what was found."""

    def __init__(self, served: Served, rng: random.Random, timeout: float, chain: float) -> None:
        self.served = served
        self.rng = rng
        self.timeout = timeout
        self.chain = chain
        self.found: dict[str, set[str]] = {name: set() for name in FIGURES}
        self.found["cursor_past_unwritten"] = set()
        self.found["reruns_not_succeeded"] = set()
        self.points: Counter[str] = Counter()
        self.not_reached: Counter[str] = Counter()
        self.pending_updates = 0  # bills changed in the ERP since the last complete run
        self.pending_vendor_updates = 0
        self.kills = 0
        self.runs = 0

    # --- Between runs ------------------------------------------------------------------------

    def work(self) -> None:
        """What people do between two runs: new bills, payments, changes."""
        served, rng = self.served, self.rng
        served.enter_bills(rng.randint(0, 6), rng)
        bills = served.bill.bills
        unpaid = sorted(
            b["id"] for b in bills.values() if b["paymentStatus"] == "UNPAID" and not b["archived"]
        )
        paying = set(rng.sample(unpaid, min(len(unpaid), rng.randint(0, 6))))
        for bill_id in sorted(paying):
            served.bill.pay([bill_id])
            served.paid.append(_key(bills[bill_id]))
        paid = set(served.paid)
        changeable = sorted(k for k in served.erp.eligible_bills() if k not in paid)
        self.pending_updates = self.pending_vendor_updates = 0
        if changeable and rng.random() < 0.5:
            for key in rng.sample(changeable, min(len(changeable), rng.randint(1, 3))):
                served.erp.change_bill(key)
                self.pending_updates += 1
        if changeable and rng.random() < 0.3:
            key = rng.choice(changeable)
            served.erp.change_vendor(key[0])
            served.erp.change_bill(key)
            self.pending_vendor_updates += 1
            self.pending_updates += 1

    # --- Kill points -------------------------------------------------------------------------

    def outstanding(self, bulk: bool) -> dict[str, int]:
        """Per kind of kill point, how many calls of it the next run should make (at least)."""
        served = self.served
        in_bill = served.bill.bills_by_key()
        missing = [k for k in served.expected_bills() if k not in in_bill]
        known_vendors = {v["name"] for v in served.bill.vendors.values()}
        vendors = len({k[0] for k in missing} - known_vendors)
        posted = served.erp.payments_posted()
        payments = sum(1 for k in served.paid if posted.get(k, 0) == 0)
        charted = {
            (r.get("account") or {}).get("number")
            for r in served.bill.classifications["chart-of-accounts"].values()
        }
        account = int(served.accounts and served.erp.unmapped_account() not in charted)
        creates = math.ceil(len(missing) / BULK_BILLS_LIMIT) if bulk else len(missing)
        work = {
            "intent:account": account,
            "intent:vendor": vendors,
            "intent:bill": creates,
            "intent:payment": payments,
            "response:account_create": account,
            "response:vendor_create": vendors,
            "response:vendor_update": self.pending_vendor_updates,
            "response:bill_update": self.pending_updates,
            "response:bill_bulk_create" if bulk else "response:bill_create": creates,
            "response:payment_record": payments,
            "response:payment_post": payments,
        }
        # Every run commits intents (and the completions waiting for them), and both cursors.
        work["ledger_commit"] = max(1, account + vendors + creates + payments)
        work["cursor_commit"] = 1
        return {kind: n for kind, n in work.items() if n > 0}

    def draw(self, bulk: bool) -> KillPoint:
        """A random kill point among the work outstanding: each kind of it equally likely."""
        rng, work = self.rng, self.outstanding(bulk)
        kind = rng.choice(sorted(work))
        on_call = rng.randint(1, work[kind])
        when = rng.choice(("before", "after"))
        if kind == "ledger_commit":
            return KillPoint(kind, on_call=on_call, when=when)
        if kind == "cursor_commit":
            return KillPoint(kind, rng.choice(("payables", "payments")), when=when)
        category, target = kind.split(":")
        return KillPoint(category, target, on_call)

    # --- Runs --------------------------------------------------------------------------------

    def note(self, figure: str, items: list[Any], where: str) -> None:
        """Add what a check found; say what is new."""
        new = {i if isinstance(i, str) else repr(i) for i in items} - self.found[figure]
        if new:
            progress(f"  {where}: {figure} {sorted(new)[:5]}")
            self.found[figure] |= new

    def child(self, point: KillPoint | None, bulk: bool) -> ChildResult:
        self.runs += 1
        return self.served.child(point, bulk=bulk, timeout=self.timeout)

    def round(self, kills_left: int) -> None:
        """Work; a killed run, whose rerun is killed too now and then; a rerun to the end."""
        self.work()
        chain = 1
        self.killed_run()
        while chain < min(3, kills_left) and self.rng.random() < self.chain:
            chain += 1
            self.killed_run()
        where = f"rerun after kill {self.kills}"
        self.check_ended(self.child(None, self.rng.random() < 0.5), where)
        self.audit(where)

    def check_ended(self, result: ChildResult, where: str) -> None:
        """Note a run that did not end, or ended otherwise than ``succeeded``."""
        if result.ended and result.summary and result.summary["status"] == "succeeded":
            return
        if result.summary:
            reason = f"{result.summary['status']}: {result.summary['error']}"
        else:
            reason = f"exit code {result.exitcode}: {result.log[-300:]}"
        self.note("reruns_not_succeeded", [f"{where}: {reason}"], where)

    def killed_run(self) -> None:
        """One run killed at a random point (drawn again while runs end before theirs)."""
        served, rng = self.served, self.rng
        while True:
            bulk = rng.random() < 0.5
            point = self.draw(bulk)
            before = served.cursors()
            result = self.child(point, bulk)
            if result.killed:
                break
            self.not_reached[point.label] += 1
            if sum(self.not_reached.values()) > 3 * self.kills + 30:
                raise Stuck(f"runs keep ending before their kill point: {result.describe()}")
            where = f"run {self.runs} (before {point.label}, not reached)"
            self.check_ended(result, where)
            self.audit(where)
        self.kills += 1
        self.points[point.label.split("#")[0]] += 1
        where = f"kill {self.kills} ({point.label}, {'bulk' if bulk else 'single'})"
        for figure, items in served.lasting().items():
            self.note(figure, items, where)
        self.note("cursor_past_unwritten", served.cursor_problems(before), where)

    def audit(self, where: str) -> None:
        for figure, items in self.served.audit().items():
            self.note(figure, items, where)


def _key(bill: dict[str, Any]) -> tuple[str, str]:
    return (bill["vendorName"], bill["invoice"]["invoiceNumber"])


def soak(
    source: str, bills: int, kills: int, seed: int, timeout: float, chain: float
) -> dict[str, Any]:
    """One source's soak; its figures."""
    rng = random.Random(f"{seed}:{source}")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix=f"ml-connector-soak-{source}-"))
    progress(f"{source}: {bills} bills, {kills} kills, in {folder}")
    with Served.start(folder, source, bills) as served:
        served.accounts = True
        run = Soak(served, rng, timeout, chain)
        stuck = None
        try:
            while run.kills < kills:
                tens = run.kills // 10
                run.round(kills - run.kills)
                if run.kills // 10 > tens:
                    progress(f"{source}: {run.kills} kills, {run.runs} runs")
        except Stuck as exc:
            stuck = str(exc)[-600:]
            run.note("reruns_not_succeeded", [stuck], "stuck")
        run.check_ended(run.child(None, False), "final rerun")
        run.audit("final rerun")
        result: dict[str, Any] = {
            "benchmark": "fault_soak",
            "source": source,
            "bills_seeded": bills,
            "bills_entered": len(served.entered),
            "bills_in_bill": sum(served.bill.bills_by_key().values()),
            "bills_paid": len(served.paid),
            "kills": run.kills,
            "kills_by_kind": dict(sorted(run.points.items())),
            "points_not_reached": sum(run.not_reached.values()),
            "runs": run.runs,
            "chain": chain,
            "stuck": stuck,
        }
    result.update({figure: len(items) for figure, items in run.found.items()})
    result["examples"] = {f: sorted(items)[:3] for f, items in run.found.items() if items}
    if any(run.found.values()):
        result["kept"] = str(folder)  # the state and every child's log, to look into
    else:
        shutil.rmtree(folder, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["seed"] = seed
    result["machine"] = machine()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=SOURCES, choices=SOURCES)
    parser.add_argument("--bills", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take")
    parser.add_argument(
        "--chain", type=float, default=0.25, help="how often a killed run's rerun is killed too"
    )
    parser.add_argument("--json", action="store_true", help="only the JSON lines on stdout")
    args = parser.parse_args()
    # The connections' key goes into a temporary home, never the user's.
    home = tempfile.mkdtemp(prefix="ml-connector-soak-home-")
    os.environ["ML_CONNECTOR_HOME"] = home
    failed = False
    for source in args.sources:
        result = soak(source, args.bills, args.kills, args.seed, args.timeout, args.chain)
        bad = {k: result[k] for k in (*FIGURES, "cursor_past_unwritten", "reruns_not_succeeded")}
        failed |= any(bad.values())
        emit(result)
        if not args.json:
            progress(f"{source}: " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    shutil.rmtree(home, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
