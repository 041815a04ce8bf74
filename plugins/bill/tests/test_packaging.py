"""The distribution as installed: entry points, the registry, and ``ml-connector emulate bill``."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest

from ml_connector.context import ConnectionContext
from ml_connector.description import PluginInfo, Role
from ml_connector.emulation import DemoSink, EmulatorOptions, available_emulators, load_emulator
from ml_connector.registry import Registry
from ml_connector_bill import PLUGIN_INFO, plugin
from ml_connector_bill.emulator import BillEmulator, create_emulator
from ml_connector_bill.schemas import (
    PRODUCTION_URL,
    SANDBOX_URL,
    BillCredentials,
    BillEnvironment,
    BillSettings,
)


def test_entry_points_resolve() -> None:
    def target(group: str) -> Any:
        (found,) = [ep for ep in entry_points(group=group) if ep.name == "bill"]
        return found.load()

    assert target("ml_connector.plugin_info") == PLUGIN_INFO
    assert target("ml_connector.plugins") is plugin
    assert target("ml_connector.emulators") is create_emulator
    assert PluginInfo.model_validate(PLUGIN_INFO).role is Role.SINK
    assert "bill" in available_emulators()
    assert isinstance(load_emulator("bill")(None), BillEmulator)  # type: ignore[arg-type]


def test_the_installed_registry_loads_it() -> None:
    loaded = Registry().load("bill", Role.SINK)
    assert loaded.description.system == "bill"
    assert loaded.version == "0.1.0"


def test_settings_choose_the_gateway() -> None:
    production = BillSettings(organization_id="00801A")
    assert (production.api_url, production.events_url) == (
        PRODUCTION_URL,
        "https://gateway.prod.bill.com/connect-events",
    )
    sandbox = BillSettings(organization_id="00801A", environment=BillEnvironment.SANDBOX)
    assert sandbox.api_url == SANDBOX_URL == "https://gateway.stage.bill.com/connect"
    custom = BillSettings.model_validate(
        {
            "organization_id": "00801A",
            "environment": "custom",
            "base_url": "http://127.0.0.1:9/connect",
        }
    )
    assert custom.events_url == "http://127.0.0.1:9/connect-events"
    with pytest.raises(ValueError, match="base_url is required"):
        BillSettings.model_validate({"organization_id": "1", "environment": "custom"})
    with pytest.raises(ValueError, match="only used"):
        BillSettings.model_validate({"organization_id": "1", "base_url": "https://x.test/connect"})


def test_credentials_keep_their_secrets() -> None:
    credentials = BillCredentials.model_validate(
        {"username": "ap@acme.example", "password": "hunter2-secret", "dev_key": "dk-secret-1"}
    )
    assert "hunter2-secret" not in repr(credentials)
    assert "dk-secret-1" not in repr(credentials)


def test_the_emulator_takes_part_in_the_demo() -> None:
    emulator = create_emulator()
    assert isinstance(emulator, DemoSink)
    emulator.seed_chart({"6100": "Rent", "8100": "Bank Charges"})
    numbers = [
        (r.get("account") or {}).get("number")
        for r in emulator.classifications["chart-of-accounts"].values()
    ]
    assert numbers.count("6100") == 1  # already seeded: not doubled
    assert "8100" in numbers
    assert emulator.bills_by_key() == {}
    assert emulator.bill_totals() == {}
    assert emulator.pay_bills(3) == []


def test_unknown_emulator_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown BILL emulator options: typo"):
        BillEmulator(EmulatorOptions(extra={"typo": 1}))


@pytest.mark.slow
async def test_ml_connector_emulate_bill_over_loopback() -> None:
    """The served emulator, over real HTTP, with the plugin's client as in production."""
    process = subprocess.Popen(  # noqa: ASYNC220 - the server must outlive this call
        [sys.executable, "-m", "ml_connector", "emulate", "bill", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        start = json.loads(process.stdout.readline())
        assert start["system"] == "bill"
        assert start["base_url"].endswith("/connect")
        ctx = ConnectionContext(
            connection="loopback",
            system="bill",
            role=Role.SINK,
            settings=BillSettings.model_validate(start["settings"]),
            credentials=BillCredentials.model_validate(start["credentials"]),
        )
        await plugin.authenticate(ctx)
        assert (await plugin.check_connection(ctx)).ok
        catalog = await plugin.list_accounts(ctx)
        assert {"6100", "2000"} <= {a.number for a in catalog.accounts}
        await plugin.close_connection(ctx)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
