"""Recording BILL payments: a check applied to the bill, released, never twice."""

from __future__ import annotations

import types
from decimal import Decimal

import pluggy
import pytest
from plugins.acumatica.tests.support import context, emulator

from ml_connector import hookspecs
from ml_connector.emulation import FaultAction
from ml_connector.errors import TransientError, UpstreamError
from ml_connector.models import PaymentPosting
from ml_connector.testing import ManualClock
from ml_connector_acumatica import PLUGIN_INFO, plugin
from ml_connector_acumatica.emulator import AcumaticaEmulator


async def posting_for(
    emu: AcumaticaEmulator, ctx, payment_id: str, amount: Decimal | None = None
) -> PaymentPosting:
    ref = emu.add_bill(
        "HILLTOPLAW",
        [("64000", "ADM-000", Decimal("900.00"), "Contract review"),
         ("64000", "ADM-000", Decimal("350.00"), "Filing")],
    )  # fmt: skip
    payable = await plugin.get_payable(ctx, ref)
    assert payable is not None
    return PaymentPosting(
        payment_sink_id=payment_id,
        payable=payable,
        amount=payable.total if amount is None else amount,
        paid_on=emu.now().date(),
        reference="ACH 000123",
    )


@pytest.mark.parametrize("polls", [0, 1])
async def test_payment_becomes_a_released_check_applied_to_the_bill(
    clock: ManualClock, polls: int
) -> None:
    emu = emulator(clock, action_polls=polls)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01PAYONE")
    recorded = await plugin.record_payment(ctx, posting)
    assert recorded.already_recorded is False
    [check] = emu.checks_for(posting.payable.source_id)
    assert check["ReferenceNbr"] == recorded.source_id
    assert (check["Type"], check["Status"], check["PaymentRef"]) == (
        "Payment",
        "Closed",
        "stp01PAYONE",
    )
    assert check["PaymentAmount"] == Decimal("1250.00")
    assert "ACH 000123" in check["Description"]
    assert (check["PaymentMethod"], check["CashAccount"]) == ("CHECK", "10200")  # vendor's
    bill = emu.bill(posting.payable.source_id)
    assert (bill["Status"], bill["Balance"]) == ("Closed", Decimal("0.00"))
    assert bill["Applications"][-1]["ReferenceNbr"] == recorded.source_id


