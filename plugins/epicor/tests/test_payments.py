"""Recording BILL payments through Payment Entry: the method sequence, once per payment."""

from __future__ import annotations

import json
import types
from datetime import date
from decimal import Decimal

import httpx
import pluggy
import pytest
from plugins.epicor.tests.helpers import Chart, Recording, context, emulator, read_all, window

from ml_connector import hookspecs
from ml_connector.emulation import FaultAction
from ml_connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRecordError,
    TransientError,
    UpstreamError,
)
from ml_connector.models import Payable, PaymentPosting
from ml_connector_epicor import PLUGIN_INFO, plugin
from ml_connector_epicor.client import EpicorClient, payment_group_id
from ml_connector_epicor.emulator import EpicorEmulator

PAYMENT_CALLS = [
    "APChkGrps('EPIC06','{group}')",
    "GetNewAPChkGrp",
    "Update",
    "LockGroup",
    "CreateNewCheckHed",
    "OnChangeVendor",
    "OnChangeManualPrint",
    "OnChangeCheckDate",
    "GetNewAPTran",
    "OnChangeInvoiceNum",
    "OnChangeDocTranAmt",
    "Update",
    "GetNewParameters",
    "RunDirect",
]


async def _payables(emu: EpicorEmulator, *amounts: str) -> tuple[Chart, list[Payable]]:
    chart = Chart(emu)
    for amount in amounts:
        chart.invoice(amount)
    items, _ = await read_all(context(emu), window(emu))
    return chart, sorted(items, key=lambda p: p.total)


def _posting(payable: Payable, payment: str = "stp01ABCDEFGHIJ", amount: str | None = None
             ) -> PaymentPosting:  # fmt: skip
    return PaymentPosting(
        payment_sink_id=payment,
        payable=payable,
        amount=Decimal(amount) if amount else payable.total,
        paid_on=date(2025, 3, 5),
        reference=f"BILL {payment}",
    )


def _key(payable: Payable) -> tuple[int, str]:
    number, invoice = payable.source_id.split(":", 1)
    return int(number), invoice


async def test_a_payment_is_entered_through_the_documented_sequence_and_posted() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "250.00")
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.log.clear()
    result = await plugin.record_payment(ctx, _posting(payable))
    assert result.already_recorded is False
    calls = [r.path.rsplit("/", 1)[-1] for r in emu.log.records]
    assert calls[:2] == ["PaymentEntries", "Vendors"]  # looked up first
    group = payment_group_id("stp01ABCDEFGHIJ", *_key(payable))
    assert calls[2:] == [c.format(group=group) for c in PAYMENT_CALLS]
    # SNO's APPaymentPostSvc: GetNewParameters is a GET, RunDirect a POST of its tableset
    verbs = {r.path.rsplit("/", 1)[-1]: r.method for r in emu.log.records}
    assert (verbs["GetNewParameters"], verbs["RunDirect"]) == ("GET", "POST")
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["HeadNum"] == int(result.source_id)
    assert check["XRefCheckNum"] == "stp01ABCDEFGHIJ"
    assert check["Posted"] is tran["Posted"] is True
    assert (tran["InvoiceNum"], tran["DocTranAmt"]) == (payable.invoice_number, payable.total)
    head = emu.books.invoices[_key(payable)].head
    assert (head["DocInvoiceBal"], head["OpenPayable"]) == (Decimal("0.00"), False)
    assert group not in emu.books.groups  # posting removed the group


async def test_the_same_bill_payment_twice_is_one_payment() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "80.00")
    ctx = context(emu)
    first = await plugin.record_payment(ctx, _posting(payable))
    second = await plugin.record_payment(ctx, _posting(payable))
    again = await plugin.record_payment(context(emu), _posting(payable))  # another run
    assert (first.already_recorded, second.already_recorded, again.already_recorded) == (
        False, True, True,
    )  # fmt: skip
    assert first.source_id == second.source_id == again.source_id
    assert len(emu.books.payments_against(_key(payable))) == 1
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("0.00")


