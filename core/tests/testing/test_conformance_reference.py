"""The conformance suite run against the reference ERP: the suite itself is exercised here."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.testing import (
    FakeErp,
    FaultKind,
    ReferenceErpCredentials,
    ReferenceErpSettings,
    SeedSpec,
    generate_data,
    reference_erp,
    reset_fakes,
    seed_erp,
)
from ml_connector.testing.conformance import SourceHarness, SourcePluginSuite

INSTANCE = "conformance"


class ReferenceErpHarness(SourceHarness):
    plugin = reference_erp.PLUGIN
    info = reference_erp.PLUGIN_INFO
    page_size = 7

    def __init__(self) -> None:
        reset_fakes()
        self.erp = FakeErp.in_memory(INSTANCE)
        self._seeds = 0

    def context(self) -> ConnectionContext:
        return ConnectionContext(
            connection="conformance",
            system="reference_erp",
            role=Role.SOURCE,
            settings=ReferenceErpSettings(instance=INSTANCE, page_size=self.page_size),
            credentials=ReferenceErpCredentials(username="ap", password=SecretStr("pw")),
        )

    def seed(self, count: int) -> set[str]:
        self._seeds += 1
        data = generate_data(SeedSpec(seed=self._seeds, payables=count * 2, held_share=0.2))
        seed_erp(self.erp, data)
        return set(data.ready_ids)

    def touch(self, source_id: str) -> None:
        record = self.erp.payables[source_id]
        self.erp.update_payable(source_id, description=f"{record.description} (touched)")

    def payments_posted(self, source_id: str) -> int:
        return len(self.erp.payments_for(source_id))

    def expire_sessions(self) -> None:
        self.erp.expire_sessions()

    def fail_next(self, kind: str) -> bool:
        hook = "list_changed_payables"
        if kind == "unauthorized":
            self.erp.users["ap"] = "a-new-password"
            self.erp.expire_sessions()
        elif kind == "throttled":
            self.erp.faults.fail(hook, FaultKind.THROTTLED, retry_after=1.0)
        elif kind == "server_error":
            self.erp.faults.fail(hook, FaultKind.TRANSIENT)
        else:
            return False  # no HTTP: nothing can arrive malformed
        return True

    def now(self) -> datetime:
        return self.erp.clock()


class TestReferenceErpConformance(SourcePluginSuite):
    @pytest.fixture
    def harness(self) -> SourceHarness:
        harness = ReferenceErpHarness()
        yield harness
        reset_fakes()
