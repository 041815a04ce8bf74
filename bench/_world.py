"""What the engine benchmarks share: one seeded connection and how to run it.

A world is the two in-memory fakes (``ml_connector.testing``), a file-based SQLite state store in
a folder (the real store, as the CLI opens it), and a stored connection between the reference ERP
and the reference sink, built through the same public APIs the CLI uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

import ml_connector.engine as engine_package
import ml_connector.store as store_package
import ml_connector.testing as testing_package
from ml_connector.connections import SideInput, create_connection
from ml_connector.description import PluginInfo
from ml_connector.engine import LimiterPool, RetryPolicy, RunSummary, SyncOptions, open_engine
from ml_connector.engine._loop import event_loop_factory
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.testing import (
    FakeErp,
    FakeSink,
    SeedData,
    SeedSpec,
    reference_erp,
    reference_sink,
    seed_pair,
)
from ml_connector.vault import Vault

__all__ = [
    "CONNECTION",
    "SINK_WRITES",
    "StageClock",
    "World",
    "emit",
    "machine",
    "progress",
]

ERP_INSTANCE = "bench-erp"
ORG = "00801BENCH"
CONNECTION = "bench"
#: Sink hooks that write (vendors, bills, accounts).
SINK_WRITES = ("upsert_vendor", "create_bill", "create_bills", "create_account")


def _registry() -> Registry:
    found = Registry(path=[])
    found.add(reference_erp.PLUGIN, PluginInfo.model_validate(reference_erp.PLUGIN_INFO))
    found.add(reference_sink.PLUGIN, PluginInfo.model_validate(reference_sink.PLUGIN_INFO))
    return found


@dataclass
class StageClock:
    """A run observer that notes when each stage started (``time.perf_counter``)."""

    started: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str) -> None:
        """Note the stage's start."""
        self.started[name] = time.perf_counter()

    def count(self, key: str, n: int = 1) -> None:
        """Tallies are read from the run summary instead."""

    def span(self, first: str, until: str) -> float | None:
        """Seconds from stage ``first`` to stage ``until``, if both started."""
        if first in self.started and until in self.started:
            return self.started[until] - self.started[first]
        return None


@dataclass
class World:
    """Seeded fakes, a file-based state store and a stored connection between them."""

    folder: Path
    erp: FakeErp
    sink: FakeSink
    store: Store
    registry: Registry
    vault: Vault
    data: SeedData | None

    @classmethod
    def create(
        cls, folder: Path, spec: SeedSpec, *, page_size: int = 100, keep_data: bool = True
    ) -> World:
        """Seed new in-memory fakes and store the connection in ``folder/state.db``.

        Args:
            folder: Where the state database goes.
            spec: What to seed.
            page_size: Payables per ``list_changed_payables`` page.
            keep_data: Keep the generated :class:`SeedData` (the fakes hold the records anyway).
        """
        erp, sink = FakeErp.in_memory(ERP_INSTANCE), FakeSink.in_memory(ORG)
        data = seed_pair(erp, sink, spec)
        store = open_store(str(folder / "state.db"))
        vault = Vault([Fernet.generate_key()], source="benchmark")
        registry = _registry()
        create_connection(
            store,
            vault,
            registry,
            CONNECTION,
            SideInput(
                "reference_erp",
                {"instance": ERP_INSTANCE, "page_size": page_size},
                {"username": "ap-bot", "password": "erp-pw"},
            ),
            SideInput(
                "reference_sink",
                {"organization_id": ORG},
                {"username": "ap@bench.example", "password": "bill-pw", "dev_key": "dev"},
            ),
        )
        return cls(folder, erp, sink, store, registry, vault, data if keep_data else None)

    def set_latency(self, sink_seconds: float, erp_seconds: float) -> None:
        """Make every sink call and every ERP call spend that long in flight."""
        self.sink.faults.set_latency(sink_seconds)
        self.erp.faults.set_latency(erp_seconds)

    def reset_counters(self) -> None:
        """Zero both fakes' call counters (before a measured run)."""
        self.sink.faults.reset_counters()
        self.erp.faults.reset_counters()

    async def sync(
        self, *, bulk: bool, observer: StageClock | None = None, **options: Any
    ) -> RunSummary:
        """One run of the connection, as ``ml-connector sync run`` makes it.

        The retry policy is the default one (real backoff), the limiter pool private to the run.
        """
        async with open_engine(
            self.store,
            self.vault,
            self.registry,
            CONNECTION,
            options=SyncOptions(bulk=bulk, retry=options.pop("retry", RetryPolicy()), **options),
            observer=observer,
            limiters=LimiterPool(),
        ) as engine:
            return await engine.run()

    def close(self) -> None:
        """Release the state database."""
        self.store.dispose()


def _code_digest() -> str:
    """A digest of the engine, store and fake sources measured (others edit them as we go)."""
    digest = hashlib.sha256()
    for package in (engine_package, store_package, testing_package):
        for path in sorted(Path(next(iter(package.__path__))).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> dict[str, Any]:
    """Where the figures were taken, and on which version of the code."""
    return {
        "code": _code_digest(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        # The event loop run_async chose (ML_CONNECTOR_LOOP=asyncio measures asyncio's own).
        "loop": "asyncio" if event_loop_factory() is None else "uvloop",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # Other work on the machine (test suites, builds) shows up here and slows wall times.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def emit(result: dict[str, Any]) -> None:
    """Print the result as the script's one line of JSON on stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()


def progress(message: str) -> None:
    """A progress note on stderr (stdout carries only the JSON line)."""
    print(message, file=sys.stderr, flush=True)