async def test_the_same_payment_twice_is_one_check(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01TWICE")
    first = await plugin.record_payment(ctx, posting)
    second = await plugin.record_payment(ctx, posting)
    assert (first.already_recorded, second.already_recorded) == (False, True)
    assert second.source_id == first.source_id
    assert len(emu.checks_for(posting.payable.source_id)) == 1


async def test_partial_payments_add_up_and_close_the_bill(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    first = await posting_for(emu, ctx, "stp01PART1", Decimal("1000.00"))
    await plugin.record_payment(ctx, first)
    bill = emu.bill(first.payable.source_id)
    assert (bill["Status"], bill["Balance"]) == ("Open", Decimal("250.00"))
    rest = first.model_copy(update={"payment_sink_id": "stp01PART2", "amount": Decimal("250.00")})
    await plugin.record_payment(ctx, rest)
    assert (bill["Status"], bill["Balance"]) == ("Closed", Decimal("0.00"))
    assert len(emu.checks_for(first.payable.source_id)) == 2


async def test_one_bill_payment_for_two_bills_is_found_per_bill(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    one = await posting_for(emu, ctx, "stp01SHARED")
    two = await posting_for(emu, ctx, "stp01SHARED")
    a = await plugin.record_payment(ctx, one)
    b = await plugin.record_payment(ctx, two)
    assert a.source_id != b.source_id
    assert (await plugin.record_payment(ctx, two)).source_id == b.source_id


async def test_lost_answer_to_the_create_is_finished_on_retry(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01LOSTPUT")
    emu.faults.add(FaultAction(500, after_apply=True), method="PUT", path_contains="/Check")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    [check] = emu.checks_for(posting.payable.source_id)
    assert check["Status"] == "Balanced", "created, never released"
    again = await plugin.record_payment(ctx, posting)
    assert again.source_id == check["ReferenceNbr"]
    assert check["Status"] == "Closed"
    assert len(emu.checks_for(posting.payable.source_id)) == 1


async def test_lost_answer_to_the_release_is_recorded_on_retry(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01LOSTREL")
    emu.faults.add(FaultAction(503, after_apply=True), method="POST", path_contains="ReleaseCheck")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, posting)
    # The release runs on in Acumatica and holds the session for a moment: the next call may
    # find it busy (transient, the engine retries), then finds the released check.
    with pytest.raises(TransientError, match="not been completed"):
        await plugin.record_payment(ctx, posting)
    again = await plugin.record_payment(ctx, posting)
    assert again.already_recorded is True
    assert [c["Status"] for c in emu.checks_for(posting.payable.source_id)] == ["Closed"]


async def test_a_check_left_on_hold_is_taken_off_hold_and_released(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01HELD")
    client = ctx.state["acumatica.client"]
    await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "HILLTOPLAW", "PaymentRef": "stp01HELD",
         "PaymentAmount": posting.amount, "Hold": True,
         "Details": [{"DocType": "Bill", "ReferenceNbr": posting.payable.source_id,
                      "AmountPaid": posting.amount}]},
    )  # fmt: skip
    recorded = await plugin.record_payment(ctx, posting)
    assert recorded.already_recorded is False
    assert [c["Status"] for c in emu.checks_for(posting.payable.source_id)] == ["Closed"]


async def test_payment_settings_override_the_vendor_defaults(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, payment_method="BILLCOM", cash_account="10250")
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01SETTINGS")
    await plugin.record_payment(ctx, posting)
    [check] = emu.checks_for(posting.payable.source_id)
    assert (check["PaymentMethod"], check["CashAccount"]) == ("BILLCOM", "10250")


# --- find_payment (contract 1.2): the look the core makes before every posting ------------------


async def test_find_payment_finds_what_record_payment_posted_and_nothing_before(
    clock: ManualClock,
) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01FIND")
    emu.log.clear()
    assert await plugin.find_payment(ctx, posting) is None
    assert {r.method for r in emu.log.records} == {"GET"}, "a look writes nothing"
    recorded = await plugin.record_payment(ctx, posting)
    found = await plugin.find_payment(ctx, posting)
    assert found is not None
    assert (found.source_id, found.already_recorded) == (recorded.source_id, True)


async def test_a_released_check_is_found_by_its_application_history(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01HISTORY")
    recorded = await plugin.record_payment(ctx, posting)
    [check] = emu.checks_for(posting.payable.source_id)
    # Releasing moved the application from "Documents to Apply" to "Application History", as
    # Acumatica does: a look at Details alone would miss the check and pay the bill again.
    assert check["Details"] == []
    assert [h["ReferenceNbr"] for h in check["History"]] == [posting.payable.source_id]
    found = await plugin.find_payment(ctx, posting)
    assert found is not None
    assert found.source_id == recorded.source_id


@pytest.mark.parametrize("hold", [True, False])
async def test_an_unreleased_check_counts_as_found_and_is_left_as_it_is(
    clock: ManualClock, hold: bool
) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01UNRELEASED")
    client = ctx.state["acumatica.client"]
    await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "HILLTOPLAW", "PaymentRef": "stp01UNRELEASED",
         "PaymentAmount": posting.amount, "Hold": hold,
         "Details": [{"DocType": "Bill", "ReferenceNbr": posting.payable.source_id,
                      "AmountPaid": posting.amount}]},
    )  # fmt: skip
    [check] = emu.checks_for(posting.payable.source_id)
    status = check["Status"]
    assert status == ("On Hold" if hold else "Balanced")
    emu.log.clear()
    found = await plugin.find_payment(ctx, posting)
    # Posting again would pay the bill twice once both checks are released.
    assert found is not None
    assert (found.source_id, found.already_recorded) == (check["ReferenceNbr"], True)
    assert {r.method for r in emu.log.records} == {"GET"}
    assert check["Status"] == status, "a look releases nothing"


async def test_the_same_bill_payment_on_another_bill_is_not_this_posting(
    clock: ManualClock,
) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    paid = await posting_for(emu, ctx, "stp01OTHERBILL")
    other = await posting_for(emu, ctx, "stp01OTHERBILL")  # same vendor, same BILL payment
    await plugin.record_payment(ctx, paid)
    assert await plugin.find_payment(ctx, other) is None
    assert emu.checks_for(other.payable.source_id) == []


async def test_one_check_applied_to_several_bills_is_found_for_each_of_them(
    clock: ManualClock,
) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    one = await posting_for(emu, ctx, "stp01SEVERAL")
    two = await posting_for(emu, ctx, "stp01SEVERAL")
    three = await posting_for(emu, ctx, "stp01SEVERAL")
    client = ctx.state["acumatica.client"]
    # A clerk's check paying two bills at once, with the BILL payment id as its reference.
    created = await client.put(
        "Check",
        {"Type": "Payment", "Vendor": "HILLTOPLAW", "PaymentRef": "stp01SEVERAL",
         "PaymentAmount": one.amount + two.amount, "Hold": False,
         "Details": [{"DocType": "Bill", "ReferenceNbr": p.payable.source_id,
                      "AmountPaid": p.amount} for p in (one, two)]},
    )  # fmt: skip
    number = created["ReferenceNbr"]["value"]
    await client.invoke("Check", "ReleaseCheck", {"Type": "Payment", "ReferenceNbr": number})
    for posting in (one, two):
        found = await plugin.find_payment(ctx, posting)
        assert found is not None
        assert found.source_id == number
    assert await plugin.find_payment(ctx, three) is None


async def test_the_lookup_pages_through_every_check_carrying_the_payment(
    clock: ManualClock,
) -> None:
    emu = emulator(clock)
    ctx = context(emu, page_size=2)
    await plugin.authenticate(ctx)
    postings = [await posting_for(emu, ctx, "stp01PAGED") for _ in range(5)]
    for posting in postings:
        await plugin.record_payment(ctx, posting)
    emu.log.clear()
    found = await plugin.find_payment(ctx, postings[-1])
    assert found is not None
    [check] = emu.checks_for(postings[-1].payable.source_id)
    assert found.source_id == check["ReferenceNbr"]
    assert len([r for r in emu.log.records if r.path.endswith("/Check")]) == 3  # 2 + 2 + 1


async def test_the_emulator_posts_a_second_check_when_nothing_looks_first(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acumatica does not refuse a second check with the same PaymentRef; neither does the
    emulator, so only the connector's look keeps a BILL payment from being posted twice."""
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    posting = await posting_for(emu, ctx, "stp01NOLOOK", Decimal("500.00"))
    key = (emu.books.get("Vendor", "HILLTOPLAW")["VendorName"], _vendor_ref(emu, posting))

    async def nothing(*_: object) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(plugin, "_find_check", nothing)
        first = await plugin.record_payment(ctx, posting)
        second = await plugin.record_payment(ctx, posting)
    assert first.source_id != second.source_id
    assert emu.payments_carrying("stp01NOLOOK") == {key: 2}
    bill = emu.bill(posting.payable.source_id)
    assert bill["Balance"] == Decimal("250.00"), "paid twice"
    # With the look, a third posting finds one of them and posts nothing.
    again = await plugin.record_payment(ctx, posting)
    assert again.already_recorded is True
    assert emu.payments_carrying("stp01NOLOOK") == {key: 2}


def _vendor_ref(emu: AcumaticaEmulator, posting: PaymentPosting) -> str:
    return str(emu.bill(posting.payable.source_id)["VendorRef"])


@pytest.mark.parametrize(
    "expression",
    [
        "Details/ReferenceNbr eq '000001'",  # a detail entity: Acumatica cannot filter on it
        "History/ReferenceNbr eq '000001'",
        "ExternalRef eq 'stp01'",  # not a field of Check
    ],
)
async def test_the_emulator_refuses_filters_acumatica_cannot_serve(
    clock: ManualClock, expression: str
) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    client = ctx.state["acumatica.client"]
    with pytest.raises(UpstreamError) as caught:
        await client.list_page("Check", filter=expression, top=10)
    assert caught.value.status == 400
    assert await client.list_page("Check", filter="PaymentRef eq 'none'", top=10) == []


def test_the_plugin_still_loads_under_a_core_without_find_payment() -> None:
    """PLUGIN_INFO admits contract 1.0 and 1.1 cores; their specs have no find_payment."""
    older = types.ModuleType("contract_1_1")
    for name in dir(hookspecs):
        if name != "find_payment" and hasattr(getattr(hookspecs, name), "ml_connector_spec"):
            setattr(older, name, getattr(hookspecs, name))
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(older)
    pm.register(plugin)
    pm.check_pending()  # no "unknown hook 'find_payment'"
    assert PLUGIN_INFO["contract"] == ">=1.0,<2"
