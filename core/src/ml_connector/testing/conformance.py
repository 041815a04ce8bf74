"""The conformance suite: the contract checked the same way for every plugin.

A plugin's tests subclass :class:`SourcePluginSuite` (or :class:`SinkPluginSuite`) and provide one
fixture, ``harness``, that knows how to drive the plugin's emulator::

    import pytest
    from ml_connector.testing.conformance import SourceHarness, SourcePluginSuite

    class TestConformance(SourcePluginSuite):
        @pytest.fixture
        def harness(self) -> SourceHarness:
            return MyErpHarness()  # seeds the emulator, builds contexts, injects faults

Every failure names the rule it breaks, then the record and the field::

    Failed: [money-precision] payable AP-7, field lines.0.amount: 0.1000000000000000055511151231…
    has 55 decimal places, USD has 2 (ISO 4217 minor units): a Decimal built from a float …

The rules, by their stable names (both suites, then source, then sink):

- ``plugin-metadata``: ``PLUGIN_INFO`` is valid and ``describe_plugin`` agrees with it.
- ``contract-range``: the declared range admits this core, keeps the range rule (a lower bound
  from an existing contract, an upper bound no later than the next major: ``>=1.2,<2``), and its
  lower bound has every hook and capability the plugin uses (hooks marked
  ``@hookimpl(optionalhook=True)`` excepted), as :mod:`ml_connector.contract` says.
- ``secrets-in-credentials``, ``ping``, ``close-twice``, ``reauthenticate-after-expiry``,
  ``error-mapping``: schemas keep secrets secret; signing in, the connection check and closing
  (twice) work; the client signs in again after the system expires its sessions; refused
  credentials, throttling, 5xx and garbage map onto the core errors.
- ``page-shape``: pages are :class:`~ml_connector.models.PayablePage` with aware times and Decimal
  money, and the context's page size is honoured.
- ``not-ready-never-returned``: records that must not move (on hold, unapproved, purchase
  orders) are never among a page's items. They may be left out or rejected; a kind the harness
  cannot seed (:meth:`SourceHarness.seed_not_ready`) is skipped with the reason, never passed.
- ``money-precision``: every line amount and total has no more decimal places than its
  currency's minor units (ISO 4217: 2, or 0 for JPY, 3 for KWD, …): a ``Decimal(0.1)`` built from
  a float shows up here. Quantities and unit prices are exempt.
- ``money-sign``: every payable read for a bill seeded ready to pay has a positive total (a sign
  turned by a debit/credit convention shows here); a credit document is left out by its type or
  rejected naming the field, and the engine's own guard queues any that comes through.
- ``read-without-rejection``: a well-formed ready record is never put in ``rejected``.
- ``exactly-once-across-pages``: in a window nothing changes during, every ready record comes back
  exactly once; a plugin that does not move on with its page token fails fast.
- ``window-bounds``: every payable read for ``[since, until)`` has
  ``since <= modified_at < until``; the lower bound is inclusive, the upper exclusive. A system
  whose change stamps are coarser than the window (a date without a time) may need to read from
  before ``since``: its harness declares how far (:attr:`SourceHarness.change_overlap`).
- ``change-during-paging-kept``, ``accounts-cover-lines``, ``get-payable-matches-listing``,
  ``posting-once``: a record changed while pages are read is in the next window;
  ``list_accounts`` covers the lines; ``get_payable`` agrees with the listing; no payment is
  posted twice (``find_payment``, or a ``record_payment`` that looks first).
- ``limits-declared``, ``vendor-upsert``, ``bill-upsert``, ``bulk-all-or-nothing``,
  ``payments-listed``, ``webhook-verification``: the sink's limits, vendors, bills, bulk creates,
  payments and webhooks.

Wherever a test expects records and finds too few, its message shows the page's ``rejected``
reasons, which is where the true cause usually is. A harness that cannot produce a situation
(e.g. a malformed body from a system without HTTP) returns ``False`` from
:meth:`PluginHarness.fail_next` (or leaves a kind out of :meth:`SourceHarness.seed_not_ready`),
and that test is skipped, never passed vacuously.

Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``) in the plugin's test environment.

.. versionadded:: 1.0
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pluggy
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from ml_connector import hookspecs
from ml_connector.contract import (
    CONTRACT_VERSION,
    contract_compatibility,
    features_above_lower_bound,
    range_problems,
)
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
    RejectedRecord,
    Vendor,
    VendorResult,
    WebhookBatch,
    WebhookSubscription,
)
from ml_connector.settings import describe_fields
from ml_connector.testing._conformance_rules import (
    decimal_places,
    fail,
    minor_units,
    rejections,
)

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext

__all__ = [
    "NOT_READY_KINDS",
    "FaultKind",
    "NotReadyKind",
    "PluginHarness",
    "SinkHarness",
    "SinkPluginSuite",
    "SourceHarness",
    "SourcePluginSuite",
]

FaultKind = Literal["unauthorized", "throttled", "server_error", "malformed"]
"""What :meth:`PluginHarness.fail_next` makes the system answer next."""

NotReadyKind = Literal["on_hold", "unapproved", "purchase_order"]
"""A kind of AP record that must not move to the sink (:meth:`SourceHarness.seed_not_ready`)."""

NOT_READY_KINDS: tuple[NotReadyKind, ...] = ("on_hold", "unapproved", "purchase_order")
"""Every :data:`NotReadyKind`, in the order the suite checks them."""

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
    def context(self) -> ConnectionContext[Any, Any]:
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
        """Create ``count`` payables ready to pay (and some that are not); return their ids.

        The ready ones are well-formed: the suite fails a plugin that rejects one.
        """

    @abc.abstractmethod
    def seed_not_ready(self) -> dict[NotReadyKind, str]:
        """Create one record of each kind that must not move, changed now.

        Returns:
            Each kind's record, by the id ``get_payable`` takes for it. Leave out a kind the
            system cannot hold where the plugin reads (e.g. an AP API without purchase orders):
            the suite skips that kind and says why, never passes it vacuously.
        """

    @abc.abstractmethod
    def touch(self, source_id: str) -> None:
        """Change a payable as a clerk would, so its change time becomes now."""

    @abc.abstractmethod
    def payments_posted(self, source_id: str) -> int:
        """How many payments the system holds against that payable."""

    #: Records per page the context asks for; the suite seeds more than two pages' worth.
    page_size: int = 10
    #: How far before ``since`` the plugin, as the harness configures it, may return records:
    #: only for a system whose change stamps may be coarser than a window (e.g. a date without a
    #: time), so that a plugin overlaps its windows rather than lose a change. Records returned
    #: twice cost nothing (the engine drops unchanged ones); records before the overlap fail.
    change_overlap: timedelta = timedelta(0)


def _plugin_manager(plugin: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    return pm


def _implemented_hooks(pm: pluggy.PluginManager, plugin: object) -> tuple[set[str], set[str]]:
    """The hooks ``plugin`` implements itself, and those of them marked ``optionalhook``."""
    hooks: set[str] = set()
    optional: set[str] = set()
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            hooks.add(caller.name)
            if impl.opts.get("optionalhook") or getattr(impl, "optionalhook", False):
                optional.add(caller.name)
    return hooks, optional


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


async def _expect_error(
    rule: str,
    expected: type[BaseException] | tuple[type[BaseException], ...],
    call: Awaitable[Any],
    doing: str,
) -> None:
    """Await ``call`` and fail under ``rule`` unless it raises ``expected``."""
    names = (
        " or ".join(e.__name__ for e in expected)
        if isinstance(expected, tuple)
        else expected.__name__
    )
    try:
        result = await call
    except expected:
        return
    except Exception as exc:
        fail(rule, f"{doing}: raised {type(exc).__name__} ({exc}), expected {names}")
    fail(rule, f"{doing}: answered a {type(result).__name__}, expected {names} to be raised")


class _SuiteBase:
    role: ClassVar[Role]

    @pytest.fixture
    async def call(self, harness: PluginHarness) -> Any:
        caller = _Caller(harness.plugin, harness.context())
        await caller("authenticate")  # as the engine's driver does before any other hook
        yield caller
        await caller.close()

    def test_metadata_and_contract_range(self, harness: PluginHarness) -> None:
        """PLUGIN_INFO is valid, its contract range keeps the rule, describe_plugin agrees."""
        try:
            info = PluginInfo.model_validate(harness.info)
        except ValidationError as exc:
            fail("plugin-metadata", f"invalid: {exc}", kind="plugin", field="PLUGIN_INFO")
        where = {"kind": "plugin", "record": info.system}
        if info.role is not self.role:
            fail(
                "plugin-metadata",
                f"declares role {info.role.value!r}; this suite tests {self.role.value!r} plugins",
                field="PLUGIN_INFO['role']",
                **where,
            )
        pm = _plugin_manager(harness.plugin)
        description = pm.hook.describe_plugin()
        if not isinstance(description, PluginDescription):
            fail(
                "plugin-metadata",
                f"describe_plugin returned {type(description).__name__}, not a PluginDescription",
                field="describe_plugin",
                **where,
            )
        if (description.system, description.role) != (info.system, info.role):
            fail(
                "plugin-metadata",
                f"describe_plugin says system {description.system!r}, role "
                f"{description.role.value!r}; PLUGIN_INFO says {info.system!r}, "
                f"{info.role.value!r}",
                field="describe_plugin",
                **where,
            )
        problems: list[str] = []
        excluded = contract_compatibility(info.contract)
        if excluded is not None:
            problems.append(f"{excluded} (declared {info.contract}, core {CONTRACT_VERSION})")
        problems += range_problems(info.contract)
        hooks, optional = _implemented_hooks(pm, harness.plugin)
        capabilities = [str(c.value) for c in description.capabilities]
        problems += features_above_lower_bound(
            info.contract, hooks, capabilities, optional_hooks=optional
        )
        if problems:
            fail("contract-range", "; ".join(problems), field="PLUGIN_INFO['contract']", **where)

    def test_schemas_keep_secrets_secret(self, harness: PluginHarness) -> None:
        """Settings and credentials are pydantic models; secrets are SecretStr credentials."""
        rule = "secrets-in-credentials"
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        for name, model in (
            ("settings_model", description.settings_model),
            ("credentials_model", description.credentials_model),
        ):
            assert isinstance(model, type), f"[{rule}] {name} is {model!r}, not a model class"
            assert issubclass(model, BaseModel), f"[{rule}] {name} {model} is no pydantic model"
            model.model_json_schema()  # documented, serialisable
        secret = [f for f in describe_fields(description.credentials_model) if f.secret]
        assert secret, f"[{rule}] credentials need at least one SecretStr field"
        settings = [f.name for f in describe_fields(description.settings_model) if f.secret]
        assert not settings, f"[{rule}] secrets belong in credentials, not settings: {settings}"
        ctx = harness.context()
        for spec in secret:
            value = getattr(ctx.credentials, spec.name)
            assert value is None or isinstance(value, SecretStr), (
                f"[{rule}] field {spec.name} of the context's credentials is a "
                f"{type(value).__name__}, not a SecretStr"
            )
            # short test secrets ("pw") can appear in any text; judge the realistic ones
            if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 8:
                assert value.get_secret_value() not in repr(ctx.credentials), (
                    f"[{rule}] field {spec.name}: repr(credentials) shows the secret"
                )

    async def test_ping(self, call: _Caller) -> None:
        """Signing in and the connection check work against the seeded system."""
        auth = await call("authenticate")
        assert isinstance(auth, AuthResult), (
            f"[ping] authenticate returned {type(auth).__name__}, not an AuthResult"
        )
        check = await call("check_connection")
        assert isinstance(check, ConnectionCheck), (
            f"[ping] check_connection returned {type(check).__name__}, not a ConnectionCheck"
        )
        assert check.ok, f"[ping] check_connection says not ok: {check.detail}"

    async def test_close_is_safe_twice(self, call: _Caller) -> None:
        """Closing releases the session and may be done twice."""
        await call("authenticate")
        await call.close()
        await call.close()


@dataclass
class _Read:
    """Everything one read of a window gave, page by page."""

    window: ChangeWindow
    items: list[Payable] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    pages: int = 0
    #: Each returned payable's id -> the pages (1-based) it was on.
    seen_on: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return set(self.seen_on)

    def rejection(self, source_id: str) -> RejectedRecord | None:
        return next((r for r in self.rejected if r.record_id == source_id), None)

    def need(self, rule: str, count: int, doing: str) -> None:
        """Fail under ``rule`` unless the read returned ``count`` payables, showing rejections."""
        if len(self.items) < count:
            fail(
                rule,
                f"{doing}: expected at least {count} payable(s), the window "
                f"{_show(self.window)} gave {len(self.items)} on {self.pages} page(s); "
                f"{rejections(self.rejected)}",
            )


def _short(token: str) -> str:
    return repr(token) if len(token) <= 40 else f"{token[:37]!r}…"


def _show(window: ChangeWindow) -> str:
    since = "None" if window.since is None else window.since.isoformat()
    return f"[{since}, {window.until.isoformat()})"


class SourcePluginSuite(_SuiteBase):
    """The contract of a source (ERP) plugin. Subclass it and provide a ``harness`` fixture."""

    role = Role.SOURCE

    def _window(self, harness: SourceHarness, since: datetime | None = None) -> ChangeWindow:
        return ChangeWindow(since=since, until=harness.now() + timedelta(seconds=1))

    async def _read_all(
        self,
        harness: SourceHarness,
        call: _Caller,
        window: ChangeWindow,
        *,
        expected: int,
        after_first_page: Callable[[], None] | None = None,
    ) -> _Read:
        """Read every page of ``window``, checking each page's shape and bounds as it comes.

        Args:
            harness: The harness (its page size bounds how many pages a read may take).
            call: The plugin.
            window: The window to read.
            expected: How many records the test seeded that the window may hold.
            after_first_page: Called once the first page is in (to change records mid-read).
        """
        read = _Read(window)
        page_size = max(harness.page_size, 1)
        # A page may hold fewer records than page_size (a plugin filtering after reading), so
        # allow three times the pages the seeded records fill, and a margin.
        max_pages = 3 * -(-max(expected, 1) // page_size) + 10
        tokens: dict[str, int] = {}
        token: str | None = None
        while True:
            page = await call("list_changed_payables", window=window, page_token=token)
            read.pages += 1
            if not isinstance(page, PayablePage):
                fail(
                    "page-shape",
                    f"page {read.pages} is a {type(page).__name__}, not a PayablePage",
                )
            for payable in page.items:
                _check_bounds(window, payable, harness.change_overlap)
                read.seen_on.setdefault(payable.source_id, []).append(read.pages)
            read.items += page.items
            read.rejected += page.rejected
            if after_first_page is not None and read.pages == 1:
                after_first_page()
            token = page.next_page_token
            if token is None:
                return read
            if token in tokens:
                fail(
                    "exactly-once-across-pages",
                    f"page {read.pages} answered next_page_token {_short(token)}, which page "
                    f"{tokens[token]} answered already: the plugin does not move on with the "
                    f"page token, and the engine would read the same page forever",
                )
            tokens[token] = read.pages
            if read.pages >= max_pages:
                fail(
                    "exactly-once-across-pages",
                    f"read {read.pages} pages at page_size {harness.page_size} of a window "
                    f"holding about {expected} seeded record(s), and the plugin still answers a "
                    f"next_page_token: it does not move on with the token, or never ends",
                )

    async def test_reauthenticates_after_expiry(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """After the system expires every session, the client signs in again by itself."""
        rule = "reauthenticate-after-expiry"
        harness.seed(3)
        await call("authenticate")
        window = self._window(harness)
        before = await call("list_changed_payables", window=window, page_token=None)
        _page_need(rule, before, "before the sessions expired (so expiry is not the cause)")
        harness.expire_sessions()
        after = await call("list_changed_payables", window=window, page_token=None)
        _page_need(rule, after, "after the sessions expired the client must sign in again")

    async def test_paging_is_exactly_once_and_valid(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """Every ready payable comes back exactly once across pages, as valid models."""
        rule = "exactly-once-across-pages"
        seeded = harness.seed(harness.page_size * 2 + 3)
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        for source_id, pages in sorted(read.seen_on.items()):
            if len(pages) > 1:
                fail(
                    rule,
                    f"returned {len(pages)} times, on pages {pages}, in a window nothing changed "
                    f"during",
                    record=source_id,
                )
        missing = sorted(seeded - read.ids)
        if missing:
            rejection = read.rejection(missing[0])
            why = (
                "the plugin neither returned nor rejected it"
                if rejection is None
                else f"the plugin rejected it: field {rejection.field}: {rejection.reason}"
            )
            fail(
                rule,
                f"seeded ready, never returned across {read.pages} page(s) ({len(missing)} of "
                f"{len(seeded)} seeded are missing, e.g. {missing[:5]}); {why}",
                record=missing[0],
                field=None if rejection is None else rejection.field,
            )
        if read.pages < 3:
            fail(
                "page-shape",
                f"{len(seeded)} ready payables at page_size {harness.page_size} came back on "
                f"{read.pages} page(s), expected at least 3: does the plugin ignore the "
                f"context's page size?",
            )
        for payable in read.items:
            if payable.modified_at.tzinfo is None:
                fail("page-shape", "is a naive datetime", record=payable.source_id,
                     field="modified_at")  # fmt: skip
            for i, line in enumerate(payable.lines):
                if not isinstance(line.amount, Decimal):
                    fail(
                        "page-shape",
                        f"is a {type(line.amount).__name__}, not a Decimal",
                        record=payable.source_id,
                        field=f"lines.{i}.amount",
                    )

    @pytest.mark.parametrize("kind", NOT_READY_KINDS)
    async def test_not_ready_records_are_never_returned(
        self, harness: SourceHarness, call: _Caller, kind: NotReadyKind
    ) -> None:
        """On-hold, unapproved and purchase-order records never come back as payables."""
        rule = "not-ready-never-returned"
        seeded = harness.seed(3)
        not_ready = harness.seed_not_ready()
        if kind not in not_ready:
            pytest.skip(
                f"[{rule}] the harness seeds no {kind} record (seed_not_ready left it out: the "
                f"system cannot hold one where the plugin reads), so this kind is not checked"
            )
        record_id = not_ready[kind]
        assert record_id, f"[{rule}] seed_not_ready gave an empty id for its {kind} record"
        assert record_id not in seeded, (
            f"[{rule}] seed_not_ready's {kind} record {record_id} is one of seed()'s ready ones"
        )
        # get_payable reads a record whatever its status: it proves the harness seeded the record
        # where the plugin reads, so the check below cannot pass for want of a record
        try:
            found = await call("get_payable", source_id=record_id)
        except InvalidRecordError:
            found = True  # there, and refused as a payable: fine for this rule
        if found is None:
            fail(
                rule,
                f"get_payable does not know seed_not_ready's {kind} record, so the suite cannot "
                f"tell whether the listing leaves it out: return the id get_payable takes",
                record=record_id,
            )
        read = await self._read_all(
            harness, call, self._window(harness), expected=len(seeded) + len(not_ready)
        )
        for payable in read.items:
            if payable.source_id == record_id:
                fail(
                    rule,
                    f"the {kind} record came back among the items (source_status "
                    f"{payable.source_status!r}, page {read.seen_on[record_id]}): it must not "
                    f"move to the sink; leave it out of the listing",
                    record=record_id,
                    field="source_status",
                )
        read.need(rule, 1, "reading the window with the not-ready records in it")

    async def test_ready_records_are_read_not_rejected(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """A well-formed ready record is read as a payable, never put in ``rejected``."""
        rule = "read-without-rejection"
        seeded = harness.seed(harness.page_size + 3)
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        for rejected in read.rejected:
            if rejected.record_id in seeded:
                fail(
                    rule,
                    f"a well-formed, ready record was rejected: {rejected.reason}",
                    record=rejected.record_id,
                    field=rejected.field,
                )
        read.need(rule, 1, "reading the seeded ready records")

    async def test_money_is_exact_and_positive(self, harness: SourceHarness, call: _Caller) -> None:
        """Amounts have no more places than the currency's minor unit; totals are positive."""
        seeded = harness.seed(harness.page_size + 3)
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        read.need("money-precision", 1, "reading payables whose money to check")
        for payable in read.items:
            places = minor_units(payable.currency)
            amounts = [
                *((f"lines.{i}.amount", line.amount) for i, line in enumerate(payable.lines)),
                ("total", payable.total),
            ]
            for name, amount in amounts:
                if decimal_places(amount) > places:
                    fail(
                        "money-precision",
                        f"{amount} has {decimal_places(amount)} decimal places, "
                        f"{payable.currency} has {places} (ISO 4217 minor units): a Decimal "
                        f"built from a float (Decimal(0.1)) shows up so; build it from the "
                        f"system's text, or quantize",
                        record=payable.source_id,
                        field=name,
                    )
            if payable.total <= 0:
                fail(
                    "money-sign",
                    f"total {payable.total} {payable.currency} for a bill seeded ready to pay: "
                    f"a sign turned (debit and credit conventions)? A credit document is not "
                    f"a bill: leave it out by its type, or reject it naming the field",
                    record=payable.source_id,
                    field="total",
                )

    async def test_window_bounds(self, harness: SourceHarness, call: _Caller) -> None:
        """Every payable of a window is inside it: lower bound inclusive, upper exclusive."""
        rule = "window-bounds"
        seeded = harness.seed(5)
        expected = len(seeded)
        read = await self._read_all(harness, call, self._window(harness), expected=expected)
        read.need(rule, 1, "reading the whole window")
        ordered = sorted(read.items, key=lambda p: (p.modified_at, p.source_id))
        first, middle = ordered[0], ordered[len(ordered) // 2]
        # lower bound inclusive
        inclusive = self._window(harness, since=first.modified_at)
        got = await self._read_all(harness, call, inclusive, expected=expected)
        if first.source_id not in got.ids:
            fail(
                rule,
                f"modified_at {first.modified_at.isoformat()} is the window's since, but the "
                f"window {_show(inclusive)} left it out: the lower bound is inclusive; "
                f"{rejections(got.rejected)}",
                record=first.source_id,
                field="modified_at",
            )
        # a window starting in the middle holds the middle record and nothing before it
        # (_read_all checks every record against the bounds)
        later = self._window(harness, since=middle.modified_at)
        got = await self._read_all(harness, call, later, expected=expected)
        if middle.source_id not in got.ids:
            fail(
                rule,
                f"modified_at {middle.modified_at.isoformat()} is the window's since, but the "
                f"window {_show(later)} left it out; {rejections(got.rejected)}",
                record=middle.source_id,
                field="modified_at",
            )
        # upper bound exclusive
        exclusive = ChangeWindow(since=None, until=first.modified_at)
        before = await self._read_all(harness, call, exclusive, expected=expected)
        if first.source_id in before.ids:  # _read_all fails first; said again for the reader
            fail(
                rule,
                f"modified_at {first.modified_at.isoformat()} is the window's until, but the "
                f"window {_show(exclusive)} returned it: the upper bound is exclusive",
                record=first.source_id,
                field="modified_at",
            )

    async def test_a_change_during_paging_is_not_lost(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """A payable changed while pages are read is in the next window."""
        rule = "change-during-paging-kept"
        seeded = sorted(harness.seed(harness.page_size * 2 + 1))
        start = harness.now()

        def change() -> None:
            harness.touch(seeded[0])
            harness.touch(seeded[-1])

        await self._read_all(
            harness, call, self._window(harness), expected=len(seeded), after_first_page=change
        )
        # whatever this read missed because it changed, the next window (the engine's next run,
        # from a cursor no later than the read's start) must contain
        later = await self._read_all(
            harness, call, self._window(harness, since=start), expected=len(seeded)
        )
        for source_id in (seeded[0], seeded[-1]):
            if source_id not in later.ids:
                fail(
                    rule,
                    f"changed while the window was read, but missing from the next window "
                    f"{_show(later.window)}; {rejections(later.rejected)}",
                    record=source_id,
                    field="modified_at",
                )

    async def test_accounts_cover_the_lines(self, harness: SourceHarness, call: _Caller) -> None:
        """The account listing reports every account the payable lines use."""
        rule = "accounts-cover-lines"
        seeded = harness.seed(5)
        catalog = await call("list_accounts")
        assert isinstance(catalog, AccountCatalog), (
            f"[{rule}] list_accounts returned {type(catalog).__name__}, not an AccountCatalog"
        )
        known = {a.id for a in catalog.accounts}
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        read.need(rule, 1, "reading payables whose lines to check")
        for payable in read.items:
            for i, line in enumerate(payable.lines):
                if line.account_id not in known:
                    fail(
                        rule,
                        f"account {line.account_id!r} is not among the {len(known)} accounts "
                        f"list_accounts reports",
                        record=payable.source_id,
                        field=f"lines.{i}.account_id",
                    )

    async def test_get_payable_matches_the_listing(
        self, harness: SourceHarness, call: _Caller
    ) -> None:
        """Reading one payable gives what the listing gave; an unknown id gives None."""
        rule = "get-payable-matches-listing"
        seeded = harness.seed(3)
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        read.need(rule, 1, "reading a payable to get again")
        listed = read.items[0]
        again = await call("get_payable", source_id=listed.source_id)
        if again is None:
            fail(rule, "get_payable answered None for an id the listing returned",
                 record=listed.source_id)  # fmt: skip
        if again != listed:
            fields = (
                [n for n in Payable.model_fields if getattr(again, n) != getattr(listed, n)]
                if isinstance(again, Payable)
                else ["(whole record)"]
            )
            fail(
                rule,
                f"get_payable differs from the listing in {fields}: got {again!r}",
                record=listed.source_id,
                field=", ".join(fields),
            )
        unknown = await call("get_payable", source_id="no-such-payable-4711")
        assert unknown is None, (
            f"[{rule}] payable no-such-payable-4711: get_payable of an unknown id must answer "
            f"None, got {unknown!r}"
        )

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
        rule = "posting-once"
        seeded = harness.seed(3)
        read = await self._read_all(harness, call, self._window(harness), expected=len(seeded))
        read.need(rule, 2, "reading two payables to post against")
        payable, other = read.items[0], read.items[1]
        at = f"payable {payable.source_id}"
        posting = self._posting(harness, payable, "stp01CONFORMANCE")
        if not call.implements("find_payment"):
            first = await call("record_payment", posting=posting)
            second = await call("record_payment", posting=posting)
            assert isinstance(first, RecordedPayment), (
                f"[{rule}] {at}: record_payment returned {type(first).__name__}, not a "
                f"RecordedPayment"
            )
            assert (first.already_recorded, second.already_recorded) == (False, True), (
                f"[{rule}] {at}, field already_recorded: without find_payment, record_payment "
                f"must look first: the first call posts (False), the second finds it (True); "
                f"got {first.already_recorded}, {second.already_recorded}"
            )
            assert second.source_id == first.source_id, (
                f"[{rule}] {at}, field source_id: the repeated record_payment answered "
                f"{second.source_id}, not the first posting {first.source_id}"
            )
            posted = harness.payments_posted(payable.source_id)
            assert posted == 1, f"[{rule}] {at}: the system holds {posted} payments, not 1"
            return
        found = await call("find_payment", posting=posting)
        assert found is None, (
            f"[{rule}] {at}: find_payment found {found!r} before anything was posted"
        )
        recorded = await call("record_payment", posting=posting)
        assert isinstance(recorded, RecordedPayment), (
            f"[{rule}] {at}: record_payment returned {type(recorded).__name__}, not a "
            f"RecordedPayment"
        )
        found = await call("find_payment", posting=posting)
        assert isinstance(found, RecordedPayment), (
            f"[{rule}] {at}: find_payment did not find the posting record_payment made "
            f"({recorded.source_id}): got {found!r}"
        )
        assert (found.source_id, found.already_recorded) == (recorded.source_id, True), (
            f"[{rule}] {at}, field source_id/already_recorded: find_payment answered "
            f"({found.source_id}, {found.already_recorded}), expected ({recorded.source_id}, True)"
        )
        # The same sink payment applied to another bill is another posting.
        elsewhere = self._posting(harness, other, posting.payment_sink_id)
        found = await call("find_payment", posting=elsewhere)
        assert found is None, (
            f"[{rule}] payable {other.source_id}: find_payment reported {found!r}, the posting "
            f"of the same sink payment to payable {payable.source_id}: it must match the bill too"
        )
        posted = harness.payments_posted(payable.source_id)
        assert posted == 1, f"[{rule}] {at}: the system holds {posted} payments, not 1"
        posted = harness.payments_posted(other.source_id)
        assert posted == 0, (
            f"[{rule}] payable {other.source_id}: the system holds {posted} payments, not 0"
        )

    @pytest.mark.parametrize("kind", list(EXPECTED_ERRORS))
    async def test_errors_map_onto_the_core_tree(
        self, harness: SourceHarness, call: _Caller, kind: FaultKind
    ) -> None:
        """Refused credentials, throttling, 5xx and garbage map onto the core errors."""
        harness.seed(2)
        await call("authenticate")
        if not harness.fail_next(kind):
            pytest.skip(f"this harness cannot make its system answer {kind!r}")
        await _expect_error(
            "error-mapping",
            EXPECTED_ERRORS[kind],
            call("list_changed_payables", window=self._window(harness), page_token=None),
            f"list_changed_payables when the system answers {kind!r}",
        )


def _check_bounds(window: ChangeWindow, payable: Payable, overlap: timedelta) -> None:
    at = payable.modified_at
    if (window.since is not None and at < window.since - overlap) or at >= window.until:
        allowed = f", less the harness's change_overlap {overlap}" if overlap else ""
        fail(
            "window-bounds",
            f"modified_at {at.isoformat()} is outside the window {_show(window)} it was read "
            f"for (since{allowed} <= modified_at < until)",
            record=payable.source_id,
            field="modified_at",
        )


def _page_need(rule: str, page: Any, doing: str) -> None:
    if not isinstance(page, PayablePage):
        fail("page-shape", f"{doing}: got a {type(page).__name__}, not a PayablePage")
    if not page.items:
        fail(rule, f"{doing}: the first page holds no payable; {rejections(page.rejected)}")


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


def _ids(results: Iterable[Any]) -> list[str | None]:
    return [getattr(r, "sink_id", None) for r in results]


class SinkPluginSuite(_SuiteBase):
    """The contract of a sink (BILL) plugin. Subclass it and provide a ``harness`` fixture."""

    role = Role.SINK

    async def _vendor_id(self, call: _Caller, tag: str) -> str:
        result = await call("upsert_vendor", vendor=_vendor(tag), existing_sink_id=None)
        assert isinstance(result, VendorResult), (
            f"[vendor-upsert] vendor V-{tag}: upsert_vendor returned {type(result).__name__}, "
            f"not a VendorResult"
        )
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
        rule = "limits-declared"
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        limits = description.limits
        assert limits.max_in_flight is not None, (
            f"[{rule}] plugin {description.system}, field limits.max_in_flight: a sink must say "
            f"how many requests it allows in flight"
        )
        if limits.scope_setting is not None:
            assert limits.scope_setting in description.settings_model.model_fields, (
                f"[{rule}] plugin {description.system}, field limits.scope_setting: "
                f"{limits.scope_setting!r} is not a field of the settings model"
            )

    async def test_vendor_create_find_update(self, call: _Caller) -> None:
        """A vendor is created once, found by lookup, and updated in place."""
        rule = "vendor-upsert"
        vendor = _vendor("A")
        at = f"[{rule}] vendor {vendor.source_id}"
        created = await call("upsert_vendor", vendor=vendor, existing_sink_id=None)
        assert isinstance(created, VendorResult), (
            f"{at}: upsert_vendor returned {type(created).__name__}, not a VendorResult"
        )
        assert created.created, f"{at}, field created: a new vendor must say created=True"
        found = await call("find_vendor", vendor=vendor)
        assert found is not None, f"{at}: find_vendor did not find the vendor just created"
        assert found.sink_id == created.sink_id, (
            f"{at}, field sink_id: find_vendor found {found.sink_id}, created {created.sink_id}"
        )
        renamed = vendor.model_copy(update={"email": "remit@conformance.example"})
        updated = await call("upsert_vendor", vendor=renamed, existing_sink_id=created.sink_id)
        assert (updated.sink_id, updated.created) == (created.sink_id, False), (
            f"{at}, field sink_id/created: updating in place answered "
            f"({updated.sink_id}, {updated.created}), expected ({created.sink_id}, False)"
        )
        nobody = await call("find_vendor", vendor=_vendor("NOBODY"))
        assert nobody is None, (
            f"[{rule}] vendor V-NOBODY: find_vendor of an unknown vendor found {nobody!r}"
        )

    async def test_bill_create_find_update_and_paid(
        self, harness: SinkHarness, call: _Caller
    ) -> None:
        """A bill is created once, found by vendor + invoice, updated while unpaid, then kept."""
        rule = "bill-upsert"
        at = f"[{rule}] bill CONF-1"
        vendor_id = await self._vendor_id(call, "B")
        draft = self._draft(harness, vendor_id, "CONF-1")
        created = await call("create_bill", draft=draft)
        assert isinstance(created, BillResult), (
            f"{at}: create_bill returned {type(created).__name__}, not a BillResult"
        )
        assert created.created, f"{at}, field created: a new bill must say created=True"
        found = await call("find_bill", vendor_sink_id=vendor_id, invoice_number="CONF-1")
        assert found is not None, f"{at}: find_bill did not find the bill just created"
        assert found.sink_id == created.sink_id, (
            f"{at}, field sink_id: find_bill found {found.sink_id}, created {created.sink_id}"
        )
        changed = self._draft(harness, vendor_id, "CONF-1", "130.00").model_copy(
            update={"existing_sink_id": created.sink_id}
        )
        updated = await call("create_bill", draft=changed)
        assert (updated.sink_id, updated.created, updated.paid) == (
            created.sink_id,
            False,
            False,
        ), (
            f"{at}, field sink_id/created/paid: updating the unpaid bill answered "
            f"({updated.sink_id}, {updated.created}, {updated.paid}), expected "
            f"({created.sink_id}, False, False)"
        )
        harness.pay(created.sink_id)
        locked = await call("create_bill", draft=changed)
        assert locked.paid, f"{at}, field paid: a paid bill must be reported paid, not changed"
        count = harness.bill_count(vendor_id, "CONF-1")
        assert count == 1, f"{at}: the system holds {count} bills for the invoice, not 1"
        nope = await call("find_bill", vendor_sink_id=vendor_id, invoice_number="NOPE")
        assert nope is None, f"[{rule}] bill NOPE: find_bill of an unknown invoice found {nope!r}"

    async def test_bulk_is_all_or_nothing(self, harness: SinkHarness, call: _Caller) -> None:
        """Bulk creates return results in order; a refused batch creates nothing."""
        rule = "bulk-all-or-nothing"
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        if Capability.BULK_CREATE_BILLS not in description.capabilities:
            pytest.skip("the plugin does not declare bulk_create_bills")
        vendor_id = await self._vendor_id(call, "C")
        drafts = [self._draft(harness, vendor_id, f"CONF-B{i}") for i in range(3)]
        results = await call("create_bills", drafts=drafts)
        assert len(results) == 3, (
            f"[{rule}] create_bills of 3 drafts answered {len(results)} results: {_ids(results)}"
        )
        assert all(r.created for r in results), (
            f"[{rule}] field created: create_bills of 3 new bills answered "
            f"{[r.created for r in results]}, expected all True"
        )
        for i, result in enumerate(results):
            found = await call("find_bill", vendor_sink_id=vendor_id, invoice_number=f"CONF-B{i}")
            assert found is not None, (
                f"[{rule}] bill CONF-B{i}: find_bill did not find the bill create_bills made"
            )
            assert found.sink_id == result.sink_id, (
                f"[{rule}] bill CONF-B{i}, field sink_id: result {i} is {result.sink_id}, the bill "
                f"found is {found.sink_id}: results must come in the order of the drafts"
            )
        refused = [
            self._draft(harness, vendor_id, "CONF-R1"),
            self._draft(harness, "009NOSUCHVENDOR0", "CONF-R2"),
        ]
        await _expect_error(
            rule,
            (InvalidRecordError, UpstreamError),
            call("create_bills", drafts=refused),
            "create_bills of a batch with a draft for an unknown vendor",
        )
        count = harness.bill_count(vendor_id, "CONF-R1")
        assert count == 0, (
            f"[{rule}] bill CONF-R1: a refused batch created {count} bill(s) for its good draft"
        )

    async def test_payments_are_listed_with_their_bills(
        self, harness: SinkHarness, call: _Caller
    ) -> None:
        """A payment made in the sink is listed, in a window, applied to its bill."""
        rule = "payments-listed"
        vendor_id = await self._vendor_id(call, "D")
        bill = await call("create_bill", draft=self._draft(harness, vendor_id, "CONF-P1"))
        payment_id = harness.pay(bill.sink_id)
        at = f"[{rule}] payment {payment_id}"
        window = ChangeWindow(since=None, until=harness.now() + timedelta(seconds=1))
        found: list[Payment] = []
        rejected: list[RejectedRecord] = []
        tokens: set[str] = set()
        token: str | None = None
        while True:
            page = await call("list_changed_payments", window=window, page_token=token)
            assert isinstance(page, PaymentPage), (
                f"[{rule}] list_changed_payments returned {type(page).__name__}, not a PaymentPage"
            )
            found += page.items
            rejected += page.rejected
            token = page.next_page_token
            if token is None:
                break
            assert token not in tokens, (
                f"[{rule}] list_changed_payments answered next_page_token {_short(token)} "
                f"twice: it does not move on with the token"
            )
            tokens.add(token)
        matching = [p for p in found if p.sink_id == payment_id]
        assert len(matching) == 1, (
            f"{at}: listed {len(matching)} times in {_show(window)}, expected once; "
            f"{rejections(rejected)}"
        )
        (payment,) = matching
        assert payment.status is PaymentStatus.PAID, (
            f"{at}, field status: {payment.status.value}, expected paid"
        )
        applied = [a.bill_sink_id for a in payment.applications]
        assert applied == [bill.sink_id], (
            f"{at}, field applications: applied to {applied}, expected [{bill.sink_id}]"
        )
        again = await call("get_payment", sink_id=payment_id)
        assert again == payment, f"{at}: get_payment answered {again!r}, the listing {payment!r}"

    async def test_reauthenticates_after_expiry(self, harness: SinkHarness, call: _Caller) -> None:
        """After the system expires every session, the client signs in again by itself."""
        harness.expire_sessions()
        nobody = await call("find_vendor", vendor=_vendor("NOBODY"))
        assert nobody is None, (
            f"[reauthenticate-after-expiry] vendor V-NOBODY: after the sessions expired, "
            f"find_vendor of an unknown vendor answered {nobody!r}, expected None"
        )

    @pytest.mark.parametrize("kind", list(EXPECTED_ERRORS))
    async def test_errors_map_onto_the_core_tree(
        self, harness: SinkHarness, call: _Caller, kind: FaultKind
    ) -> None:
        """Refused credentials, throttling, 5xx and garbage map onto the core errors."""
        if not harness.fail_next(kind):
            pytest.skip(f"this harness cannot make its system answer {kind!r}")
        window = ChangeWindow(since=None, until=harness.now())
        await _expect_error(
            "error-mapping",
            EXPECTED_ERRORS[kind],
            call("list_changed_payments", window=window, page_token=None),
            f"list_changed_payments when the system answers {kind!r}",
        )

    async def test_webhooks_are_verified(self, harness: SinkHarness, call: _Caller) -> None:
        """The signing key comes once; a signed delivery parses; a tampered one is refused."""
        rule = "webhook-verification"
        description = _plugin_manager(harness.plugin).hook.describe_plugin()
        if Capability.WEBHOOKS not in description.capabilities:
            pytest.skip("the plugin does not declare webhooks")
        url, events = "https://connector.example/webhooks/x", ["payment.updated"]
        sub = await call("ensure_webhook_subscription", notification_url=url, events=events,
                         existing=None)  # fmt: skip
        assert isinstance(sub, WebhookSubscription), (
            f"[{rule}] ensure_webhook_subscription returned {type(sub).__name__}, not a "
            f"WebhookSubscription"
        )
        at = f"[{rule}] subscription {sub.sink_id}"
        assert sub.security_key is not None, (
            f"{at}, field security_key: a new subscription must carry its signing key"
        )
        again = await call("ensure_webhook_subscription", notification_url=url, events=events,
                           existing=sub.model_copy(update={"security_key": None}))  # fmt: skip
        assert (again.sink_id, again.security_key) == (sub.sink_id, None), (
            f"{at}, field sink_id/security_key: ensuring the existing subscription answered "
            f"{again.sink_id} with{'' if again.security_key else 'out'} a key, expected "
            f"{sub.sink_id} without one (the key comes once)"
        )
        vendor_id = await self._vendor_id(call, "W")
        bill = await call("create_bill", draft=self._draft(harness, vendor_id, "CONF-W1"))
        payment_id = harness.pay(bill.sink_id)
        headers, body = harness.webhook_delivery(sub.sink_id, payment_id)
        batch = await call(
            "parse_webhook", headers=headers, body=body, security_key=sub.security_key
        )
        assert isinstance(batch, WebhookBatch), (
            f"{at}: parse_webhook returned {type(batch).__name__}, not a WebhookBatch"
        )
        entities = [e.entity_id for e in batch.events]
        assert entities == [payment_id], (
            f"{at}, field events: the delivery about payment {payment_id} parsed as {entities}"
        )
        # tamper with a value, not with white space: a sink may also accept a signature over the
        # minified body (BILL does, bill.md §6), which white space does not change
        forged = body.replace(payment_id.encode(), payment_id[:-1].encode() + b"Z", 1)
        assert forged != body, f"{at}: the delivery body does not name payment {payment_id}"
        await _expect_error(
            rule,
            WebhookVerificationError,
            call("parse_webhook", headers=headers, body=forged, security_key=sub.security_key),
            "parse_webhook of a tampered delivery",
        )
