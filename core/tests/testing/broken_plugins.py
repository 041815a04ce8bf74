"""Deliberately broken variants of the reference ERP plugin, one per conformance rule.

Each is the reference plugin with one bug a partner could ship; ``test_conformance_catches``
runs the real suite against them (through ``pytester``) and expects the rule to name the bug.
:data:`CASES` maps a suite class name to its harness; :func:`suite` builds that suite class.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from core.tests.testing.test_conformance_reference import ReferenceErpHarness
from pydantic import ValidationError

from ml_connector.context import ConnectionContext
from ml_connector.hookspecs import hookimpl
from ml_connector.models import (
    ChangeWindow,
    Payable,
    PayablePage,
    PaymentPosting,
    RecordedPayment,
    RejectedRecord,
)
from ml_connector.testing import reference_erp, reset_fakes
from ml_connector.testing._erp import SYSTEM, FakeErp
from ml_connector.testing._paging import decode_token, encode_token
from ml_connector.testing.conformance import SourcePluginSuite
from ml_connector.testing.reference_erp import ReferenceErpPlugin, to_payable


class ReturnsNotReady(ReferenceErpPlugin):
    """Lists every AP document in the window, whatever its status: holds, drafts and POs move."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        settings = ctx.settings
        assert isinstance(settings, reference_erp.ReferenceErpSettings)
        fake = FakeErp.attach(settings.instance, settings.state_path)
        after = None if page_token is None else decode_token(page_token, window, system=SYSTEM)

        def read() -> PayablePage:
            ids, last = fake._changes.scan(window, after, settings.page_size, lambda _: True)
            views = [to_payable(fake, fake.payables[i]) for i in ids]
            return PayablePage(
                items=tuple(v for v in views if isinstance(v, Payable)),
                rejected=tuple(v for v in views if isinstance(v, RejectedRecord)),
                next_page_token=None if last is None else encode_token(last, window),
            )

        return await self._client.call(ctx, fake, "list_changed_payables", read)


def _via_float(payable: Payable) -> Payable:
    """The payable as a client that parses JSON numbers as floats builds it."""
    lines = [line.model_dump() | {"amount": Decimal(float(line.amount))} for line in payable.lines]
    total = sum((line["amount"] for line in lines), Decimal(0))
    return Payable.model_validate(payable.model_dump() | {"lines": lines, "total": total})


class FloatDecimalMoney(ReferenceErpPlugin):
    """Builds amounts with ``Decimal(float(x))``: valid models whose cents carry float noise."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        page = await super().list_changed_payables(ctx, window, page_token)
        return page.model_copy(update={"items": tuple(_via_float(p) for p in page.items)})


class FloatIntoModel(ReferenceErpPlugin):
    """Passes floats into the model: every record lands in ``rejected`` (as the model refuses)."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        page = await super().list_changed_payables(ctx, window, page_token)
        items: list[Payable] = []
        rejected = list(page.rejected)
        for payable in page.items:
            try:
                items.append(
                    Payable.model_validate(payable.model_dump() | {"total": float(payable.total)})
                )
            except ValidationError as exc:
                error = exc.errors(include_url=False, include_input=False)[0]
                rejected.append(
                    RejectedRecord(
                        record_type="payable",
                        record_id=payable.source_id,
                        field=".".join(str(p) for p in error["loc"]),
                        reason=error["msg"],
                        modified_at=payable.modified_at,
                    )
                )
        return PayablePage(
            items=tuple(items), rejected=tuple(rejected), next_page_token=page.next_page_token
        )


class CreditsAsBills(ReferenceErpPlugin):
    """Lists credit memos as bills: every amount negated."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        page = await super().list_changed_payables(ctx, window, page_token)
        credits = []
        for payable in page.items:
            lines = [line.model_dump() | {"amount": -line.amount} for line in payable.lines]
            data = payable.model_dump() | {"lines": lines, "total": -payable.total}
            credits.append(Payable.model_validate(data))
        return page.model_copy(update={"items": tuple(credits)})


class FirstPageOnly(ReferenceErpPlugin):
    """Answers the first page and says it was the last (no ``next_page_token``)."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        page = await super().list_changed_payables(ctx, window, page_token)
        return page.model_copy(update={"next_page_token": None})


