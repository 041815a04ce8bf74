"""Discovery through real entry points: every status, and one plugin never hides another."""

from __future__ import annotations

import re
import sys

import pytest
from core.tests.registry.fake_dists import RAISES_ON_IMPORT, plugin_code
from stevedore import ExtensionManager

from ml_connector import (
    CONTRACT_VERSION,
    IncompatiblePluginError,
    PluginDescription,
    PluginError,
    PluginNotFoundError,
    Role,
)
from ml_connector.registry import (
    DISABLE_ENV,
    EXTENSIONS_GROUP,
    LOAD_ENV,
    PLUGIN_INFO_GROUP,
    PLUGINS_GROUP,
    LoadedPlugin,
    PluginKind,
    PluginStatus,
    Registry,
)


def by_name(registry: Registry) -> dict[str, dict]:
    rows = [r.as_json() for r in registry.plugins()]
    assert len({r["name"] for r in rows}) == len(rows), rows
    return {r["name"]: r for r in rows}


def install_good_pair(fake_dists) -> None:
    fake_dists.write("acme", role="source", version="2.3.0")
    fake_dists.write("paybox", role="sink", distribution="paybox-connector", version="0.9.1")


def assert_good_pair_still_work(registry: Registry) -> None:
    rows = {r.name: r for r in registry.plugins()}
    assert rows["acme"].status is PluginStatus.OK
    assert rows["paybox"].status is PluginStatus.OK
    assert registry.load("acme", Role.SOURCE).system == "acme"
    assert registry.load("paybox", Role.SINK).system == "paybox"


def test_no_plugins_lists_nothing(fake_dists, registry_for) -> None:
    fake_dists.site()
    assert registry_for().plugins() == []


