"""``ml-connector plugin new``: what it writes, what it refuses, and the quality of its output."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import shutil
import sys
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner
from core.tests.packaging_support import REFERENCE_PLUGIN, REPO, check, output, run
from core.tests.registry.fake_dists import FakeDists
from ml_connector import __version__, template
from ml_connector.cli import main
from ml_connector.contract import (
    HOOKS_ADDED,
    contract_compatibility,
    features_above_lower_bound,
    lower_bound,
    range_problems,
)
from ml_connector.description import PluginInfo, Role
from ml_connector.emulation import DemoSink, DemoSource, EmulatorOptions, missing_members
from ml_connector.errors import ThrottledError
from ml_connector.hookspecs import PROJECT_NAME
from ml_connector.registry import PluginStatus, Registry
from ml_connector.template import MAX_DISPLAY_NAME, MAX_NAME, contract_range, core_requirement
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import SecretStr

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import ModuleType

SOURCE_HOOKS = {
    "authenticate",
    "check_connection",
    "list_accounts",
    "close_connection",
    "list_changed_payables",
    "get_payable",
    "find_payment",
    "record_payment",
}
FILES = {
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "src/ml_connector_{name}/__init__.py",
    "src/ml_connector_{name}/py.typed",
    "src/ml_connector_{name}/plugin.py",
    "src/ml_connector_{name}/client.py",
    "src/ml_connector_{name}/schemas.py",
    "src/ml_connector_{name}/emulator.py",
    "tests/test_conformance.py",
}


def new(*args: str | Path) -> Any:
    return CliRunner().invoke(main, ["plugin", "new", *map(str, args)])


@pytest.fixture
def name() -> str:
    return f"tmpl{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rendered(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"ml-connector-{name}"
    result = new(name, "--dir", target, "--display-name", "Example ERP")
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture
def package(rendered: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The rendered package, imported in this process."""
    monkeypatch.syspath_prepend(str(rendered / "src"))
    yield importlib.import_module(f"ml_connector_{name}")
    for module in [m for m in sys.modules if m.startswith(f"ml_connector_{name}")]:
        del sys.modules[module]


