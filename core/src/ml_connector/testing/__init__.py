"""Reference plugins and fake systems for engine tests, fault-injection tests and benchmarks.

Two small but faithful plugins, each served by a fake "remote system" that lives outside the
plugin and outside the connection context, as a real server does:

- :class:`ReferenceErpPlugin` (source, ``reference_erp``) over a :class:`FakeErp`;
- :class:`ReferenceSinkPlugin` (sink, ``reference_sink``, BILL at the domain level) over a
  :class:`FakeSink`.

A test creates the fake, seeds it, registers the plugin and connects with settings that name the
fake::

    erp = FakeErp.in_memory("acme")                       # or FakeErp.open("erp.sqlite", "acme")
    sink = FakeSink.in_memory("org-1")
    data = seed_pair(erp, sink, SeedSpec(payables=1_000))
    sink.faults.set_latency(0.02)                         # BILL-like latency, 3 calls in flight
    sink.faults.fail("create_bills", FaultKind.THROTTLED, on_call=2, retry_after=0.1)
    pm.register(ReferenceErpPlugin())                     # ReferenceErpSettings(instance="acme")

Call :func:`reset_fakes` between tests. Fakes are for one event loop of one process; a file-backed
fake is opened by one process at a time.
"""

from ml_connector.testing._erp import FakeErp
from ml_connector.testing._faults import FaultKind, Faults
from ml_connector.testing._loop import loop_turns
from ml_connector.testing._records import (
    ErpLine,
    ErpPayable,
    ErpPayment,
    ErpStatus,
    SinkBill,
    SinkBillLine,
    SinkPayment,
    SinkPaymentApplication,
    SinkSubscription,
    SinkVendor,
    WebhookDelivery,
)
from ml_connector.testing._sink import FakeSink
from ml_connector.testing._state import FakeSystem, ManualClock, reset_fakes
from ml_connector.testing._webhooks import SIGNATURE_HEADER, sign
from ml_connector.testing.reference_erp import (
    ReferenceErpCredentials,
    ReferenceErpPlugin,
    ReferenceErpSettings,
)
from ml_connector.testing.reference_sink import (
    ReferenceSinkCredentials,
    ReferenceSinkPlugin,
    ReferenceSinkSettings,
)
from ml_connector.testing.seed import (
    SeedData,
    SeedSpec,
    SinkChartEntry,
    generate_data,
    seed_erp,
    seed_pair,
    seed_sink,
)

__all__ = [
    "SIGNATURE_HEADER",
    "ErpLine",
    "ErpPayable",
    "ErpPayment",
    "ErpStatus",
    "FakeErp",
    "FakeSink",
    "FakeSystem",
    "FaultKind",
    "Faults",
    "ManualClock",
    "ReferenceErpCredentials",
    "ReferenceErpPlugin",
    "ReferenceErpSettings",
    "ReferenceSinkCredentials",
    "ReferenceSinkPlugin",
    "ReferenceSinkSettings",
    "SeedData",
    "SeedSpec",
    "SinkBill",
    "SinkBillLine",
    "SinkChartEntry",
    "SinkPayment",
    "SinkPaymentApplication",
    "SinkSubscription",
    "SinkVendor",
    "WebhookDelivery",
    "generate_data",
    "loop_turns",
    "reset_fakes",
    "seed_erp",
    "seed_pair",
    "seed_sink",
    "sign",
]