async def test_run_direct_gets_the_process_row_with_the_group() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "250.00")
    recording = Recording(emu.transport())
    await plugin.record_payment(context(emu, transport=recording), _posting(payable))
    (run,) = [r for r in recording.v2() if r.url.path.endswith("/RunDirect")]
    ds = json.loads(run.content)["ds"]
    assert set(ds) == {"APPaymentPostProcess", "ExtensionTables"}
    (row,) = ds["APPaymentPostProcess"]
    assert row["GroupID"] == payment_group_id("stp01ABCDEFGHIJ", *_key(payable))
    assert row["RowMod"] == "A"  # a new process row stays new (the §5 convention)


async def _old_post_group(self: EpicorClient, group: str, record: tuple[str, str]) -> None:
    """What the client did before issue #17: POST GetNewParameters, an APPaymentPostParam row."""
    data = await self.call("Erp.PROC.APPaymentPostSvc", "GetNewParameters", {}, record)
    ds = data.get("returnObj") or {"APPaymentPostParam": [{"GroupID": "", "RowMod": "A"}]}
    ds["APPaymentPostParam"][-1].update({"GroupID": group, "RowMod": "U"})
    await self.call("Erp.PROC.APPaymentPostSvc", "RunDirect", {"ds": ds}, record)


async def _old_run_direct(self: EpicorClient, group: str, record: tuple[str, str]) -> None:
    """Half the old calls: the parameters read right, sent back under the old table name."""
    await self.get_method("Erp.PROC.APPaymentPostSvc", "GetNewParameters", record)
    ds = {"APPaymentPostParam": [{"GroupID": group, "RowMod": "U"}]}
    await self.call("Erp.PROC.APPaymentPostSvc", "RunDirect", {"ds": ds}, record)


@pytest.mark.parametrize(
    ("old", "refusal"),
    [(_old_post_group, UpstreamError), (_old_run_direct, InvalidRecordError)],
)
async def test_a_payment_the_old_posting_left_unposted_is_found_and_posted_once(
    monkeypatch: pytest.MonkeyPatch, old: object, refusal: type[Exception]
) -> None:
    """The old calls are refused (405 on a POST to GetNewParameters; 400 on a RunDirect without
    APPaymentPostProcess), after the payment was saved: the next attempt finds it, unfinished,
    and posts it instead of entering a second one."""
    emu = emulator()
    _, (payable,) = await _payables(emu, "95.00")
    with monkeypatch.context() as patch:
        patch.setattr(EpicorClient, "_post_group", old)
        with pytest.raises(refusal) as caught:
            await plugin.record_payment(context(emu), _posting(payable))
    if refusal is InvalidRecordError:
        assert caught.value.field == "APPaymentPostProcess.GroupID"  # type: ignore[attr-defined]
    else:
        assert caught.value.status == 405  # type: ignore[attr-defined]
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is False
    assert check["GroupID"] in emu.books.groups
    ctx = context(emu)  # the next run, with this client
    found = await plugin.find_payment(ctx, _posting(payable))
    assert found is not None
    assert (found.source_id, found.already_recorded, found.finished) == (
        str(check["HeadNum"]), True, False,
    )  # fmt: skip
    assert check["Posted"] is False, "a look posts nothing"
    done = await plugin.record_payment(ctx, _posting(payable))
    assert (done.source_id, done.already_recorded) == (str(check["HeadNum"]), True)
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is tran["Posted"] is True
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("0.00")
    after = await plugin.find_payment(ctx, _posting(payable))
    assert after is not None
    assert after.finished is True