def test_writes_the_standard_shape(rendered: Path, name: str) -> None:
    written = {p.relative_to(rendered).as_posix() for p in rendered.rglob("*") if p.is_file()}
    assert written == {f.format(name=name) for f in FILES}
    project = tomllib.loads((rendered / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == (f"ml-connector-{name}", "0.1.0")
    core = next(Requirement(d) for d in project["dependencies"] if d.startswith("ml-connector"))
    assert core.specifier == SpecifierSet(core_requirement())
    assert core.specifier.contains(__version__)
    groups = project["entry-points"]
    assert groups["ml_connector.plugin_info"] == {name: f"ml_connector_{name}:PLUGIN_INFO"}
    assert groups["ml_connector.plugins"] == {name: f"ml_connector_{name}.plugin"}
    assert groups["ml_connector.emulators"] == {
        name: f"ml_connector_{name}.emulator:create_emulator"
    }
    assert "## [0.1.0]" in (rendered / "CHANGELOG.md").read_text()
    assert "Example ERP" in (rendered / "README.md").read_text()


def test_default_directory_is_the_distribution_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = new(name)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"ml-connector-{name}" / "pyproject.toml").is_file()
    assert f"Created ml-connector-{name}" in result.output


def test_the_plugin_loads_and_every_hook_names_itself(package: ModuleType, name: str) -> None:
    info = PluginInfo.model_validate(package.PLUGIN_INFO)
    assert (info.system, info.display_name, info.role.value) == (name, "Example ERP", "source")
    assert contract_compatibility(info.contract) is None
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    registry = Registry(path=[])
    registry.add(plugin, info)
    (record,) = registry.plugins()
    assert record.status is PluginStatus.OK, record.error

    stubs = {
        n for n, f in inspect.getmembers(plugin, inspect.iscoroutinefunction) if n in SOURCE_HOOKS
    }
    assert stubs == SOURCE_HOOKS
    for hook in sorted(SOURCE_HOOKS):
        fn = getattr(plugin, hook)
        args = [None] * len(inspect.signature(fn).parameters)
        with pytest.raises(NotImplementedError) as raised:
            asyncio.run(fn(*args))
        message = str(raised.value)
        assert message.startswith(f"TODO(ml-connector-{name}): implement {hook}: "), message
        assert "docs/plugin-guide.md §4" in message
    # the example API keeps purchase orders with the bills: the stub says to skip them
    with pytest.raises(NotImplementedError, match="skip purchase orders"):
        asyncio.run(plugin.list_changed_payables(None, None, None))


def _hooks(module: ModuleType) -> set[str]:
    """The hooks a plugin module implements, optional ones left out (they set no lower bound)."""
    marker = f"{PROJECT_NAME}_impl"
    return {
        name
        for name, value in vars(module).items()
        if (options := getattr(value, marker, None)) is not None and not options.get("optionalhook")
    }


def test_the_contract_range_starts_at_the_newest_hook_used(
    package: ModuleType, rendered: Path, name: str
) -> None:
    """The rendered range starts at the newest contract among the template's hooks, no later."""
    declared = package.PLUGIN_INFO["contract"]
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    stubs = _hooks(plugin)
    assert "find_payment" in stubs
    assert lower_bound(declared) == max(Version(HOOKS_ADDED[h]) for h in stubs)
    assert declared == ">=1.2,<2"  # find_payment came with contract 1.2
    assert range_problems(declared) == []
    assert features_above_lower_bound(declared, stubs) == []
    assert template._template_features(Role.SOURCE) == (sorted(stubs), [])
    # the answer key implements the same hooks, so the range the template writes covers it
    shutil.copyfile(REFERENCE_PLUGIN, rendered / "src" / f"ml_connector_{name}" / "plugin.py")
    assert _hooks(importlib.reload(plugin)) == stubs


@pytest.mark.parametrize(
    ("hooks", "capabilities", "expected"),
    [
        ([], [], ">=1.0,<2"),
        (["describe_plugin", "authenticate", "get_payable", "record_payment"], [], ">=1.0,<2"),
        (["authenticate", "find_payment", "record_payment"], [], ">=1.2,<2"),
        (["create_bill"], ["bulk_create_bills", "webhooks"], ">=1.0,<2"),
    ],
)
def test_contract_range_follows_the_hooks(
    hooks: list[str], capabilities: list[str], expected: str
) -> None:
    assert contract_range(hooks, capabilities) == expected


def test_contract_range_follows_the_contract_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook of a later contract moves both bounds; a name the contract lacks is refused."""
    monkeypatch.setattr(template, "HOOKS_ADDED", {**HOOKS_ADDED, "future_hook": "2.3"})
    assert contract_range(["authenticate", "future_hook"]) == ">=2.3,<3"
    with pytest.raises(ValueError, match="no hook 'no_such_hook'"):
        contract_range(["authenticate", "no_such_hook"])
    with pytest.raises(ValueError, match="no capability 'telepathy'"):
        contract_range([], ["telepathy"])


def test_the_emulator_serves_its_settings(package: ModuleType, name: str) -> None:
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")

    emulator = emulator_module.create_emulator(EmulatorOptions(extra={"bills": 3}))
    assert emulator.system == name
    plugin.Settings.model_validate(emulator.settings("http://127.0.0.1:1/api/v1"))
    plugin.Credentials.model_validate(emulator.credentials())
    ready = [
        b
        for b in emulator.bills.values()
        if b.type == "bill" and b.status == "approved" and not b.on_hold
    ]
    assert len(ready) >= 3


def _kind(bill: Any) -> str:
    if bill.type == "purchase_order":
        return "purchase_order"
    if bill.on_hold:
        return "on_hold"
    return {"draft": "unapproved"}.get(bill.status, bill.status)


def test_the_emulator_seeds_a_demo_that_can_pass(package: ModuleType, name: str) -> None:
    """seed_demo starts over: approved bills, the ones that must not move, one exception."""
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    emulator = emulator_module.create_emulator(EmulatorOptions())  # with `emulate`'s samples
    assert isinstance(emulator, DemoSource), missing_members(emulator, DemoSource)
    emulator.seed_demo(20, 7)
    eligible, held = emulator.eligible_bills(), emulator.held_bill_keys()
    unmapped = emulator.unmapped_account()
    assert unmapped in emulator.account_numbers()
    mapped = set(emulator.account_numbers()) - {unmapped}

    def key(bill: Any) -> tuple[str, str]:
        return emulator.vendors[bill.vendor_id].name, bill.invoice_number

    bills = {key(b): b for b in emulator.bills.values()}
    assert len(bills) == len(emulator.bills), "natural keys must be unique"
    assert len(eligible) == 20
    assert eligible <= set(bills)
    assert held <= set(bills)
    assert not eligible & held
    for k in eligible:
        bill = bills[k]
        assert (_kind(bill), bill.type) == ("approved", "bill"), k
        assert {line.account_code for line in bill.lines} <= mapped, k
        assert sum(line.amount for line in bill.lines) == bill.amount > 0, k
        assert bill.amount == bill.amount.quantize(Decimal("0.01")), k
    assert {_kind(bills[k]) for k in held} >= {"on_hold", "unapproved", "purchase_order"}
    # exactly one approved bill on the account BILL does not get: the expected exception
    (exception,) = set(bills) - eligible - held
    assert _kind(bills[exception]) == "approved"
    assert {line.account_code for line in bills[exception].lines} == {unmapped}
    posted = emulator.payments_posted()
    assert eligible <= set(posted)
    assert set(posted.values()) == {0}
    totals = emulator.bill_totals()
    assert set(totals) == eligible
    changed = sorted(eligible)[0]
    emulator.change_bill(changed)
    assert emulator.bill_totals()[changed] == totals[changed] + Decimal("1.00")

    again = emulator_module.create_emulator(EmulatorOptions())
    again.seed_demo(20, 7)
    assert (again.eligible_bills(), again.held_bill_keys()) == (eligible, held)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme"], "invalid plugin name 'Acme'"),
        (["my-erp"], "invalid plugin name 'my-erp'"),
        (["1erp"], "invalid plugin name '1erp'"),
        (["erp_"], "no trailing or doubled underscores"),
        (["e" * 31], "at most 30 characters"),
        (["erp", "--display-name", "E" * 41], "at most 40 characters"),
        (["erp", "--display-name", 'My "ERP"'], "invalid display name"),
    ],
)
def test_refuses_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = new(*args, "--dir", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_refuses_an_existing_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / "taken").mkdir()
    result = new(name, "--dir", tmp_path / "taken")
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert list((tmp_path / "taken").iterdir()) == []


def test_refuses_a_system_key_already_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dists = FakeDists(tmp_path / "sites", on_new_site=lambda p: monkeypatch.syspath_prepend(p))
    dists.write("legacyerp", distribution="legacy-erp-connector")
    result = new("legacyerp", "--dir", tmp_path / "out")
    assert result.exit_code == 2
    assert "'legacyerp' is already provided by legacy-erp-connector" in result.output


def test_rendered_config_is_the_projects(rendered: Path, name: str) -> None:
    """The rendered pyproject carries the root's ruff rules and strict mypy, complete.

    Ruff uses the closest pyproject.toml with a [tool.ruff] table, no merging: inside the
    repository the plugin's own table is the one that counts, so it must be whole.
    """
    root = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
    tool = tomllib.loads((rendered / "pyproject.toml").read_text())["tool"]
    ruff, root_ruff = tool["ruff"], root["ruff"]
    for key in ("line-length", "target-version"):
        assert ruff[key] == root_ruff[key], key
    for key in ("select", "ignore", "pydocstyle"):
        assert ruff["lint"][key] == root_ruff["lint"][key], key
    # the same import sections standalone and inside the repository, where the root's `src`
    # would make ml_connector first-party
    assert ruff["lint"]["isort"] == {
        "known-first-party": [f"ml_connector_{name}"],
        "known-third-party": ["ml_connector"],
    }
    assert ruff["lint"]["per-file-ignores"] == {"tests/**": ["D", "S"]}
    mypy, root_mypy = tool["mypy"], root["mypy"]
    for key in ("python_version", "strict", "plugins", "warn_unreachable"):
        assert mypy[key] == root_mypy[key], key


def test_rendered_code_passes_its_own_linters(tmp_path: Path) -> None:
    """Partners start from code that ruff, with the rendered pyproject's rules, finds clean.

    The answer key too: a plugin implemented as it is stays clean.
    """
    longest = "erp_" + "x" * (MAX_NAME - 4)  # the longest names fit in 100 columns
    rendered = tmp_path / "plugin"
    result = new(longest, "--dir", rendered, "--display-name", "D" * MAX_DISPLAY_NAME)
    assert result.exit_code == 0, result.output
    ruff = [sys.executable, "-m", "ruff"]
    settings = check(run([*ruff, "check", "--show-settings", "src"], cwd=rendered))
    assert f'Settings path: "{rendered / "pyproject.toml"}"' in settings
    check(run([*ruff, "check", "--no-cache", "."], cwd=rendered))
    check(run([*ruff, "format", "--check", "--no-cache", "."], cwd=rendered))
    plugin = rendered / "src" / f"ml_connector_{longest}" / "plugin.py"
    shutil.copyfile(REFERENCE_PLUGIN, plugin)
    check(run([*ruff, "check", "--no-cache", plugin], cwd=rendered))
    check(run([*ruff, "format", "--check", "--no-cache", plugin], cwd=rendered))


@pytest.mark.slow
def test_rendered_code_and_the_reference_are_strictly_typed(rendered: Path, name: str) -> None:
    """``mypy`` in the rendered folder, with its own configuration, passes: stubs and answer key."""
    mypy = [sys.executable, "-m", "mypy", "--cache-dir", rendered.parent / ".mypy_cache"]
    result = run(mypy, cwd=rendered)
    assert result.returncode == 0, output(result)
    checked = len(list(rendered.rglob("*.py")))  # its `files`: src and tests, every module
    assert f"Success: no issues found in {checked} source files" in result.stdout, output(result)
    shutil.copyfile(REFERENCE_PLUGIN, rendered / "src" / f"ml_connector_{name}" / "plugin.py")
    result = run(mypy, cwd=rendered)
    assert result.returncode == 0, output(result)


# --- The sink template (--role sink) -----------------------------------------------------------

SINK_HOOKS = {
    "authenticate",
    "check_connection",
    "list_accounts",
    "close_connection",
    "upsert_vendor",
    "find_vendor",
    "create_bill",
    "find_bill",
    "list_changed_payments",
    "get_payment",
}


@pytest.fixture
def sink(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"ml-connector-{name}"
    result = new(name, "--role", "sink", "--dir", target, "--display-name", "Example AP")
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture
def sink_package(sink: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The rendered sink package, imported in this process."""
    monkeypatch.syspath_prepend(str(sink / "src"))
    yield importlib.import_module(f"ml_connector_{name}")
    for module in [m for m in sys.modules if m.startswith(f"ml_connector_{name}")]:
        del sys.modules[module]


def test_role_sink_renders_a_sink(sink: Path, name: str) -> None:
    written = {p.relative_to(sink).as_posix() for p in sink.rglob("*") if p.is_file()}
    assert written == {f.format(name=name) for f in FILES}
    project = tomllib.loads((sink / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == (f"ml-connector-{name}", "0.1.0")
    assert project["entry-points"]["ml_connector.emulators"] == {
        name: f"ml_connector_{name}.emulator:create_emulator"
    }
    assert "sink plugin for Example AP" in (sink / "README.md").read_text()
    assert f"plugin new {name} --role sink" in (sink / "CHANGELOG.md").read_text()


def test_the_sink_loads_and_every_hook_names_itself(sink_package: ModuleType, name: str) -> None:
    info = PluginInfo.model_validate(sink_package.PLUGIN_INFO)
    assert (info.system, info.display_name, info.role) == (name, "Example AP", Role.SINK)
    # every sink hook came with contract 1.0: the template's range starts there
    assert info.contract == contract_range(*template._template_features(Role.SINK)) == ">=1.0,<2"
    assert contract_compatibility(info.contract) is None
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    assert _hooks(plugin) == SINK_HOOKS | {"describe_plugin"}
    registry = Registry(path=[])
    registry.add(plugin, info)
    (record,) = registry.plugins()
    assert record.status is PluginStatus.OK, record.error
    description = plugin.describe_plugin()
    assert (description.limits.max_in_flight, description.limits.scope_setting) == (
        3,
        "organization_id",
    )
    assert description.limits.per_request
    assert not description.capabilities  # the suite skips what is not declared
    for hook in sorted(SINK_HOOKS):
        fn = getattr(plugin, hook)
        args = [None] * len(inspect.signature(fn).parameters)
        with pytest.raises(NotImplementedError) as raised:
            asyncio.run(fn(*args))
        message = str(raised.value)
        assert message.startswith(f"TODO(ml-connector-{name}): implement {hook}: "), message
        assert "PayablesClient" in message or hook == "close_connection", message
        assert "docs/plugin-guide.md §4" in message


def _sink_client(emulator: Any, client_module: ModuleType) -> Any:
    settings = emulator.settings(f"http://payables.test{emulator.base_path}")
    credentials = emulator.credentials()
    http = httpx.AsyncClient(transport=emulator.transport(), base_url=settings["base_url"])
    return client_module.PayablesClient(
        http,
        settings["organization_id"],
        credentials["username"],
        SecretStr(credentials["password"]),
    )


def test_the_sink_emulator_serves_the_demo_and_keeps_duplicates(
    sink_package: ModuleType, name: str
) -> None:
    """It is a DemoSink; a bill created twice is two bills (the API has no idempotency keys)."""
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    client_module = importlib.import_module(f"ml_connector_{name}.client")
    schemas = importlib.import_module(f"ml_connector_{name}.schemas")
    plugin = importlib.import_module(f"ml_connector_{name}.plugin")
    emulator = emulator_module.create_emulator(EmulatorOptions())
    assert emulator.system == name
    plugin.Settings.model_validate(emulator.settings("http://127.0.0.1:1/api/v2"))
    plugin.Credentials.model_validate(emulator.credentials())
    assert isinstance(emulator, DemoSink), missing_members(emulator, DemoSink)
    emulator.seed_chart({"6100": "Office Supplies", "7100": "Freight In"})
    numbers = [a.number for a in emulator.accounts.values()]
    assert (numbers.count("6100"), numbers.count("7100")) == (1, 1)

    async def create_twice() -> None:
        client = _sink_client(emulator, client_module)
        vendor = await client.create_vendor(schemas.NewVendor(name="Acme"), ("vendor", "V-1"))
        line = schemas.NewBillLine(account_id=emulator.account_id("7100"), amount=Decimal("12.5"))
        bill = schemas.NewBill(
            vendor_id=vendor.id,
            invoice_number="INV-1",
            invoice_date="2026-01-05",
            due_date="2026-02-04",
            lines=[line],
        )
        for _ in range(2):
            created = await client.create_bill(bill, ("payable", "P-1"))
            assert (created.amount, created.is_paid) == (Decimal("12.50"), False)
        await client.close()

    asyncio.run(create_twice())
    key = ("Acme", "INV-1")
    assert emulator.bills_by_key() == {key: 2}
    assert emulator.bill_totals() == {key: Decimal("12.50")}
    assert emulator.pay_bills(1) == [key]
    assert sorted(b.payment_status for b in emulator.bills.values()) == ["paid", "unpaid"]
    emulator.expire_sessions()
    assert len(emulator.sessions) == 0


def test_the_sink_emulator_limits_requests_as_documented(
    sink_package: ModuleType, name: str
) -> None:
    """A 4th request in flight, and one over the hourly budget, get 429 with Retry-After."""
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    client_module = importlib.import_module(f"ml_connector_{name}.client")
    options = EmulatorOptions(latency=0.05, extra={"requests_per_hour": 6})
    emulator = emulator_module.create_emulator(options)

    async def scenario() -> tuple[list[Any], ThrottledError]:
        client = _sink_client(emulator, client_module)
        await client.sign_in()
        together = await asyncio.gather(
            *(client.organization() for _ in range(4)), return_exceptions=True
        )
        for _ in range(2):  # 6 requests so far, the refused one counted
            await client.organization()
        with pytest.raises(ThrottledError) as over_budget:
            await client.organization()
        await client.close()
        return together, over_budget.value

    together, over_budget = asyncio.run(scenario())
    refused = [r for r in together if isinstance(r, Exception)]
    assert len(refused) == 1, together
    assert isinstance(refused[0], ThrottledError)
    assert (refused[0].code, refused[0].retry_after, refused[0].status) == (
        "too_many_in_flight",
        1.0,
        429,
    )
    assert emulator.gate.peak == 4
    assert over_budget.code == "rate_limited"
    assert over_budget.retry_after is not None
    assert 3500 < over_budget.retry_after <= 3600


def test_the_longest_sink_passes_its_own_linters(tmp_path: Path) -> None:
    """The rendered sink is clean under its own pyproject's ruff settings: the project's rules."""
    longest = "erp_" + "x" * (MAX_NAME - 4)  # the longest names fit in 100 columns
    rendered = tmp_path / "plugin"
    args = ["--role", "sink", "--dir", rendered, "--display-name", "D" * MAX_DISPLAY_NAME]
    result = new(longest, *args)
    assert result.exit_code == 0, result.output
    own = tomllib.loads((rendered / "pyproject.toml").read_text())["tool"]["ruff"]
    root = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]
    assert (own["line-length"], own["target-version"]) == (100, "py311")
    for key in ("select", "ignore"):
        assert own["lint"][key] == root["lint"][key], key
    ruff = [sys.executable, "-m", "ruff"]
    check(run([*ruff, "check", "--no-cache", "."], cwd=rendered))
    check(run([*ruff, "format", "--check", "--no-cache", "."], cwd=rendered))


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_the_source_client_reads_retry_after_in_both_forms(
    package: ModuleType, name: str, header: str
) -> None:
    """RFC 9110 allows seconds or an HTTP date; the rendered client honours both."""
    client_module = importlib.import_module(f"ml_connector_{name}.client")
    wait = 3600
    value = (
        str(wait)
        if header == "seconds"
        else format_datetime(datetime.now(UTC) + timedelta(seconds=wait), usegmt=True)
    )
    body = {"error": {"code": "rate_limited", "message": "slow down", "request_id": "r-1"}}
    response = httpx.Response(429, json=body, headers={"Retry-After": value})
    error = client_module._error(response, None)
    assert isinstance(error, ThrottledError)
    assert error.retry_after is not None
    # an HTTP date counts whole seconds from the moment it was written: allow a minute's drift
    assert wait - 60 < error.retry_after <= wait


def test_the_sink_client_leaves_no_session_behind(sink_package: ModuleType, name: str) -> None:
    """Signing in again ends the session held before; closing ends the last one."""
    emulator_module = importlib.import_module(f"ml_connector_{name}.emulator")
    client_module = importlib.import_module(f"ml_connector_{name}.client")
    emulator = emulator_module.create_emulator(EmulatorOptions())

    async def scenario() -> list[int]:
        client = _sink_client(emulator, client_module)
        open_sessions = []
        for _ in range(2):  # as a second authenticate on one connection does
            await client.sign_in()
            open_sessions.append(len(emulator.sessions))
        emulator.expire_sessions()
        await client.organization()  # signs in again after expiry
        open_sessions.append(len(emulator.sessions))
        await client.close()
        open_sessions.append(len(emulator.sessions))
        return open_sessions

    assert asyncio.run(scenario()) == [1, 1, 1, 0]
