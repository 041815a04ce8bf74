"""``ml-connector demo``: the whole job on emulators, start to finish, checked.

Starts the chosen ERP's emulator and the BILL emulator on loopback (real HTTP), seeds them, adds a
connection with encrypted credentials in a throwaway (or given) SQLite state, syncs, pays some
bills in BILL, syncs again to record the payments back, and then reads both emulators' own records
to count duplicates, missing bills and bills that must not move but did.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from ml_connector.connections import SideInput, create_connection
from ml_connector.emulation import (
    DemoSink,
    DemoSource,
    EmulatorOptions,
    RunningEmulator,
    load_emulator,
    missing_members,
    serve_in_thread,
)
from ml_connector.engine import RunSummary, open_engine, run_async
from ml_connector.errors import ConfigurationError
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, open_store
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from ml_connector.engine import RunObserver
    from ml_connector.store import Store

__all__ = ["DEFAULT_SOURCE", "SINK", "DemoOptions", "check_problems", "run_demo"]

DEFAULT_SOURCE = "acumatica"
SINK = "bill"
CONNECTION = "demo"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does.

    Attributes:
        source: The ERP's system key.
        bills: Approved bills to seed.
        latency: Seconds each emulator spends on a request.
        seed: Seeds the generated data.
        db: A new SQLite file to keep the state in (its key file beside it, ``<db>.key``); a
            temporary one when ``None``.
        pay: Bills to pay in BILL before the second run; a third of them when ``None``.
    """

    source: str = DEFAULT_SOURCE
    bills: int = 50
    latency: float = 0.0
    seed: int = 7
    db: str | None = None
    pay: int | None = None


def _exceptions(store: Store) -> list[dict[str, Any]]:
    with store.session(read_only=True) as session:
        rows = session.exec(select(ExceptionItemRow).order_by(col(ExceptionItemRow.id)))
        return [
            {"record": r.source_id, "type": r.object_type, "field": r.field, "reason": r.reason}
            for r in rows
            if r.status in ("open", "retrying")
        ]


async def _run(
    store: Store, vault: Vault, registry: Registry, observer: RunObserver | None
) -> RunSummary:
    async with open_engine(store, vault, registry, CONNECTION, observer=observer) as engine:
        return await engine.run()


def run_demo(options: DemoOptions, observer: RunObserver | None = None) -> dict[str, Any]:
    """Run the demo and return its summary (see ``ml-connector demo --json``).

    Raises:
        ConfigurationError: ``options.db`` exists, or an emulator cannot take part.
        PluginNotFoundError: The source's or BILL's emulator is not installed.
    """
    if options.db and Path(options.db).exists():
        raise ConfigurationError(
            f"{options.db} exists: the demo seeds new emulators each time, so give a new file"
        )
    return run_async(_demo(options, observer))


def _not_a(protocol: type[Any], emulator: object, what: str) -> ConfigurationError:
    """The error for an emulator that is not a ``protocol``: it names the methods it lacks."""
    kind = type(emulator)
    missing = missing_members(emulator, protocol)
    return ConfigurationError(
        f"{what} ({kind.__module__}.{kind.__qualname__}) cannot be seeded for the demo: it does "
        f"not implement ml_connector.emulation.{protocol.__name__}"
        + (f" (it lacks {', '.join(missing)})" if missing else "")
        + '; see "The demo protocol" in docs/plugin-guide.md'
    )


