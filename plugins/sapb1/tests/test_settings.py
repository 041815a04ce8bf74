"""Settings: the service root, the zone, dimensions, currencies, and TLS for on-premise servers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from ml_connector.errors import ConfigurationError
from ml_connector.models import DimensionKind
from pydantic import ValidationError

from ml_connector_sapb1 import plugin
from ml_connector_sapb1.schemas import Settings

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import sapb1_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.sapb1.tests import sapb1_testkit as kit  # type: ignore[import-not-found,no-redef]

BASE = {"company_db": "SBODEMOUS", "transfer_account": "1020"}


def _settings(**fields: Any) -> Settings:
    return Settings.model_validate({**BASE, "service_url": kit.root("v2"), **fields})


@pytest.mark.parametrize(
    ("url", "root", "version"),
    [
        ("https://b1.example.com:50000/b1s/v1", "https://b1.example.com:50000/b1s/v1", "v1"),
        ("https://b1.example.com:50000/b1s/v2/", "https://b1.example.com:50000/b1s/v2", "v2"),
        # any port, e.g. a second Service Layer instance or a load balancer
        ("https://10.0.0.7:50001/b1s/v2", "https://10.0.0.7:50001/b1s/v2", "v2"),
        ("https://b1.example.com/sl/b1s/v1", "https://b1.example.com/sl/b1s/v1", "v1"),
    ],
)
def test_the_service_url_is_a_versioned_service_root(url: str, root: str, version: str) -> None:
    settings = _settings(service_url=url)
    assert (settings.service_url, settings.version) == (root, version)


@pytest.mark.parametrize(
    "url",
    [
        "https://b1.example.com:50000",
        "https://b1.example.com:50000/b1s",
        "https://b1.example.com:50000/b1s/v3",
        "https://b1.example.com:50000/b1s/v1/Login",
        "https://b1.example.com:50000/b1s/v1?x=1",
        "b1.example.com:50000/b1s/v1",
    ],
)
def test_other_urls_are_refused_naming_the_roots(url: str) -> None:
    with pytest.raises(ValidationError, match="service_url"):
        _settings(service_url=url)


def test_required_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"service_url": kit.root()})
    missing = {e["loc"][0] for e in caught.value.errors()}
    assert missing == {"company_db", "transfer_account"}


def test_zone_dimensions_and_currencies_are_checked() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        _settings(server_timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="dimensions 1 to 5"):
        _settings(dimension_kinds={"6": "department"})
    with pytest.raises(ValidationError, match="same classification"):
        _settings(dimension_kinds={"1": "department", "2": "department"})
    with pytest.raises(ValidationError, match="currency_codes"):
        _settings(currency_codes={"$": "dollar"})
    settings = _settings(dimension_kinds={"2": "location", "1": "department"})
    assert list(settings.dimension_kinds.items()) == [
        (1, DimensionKind.DEPARTMENT), (2, DimensionKind.LOCATION)
    ]  # fmt: skip


def test_a_ca_bundle_and_no_verification_contradict_each_other() -> None:
    with pytest.raises(ValidationError, match="contradict"):
        _settings(ca_bundle="/etc/ssl/b1-ca.pem", verify_tls=False)


def test_secrets_are_credentials_not_settings() -> None:
    description = plugin.describe_plugin()
    assert "password" not in description.settings_model.model_fields
    schema = description.credentials_model.model_json_schema()
    assert schema["properties"]["password"]["format"] == "password"


async def test_turned_off_verification_warns_at_every_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu = kit.emulator()
    for _ in range(2):
        ctx = kit.context(emu, verify_tls=False)
        with caplog.at_level(logging.WARNING, logger="ml_connector_sapb1"):
            await plugin.authenticate(ctx)
        await plugin.close_connection(ctx)
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)


async def test_a_missing_or_unreadable_ca_bundle_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    emu = kit.emulator()
    ctx = kit.context(emu, ca_bundle=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigurationError, match="not a file"):
        await plugin.authenticate(ctx)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    ctx = kit.context(emu, ca_bundle=str(garbage))
    with pytest.raises(ConfigurationError, match="not a PEM file"):
        await plugin.authenticate(ctx)


# --- Over real HTTPS (the emulator with a CA of its own, as an on-premise server has) ----------


@pytest.fixture
def served(tmp_path: Path) -> Any:
    emu = kit.emulator()
    kit.Company(emu).invoice("10.00")
    running = emu.serve_tls(directory=tmp_path)
    try:
        yield emu, running.root_url.replace("http://", "https://")
    finally:
        running.stop()


def _network_context(emu: Any, root_url: str, **overrides: Any) -> Any:
    ctx = kit.context(emu, "v2", **overrides)
    settings = ctx.settings.model_copy(update={"service_url": f"{root_url}/b1s/v2"})
    settings = type(ctx.settings).model_validate(settings.model_dump())
    ctx.settings = settings
    ctx.transport = None  # the network, through the core's aiohttp transport
    return ctx


async def test_the_ca_bundle_verifies_an_on_premise_certificate(served: Any) -> None:
    emu, root_url = served
    assert root_url.startswith("https://127.0.0.1:")
    ctx = _network_context(emu, root_url, ca_bundle=emu.ca_bundle_path)
    await plugin.authenticate(ctx)
    read = await kit.read_all(ctx, kit.window(emu))
    assert len(read.items) == 1
    await plugin.close_connection(ctx)


async def test_an_untrusted_certificate_is_a_configuration_error_naming_ca_bundle(
    served: Any,
) -> None:
    emu, root_url = served
    ctx = _network_context(emu, root_url)
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        await plugin.authenticate(ctx)
    await plugin.close_connection(ctx)


async def test_verification_off_reaches_a_test_server(served: Any) -> None:
    emu, root_url = served
    ctx = _network_context(emu, root_url, verify_tls=False)
    await plugin.authenticate(ctx)
    assert (await plugin.check_connection(ctx)).ok
    await plugin.close_connection(ctx)
