"""The conformance suites run against the reference plugins: the suites themselves are tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr

from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.models import Account, Vendor
from ml_connector.testing import (
    ErpLine,
    ErpPayable,
    ErpStatus,
    FakeErp,
    FakeSink,
    FaultKind,
    ManualClock,
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
    NotReadyKind,
    SinkHarness,
    SinkPluginSuite,
    SourceHarness,
    SourcePluginSuite,
)

INSTANCE = "conformance"
# After every seeded change time (SeedSpec spreads them over January 2025); a millisecond per
# reading, so consecutive changes get distinct times and nothing depends on the wall clock.
START = datetime(2025, 3, 1, 12, tzinfo=UTC)

NOT_READY_STATUS: dict[NotReadyKind, ErpStatus] = {
    "on_hold": ErpStatus.ON_HOLD,
    "unapproved": ErpStatus.DRAFT,
    "purchase_order": ErpStatus.PURCHASE_ORDER,
}


class ReferenceErpHarness(SourceHarness):
    """Drives the reference ERP plugin over an in-memory FakeErp (also the broken plugins')."""

    plugin: object = reference_erp.PLUGIN
    info = reference_erp.PLUGIN_INFO
    page_size = 7

    def __init__(self) -> None:
        reset_fakes()
        self.erp = FakeErp.in_memory(INSTANCE)
        self.erp.clock = ManualClock(START, tick=timedelta(milliseconds=1))
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

    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        """One well-formed document per status that must not move, changed now.

        Well-formed on purpose: a plugin that ignores the status reads it as a good payable and
        returns it among the items, where the suite sees it.
        """
        vendor = Vendor(source_id="V-NOT-READY", name="Not Ready Supplies LLC")
        self.erp.add_vendors([vendor])
        self.erp.add_accounts([Account(id="6000", number="6000", name="Office Supplies")])
        now = self.erp.clock()
        ids: dict[NotReadyKind, str] = {}
        records = []
        for kind, status in NOT_READY_STATUS.items():
            source_id = f"NR-{kind.upper()}"
            amount = Decimal("240.50")
            records.append(
                ErpPayable(
                    source_id=source_id,
                    document_number=source_id,
                    invoice_number=f"INV-{source_id}",
                    vendor_id=vendor.source_id,
                    invoice_date=now.date(),
                    due_date=(now + timedelta(days=30)).date(),
                    total=amount,
                    lines=[ErpLine(line_id="1", amount=amount, account_id="6000")],
                    modified_at=now,
                    status=status,
                    description=f"{status.value}: must not move",
                )
            )
            ids[kind] = source_id
        self.erp.put_payables(records)
        return ids

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
