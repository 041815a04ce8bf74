"""Versioned endpoint paths: a version the instance does not serve is named, with what it serves."""

from __future__ import annotations

import pytest
from plugins.acumatica.tests.support import context, credentials, emulator, settings

from ml_connector.emulation import serve_in_thread
from ml_connector.errors import ConfigurationError
from ml_connector.testing import ManualClock
from ml_connector_acumatica import plugin

SERVED = "Default/23.200.001, Default/24.200.001, Default/25.200.001"


@pytest.mark.parametrize("legacy", [False, True])
async def test_wrong_version_names_the_versions_served(clock: ManualClock, legacy: bool) -> None:
    emu = emulator(clock, legacy_listing=legacy)
    ctx = context(emu, endpoint_version="22.200.001")
    await plugin.authenticate(ctx)
    with pytest.raises(ConfigurationError) as caught:
        await plugin.list_accounts(ctx)
    assert str(caught.value) == (
        f"acumatica: endpoint version Default/22.200.001 not served by this instance; "
        f"it serves: {SERVED}"
    )
    check = await plugin.check_connection(ctx)
    assert not check.ok
    assert "Default/22.200.001 not served" in check.detail


async def test_unknown_endpoint_name_is_named_too(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, endpoint_name="AcmeCustom")
    await plugin.authenticate(ctx)
    with pytest.raises(ConfigurationError, match=r"AcmeCustom/24\.200\.001 not served"):
        await plugin.get_payable(ctx, "000001")


async def test_a_served_older_version_works(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu, endpoint_version="23.200.001")
    await plugin.authenticate(ctx)
    assert (await plugin.check_connection(ctx)).ok
    assert any("/entity/Default/23.200.001/Account" in r.path for r in emu.log.records)


async def test_check_connection_reports_build_endpoint_and_tenant(clock: ManualClock) -> None:
    emu = emulator(clock)
    ctx = context(emu)
    await plugin.authenticate(ctx)
    check = await plugin.check_connection(ctx)
    assert check.ok
    assert "24.207.0012" in check.detail
    assert "Default/24.200.001" in check.detail
    assert "tenant Acme" in check.detail


def test_instance_url_must_be_http() -> None:
    emu = emulator()
    with pytest.raises(ValueError, match="http"):
        settings(emu, instance_url="acme.acumatica.com")
    assert settings(emu, instance_url="https://acme.example/AcumaticaERP/").instance_url == (
        "https://acme.example/AcumaticaERP"
    )


@pytest.mark.parametrize("mode", ["oauth", "cookie"])
async def test_over_loopback_http(mode: str) -> None:
    """The same client over real HTTP (cookies on 127.0.0.1, the instance path in the URL)."""
    emu = emulator()
    running = serve_in_thread(emu)
    try:
        ctx = context(emu, auth_mode=mode, instance_url=running.base_url)
        ctx.transport = None
        ctx.credentials = credentials(emu)
        await plugin.authenticate(ctx)
        catalog = await plugin.list_accounts(ctx)
        assert len(catalog.accounts) == len(emu.books.records["Account"])
        await plugin.close_connection(ctx)
        assert emu.live_sessions() == 0
    finally:
        running.stop()
