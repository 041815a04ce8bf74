"""The conformance suites run against the reference plugins: the suites themselves are tested."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.testing import (
    FakeErp,
    FakeSink,
    FaultKind,
    ReferenceErpCredentials,
    ReferenceErpSettings,
    ReferenceSinkCredentials,
    ReferenceSinkSettings,
    SeedSpec,
    generate_data,
    reference_erp,
    reference_sink,
    reset_fakes,
    seed_erp,
)
from ml_connector.testing._webhooks import payment_json
from ml_connector.testing.conformance import (
    SinkHarness,
    SinkPluginSuite,
    SourceHarness,
    SourcePluginSuite,
)

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
            credentials=ReferenceErpCredentials(
                username="ap", password=SecretStr("conformance-password")
            ),
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


ORG = "00801CONFORMANCE"


class ReferenceSinkHarness(SinkHarness):
    plugin = reference_sink.PLUGIN
    info = reference_sink.PLUGIN_INFO

    def __init__(self) -> None:
        reset_fakes()
        self.sink = FakeSink.in_memory(ORG)
        self._account = self.sink.add_account("Office Supplies", "6100").id

    def context(self) -> ConnectionContext:
        return ConnectionContext(
            connection="conformance",
            system="reference_sink",
            role=Role.SINK,
            settings=ReferenceSinkSettings(organization_id=ORG),
            credentials=ReferenceSinkCredentials(
                username="ap@conformance",
                password=SecretStr("conformance-password"),
                dev_key=SecretStr("conformance-dev-key"),
            ),
        )

    def account_id(self) -> str:
        return self._account

    def pay(self, bill_sink_id: str) -> str:
        return self.sink.pay_bill(bill_sink_id).id

    def bill_count(self, vendor_sink_id: str, invoice_number: str) -> int:
        return len(self.sink.bills_for(vendor_sink_id, invoice_number))

    def expire_sessions(self) -> None:
        self.sink.expire_sessions()

    def fail_next(self, kind: str) -> bool:
        hook = "list_changed_payments"
        if kind == "unauthorized":
            self.sink.users["ap@conformance"] = "a-new-password"
            self.sink.expire_sessions()
        elif kind == "throttled":
            self.sink.faults.fail(hook, FaultKind.THROTTLED, retry_after=1.0)
        elif kind == "server_error":
            self.sink.faults.fail(hook, FaultKind.TRANSIENT)
        else:
            return False
        return True

    def webhook_delivery(
        self, subscription_id: str, payment_id: str
    ) -> tuple[dict[str, str], bytes]:
        payment = self.sink.payments[payment_id]
        delivery = self.sink.webhook_delivery(
            subscription_id, "payment.updated", payment_json(payment, self.sink.vendors)
        )
        return dict(delivery.headers), delivery.body

    def now(self) -> datetime:
        return self.sink.clock()


class TestReferenceSinkConformance(SinkPluginSuite):
    @pytest.fixture
    def harness(self) -> SinkHarness:
        harness = ReferenceSinkHarness()
        yield harness
        reset_fakes()
