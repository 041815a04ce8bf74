"""The package's exports, and that each plugin implements every hook of its side."""

from __future__ import annotations

import inspect

import pluggy
import pytest
from core.tests.testing.helpers import plugin_manager

import ml_connector.testing as testing
from ml_connector import hookspecs
from ml_connector.description import PluginInfo
from ml_connector.testing import reference_erp, reference_sink

BOTH = {"describe_plugin", "authenticate", "check_connection", "list_accounts", "close_connection"}
SOURCE = BOTH | {"list_changed_payables", "get_payable", "record_payment", "find_payment"}
SINK = BOTH | {
    "find_vendor",
    "upsert_vendor",
    "find_bill",
    "create_bill",
    "create_bills",
    "create_account",
    "list_changed_payments",
    "get_payment",
    "ensure_webhook_subscription",
    "parse_webhook",
}


def test_exports_are_sorted_and_complete() -> None:
    exported = testing.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in exported:
        assert hasattr(testing, name)


@pytest.mark.parametrize(
    ("module", "hooks"), [(reference_erp, SOURCE), (reference_sink, SINK)], ids=["erp", "sink"]
)
def test_each_plugin_implements_every_hook_of_its_side(module, hooks: set[str]) -> None:
    pm = plugin_manager(module.PLUGIN)
    implemented = {name for name in hooks | SOURCE | SINK if getattr(pm.hook, name).get_hookimpls()}
    assert implemented == hooks
    for name in hooks - {"describe_plugin"}:
        assert inspect.iscoroutinefunction(getattr(module.PLUGIN, name)), name
    info = PluginInfo.model_validate(module.PLUGIN_INFO)
    description = pm.hook.describe_plugin()
    assert (description.system, description.role) == (info.system, info.role)
    # The reference ERP posts plainly and relies on the engine's find_payment (contract 1.2).
    assert info.contract == (">=1.2,<2" if module is reference_erp else ">=1.0,<2")


def test_hook_arguments_match_the_specs() -> None:
    # pluggy refuses an implementation asking for an argument its spec does not offer.
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(reference_erp.ReferenceErpPlugin())
    pm.register(reference_sink.ReferenceSinkPlugin())
    pm.check_pending()