class IgnoresPageToken(ReferenceErpPlugin):
    """Ignores the page token: the first page, with its token, forever. Counts its calls."""

    calls = 0

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        type(self).calls += 1
        return await super().list_changed_payables(ctx, window, None)


class EndlessTokens(ReferenceErpPlugin):
    """Ignores the page token too, but answers a new token every time: paging never ends."""

    calls = 0

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        type(self).calls += 1
        page = await super().list_changed_payables(ctx, window, None)
        return page.model_copy(update={"next_page_token": f"page-{type(self).calls}"})


class IgnoresSince(ReferenceErpPlugin):
    """Reads every change before ``until``, whatever the window's ``since``."""

    @hookimpl
    async def list_changed_payables(
        self, ctx: ConnectionContext, window: ChangeWindow, page_token: str | None
    ) -> PayablePage:
        wide = ChangeWindow(since=None, until=window.until)
        page = await super().list_changed_payables(ctx, wide, page_token)
        return page


class OptionalFindPayment(ReferenceErpPlugin):
    """The reference plugin with ``find_payment`` marked optional: fit for ``>=1.0,<2``."""

    @hookimpl(optionalhook=True)
    async def find_payment(
        self, ctx: ConnectionContext, posting: PaymentPosting
    ) -> RecordedPayment | None:
        return await super().find_payment(ctx, posting)


def _info(contract: str) -> dict[str, Any]:
    return {**reference_erp.PLUGIN_INFO, "contract": contract}


def _harness(name: str, plugin: object, info: dict[str, Any] | None = None) -> type:
    attributes = {"plugin": plugin, "info": reference_erp.PLUGIN_INFO if info is None else info}
    return type(name, (ReferenceErpHarness,), attributes)


CASES: dict[str, type[ReferenceErpHarness]] = {
    "TestReference": ReferenceErpHarness,
    "TestReturnsNotReady": _harness("ReturnsNotReadyHarness", ReturnsNotReady()),
    "TestFloatDecimalMoney": _harness("FloatDecimalHarness", FloatDecimalMoney()),
    "TestFloatIntoModel": _harness("FloatIntoModelHarness", FloatIntoModel()),
    "TestCreditsAsBills": _harness("CreditsHarness", CreditsAsBills()),
    "TestFirstPageOnly": _harness("FirstPageOnlyHarness", FirstPageOnly()),
    "TestIgnoresPageToken": _harness("IgnoresPageTokenHarness", IgnoresPageToken()),
    "TestEndlessTokens": _harness("EndlessTokensHarness", EndlessTokens()),
    "TestIgnoresSince": _harness("IgnoresSinceHarness", IgnoresSince()),
    "TestOpenRange": _harness("OpenRangeHarness", reference_erp.PLUGIN, _info(">=1.2")),
    "TestRangeTooWide": _harness("TooWideHarness", reference_erp.PLUGIN, _info(">=1.2,<3")),
    "TestRangeBeforeFirst": _harness(
        "BeforeFirstHarness", OptionalFindPayment(), _info(">=0.9,<2")
    ),
    "TestHookAboveLowerBound": _harness(
        "HookAboveHarness", reference_erp.PLUGIN, _info(">=1.0,<2")
    ),
    "TestOptionalHookBelow": _harness(
        "OptionalHookHarness", OptionalFindPayment(), _info(">=1.0,<2")
    ),
}
"""Suite class name -> the harness its suite runs with."""


def suite(name: str) -> type[SourcePluginSuite]:
    """The source suite, run with the harness :data:`CASES` names."""
    harness_class = CASES[name]

    class Suite(SourcePluginSuite):
        @pytest.fixture
        def harness(self) -> Any:
            harness = harness_class()
            yield harness
            reset_fakes()

    Suite.__name__ = Suite.__qualname__ = name
    return Suite