def test_good_source_and_sink(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    registry = registry_for()

    assert by_name(registry) == {
        "acme": {
            "name": "acme",
            "kind": "system",
            "distribution": "ml-connector-acme",
            "version": "2.3.0",
            "role": "source",
            "contract": ">=1.0,<2",
            "display_name": "Acme",
            "status": "ok",
            "error": None,
            "disabled": False,
            "warnings": [],
        },
        "paybox": {
            "name": "paybox",
            "kind": "system",
            "distribution": "paybox-connector",
            "version": "0.9.1",
            "role": "sink",
            "contract": ">=1.0,<2",
            "display_name": "Paybox",
            "status": "ok",
            "error": None,
            "disabled": False,
            "warnings": [],
        },
    }
    loaded = registry.load("paybox", Role.SINK)
    assert isinstance(loaded, LoadedPlugin)
    assert (loaded.distribution, loaded.version) == ("paybox-connector", "0.9.1")
    assert loaded.info.display_name == "Paybox"
    assert isinstance(loaded.description, PluginDescription)
    assert loaded.description.role is Role.SINK
    assert loaded.plugin is sys.modules[f"{fake_dists.package_name('paybox')}.plugin"]


def test_load_checks_only_the_plugin_asked_for(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    registry = registry_for()
    registry.load("acme", Role.SOURCE)
    assert f"{fake_dists.package_name('paybox')}.plugin" not in sys.modules


def test_import_error_is_broken(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    fake_dists.write("crashy", plugin_source="import mlc_no_such_module_anywhere\n")
    registry = registry_for()

    row = by_name(registry)["crashy"]
    assert row["status"] == "broken"
    assert "cannot import" in row["error"]
    assert "ModuleNotFoundError" in row["error"]
    assert "mlc_no_such_module_anywhere" in row["error"]
    with pytest.raises(PluginError, match=r"plugin 'crashy' is broken: cannot import"):
        registry.load("crashy", Role.SOURCE)
    assert_good_pair_still_work(registry)


def test_assertion_or_exit_on_import_is_isolated(fake_dists, registry_for) -> None:
    # stevedore re-raises AssertionError from an import; it must not escape the registry.
    install_good_pair(fake_dists)
    fake_dists.write("asserty", plugin_source="assert False, 'nope'\n")
    fake_dists.write("exity", plugin_source="import sys\nsys.exit(3)\n")
    registry = registry_for()

    rows = by_name(registry)
    assert rows["asserty"]["status"] == "broken"
    assert "AssertionError: nope" in rows["asserty"]["error"]
    assert rows["exity"]["status"] == "broken"
    assert "SystemExit: 3" in rows["exity"]["error"]
    assert_good_pair_still_work(registry)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        pytest.param(
            {"system": "badmeta", "display_name": "Bad", "contract": ">=1.0,<2"},
            r"invalid metadata in .*:PLUGIN_INFO: role: Field required",
            id="missing-role",
        ),
        pytest.param(
            {"system": "badmeta", "display_name": "Bad", "role": "both", "contract": ">=1"},
            r"invalid metadata in .*: role: Input should be 'source' or 'sink'",
            id="unknown-role",
        ),
        pytest.param(
            ["not", "a", "dict"], r"metadata .*:PLUGIN_INFO is a list, not a dict", id="list"
        ),
        pytest.param(
            {"system": "other", "display_name": "Bad", "role": "source", "contract": ">=1.0,<2"},
            r"metadata says system 'other', but the entry point is named 'badmeta'",
            id="system-mismatch",
        ),
        pytest.param(
            {"system": "badmeta", "display_name": "Bad", "role": "source", "contract": "one"},
            r"invalid metadata: declares an invalid contract range 'one'",
            id="invalid-range",
        ),
    ],
)
def test_bad_metadata_is_broken(fake_dists, registry_for, info, message) -> None:
    install_good_pair(fake_dists)
    bad = fake_dists.write("badmeta", info=info, plugin_source=RAISES_ON_IMPORT)
    registry = registry_for()

    row = by_name(registry)["badmeta"]
    assert row["status"] == "broken"
    assert row["distribution"] == "ml-connector-badmeta"
    assert row["error"] is not None
    assert re.search(message, row["error"]), row["error"]
    assert bad.plugin_module not in sys.modules
    assert_good_pair_still_work(registry)


def test_missing_metadata_entry_point_is_broken(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    package = fake_dists.package_name("nometa")
    fake_dists.write(
        "nometa",
        plugin_source=RAISES_ON_IMPORT,
        entry_points={PLUGINS_GROUP: {"nometa": f"{package}.plugin"}},
    )
    registry = registry_for()

    row = by_name(registry)["nometa"]
    assert row["status"] == "broken"
    assert row["role"] is None
    assert row["error"] == (
        "no metadata: distribution ml-connector-nometa has no 'ml_connector.plugin_info' entry "
        "point named 'nometa'"
    )
    assert_good_pair_still_work(registry)


def test_missing_plugin_entry_point_is_broken(fake_dists, registry_for) -> None:
    package = fake_dists.package_name("nohooks")
    fake_dists.write(
        "nohooks", entry_points={PLUGIN_INFO_GROUP: {"nohooks": f"{package}:PLUGIN_INFO"}}
    )
    row = by_name(registry_for())["nohooks"]
    assert row["status"] == "broken"
    assert row["role"] == "source"
    assert "has no 'ml_connector.plugins' entry point named 'nohooks'" in row["error"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            """
            from ml_connector import PluginDescription, Role

            @hookimpl(tryfirst=True)
            def describe_plugin():
                return PluginDescription(
                    system="liar", role=Role.SINK,
                    settings_model=Settings, credentials_model=Credentials,
                )
            """,
            "describe_plugin says system 'liar' with role 'sink', but its metadata says system "
            "'liar' with role 'source'",
            id="wrong-role",
        ),
        pytest.param(
            """
            @hookimpl(tryfirst=True)
            def describe_plugin():
                raise KeyError("settings")
            """,
            "describe_plugin raised KeyError: 'settings'",
            id="raises",
        ),
        pytest.param(
            """
            @hookimpl(tryfirst=True)
            def describe_plugin():
                return {"system": "liar"}
            """,
            "describe_plugin returned dict, not a PluginDescription",
            id="wrong-type",
        ),
        pytest.param(
            """
            @hookimpl(tryfirst=True)
            async def describe_plugin():
                return None
            """,
            "describe_plugin is async; it must be a plain def",
            id="async",
        ),
    ],
)
def test_describe_plugin_disagreeing_is_broken(fake_dists, registry_for, extra, message) -> None:
    install_good_pair(fake_dists)
    # A plugin module holds one function per name: the later definition replaces the good one.
    fake_dists.write("liar", plugin_source=plugin_code("liar", "source", extra))
    registry = registry_for()

    row = by_name(registry)["liar"]
    assert (row["status"], row["error"]) == ("broken", message)
    assert_good_pair_still_work(registry)