async def test_a_response_lost_after_update_is_not_entered_twice() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "120.00")
    ctx = context(emu)
    emu.faults.add(FaultAction(500, after_apply=True), method="POST",
                   path_contains="PaymentEntrySvc/Update")  # fmt: skip
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, _posting(payable))
    ((check, _),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is False  # saved, not yet posted
    retried = await plugin.record_payment(ctx, _posting(payable))  # the engine's retry
    assert retried.already_recorded is True
    ((check, tran),) = emu.books.payments_against(_key(payable))
    assert check["Posted"] is tran["Posted"] is True
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("0.00")


async def test_an_attempt_that_died_before_the_check_reuses_its_group() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "60.00")
    ctx = context(emu)
    emu.faults.add(FaultAction(503), method="POST", path_contains="CreateNewCheckHed")
    with pytest.raises(TransientError):
        await plugin.record_payment(ctx, _posting(payable))
    assert len(emu.books.groups) == 1
    assert emu.books.checks == {}
    await plugin.record_payment(ctx, _posting(payable))
    assert len(emu.books.payments_against(_key(payable))) == 1
    assert emu.books.groups == {}


async def test_one_bill_payment_paying_two_invoices_is_recorded_against_each() -> None:
    emu = emulator()
    _, (small, large) = await _payables(emu, "10.00", "20.00")
    ctx = context(emu)
    one = await plugin.record_payment(ctx, _posting(small, "stp01SHARED"))
    two = await plugin.record_payment(ctx, _posting(large, "stp01SHARED"))
    assert one.source_id != two.source_id
    repeat = await plugin.record_payment(ctx, _posting(large, "stp01SHARED"))
    assert (repeat.source_id, repeat.already_recorded) == (two.source_id, True)
    assert len(emu.books.payments_against(_key(small))) == 1
    assert len(emu.books.payments_against(_key(large))) == 1


async def test_partial_payments_leave_the_rest_open_then_close_the_invoice() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "100.00")
    ctx = context(emu)
    await plugin.record_payment(ctx, _posting(payable, "stp01PART1", "40.00"))
    head = emu.books.invoices[_key(payable)].head
    assert (head["DocInvoiceBal"], head["OpenPayable"]) == (Decimal("60.00"), True)
    listed, _ = await read_all(ctx, window(emu))
    assert [p.source_id for p in listed] == [payable.source_id]
    assert listed[0] == payable.model_copy(update={"modified_at": listed[0].modified_at})
    await plugin.record_payment(ctx, _posting(payable, "stp01PART2", "60.00"))
    assert head["OpenPayable"] is False
    listed, _ = await read_all(ctx, window(emu))
    assert listed == []


async def test_unposted_payments_are_left_in_their_group_when_asked() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "70.00")
    ctx = context(emu, post_payments=False)
    first = await plugin.record_payment(ctx, _posting(payable))
    second = await plugin.record_payment(ctx, _posting(payable))
    ((check, _),) = emu.books.payments_against(_key(payable))
    assert (first.already_recorded, second.already_recorded) == (False, True)
    assert check["Posted"] is False
    assert check["GroupID"] in emu.books.groups


async def test_a_group_locked_by_someone_else_is_a_conflict() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    group = payment_group_id("stp01LOCKED", *_key(payable))
    emu.books.groups[group] = {"GroupID": group, "ActiveUserID": "jsmith", "BankAcctID": "BILLPAY",
                               "CheckDate": date(2025, 3, 5), "Company": "EPIC06"}  # fmt: skip
    with pytest.raises(ConflictError, match="locked by another user"):
        await plugin.record_payment(context(emu), _posting(payable, "stp01LOCKED"))
    assert emu.books.checks == {}


async def test_no_bank_account_configured_is_a_clear_error_before_any_write() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    ctx = context(emu, payment_bank_account=None)
    await plugin.authenticate(ctx)
    emu.log.clear()
    with pytest.raises(ConfigurationError, match="payment_bank_account"):
        await plugin.record_payment(ctx, _posting(payable))
    assert {r.method for r in emu.log.records} == {"GET"}


async def test_missing_rights_to_save_payments_are_reported() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "30.00")
    emu.deny(emu.USER, "Erp.BO.PaymentEntry.Update")
    with pytest.raises(AuthenticationError) as caught:
        await plugin.record_payment(context(emu), _posting(payable))
    assert caught.value.code == "access_denied"
    assert "Erp.BO.PaymentEntry.Update" in str(caught.value)
    assert emu.books.checks == {}


