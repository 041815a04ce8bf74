"""GL accounts and subaccounts, and how subaccounts find a BILL classification."""

from __future__ import annotations

import pluggy
from plugins.acumatica.tests.support import context, emulator

from ml_connector import default_account_matcher, hookspecs
from ml_connector.models import (
    Account,
    AccountCatalog,
    AccountKind,
    AccountMapping,
    Dimension,
    DimensionKind,
    MappingMethod,
)
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin

SUB = DimensionKind.SUBACCOUNT


async def test_catalog_has_accounts_and_subaccounts(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    catalog = await plugin.list_accounts(ctx)
    accounts = {a.id: a for a in catalog.accounts}
    assert accounts["61000"] == Account(
        id="61000", number="61000", name="Office Supplies", kind=AccountKind.EXPENSE
    )
    assert accounts["20000"].kind is AccountKind.LIABILITY
    assert accounts["69000"].active is False
    subaccounts = {d.id: d for d in catalog.dimensions}
    assert subaccounts["ADM-000"] == Dimension(
        id="ADM-000", kind=SUB, code="ADM-000", name="Administration"
    )
    assert subaccounts["RND-000"].active is False


def sink(*dimensions: Dimension) -> AccountCatalog:
    return AccountCatalog(
        accounts=(Account(id="0ca01", number="61000", name="Office Supplies"),),
        dimensions=dimensions,
    )


SOURCE = AccountCatalog(
    accounts=(Account(id="61000", number="61000", name="Office Supplies"),),
    dimensions=(
        Dimension(id="ADM-000", kind=SUB, code="ADM-000", name="Administration"),
        Dimension(id="SLS-000", kind=SUB, code="SLS-000", name="Sales"),
        Dimension(id="OPS-000", kind=SUB, code="OPS-000", name="Operations"),
    ),
)


def as_pairs(mappings: list[AccountMapping]) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {(m.source_kind, m.source_id): (m.sink_kind, m.sink_id, m.method) for m in mappings}


async def test_subaccounts_map_to_one_classification_by_code_or_name() -> None:
    found = as_pairs(
        await plugin.map_accounts(
            SOURCE,
            sink(
                Dimension(id="0cl01", kind=DimensionKind.DEPARTMENT, code="adm000", name="Admin"),
                Dimension(id="0cl02", kind=DimensionKind.CLASS, code="S", name="sales"),
            ),
            [],
        )
    )
    assert found[("account", "61000")] == ("account", "0ca01", MappingMethod.NUMBER)
    assert found[("subaccount", "ADM-000")] == ("department", "0cl01", MappingMethod.PLUGIN)
    assert found[("subaccount", "SLS-000")] == ("class", "0cl02", MappingMethod.PLUGIN)
    assert ("subaccount", "OPS-000") not in found, "no counterpart: unmapped, never guessed"


async def test_two_candidates_even_of_different_kinds_map_nothing() -> None:
    found = as_pairs(
        await plugin.map_accounts(
            SOURCE,
            sink(
                Dimension(id="0cl01", kind=DimensionKind.DEPARTMENT, code="ADM-000", name="A"),
                Dimension(id="0cl03", kind=DimensionKind.LOCATION, code="ADM-000", name="B"),
                Dimension(
                    id="0cl04", kind=DimensionKind.CLASS, code="X", name="Operations", active=False
                ),
            ),
            [],
        )
    )
    assert ("subaccount", "ADM-000") not in found
    assert ("subaccount", "OPS-000") not in found, "inactive classifications are never chosen"


async def test_manual_mappings_win() -> None:
    manual = AccountMapping(
        source_kind="subaccount", source_id="ADM-000", sink_kind="location", sink_id="0cl09",
        method=MappingMethod.MANUAL,
    )  # fmt: skip
    found = as_pairs(
        await plugin.map_accounts(
            SOURCE,
            sink(Dimension(id="0cl01", kind=DimensionKind.DEPARTMENT, code="ADM-000", name="A")),
            [manual],
        )
    )
    assert found[("subaccount", "ADM-000")] == ("location", "0cl09", MappingMethod.MANUAL)


async def test_the_plugin_answers_before_the_core_default() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(default_account_matcher)
    pm.register(plugin)
    target = Dimension(id="0cl01", kind=DimensionKind.DEPARTMENT, code="ADM-000", name="A")
    mappings = await pm.hook.map_accounts(ctx=None, source=SOURCE, sink=sink(target), manual=[])
    assert ("subaccount", "ADM-000") in as_pairs(mappings)
