"""A connection between the reference ERP and the reference sink, as the engine sees it.

Used in-process by the engine tests and, through ``crash_child.py``, by a child process that a test
kills with SIGKILL. Both build the same world from a folder: the state database, and (for crash
tests) the fakes' SQLite files.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_connector.connections import SideInput, create_connection
from ml_connector.description import PluginInfo
from ml_connector.engine import (
    LimiterPool,
    RetryPolicy,
    RunSummary,
    SyncEngine,
    SyncOptions,
    open_engine,
)
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

ERP_INSTANCE = "acme"
ORG = "00801ACME"
NAME = "acme"


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


#: Retries without waiting: tests must not depend on the wall clock.
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


def registry() -> Registry:
    """Only the two reference plugins, registered the way the demo does."""
    found = Registry(path=[])
    found.add(reference_erp.PLUGIN, PluginInfo.model_validate(reference_erp.PLUGIN_INFO))
    found.add(reference_sink.PLUGIN, PluginInfo.model_validate(reference_sink.PLUGIN_INFO))
    return found


@dataclass
class World:
    """The fakes, the store and the connection of one test."""

    folder: Path
    erp: FakeErp
    sink: FakeSink
    store: Store
    registry: Registry
    persistent: bool

    @classmethod
    def create(
        cls,
        folder: Path,
        spec: SeedSpec,
        *,
        persistent: bool = False,
        page_size: int = 25,
        sink_clock: Any = None,
    ) -> tuple[World, SeedData]:
        """Seed new fakes and add the connection (``sink_clock`` replaces the sink's clock)."""
        folder.mkdir(parents=True, exist_ok=True)
        if persistent:
            erp = FakeErp.open(folder / "erp.sqlite", ERP_INSTANCE)
            sink = FakeSink.open(folder / "sink.sqlite", ORG)
        else:
            erp, sink = FakeErp.in_memory(ERP_INSTANCE), FakeSink.in_memory(ORG)
        if sink_clock is not None:
            sink.clock = sink_clock
        data = seed_pair(erp, sink, spec)
        world = cls(folder, erp, sink, open_store(str(folder / "state.db")), registry(), persistent)
        erp_path = str(folder / "erp.sqlite") if persistent else None
        sink_path = str(folder / "sink.sqlite") if persistent else None
        create_connection(
            world.store,
            Vault.from_environment(),
            world.registry,
            NAME,
            SideInput(
                "reference_erp",
                {"instance": ERP_INSTANCE, "state_path": erp_path, "page_size": page_size},
                {"username": "ap-bot", "password": "erp-pw"},
            ),
            SideInput(
                "reference_sink",
                {"organization_id": ORG, "state_path": sink_path},
                {"username": "ap@acme.example", "password": "bill-pw", "dev_key": "dev"},
            ),
        )
        return world, data

    @classmethod
    def reopen(cls, folder: Path) -> World:
        """The world a crashed process left behind (persistent fakes only)."""
        erp = FakeErp.open(folder / "erp.sqlite")
        sink = FakeSink.open(folder / "sink.sqlite")
        return cls(folder, erp, sink, open_store(str(folder / "state.db")), registry(), True)

    def close(self) -> None:
        """Release the files (a crash test's child opens them next)."""
        self.store.dispose()
        if self.persistent:
            self.erp.close()
            self.sink.close()

    def engine(
        self, limiters: LimiterPool | None = None, **options: Any
    ) -> AbstractAsyncContextManager[SyncEngine]:
        """The connection's engine, with fast retries and (by default) a private limiter pool."""
        options.setdefault("retry", FAST_RETRY)
        return open_engine(
            self.store,
            Vault.from_environment(),
            self.registry,
            NAME,
            options=SyncOptions(**options),
            limiters=limiters or LimiterPool(),
        )

    async def sync(self, limiters: LimiterPool | None = None, **options: Any) -> RunSummary:
        """One run of the connection."""
        async with self.engine(limiters, **options) as engine:
            return await engine.run()

    # --- What the sink holds -----------------------------------------------------------------

    def bills_by_payable(self) -> dict[str, int]:
        """How many sink bills each ERP payable became."""
        counts: dict[str, int] = {}
        for bill in self.sink.bills.values():
            counts[bill.source_id] = counts.get(bill.source_id, 0) + 1
        return counts

    def assert_exactly_once(self, data: SeedData, expected: set[str] | None = None) -> None:
        """Every ready payable is one bill; nothing else is; no vendor or bill is doubled."""
        expected = set(data.ready_ids) if expected is None else expected
        assert self.sink.duplicate_bills() == {}
        assert self.sink.duplicate_vendors() == {}
        by_payable = self.bills_by_payable()
        assert set(by_payable) == expected, (
            f"missing {sorted(expected - set(by_payable))[:5]}, "
            f"unexpected {sorted(set(by_payable) - expected)[:5]}"
        )
        assert set(by_payable.values()) <= {1}
