"""The conformance suite: the contract checked the same way for every plugin.

A plugin's tests subclass :class:`SourcePluginSuite` (or :class:`SinkPluginSuite`) and provide one
fixture, ``harness``, that knows how to drive the plugin's emulator::

    import pytest
    from ml_connector.testing.conformance import SourceHarness, SourcePluginSuite

    class TestConformance(SourcePluginSuite):
        @pytest.fixture
        def harness(self) -> SourceHarness:
            return MyErpHarness()  # seeds the emulator, builds contexts, injects faults

Every test of the suite then runs against the plugin: metadata and contract range, schemas,
ping, authentication and re-authentication after expiry, paging completeness and window bounds,
accounts, idempotent payment recording, error mapping, and (when the BILL plugin is installed) a
full round trip through the engine. A harness that cannot produce a situation (e.g. a malformed
body from a system without HTTP) returns ``False`` from :meth:`SourceHarness.fail_next`, and that
test is skipped, never passed vacuously.

Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``) in the plugin's test environment.

.. versionadded:: 1.0
"""

from __future__ import annotations

import abc
import inspect
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pluggy
import pytest
from pydantic import BaseModel, SecretStr

from ml_connector import hookspecs
from ml_connector.contract import CONTRACT_VERSION, contract_compatibility
from ml_connector.description import Capability, PluginDescription, PluginInfo, Role
from ml_connector.errors import (
    AuthenticationError,
    InvalidRecordError,
    ThrottledError,
    TransientError,
    UpstreamError,
    WebhookVerificationError,
)
from ml_connector.models import (
    AccountCatalog,
    Address,
    AuthResult,
    BillDraft,
    BillDraftLine,
    BillResult,
    ChangeWindow,
    ConnectionCheck,
    Payable,
    PayableLine,
    PayablePage,
    Payment,
    PaymentPage,
    PaymentPosting,
    PaymentStatus,
    RecordedPayment,
    Vendor,
    VendorResult,
    WebhookBatch,
    WebhookSubscription,
)
from ml_connector.settings import describe_fields

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext

__all__ = [
    "FaultKind",
    "PluginHarness",
    "SinkHarness",
    "SinkPluginSuite",
    "SourceHarness",
    "SourcePluginSuite",
]

FaultKind = Literal["unauthorized", "throttled", "server_error", "malformed"]
"""What :meth:`PluginHarness.fail_next` makes the system answer next."""

EXPECTED_ERRORS: dict[str, type[Exception]] = {
    "unauthorized": AuthenticationError,
    "throttled": ThrottledError,
    "server_error": TransientError,
    "malformed": UpstreamError,
}


class PluginHarness(abc.ABC):
    """What the suite needs from a plugin's tests: the plugin, and control over its system."""

    #: The object or module holding the plugin's hook implementations.
    plugin: object
    #: The plugin's entry-point metadata dict (``PLUGIN_INFO``).
    info: dict[str, Any]

    @abc.abstractmethod
    def context(self) -> ConnectionContext:
        """A new context for this plugin, pointed at the seeded system (e.g. via transport)."""

    @abc.abstractmethod
    def expire_sessions(self) -> None:
        """End every session or token the system has issued, as an idle timeout does."""

    @abc.abstractmethod
    def fail_next(self, kind: FaultKind) -> bool:
        """Make the system fail in this way; ``False`` if the harness cannot.

        - ``"unauthorized"``: the system rejects the credentials from now on (every sign-in
          fails), so the client's one re-login fails too: :class:`AuthenticationError`.
        - ``"throttled"``: the next request gets the system's rate-limit answer:
          :class:`ThrottledError` (clients do not retry; the engine does).
        - ``"server_error"``: the next request gets a 5xx: :class:`TransientError`.
        - ``"malformed"``: the next response body is not what the API documents:
          :class:`UpstreamError` (or a subclass).
        """

    def now(self) -> datetime:
        """The system's current time (change times of records written now)."""
        return datetime.now(UTC)