def check_problems(summary: dict[str, Any]) -> list[str]:
    """Why the demo's check fails, one phrase each; empty when it passes.

    The check reads the emulators' own records (the summary's ``duplicates``, ``missing``,
    ``held_moved``, ``payments_posted_twice`` and ``payments_missing``), not the connector's
    counts.
    """
    duplicates, missing, moved = summary["duplicates"], summary["missing"], summary["held_moved"]
    twice, unposted = summary["payments_posted_twice"], summary["payments_missing"]
    problems = []
    if duplicates:
        problems.append(f"{duplicates} duplicate {_bills(duplicates)} in BILL")
    if missing:
        problems.append(f"{missing} eligible {_bills(missing)} missing in BILL")
    if moved:
        are = "is" if moved == 1 else "are"
        problems.append(f"{moved} {_bills(moved)} that must not move {are} in BILL")
    if twice:
        problems.append(f"{twice} BILL {_payments(twice)} posted twice in the ERP")
    if unposted:
        problems.append(f"{unposted} BILL {_payments(unposted)} never posted in the ERP")
    return problems


def _payments(count: int) -> str:
    return "payment" if count == 1 else "payments"


def _bills(count: int) -> str:
    return "bill" if count == 1 else "bills"


async def _demo(options: DemoOptions, observer: RunObserver | None) -> dict[str, Any]:
    started = time.monotonic()
    emulator_options = EmulatorOptions(latency=options.latency, seed=options.seed)
    erp = load_emulator(options.source)(emulator_options)
    bill = load_emulator(SINK)(emulator_options)
    if not isinstance(erp, DemoSource):
        raise _not_a(DemoSource, erp, f"the {options.source} emulator")
    if not isinstance(bill, DemoSink):
        raise _not_a(DemoSink, bill, "the BILL emulator")
    erp.seed_demo(options.bills, options.seed)
    unmapped = erp.unmapped_account()
    bill.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
    servers: list[RunningEmulator] = []
    workdir = Path(tempfile.mkdtemp(prefix="ml-connector-demo-"))
    try:
        servers = [serve_in_thread(erp), serve_in_thread(bill)]
        erp_url, bill_url = servers[0].base_url, servers[1].base_url
        key_file = Path(f"{options.db}.key") if options.db else workdir / "master.key"
        vault = Vault.from_key_file(key_file)
        store = open_store(options.db or str(workdir / "demo.db"))
        registry = Registry()
        create_connection(
            store,
            vault,
            registry,
            CONNECTION,
            SideInput(options.source, erp.settings(erp_url), erp.credentials()),
            SideInput(SINK, bill.settings(bill_url), bill.credentials()),
        )
        first = await _run(store, vault, registry, observer)
        paid = bill.pay_bills(options.pay if options.pay is not None else options.bills // 3)
        second = await _run(store, vault, registry, observer)
        exceptions = _exceptions(store)
        store.dispose()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    eligible = erp.eligible_bills()
    held = erp.held_bill_keys()
    in_bill = bill.bills_by_key()
    posted = erp.payments_posted()
    counts = {
        k: first.counts.get(k, 0) + second.counts.get(k, 0) for k in first.counts | second.counts
    }
    return {
        "source": options.source,
        "status": "succeeded" if first.error is None and second.error is None else "failed",
        "errors": [e for e in (first.error, second.error) if e],
        "bills_eligible": len(eligible),
        "bills_held": len(held),
        "accounts_mapped": first.counts.get("accounts_mapped", 0),
        "vendors_created": counts.get("vendors_created", 0),
        "bills_created": counts.get("bills_created", 0),
        "bills_skipped_unchanged": second.counts.get("bills_unchanged", 0),
        "exceptions": len(exceptions),
        "exception_queue": exceptions,
        "bills_paid_in_bill": len(paid),
        "payments_recorded": counts.get("payments_recorded", 0),
        "payments_posted_twice": sum(1 for key in paid if posted.get(key, 0) > 1),
        "payments_missing": sum(1 for key in paid if posted.get(key, 0) == 0),
        "duplicates": sum(n - 1 for n in in_bill.values() if n > 1),
        "missing": len(eligible - set(in_bill)),
        "unexpected": len(set(in_bill) - eligible),
        "held_moved": len(held & set(in_bill)),
        "state": options.db or "temporary (deleted at exit)",
        "seconds": round(time.monotonic() - started, 2),
    }