def test_describe_plugin_missing_is_broken(fake_dists, registry_for) -> None:
    fake_dists.write(
        "mute",
        plugin_source="""
        from ml_connector import hookimpl

        @hookimpl
        async def check_connection(ctx):
            return None
        """,
    )
    row = by_name(registry_for())["mute"]
    assert (row["status"], row["error"]) == ("broken", "does not implement describe_plugin")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            """
            @hookimpl
            async def create_invoice(ctx):
                return None
            """,
            r"invalid hook implementations: unknown hook 'create_invoice'",
            id="unknown-hook",
        ),
        pytest.param(
            """
            @hookimpl
            async def list_changed_payables(ctx, since, page):
                return None
            """,
            r"invalid hook implementations: .*list_changed_payables.*\{'page', 'since'\}|"
            r"invalid hook implementations: .*list_changed_payables.*\{'since', 'page'\}",
            id="wrong-arguments",
        ),
    ],
)
def test_invalid_hook_implementations_are_broken(fake_dists, registry_for, extra, message) -> None:
    install_good_pair(fake_dists)
    fake_dists.write("sloppy", plugin_source=plugin_code("sloppy", "source", extra))
    registry = registry_for()

    row = by_name(registry)["sloppy"]
    assert row["status"] == "broken"
    assert "\n" not in row["error"]
    assert re.search(message, row["error"]), row["error"]
    assert_good_pair_still_work(registry)