async def test_the_lookup_falls_back_to_getrows_when_odata_fails() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "45.00")
    ctx = context(emu)
    first = await plugin.record_payment(ctx, _posting(payable))
    emu.set_odata_500(1.0)
    second = await plugin.record_payment(context(emu), _posting(payable))
    assert (second.source_id, second.already_recorded) == (first.source_id, True)
    assert any(r.path.endswith("PaymentEntrySvc/GetRows") for r in emu.log.records)


# --- find_payment (contract 1.2): the look the core makes before every posting ------------------


def _v2_methods(emu: EpicorEmulator) -> set[str]:
    return {r.method for r in emu.log.records if "/api/v2/" in r.path}


async def test_find_payment_finds_what_record_payment_entered_and_nothing_before() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "90.00")
    ctx = context(emu)
    await plugin.authenticate(ctx)
    emu.log.clear()
    assert await plugin.find_payment(ctx, _posting(payable)) is None
    assert _v2_methods(emu) == {"GET"}, "a look writes nothing"
    recorded = await plugin.record_payment(ctx, _posting(payable))
    found = await plugin.find_payment(ctx, _posting(payable))
    assert found is not None
    assert (found.source_id, found.already_recorded) == (recorded.source_id, True)


async def test_an_unposted_payment_counts_as_found_and_is_left_unposted() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "75.00")
    ctx = context(emu, post_payments=False)
    recorded = await plugin.record_payment(ctx, _posting(payable))
    ((check, _),) = emu.books.payments_against(_key(payable))
    emu.log.clear()
    found = await plugin.find_payment(context(emu), _posting(payable))  # posting switched on
    # Entering another would pay the invoice twice once both groups are posted.
    assert found is not None
    assert (found.source_id, found.already_recorded) == (recorded.source_id, True)
    assert _v2_methods(emu) == {"GET"}
    assert check["Posted"] is False, "a look posts nothing"
    assert check["GroupID"] in emu.books.groups


async def test_the_same_bill_payment_on_another_invoice_is_not_this_posting() -> None:
    emu = emulator()
    _, (small, large) = await _payables(emu, "15.00", "25.00")
    ctx = context(emu)
    await plugin.record_payment(ctx, _posting(small, "stp01OTHERINV"))
    assert await plugin.find_payment(ctx, _posting(large, "stp01OTHERINV")) is None
    assert emu.books.payments_against(_key(large)) == []


async def test_one_payment_applied_to_several_invoices_is_found_for_each_of_them() -> None:
    emu = emulator()
    _, (one, two, three) = await _payables(emu, "11.00", "22.00", "33.00")
    head_num = _clerk_enters_one_payment(emu, "stp01SEVERAL", [one, two])
    ctx = context(emu)
    for payable in (one, two):
        found = await plugin.find_payment(ctx, _posting(payable, "stp01SEVERAL"))
        assert found is not None
        assert found.source_id == str(head_num)
    assert await plugin.find_payment(ctx, _posting(three, "stp01SEVERAL")) is None


def _clerk_enters_one_payment(emu: EpicorEmulator, reference: str, paid: list[Payable]) -> int:
    """One ``CheckHed`` with an ``APTran`` per invoice, entered and posted as a clerk would."""
    books, user, group = emu.books, emu.USER, "CLERK01"
    ds = books.new_group({}, user)
    ds["APChkGrp"][-1].update(GroupID=group, BankAcctID=emu.BANK)
    books.update_groups(ds)
    assert books.lock_group(group, user)
    ds = books.on_change_vendor("ACMEFAST", books.create_check(group, {}, user))
    head = ds["CheckHed"][-1]
    head["XRefCheckNum"] = reference
    for payable in paid:
        books.new_tran(ds, head["HeadNum"], payable.invoice_number)
        books.on_change_invoice(payable.invoice_number, ds)
    books.update_checks(ds)
    books.post_group(group)
    return int(head["HeadNum"])