class SourceHarness(PluginHarness):
    """Controls a source plugin's system (an ERP emulator)."""

    @abc.abstractmethod
    def seed(self, count: int) -> set[str]:
        """Create ``count`` payables ready to pay (and some that are not); return their ids."""

    @abc.abstractmethod
    def touch(self, source_id: str) -> None:
        """Change a payable as a clerk would, so its change time becomes now."""

    @abc.abstractmethod
    def payments_posted(self, source_id: str) -> int:
        """How many payments the system holds against that payable."""

    #: Records per page the context asks for; the suite seeds more than two pages' worth.
    page_size: int = 10


def _plugin_manager(plugin: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    return pm


class _Caller:
    """Calls one plugin's hooks with a context, awaiting async answers."""

    def __init__(self, plugin: object, ctx: ConnectionContext) -> None:
        self.pm = _plugin_manager(plugin)
        self.ctx = ctx

    async def __call__(self, hook: str, **kwargs: Any) -> Any:
        result = getattr(self.pm.hook, hook)(ctx=self.ctx, **kwargs)
        if isinstance(result, list):  # close_connection calls every implementation
            return [await r if inspect.isawaitable(r) else r for r in result]
        return await result if inspect.isawaitable(result) else result

    async def close(self) -> None:
        await self("close_connection")

    def implements(self, hook: str) -> bool:
        """Whether the plugin implements ``hook``."""
        return bool(getattr(self.pm.hook, hook).get_hookimpls())


class _SuiteBase:
    role: ClassVar[Role]

    @pytest.fixture
    async def call(self, harness: PluginHarness) -> Any:
        caller = _Caller(harness.plugin, harness.context())
        await caller("authenticate")  # as the engine's driver does before any other hook
        yield caller
        await caller.close()

    def test_metadata_and_contract_range(self, harness: PluginHarness) -> None:
        """PLUGIN_INFO is valid, its contract range admits this core, describe_plugin agrees."""
        info = PluginInfo.model_validate(harness.info)
        assert info.role is self.role
        assert contract_compatibility(info.contract) is None, (
            f"declared contract {info.contract} excludes this core's {CONTRACT_VERSION}"
        )
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        assert isinstance(description, PluginDescription)
        assert (description.system, description.role) == (info.system, info.role)

    def test_schemas_keep_secrets_secret(self, harness: PluginHarness) -> None:
        """Settings and credentials are pydantic models; secrets are SecretStr credentials."""
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        for model in (description.settings_model, description.credentials_model):
            assert issubclass(model, BaseModel)
            model.model_json_schema()  # documented, serialisable
        secret = [f for f in describe_fields(description.credentials_model) if f.secret]
        assert secret, "credentials need at least one SecretStr field"
        settings = [f for f in describe_fields(description.settings_model) if f.secret]
        assert not settings, f"secrets belong in credentials, not settings: {settings}"
        ctx = harness.context()
        for spec in secret:
            value = getattr(ctx.credentials, spec.name)
            assert value is None or isinstance(value, SecretStr)
            # short test secrets ("pw") can appear in any text; judge the realistic ones
            if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 8:
                assert value.get_secret_value() not in repr(ctx.credentials)

    async def test_ping(self, call: _Caller) -> None:
        """Signing in and the connection check work against the seeded system."""
        assert isinstance(await call("authenticate"), AuthResult)
        check = await call("check_connection")
        assert isinstance(check, ConnectionCheck)
        assert check.ok, check.detail

    async def test_close_is_safe_twice(self, call: _Caller) -> None:
        """Closing releases the session and may be done twice."""
        await call("authenticate")
        await call.close()
        await call.close()


class SourcePluginSuite(_SuiteBase):
    """The contract of a source (ERP) plugin. Subclass it and provide a ``harness`` fixture."""

    role = Role.SOURCE

    def _window(self, harness: SourceHarness, since: datetime | None = None) -> ChangeWindow:
        return ChangeWindow(since=since, until=harness.now() + timedelta(seconds=1))

    async def _read_all(
        self, call: _Caller, window: ChangeWindow, limit: int = 1000
    ) -> tuple[list[Payable], int]:
        items: list[Payable] = []
        token: str | None = None
        pages = 0
        while True:
            page = await call("list_changed_payables", window=window, page_token=token)
            assert isinstance(page, PayablePage)
            items += page.items
            pages += 1
            token = page.next_page_token
            if token is None or pages >= limit:
                return items, pages

    async def test_reauthenticates_after_expiry(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """After the system expires every session, the client signs in again by itself."""
        harness.seed(3)
        await call("authenticate")
        window = self._window(harness)
        await call("list_changed_payables", window=window, page_token=None)
        harness.expire_sessions()
        page = await call("list_changed_payables", window=window, page_token=None)
        assert page.items, "after expiry the client must sign in again and answer"

    async def test_paging_is_complete_and_valid(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """Every ready payable comes back across pages, as valid models with aware times."""
        seeded = harness.seed(harness.page_size * 2 + 3)
        items, pages = await self._read_all(call, self._window(harness))
        ids = [p.source_id for p in items]
        assert seeded <= set(ids), f"lost across pages: {sorted(seeded - set(ids))[:5]}"
        assert pages >= 3, "seeded more than two pages: expected at least three"
        assert all(p.modified_at.tzinfo is not None for p in items)
        assert all(isinstance(line.amount, Decimal) for p in items for line in p.lines)

    async def test_window_bounds(self, harness: SourceHarness, call: _Caller) -> None:
        """The window includes its lower bound and excludes its upper bound."""
        harness.seed(5)
        items, _ = await self._read_all(call, self._window(harness))
        first = min(items, key=lambda p: (p.modified_at, p.source_id))
        # lower bound inclusive
        inclusive = ChangeWindow(
            since=first.modified_at, until=harness.now() + timedelta(seconds=1)
        )
        ids, _ = await self._read_all(call, inclusive)
        assert first.source_id in {p.source_id for p in ids}
        # upper bound exclusive
        exclusive = ChangeWindow(since=None, until=first.modified_at)
        before, _ = await self._read_all(call, exclusive)
        assert first.source_id not in {p.source_id for p in before}

    async def test_a_change_during_paging_is_not_lost(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """A payable changed while pages are read is in the next window."""
        seeded = sorted(harness.seed(harness.page_size * 2 + 1))
        start = harness.now()
        window = self._window(harness)
        page = await call("list_changed_payables", window=window, page_token=None)
        harness.touch(seeded[0])
        harness.touch(seeded[-1])
        token = page.next_page_token
        while token is not None:
            page = await call("list_changed_payables", window=window, page_token=token)
            token = page.next_page_token
        # whatever this read missed because it changed, the next window (the engine's next run,
        # from a cursor no later than the read's start) must contain
        later, _ = await self._read_all(call, self._window(harness, since=start))
        assert {seeded[0], seeded[-1]} <= {p.source_id for p in later}

    async def test_accounts_cover_the_lines(self, harness: SourceHarness, call: _Caller) -> None:
        """The account listing reports every account the payable lines use."""
        harness.seed(5)
        catalog = await call("list_accounts")
        assert isinstance(catalog, AccountCatalog)
        known = {a.id for a in catalog.accounts}
        items, _ = await self._read_all(call, self._window(harness))
        used = {line.account_id for p in items for line in p.lines}
        assert used <= known, f"lines use accounts list_accounts does not report: {used - known}"

    async def test_get_payable_matches_the_listing(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """Reading one payable gives what the listing gave; an unknown id gives None."""
        harness.seed(3)
        items, _ = await self._read_all(call, self._window(harness))
        again = await call("get_payable", source_id=items[0].source_id)
        assert again == items[0]
        assert await call("get_payable", source_id="no-such-payable-4711") is None

    @staticmethod
    def _posting(harness: SourceHarness, payable: Payable, payment_id: str) -> PaymentPosting:
        return PaymentPosting(
            payment_sink_id=payment_id,
            payable=payable,
            amount=payable.total,
            paid_on=harness.now().date(),
            reference=payment_id,
        )

    async def test_a_posting_is_found_or_not_repeated(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """No posting is made twice: find_payment sees it, or record_payment looks first.

        With ``find_payment`` (contract 1.2) the engine looks before every ``record_payment``
        and after a crash: a posting it misses would be posted twice, one it reports for the
        wrong bill would never be posted. Without it, ``record_payment`` must look first itself.
        """
        harness.seed(3)
        items, _ = await self._read_all(call, self._window(harness))
        payable, other = items[0], items[1]
        posting = self._posting(harness, payable, "stp01CONFORMANCE")
        if not call.implements("find_payment"):
            first = await call("record_payment", posting=posting)
            second = await call("record_payment", posting=posting)
            assert isinstance(first, RecordedPayment)
            assert (first.already_recorded, second.already_recorded) == (False, True)
            assert second.source_id == first.source_id
            assert harness.payments_posted(payable.source_id) == 1
            return
        assert await call("find_payment", posting=posting) is None
        recorded = await call("record_payment", posting=posting)
        assert isinstance(recorded, RecordedPayment)
        found = await call("find_payment", posting=posting)
        assert isinstance(found, RecordedPayment)
        assert (found.source_id, found.already_recorded) == (recorded.source_id, True)
        # The same sink payment applied to another bill is another posting.
        elsewhere = self._posting(harness, other, posting.payment_sink_id)
        assert await call("find_payment", posting=elsewhere) is None
        assert harness.payments_posted(payable.source_id) == 1
        assert harness.payments_posted(other.source_id) == 0

    @pytest.mark.parametrize("kind", list(EXPECTED_ERRORS))
    async def test_errors_map_onto_the_core_tree(
        self, harness: SourceHarness, call: _Caller, kind: FaultKind
    ) -> None:
        """Refused credentials, throttling, 5xx and garbage map onto the core errors."""
        harness.seed(2)
        await call("authenticate")
        if not harness.fail_next(kind):
            pytest.skip(f"this harness cannot make its system answer {kind!r}")
        with pytest.raises(EXPECTED_ERRORS[kind]):
            await call("list_changed_payables", window=self._window(harness), page_token=None)


class SinkHarness(PluginHarness):
    """Controls a sink plugin's system (a BILL emulator)."""

    @abc.abstractmethod
    def account_id(self) -> str:
        """A chart-of-accounts id in the system that bill lines can be coded to."""

    @abc.abstractmethod
    def pay(self, bill_sink_id: str) -> str:
        """Pay the bill in full, as a clerk would; return the payment's id."""

    @abc.abstractmethod
    def bill_count(self, vendor_sink_id: str, invoice_number: str) -> int:
        """How many bills the system holds for that vendor and invoice number."""

    def webhook_delivery(
        self, subscription_id: str, payment_id: str
    ) -> tuple[dict[str, str], bytes]:
        """A signed delivery announcing the payment (headers, body), for sinks with webhooks."""
        raise NotImplementedError


def _vendor(tag: str) -> Vendor:
    return Vendor(
        source_id=f"V-{tag}",
        name=f"Conformance Supplies {tag}",
        email="ap@conformance.example",
        address=Address(line1="1 Main St", city="Seattle", state="WA", postal_code="98101"),
    )


def _payable(vendor: Vendor, invoice: str, amount: str, when: datetime) -> Payable:
    return Payable(
        source_id=f"P-{invoice}",
        document_number=f"P-{invoice}",
        invoice_number=invoice,
        vendor=vendor,
        invoice_date=when.date(),
        due_date=(when + timedelta(days=30)).date(),
        total=Decimal(amount),
        lines=(PayableLine(line_id="1", amount=Decimal(amount), account_id="6100"),),
        modified_at=when,
    )


class SinkPluginSuite(_SuiteBase):
    """The contract of a sink (BILL) plugin. Subclass it and provide a ``harness`` fixture."""

    role = Role.SINK

    async def _vendor_id(self, call: _Caller, tag: str) -> str:
        result = await call("upsert_vendor", vendor=_vendor(tag), existing_sink_id=None)
        assert isinstance(result, VendorResult)
        return result.sink_id

    def _draft(
        self, harness: SinkHarness, vendor_id: str, invoice: str, amount: str = "125.50"
    ) -> BillDraft:
        payable = _payable(_vendor("X"), invoice, amount, harness.now())
        line = BillDraftLine(
            amount=Decimal(amount), sink_account_id=harness.account_id(), source_line_id="1"
        )
        return BillDraft(payable=payable, vendor_sink_id=vendor_id, lines=(line,))

    def test_limits_are_declared(self, harness: SinkHarness) -> None:
        """A sink says how many requests it allows in flight, and per what."""
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        assert description.limits.max_in_flight is not None
        if description.limits.scope_setting is not None:
            assert description.limits.scope_setting in description.settings_model.model_fields

    async def test_vendor_create_find_update(self, call: _Caller) -> None:
        """A vendor is created once, found by lookup, and updated in place."""
        vendor = _vendor("A")
        created = await call("upsert_vendor", vendor=vendor, existing_sink_id=None)
        assert created.created
        found = await call("find_vendor", vendor=vendor)
        assert found is not None
        assert found.sink_id == created.sink_id
        renamed = vendor.model_copy(update={"email": "remit@conformance.example"})
        updated = await call("upsert_vendor", vendor=renamed, existing_sink_id=created.sink_id)
        assert (updated.sink_id, updated.created) == (created.sink_id, False)
        assert await call("find_vendor", vendor=_vendor("NOBODY")) is None

    async def test_bill_create_find_update_and_paid(
        self, harness: SinkHarness, call: _Caller
    ) -> None:
        """A bill is created once, found by vendor + invoice, updated while unpaid, then kept."""
        vendor_id = await self._vendor_id(call, "B")
        draft = self._draft(harness, vendor_id, "CONF-1")
        created = await call("create_bill", draft=draft)
        assert isinstance(created, BillResult)
        assert created.created
        found = await call("find_bill", vendor_sink_id=vendor_id, invoice_number="CONF-1")
        assert found is not None
        assert found.sink_id == created.sink_id
        changed = self._draft(harness, vendor_id, "CONF-1", "130.00").model_copy(
            update={"existing_sink_id": created.sink_id}
        )
        updated = await call("create_bill", draft=changed)
        assert (updated.sink_id, updated.created, updated.paid) == (created.sink_id, False, False)
        harness.pay(created.sink_id)
        locked = await call("create_bill", draft=changed)
        assert locked.paid
        assert harness.bill_count(vendor_id, "CONF-1") == 1
        assert await call("find_bill", vendor_sink_id=vendor_id, invoice_number="NOPE") is None

    async def test_bulk_is_all_or_nothing(self, harness: SinkHarness, call: _Caller) -> None:
        """Bulk creates return results in order; a refused batch creates nothing."""
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        if Capability.BULK_CREATE_BILLS not in description.capabilities:
            pytest.skip("the plugin does not declare bulk_create_bills")
        vendor_id = await self._vendor_id(call, "C")
        drafts = [self._draft(harness, vendor_id, f"CONF-B{i}") for i in range(3)]
        results = await call("create_bills", drafts=drafts)
        assert len(results) == 3
        assert all(r.created for r in results)
        for i, result in enumerate(results):
            found = await call("find_bill", vendor_sink_id=vendor_id, invoice_number=f"CONF-B{i}")
            assert found is not None
            assert found.sink_id == result.sink_id
        refused = [
            self._draft(harness, vendor_id, "CONF-R1"),
            self._draft(harness, "009NOSUCHVENDOR0", "CONF-R2"),
        ]
        with pytest.raises((InvalidRecordError, UpstreamError)):
            await call("create_bills", drafts=refused)
        assert harness.bill_count(vendor_id, "CONF-R1") == 0

    async def test_payments_are_listed_with_their_bills(
        self, harness: SinkHarness, call: _Caller
    ) -> None:
        """A payment made in the sink is listed, in a window, applied to its bill."""
        vendor_id = await self._vendor_id(call, "D")
        bill = await call("create_bill", draft=self._draft(harness, vendor_id, "CONF-P1"))
        payment_id = harness.pay(bill.sink_id)
        window = ChangeWindow(since=None, until=harness.now() + timedelta(seconds=1))
        found: list[Payment] = []
        token: str | None = None
        while True:
            page = await call("list_changed_payments", window=window, page_token=token)
            assert isinstance(page, PaymentPage)
            found += page.items
            token = page.next_page_token
            if token is None:
                break
        (payment,) = [p for p in found if p.sink_id == payment_id]
        assert payment.status is PaymentStatus.PAID
        assert [a.bill_sink_id for a in payment.applications] == [bill.sink_id]
        assert await call("get_payment", sink_id=payment_id) == payment

    async def test_reauthenticates_after_expiry(self, harness: SinkHarness, call: _Caller) -> None:
        """After the system expires every session, the client signs in again by itself."""
        harness.expire_sessions()
        assert await call("find_vendor", vendor=_vendor("NOBODY")) is None

    @pytest.mark.parametrize("kind", list(EXPECTED_ERRORS))
    async def test_errors_map_onto_the_core_tree(
        self, harness: SinkHarness, call: _Caller, kind: FaultKind
    ) -> None:
        """Refused credentials, throttling, 5xx and garbage map onto the core errors."""
        if not harness.fail_next(kind):
            pytest.skip(f"this harness cannot make its system answer {kind!r}")
        window = ChangeWindow(since=None, until=harness.now())
        with pytest.raises(EXPECTED_ERRORS[kind]):
            await call("list_changed_payments", window=window, page_token=None)

    async def test_webhooks_are_verified(self, harness: SinkHarness, call: _Caller) -> None:
        """The signing key comes once; a signed delivery parses; a tampered one is refused."""
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        if Capability.WEBHOOKS not in description.capabilities:
            pytest.skip("the plugin does not declare webhooks")
        url, events = "https://connector.example/webhooks/x", ["payment.updated"]
        sub = await call("ensure_webhook_subscription", notification_url=url, events=events,
                         existing=None)  # fmt: skip
        assert isinstance(sub, WebhookSubscription)
        assert sub.security_key is not None
        again = await call("ensure_webhook_subscription", notification_url=url, events=events,
                           existing=sub.model_copy(update={"security_key": None}))  # fmt: skip
        assert (again.sink_id, again.security_key) == (sub.sink_id, None)
        vendor_id = await self._vendor_id(call, "W")
        bill = await call("create_bill", draft=self._draft(harness, vendor_id, "CONF-W1"))
        payment_id = harness.pay(bill.sink_id)
        headers, body = harness.webhook_delivery(sub.sink_id, payment_id)
        batch = await call(
            "parse_webhook", headers=headers, body=body, security_key=sub.security_key
        )
        assert isinstance(batch, WebhookBatch)
        assert [e.entity_id for e in batch.events] == [payment_id]
        # tamper with a value, not with white space: a sink may also accept a signature over the
        # minified body (BILL does, bill.md §6), which white space does not change
        forged = body.replace(payment_id.encode(), payment_id[:-1].encode() + b"Z", 1)
        assert forged != body
        with pytest.raises(WebhookVerificationError):
            await call("parse_webhook", headers=headers, body=forged, security_key=sub.security_key)
