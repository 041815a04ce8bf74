"""The typed facades: who answers a call, lazy sign-in, capabilities, and closing."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel, SecretStr

from ml_connector import (
    AuthenticationError,
    Capability,
    ConcurrencyLimits,
    ConnectionContext,
    PluginDescription,
    PluginError,
    PluginInfo,
    Role,
    TransientError,
    hookimpl,
)
from ml_connector.drivers import SinkDriver, SourceDriver
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountMapping,
    AuthResult,
    BillDraft,
    BillDraftLine,
    BillResult,
    ChangeWindow,
    MappingMethod,
    Payable,
    PayableLine,
    Vendor,
    WebhookBatch,
)
from ml_connector.registry import Registry


class Empty(BaseModel):
    pass


def context(system: str, role: Role) -> ConnectionContext:
    return ConnectionContext(
        connection=f"test-{system}", system=system, role=role, settings=Empty(), credentials=Empty()
    )


def draft(invoice: str = "INV-1") -> BillDraft:
    vendor = Vendor(source_id="V1", name="Paper Co")
    payable = Payable(
        source_id=f"B-{invoice}",
        document_number=f"D-{invoice}",
        invoice_number=invoice,
        vendor=vendor,
        invoice_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        total=Decimal("10.00"),
        lines=(PayableLine(line_id="1", amount=Decimal("10.00"), account_id="6100"),),
        modified_at=datetime(2026, 1, 5, tzinfo=UTC),
    )
    return BillDraft(
        payable=payable,
        vendor_sink_id="vnd1",
        lines=(BillDraftLine(amount=Decimal("10.00"), sink_account_id="acc1", source_line_id="1"),),
    )


class Sink:
    """A sink plugin as an object, recording what reached it."""

    def __init__(self, *capabilities: Capability, batch_size: int | None = None) -> None:
        self.calls: list[str] = []
        self.capabilities = frozenset(capabilities)
        self.batch_size = batch_size
        self.auth_error: Exception | None = None

    @hookimpl
    def describe_plugin(self) -> PluginDescription:
        return PluginDescription(
            system="paybox",
            role=Role.SINK,
            settings_model=Empty,
            credentials_model=Empty,
            capabilities=self.capabilities,
            limits=ConcurrencyLimits(batch_size=self.batch_size),
        )

    @hookimpl
    async def authenticate(self, ctx):
        self.calls.append("authenticate")
        await asyncio.sleep(0.01)  # long enough for concurrent callers to pile up
        if self.auth_error is not None:
            raise self.auth_error
        return AuthResult(principal="clerk@paybox")

    @hookimpl
    async def create_bill(self, ctx, draft):
        self.calls.append(f"create_bill {draft.payable.invoice_number}")
        return BillResult(sink_id=f"bill-{draft.payable.invoice_number}", created=True)

    @hookimpl
    async def create_bills(self, drafts):
        self.calls.append(f"create_bills {len(drafts)}")
        return [BillResult(sink_id=f"bill-{d.payable.invoice_number}") for d in drafts]

    @hookimpl
    async def find_vendor(self, ctx, vendor):
        return None

    @hookimpl
    def find_bill(self, vendor_sink_id, invoice_number):
        return BillResult(sink_id=f"found-{invoice_number}")  # a plain def is fine too

    @hookimpl
    def list_changed_payments(self, ctx, window, page_token):
        return None  # a plain def returning None declines

    @hookimpl
    async def upsert_vendor(self, ctx, vendor, existing_sink_id):
        return {"sink_id": "vnd1"}  # not a VendorResult

    @hookimpl
    async def parse_webhook(self, headers, body, security_key):
        self.calls.append("parse_webhook")
        return WebhookBatch()

    @hookimpl
    async def close_connection(self, ctx):
        self.calls.append("close_connection")


def sink_driver(sink: Sink, *extensions: object) -> SinkDriver:
    registry = Registry(path=[])
    registry.add(
        sink,
        PluginInfo(system="paybox", display_name="Paybox", role=Role.SINK, contract=">=1.0,<2"),
        distribution="paybox-connector",
        version="0.9.1",
    )
    for index, extension in enumerate(extensions):
        registry.add_extension(extension, f"ext{index}")
    plugin = registry.load("paybox", Role.SINK)
    return SinkDriver(plugin, registry.plugin_manager(plugin), context("paybox", Role.SINK))


async def test_each_side_reaches_only_its_own_plugin(fake_dists, registry_for) -> None:
    acme = fake_dists.write("acme", role="source")
    paybox = fake_dists.write("paybox", role="sink", distribution="paybox-connector")
    registry = registry_for()
    source_plugin = registry.load("acme", Role.SOURCE)
    sink_plugin = registry.load("paybox", Role.SINK)

    source = SourceDriver(
        source_plugin, registry.plugin_manager(source_plugin), context("acme", Role.SOURCE)
    )
    sink = SinkDriver(
        sink_plugin, registry.plugin_manager(sink_plugin), context("paybox", Role.SINK)
    )

    assert (await source.check_connection()).detail == "acme"
    assert (await source.authenticate()).principal == "acme"
    assert sys.modules[acme.plugin_module].CALLS == ["authenticate", "check_connection"]
    assert sys.modules[paybox.plugin_module].CALLS == []

    assert (await sink.check_connection()).detail == "paybox"
    assert sys.modules[paybox.plugin_module].CALLS == ["authenticate", "check_connection"]
    assert sys.modules[acme.plugin_module].CALLS == ["authenticate", "check_connection"]

    assert (sink.distribution, sink.plugin_version) == ("paybox-connector", "1.0.0")
    assert sink.description.role is Role.SINK
    assert source.implements("check_connection")
    assert not source.implements("create_bill")


async def test_extension_tryfirst_overrides_map_accounts() -> None:
    source = AccountCatalog(accounts=(Account(id="6100", number="6100", name="Supplies"),))
    sink = AccountCatalog(accounts=(Account(id="acc1", number="6100", name="Office supplies"),))

    default = await sink_driver(Sink()).map_accounts(source, sink, [])
    assert [(m.sink_id, m.method) for m in default] == [("acc1", MappingMethod.NUMBER)]

    class CustomerRules:
        @hookimpl(tryfirst=True)
        async def map_accounts(self, source, sink, manual):
            return [
                AccountMapping(
                    source_kind="account",
                    source_id="6100",
                    sink_kind="account",
                    sink_id="acc-custom",
                    method=MappingMethod.PLUGIN,
                )
            ]

    plugin = Sink()
    custom = await sink_driver(plugin, CustomerRules()).map_accounts(source, sink, [])
    assert [(m.sink_id, m.method) for m in custom] == [("acc-custom", MappingMethod.PLUGIN)]
    assert plugin.calls == []  # mapping needs no sign-in


async def test_wrapper_extension_wraps_create_bill() -> None:
    events: list[str] = []

    class Audit:
        @hookimpl(wrapper=True)
        def create_bill(self, ctx, draft):
            inner = yield
            events.append(f"before {draft.payable.invoice_number}")

            async def audited():
                result = await inner
                events.append(f"after {result.sink_id}")
                return result

            return audited()

    plugin = Sink()
    driver = sink_driver(plugin, Audit())
    result = await driver.create_bill(draft("INV-7"))

    assert result == BillResult(sink_id="bill-INV-7", created=True)
    assert events == ["before INV-7", "after bill-INV-7"]
    assert plugin.calls == ["authenticate", "create_bill INV-7"]


async def test_authenticate_runs_once_under_concurrent_calls() -> None:
    plugin = Sink()
    driver = sink_driver(plugin)

    results = await asyncio.gather(*(driver.create_bill(draft(f"INV-{i}")) for i in range(5)))

    assert [r.sink_id for r in results] == [f"bill-INV-{i}" for i in range(5)]
    assert plugin.calls.count("authenticate") == 1
    assert plugin.calls[0] == "authenticate"
    assert (await driver.authenticate()).principal == "clerk@paybox"
    assert plugin.calls.count("authenticate") == 1


async def test_rejected_credentials_are_not_tried_again() -> None:
    plugin = Sink()
    plugin.auth_error = AuthenticationError("wrong password", system="paybox", status=401)
    driver = sink_driver(plugin)

    results = await asyncio.gather(
        *(driver.create_bill(draft()) for _ in range(3)), return_exceptions=True
    )

    assert all(isinstance(r, AuthenticationError) for r in results)
    assert plugin.calls == ["authenticate"]


async def test_transient_sign_in_failure_is_retried() -> None:
    plugin = Sink()
    plugin.auth_error = TransientError("timed out", system="paybox")
    driver = sink_driver(plugin)
    with pytest.raises(TransientError):
        await driver.create_bill(draft())

    plugin.auth_error = None
    assert (await driver.create_bill(draft())).created
    assert plugin.calls == ["authenticate", "authenticate", "create_bill INV-1"]


@pytest.mark.parametrize(
    ("call", "capability"),
    [
        pytest.param(lambda d: d.create_bills([draft()]), "bulk_create_bills", id="create_bills"),
        pytest.param(
            lambda d: d.create_account(Account(id="1", name="x")),
            "create_accounts",
            id="create_account",
        ),
        pytest.param(
            lambda d: d.ensure_webhook_subscription("https://x/hook", ["payment.updated"]),
            "webhooks",
            id="ensure_webhook_subscription",
        ),
        pytest.param(
            lambda d: d.parse_webhook({}, b"{}", SecretStr("k")), "webhooks", id="parse_webhook"
        ),
    ],
)
async def test_capability_gated_hooks_need_the_capability(call, capability) -> None:
    plugin = Sink()
    with pytest.raises(
        PluginError,
        match=rf"^plugin 'paybox' does not declare the capability '{capability}', which ",
    ):
        await call(sink_driver(plugin))
    assert plugin.calls == []


async def test_declared_capabilities_are_callable() -> None:
    plugin = Sink(Capability.BULK_CREATE_BILLS, Capability.WEBHOOKS, batch_size=2)
    driver = sink_driver(plugin)

    results = await driver.create_bills([draft("A"), draft("B")])
    assert [r.sink_id for r in results] == ["bill-A", "bill-B"]
    assert await driver.create_bills([]) == []
    with pytest.raises(ValueError, match="3 drafts exceed plugin 'paybox'"):
        await driver.create_bills([draft("A"), draft("B"), draft("C")])
    assert await driver.parse_webhook({}, b"{}", SecretStr("k")) == WebhookBatch()
    assert plugin.calls == ["authenticate", "create_bills 2", "parse_webhook"]


async def test_parse_webhook_does_not_sign_in() -> None:
    plugin = Sink(Capability.WEBHOOKS)
    await sink_driver(plugin).parse_webhook({}, b"{}", SecretStr("k"))
    assert plugin.calls == ["parse_webhook"]


async def test_unimplemented_and_declined_hooks() -> None:
    driver = sink_driver(Sink())
    window = ChangeWindow(since=None, until=datetime(2026, 1, 1, tzinfo=UTC))

    with pytest.raises(PluginError, match=r"^plugin 'paybox' does not implement check_connection$"):
        await driver.check_connection()
    with pytest.raises(
        PluginError, match=r"^no implementation of list_changed_payments answered for plugin"
    ):
        await driver.list_changed_payments(window)


async def test_answers_are_awaited_or_taken_as_they_are_and_type_checked() -> None:
    driver = sink_driver(Sink())
    assert await driver.find_bill("vnd1", "INV-9") == BillResult(sink_id="found-INV-9")
    assert await driver.find_vendor(Vendor(source_id="V1", name="Paper Co")) is None
    with pytest.raises(
        PluginError,
        match=r"^plugin 'paybox' returned dict from upsert_vendor, expected VendorResult$",
    ):
        await driver.upsert_vendor(Vendor(source_id="V1", name="Paper Co"))


async def test_close_calls_every_implementation_and_never_raises(caplog) -> None:
    class Flaky:
        @hookimpl
        async def close_connection(self, ctx):
            raise RuntimeError("socket already gone")

    plugin = Sink()
    async with sink_driver(plugin, Flaky()) as driver:
        await driver.create_bill(draft())

    assert plugin.calls[-1] == "close_connection"
    assert any(
        r.levelno == logging.WARNING and "close_connection failed" in r.getMessage()
        for r in caplog.records
    )
    await driver.create_bill(draft())  # used again after closing: signs in again
    assert plugin.calls.count("authenticate") == 2


def test_driver_refuses_a_mismatched_plugin_or_context() -> None:
    registry = Registry(path=[])
    registry.add(
        Sink(), PluginInfo(system="paybox", display_name="P", role=Role.SINK, contract=">=1")
    )
    plugin = registry.load("paybox", Role.SINK)
    pm = registry.plugin_manager(plugin)
    with pytest.raises(PluginError, match="is a sink plugin, not a source plugin"):
        SourceDriver(plugin, pm, context("paybox", Role.SOURCE))
    with pytest.raises(PluginError, match="the context is for 'other'"):
        SinkDriver(plugin, pm, context("other", Role.SINK))