async def test_the_lookup_pages_through_every_payment_carrying_the_reference() -> None:
    emu = emulator()
    _, payables = await _payables(emu, "1.00", "2.00", "3.00", "4.00", "5.00")
    ctx = context(emu, page_size=2)
    for payable in payables:
        await plugin.record_payment(ctx, _posting(payable, "stp01PAGED"))
    emu.log.clear()
    found = await plugin.find_payment(ctx, _posting(payables[-1], "stp01PAGED"))
    ((check, _),) = emu.books.payments_against(_key(payables[-1]))
    assert found is not None
    assert found.source_id == str(check["HeadNum"])
    reads = [r for r in emu.log.records if r.path.endswith("/PaymentEntries")]
    # 2 + 2 + 1 rows, then the empty page that ends a read (the row cap may be below $top)
    assert len(reads) == 4


async def test_the_lookup_falls_back_to_getrows_too() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "45.00")
    recorded = await plugin.record_payment(context(emu), _posting(payable))
    emu.set_odata_500(1.0)
    found = await plugin.find_payment(context(emu), _posting(payable))
    assert found is not None
    assert found.source_id == recorded.source_id
    assert any(r.path.endswith("PaymentEntrySvc/GetRows") for r in emu.log.records)


async def test_an_id_that_is_no_epicor_invoice_has_no_payment() -> None:
    emu = emulator()
    _, (payable,) = await _payables(emu, "45.00")
    foreign = payable.model_copy(update={"source_id": "AP-0001"})
    assert await plugin.find_payment(context(emu), _posting(foreign)) is None


async def test_the_emulator_enters_a_second_payment_when_nothing_looks_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kinetic does not refuse a second payment with the same XRefCheckNum; neither does the
    emulator, so only the connector's look keeps a BILL payment from being entered twice."""
    emu = emulator()
    _, (payable,) = await _payables(emu, "100.00")
    ctx = context(emu)
    key = (emu.books.vendors[_key(payable)[0]]["Name"], payable.invoice_number)

    async def nothing(*_: object) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(EpicorClient, "find_payment", nothing)
        first = await plugin.record_payment(ctx, _posting(payable, "stp01NOLOOK", "30.00"))
        second = await plugin.record_payment(ctx, _posting(payable, "stp01NOLOOK", "30.00"))
    assert first.source_id != second.source_id
    assert emu.payments_carrying("stp01NOLOOK") == {key: 2}
    assert emu.books.invoices[_key(payable)].head["DocInvoiceBal"] == Decimal("40.00")
    # With the look, a third posting finds one of them and enters nothing.
    again = await plugin.record_payment(ctx, _posting(payable, "stp01NOLOOK", "30.00"))
    assert again.already_recorded is True
    assert emu.payments_carrying("stp01NOLOOK") == {key: 2}


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": "ExternalRef eq 'stp01'"},  # not a CheckHed column
        {"$filter": "XRefCheckNum eq 'stp01'", "$select": "HeadNum,PaymentRef"},
        {"$expand": "APTranz"},  # not a navigation of PaymentEntries
    ],
)
async def test_the_emulator_refuses_what_kinetic_refuses_on_payment_entries(
    params: dict[str, str],
) -> None:
    emu = emulator()
    path = f"/{emu.INSTANCE}/api/v2/odata/{emu.COMPANY}/Erp.BO.PaymentEntrySvc/PaymentEntries"
    auth = httpx.BasicAuth(emu.USER, emu.PASSWORD)
    headers = {"x-api-key": emu.API_KEY}
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://epicor") as http:
        refused = await http.get(path, params=params, auth=auth, headers=headers)
        lookup = {"$filter": "XRefCheckNum eq 'stp01' and VendorNum eq 1",
                  "$select": "HeadNum,XRefCheckNum", "$expand": "APTrans"}  # fmt: skip
        served = await http.get(path, params=lookup, auth=auth, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["ErrorType"] == "Microsoft.OData.ODataException"
    assert served.status_code == 200
    assert served.json()["value"] == []


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
