"""Latency, scripted failures, the concurrency cap and session expiry, seen through the plugins."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from core.tests.testing.helpers import ORG, Side, draft, erp_ctx, erp_payable, sink_ctx, vendor

from ml_connector.errors import (
    AuthenticationError,
    SessionExpiredError,
    ThrottledError,
    TransientError,
)
from ml_connector.testing import (
    FakeErp,
    FakeSink,
    FaultKind,
    Faults,
    ReferenceErpPlugin,
    ReferenceSinkPlugin,
    reset_fakes,
)


async def test_the_fourth_call_in_flight_is_throttled_like_bill(sink: FakeSink, bill: Side) -> None:
    sink.faults.set_latency(0.05)

    results = await asyncio.gather(
        *(bill("get_payment", sink_id=f"stp{i}") for i in range(4)), return_exceptions=True
    )

    assert results[:3] == [None, None, None]
    assert isinstance(results[3], ThrottledError)
    assert results[3].code == "BDC_1322"
    assert sink.faults.peak_in_flight == 4  # the caller exceeded BILL's cap of 3
    assert sink.faults.cap_refusals == 1
    assert sink.faults.in_flight == 0

    sink.faults.reset_counters()
    await asyncio.gather(*(bill("get_payment", sink_id=f"stp{i}") for i in range(3)))
    assert sink.faults.peak_in_flight == 3
    assert sink.faults.cap_refusals == 0


async def test_latency_keeps_a_call_in_flight(erp: FakeErp, source: Side) -> None:
    erp.faults.set_latency(0.05, hook="check_connection")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await source("check_connection")
    assert loop.time() - started >= 0.05
    assert erp.faults.delay("get_payable") == 0


async def test_failure_on_the_nth_call(sink: FakeSink, bill: Side) -> None:
    sink.faults.fail("find_bill", FaultKind.THROTTLED, on_call=2, retry_after=1.5)

    async def find() -> None:
        await bill("find_bill", vendor_sink_id="009x", invoice_number="1")

    await find()
    with pytest.raises(ThrottledError) as caught:
        await find()
    assert caught.value.retry_after == 1.5
    await find()
    assert sink.faults.calls["find_bill"] == 3
    assert sink.faults.applied["find_bill"] == 2
    assert sink.faults.pending() == 0


async def test_failure_for_the_next_k_calls(erp: FakeErp, source: Side) -> None:
    erp.faults.fail("get_payable", "transient", times=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            await source("get_payable", source_id="AP-0001")
    assert await source("get_payable", source_id="AP-0001") is None


async def test_scripted_authentication_failure(erp: FakeErp) -> None:
    erp.faults.fail("authenticate", FaultKind.AUTHENTICATION)
    side = Side(ReferenceErpPlugin(), erp_ctx())
    with pytest.raises(AuthenticationError) as caught:
        await side("authenticate")
    assert not isinstance(caught.value, SessionExpiredError)
    await side("authenticate")  # only the first login was scripted to fail


async def test_apply_then_fail_keeps_the_write(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    sink.faults.apply_then_fail("create_bill")

    with pytest.raises(TransientError, match="response was lost"):
        await bill("create_bill", draft=draft(sink, v.id))

    found = await bill("find_bill", vendor_sink_id=v.id, invoice_number="INV-1")
    assert found is not None
    assert sink.faults.applied["create_bill"] == 1


async def test_apply_then_fail_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "sink.sqlite"
    sink = FakeSink.open(path, ORG)
    sink.add_account("Office Supplies", "6000")
    v = sink.add_vendor(vendor(1))
    sink.faults.apply_then_fail("create_bills")
    side = Side(ReferenceSinkPlugin(), sink_ctx(state_path=str(path)))
    await side("authenticate")

    with pytest.raises(TransientError):
        await side("create_bills", drafts=[draft(sink, v.id, 1), draft(sink, v.id, 2)])

    reset_fakes()  # forget the in-memory view: read the file again
    reopened = FakeSink.open(path)
    assert sorted(b.invoice_number for b in reopened.bills.values()) == ["INV-1", "INV-2"]


async def test_an_expired_session_is_renewed_once_and_the_call_replayed(
    erp: FakeErp, source: Side
) -> None:
    erp.put_payables([erp_payable(1)])
    erp.expire_sessions()

    payable = await source("get_payable", source_id="AP-0001")

    assert payable.source_id == "AP-0001"
    assert erp.faults.calls["authenticate"] == 1  # one new login
    assert erp.faults.calls["get_payable"] == 2  # the refused call and its replay


async def test_a_session_expiring_again_after_renewal_is_not_retried_forever(
    erp: FakeErp, source: Side
) -> None:
    erp.faults.fail("get_payable", FaultKind.SESSION_EXPIRED, times=5)
    with pytest.raises(SessionExpiredError):
        await source("get_payable", source_id="AP-0001")
    assert erp.faults.calls["authenticate"] == 1
    assert erp.faults.calls["get_payable"] == 2


async def test_concurrent_calls_share_one_renewal(sink: FakeSink, bill: Side) -> None:
    sink.faults.set_latency(0.01)
    sink.expire_sessions()
    await asyncio.gather(*(bill("get_payment", sink_id=f"stp{i}") for i in range(2)))
    assert sink.faults.calls["authenticate"] == 1


async def test_random_failures_are_reproducible(erp: FakeErp, source: Side) -> None:
    async def outcomes() -> list[str]:
        seen = []
        for _ in range(40):
            try:
                await source("get_payable", source_id="AP-0001")
                seen.append("ok")
            except (ThrottledError, TransientError) as exc:
                seen.append(type(exc).__name__)
        return seen

    erp.faults.random_failures(0.3, seed=7)
    first = await outcomes()
    erp.faults.random_failures(0.3, seed=7)
    second = await outcomes()

    assert first == second
    assert {"ok", "ThrottledError", "TransientError"} == set(first)
    erp.faults.random_failures(0)
    assert await outcomes() == ["ok"] * 40


async def test_write_calls_count_only_writes(sink: FakeSink, bill: Side) -> None:
    v = sink.add_vendor(vendor(1))
    await bill("find_vendor", vendor=vendor(1))
    await bill("list_accounts")
    assert sink.write_calls() == 0
    await bill("create_bill", draft=draft(sink, v.id))
    assert sink.write_calls() == 1


def test_rules_are_validated() -> None:
    faults = Faults("x")
    with pytest.raises(ValueError, match="at least 1"):
        faults.fail("h", FaultKind.TRANSIENT, on_call=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        faults.random_failures(1.5)
    with pytest.raises(ValueError, match="negative"):
        faults.set_latency(-1)


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path[:0] = {paths!r}
    from core.tests.testing.helpers import Side, draft, sink_ctx, vendor
    from ml_connector.testing import FakeSink, ReferenceSinkPlugin

    async def main():
        sink = FakeSink.open({path!r})
        v = next(iter(sink.vendors))
        sink.faults.apply_then_die("create_bill", on_call=2)
        side = Side(ReferenceSinkPlugin(), sink_ctx(state_path={path!r}))
        await side("authenticate")
        for n in range(1, 4):
            await side("create_bill", draft=draft(sink, v, n))
            print("created", n, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_apply_then_die_persists_the_write_and_kills_the_process(tmp_path: Path) -> None:
    path = tmp_path / "sink.sqlite"
    sink = FakeSink.open(path, ORG)
    sink.add_account("Office Supplies", "6000")
    sink.add_vendor(vendor(1))
    sink.close()
    root = Path(__file__).resolve().parents[3]
    script = _CHILD.format(paths=[str(root)], path=str(path))

    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split("\n")[:1] == ["created 1"]
    reopened = FakeSink.open(path)
    assert sorted(b.invoice_number for b in reopened.bills.values()) == ["INV-1", "INV-2"]
    assert reopened.duplicate_bills() == {}