def test_incompatible_plugin_is_not_imported(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    future = fake_dists.write(
        "acumatica",
        distribution="ml-connector-acumatica",
        contract=">=2,<3",
        plugin_source=RAISES_ON_IMPORT,
    )
    registry = registry_for()

    row = by_name(registry)["acumatica"]
    assert row["status"] == "incompatible"
    assert row["contract"] == ">=2,<3"
    expected = (
        f"supports contract <3,>=2, but this core implements contract {CONTRACT_VERSION}; "
        f"install a release of ml-connector-acumatica that supports contract {CONTRACT_VERSION}"
    )
    assert row["error"] == expected
    with pytest.raises(IncompatiblePluginError) as caught:
        registry.load("acumatica", Role.SOURCE)
    assert str(caught.value) == f"plugin 'acumatica' is incompatible: {expected}"
    assert future.plugin_module not in sys.modules
    assert future.package in sys.modules  # the light metadata package was read
    assert_good_pair_still_work(registry)


def test_same_distribution_on_two_path_entries_is_listed_once(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    package = fake_dists.package_name("twice")
    fake_dists.write("twice", version="1.0.0", package=package, site=fake_dists.site("old"))
    fake_dists.write("twice", version="1.1.0", package=package, site=fake_dists.site("new"))
    registry = registry_for()

    rows = [r for r in registry.plugins() if r.name == "twice"]
    # "new" was put on sys.path last, so it comes first, for imports and for the registry alike.
    assert [(r.version, r.status) for r in rows] == [("1.1.0", PluginStatus.OK)]
    assert registry.load("twice", Role.SOURCE).version == "1.1.0"
    assert_good_pair_still_work(registry)


def test_two_distributions_claiming_one_key(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    # Each new site goes to the front of sys.path: "official" is searched before "fork".
    fork = fake_dists.write(
        "erp",
        distribution="erp-fork",
        package=f"{fake_dists.package_name('erp')}_fork",
        plugin_source=RAISES_ON_IMPORT,
        site=fake_dists.site("fork"),
    )
    fake_dists.write("erp", distribution="erp-official", site=fake_dists.site("official"))
    registry = registry_for()

    rows = [r for r in registry.plugins() if r.name == "erp"]
    assert [(r.distribution, r.status, r.error) for r in rows] == [
        ("erp-official", PluginStatus.OK, None),
        (
            "erp-fork",
            PluginStatus.BROKEN,
            "system key 'erp' is already provided by distribution erp-official",
        ),
    ]
    assert registry.load("erp", Role.SOURCE).distribution == "erp-official"
    assert fork.package not in sys.modules  # the second claimant is not even read
    assert_good_pair_still_work(registry)


def test_disable_switch(fake_dists, registry_for, monkeypatch) -> None:
    install_good_pair(fake_dists)
    off = fake_dists.write("legacy", plugin_source=RAISES_ON_IMPORT)
    monkeypatch.setenv(DISABLE_ENV, " Legacy , nothing-by-that-name,")
    registry = registry_for()

    row = by_name(registry)["legacy"]
    assert (row["status"], row["error"], row["disabled"]) == ("ok", None, True)
    assert row["role"] == "source"  # the metadata is still read and checked
    assert off.plugin_module not in sys.modules
    with pytest.raises(
        PluginNotFoundError, match=rf"^plugin 'legacy' is disabled by {DISABLE_ENV}$"
    ):
        registry.load("legacy", Role.SOURCE)
    assert_good_pair_still_work(registry)


def test_disabled_plugin_still_reports_bad_metadata(fake_dists, registry_for, monkeypatch) -> None:
    fake_dists.write("future", contract=">=2", plugin_source=RAISES_ON_IMPORT)
    monkeypatch.setenv(DISABLE_ENV, "future")
    row = by_name(registry_for())["future"]
    assert (row["status"], row["disabled"]) == ("incompatible", True)


def test_load_switch_is_an_allow_list(fake_dists, registry_for, monkeypatch) -> None:
    install_good_pair(fake_dists)
    other = fake_dists.write("other", plugin_source=RAISES_ON_IMPORT)
    monkeypatch.setenv(LOAD_ENV, "acme,paybox")
    registry = registry_for()

    rows = by_name(registry)
    assert {name: row["disabled"] for name, row in rows.items()} == {
        "acme": False,
        "paybox": False,
        "other": True,
    }
    assert other.plugin_module not in sys.modules
    with pytest.raises(PluginNotFoundError, match=rf"plugin 'other' is not listed in {LOAD_ENV}"):
        registry.load("other", Role.SOURCE)
    assert_good_pair_still_work(registry)


def test_disable_wins_over_load(fake_dists, registry_for, monkeypatch) -> None:
    install_good_pair(fake_dists)
    monkeypatch.setenv(LOAD_ENV, "acme,paybox")
    monkeypatch.setenv(DISABLE_ENV, "paybox")
    registry = registry_for()
    assert by_name(registry)["paybox"]["disabled"] is True
    with pytest.raises(PluginNotFoundError, match="disabled by"):
        registry.load("paybox", Role.SINK)
    assert registry.load("acme", Role.SOURCE).system == "acme"


def test_empty_load_switch_allows_everything(fake_dists, registry_for, monkeypatch) -> None:
    install_good_pair(fake_dists)
    monkeypatch.setenv(LOAD_ENV, " ")
    assert_good_pair_still_work(registry_for())


def test_unknown_plugin_and_wrong_role(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    registry = registry_for()
    with pytest.raises(
        PluginNotFoundError, match=r"^no plugin 'sage' is installed \(installed: acme, paybox\)$"
    ):
        registry.load("sage", Role.SOURCE)
    with pytest.raises(
        PluginError, match=r"plugin 'paybox' is a sink plugin; it cannot serve as the source"
    ):
        registry.load("paybox", Role.SOURCE)


def test_nothing_installed_says_so(fake_dists, registry_for) -> None:
    fake_dists.site()
    with pytest.raises(PluginNotFoundError, match=r"none is installed"):
        registry_for().load("acme", Role.SOURCE)


def test_plugins_installed_later_are_seen_by_a_new_registry(fake_dists, registry_for) -> None:
    # stevedore's own listing would memoise the group for the process and drop the
    # distribution; the registry must see a plugin installed after the first look.
    fake_dists.write("first")
    assert [r.name for r in registry_for().plugins()] == ["first"]
    fake_dists.write("second", site=fake_dists.site())
    registry = registry_for()
    assert [(r.name, r.distribution) for r in registry.plugins()] == [
        ("first", "ml-connector-first"),
        ("second", "ml-connector-second"),
    ]
    for group in (PLUGIN_INFO_GROUP, PLUGINS_GROUP, EXTENSIONS_GROUP):
        assert group not in ExtensionManager.ENTRY_POINT_CACHE


def test_default_path_is_sys_path(fake_dists) -> None:
    fake_dists.write("onpath")
    rows = [r for r in Registry().plugins() if r.name == "onpath"]
    assert [(r.distribution, r.status) for r in rows] == [("ml-connector-onpath", PluginStatus.OK)]


# --- Extensions -----------------------------------------------------------------------------------

AUDIT_EXTENSION = """
from ml_connector import hookimpl

@hookimpl(wrapper=True)
def create_bill(ctx, draft):
    return (yield)
"""


def test_extensions_are_listed_and_loaded(fake_dists, registry_for) -> None:
    install_good_pair(fake_dists)
    audit = fake_dists.write_extension("audit", AUDIT_EXTENSION)
    registry = registry_for()

    rows = registry.plugins()
    assert [(r.name, r.kind) for r in rows][-1] == ("audit", PluginKind.EXTENSION)
    assert by_name(registry)["audit"] == {
        "name": "audit",
        "kind": "extension",
        "distribution": "ml-connector-ext-audit",
        "version": "0.3.0",
        "role": None,
        "contract": None,
        "display_name": None,
        "status": "ok",
        "error": None,
        "disabled": False,
        "warnings": [],
    }
    [extension] = registry.extensions()
    assert extension.plugin is sys.modules[audit.package]
    pm = registry.plugin_manager(registry.load("paybox", Role.SINK))
    assert pm.get_plugin("extension:audit") is extension.plugin


def test_broken_extension_refuses_runs_but_not_listing(fake_dists, registry_for, monkeypatch):
    install_good_pair(fake_dists)
    fake_dists.write_extension(
        "metrics",
        """
        from ml_connector import hookimpl

        @hookimpl
        def count_everything(ctx):
            pass
        """,
    )
    registry = registry_for()

    row = by_name(registry)["metrics"]
    assert row["status"] == "broken"
    assert "unknown hook 'count_everything'" in row["error"]
    assert_good_pair_still_work(registry)
    with pytest.raises(
        PluginError, match=rf"extension 'metrics' is broken: .*{DISABLE_ENV}=metrics"
    ):
        registry.plugin_manager(registry.load("acme", Role.SOURCE))

    monkeypatch.setenv(DISABLE_ENV, "metrics")
    registry = registry_for()
    assert by_name(registry)["metrics"] == {**row, "status": "ok", "error": None, "disabled": True}
    pm = registry.plugin_manager(registry.load("acme", Role.SOURCE))
    assert pm.get_plugin("extension:metrics") is None


# --- Registering in code --------------------------------------------------------------------------


def test_add_checks_like_an_installed_plugin(fake_dists, registry_for) -> None:
    from ml_connector import PluginInfo

    install_good_pair(fake_dists)
    registry = registry_for()

    class Broken:
        pass

    registry.add(
        Broken(), PluginInfo(system="nothing", display_name="N", role="sink", contract=">=1")
    )
    registry.add(
        object(),
        PluginInfo(system="acme", display_name="Acme 2", role="source", contract=">=1"),
        distribution="acme-demo",
    )
    rows = [(r.name, r.distribution, r.status, r.error) for r in registry.plugins()]
    assert rows == [
        ("acme", "ml-connector-acme", PluginStatus.OK, None),
        (
            "acme",
            "acme-demo",
            PluginStatus.BROKEN,
            "system key 'acme' is already provided by distribution ml-connector-acme",
        ),
        ("nothing", None, PluginStatus.BROKEN, "does not implement describe_plugin"),
        ("paybox", "paybox-connector", PluginStatus.OK, None),
    ]
