"""The emulator over HTTPS with a CA generated at runtime (the Service Layer is HTTPS-only, §1)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from ml_connector.emulation import EmulatorOptions

from ml_connector_sapb1.emulator import (
    COMPANY_DB,
    USERNAME,
    SapB1Emulator,
    create_emulator,
    serve_in_thread_tls,
)


def _login(emu: SapB1Emulator) -> dict[str, str]:
    return {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": emu.password}


def test_a_client_trusting_the_generated_ca_gets_in_and_one_without_it_does_not(
    tmp_path: Path,
) -> None:
    emu = create_emulator(EmulatorOptions())
    running = emu.serve_tls(directory=tmp_path)
    try:
        assert running.root_url.startswith("https://127.0.0.1:")
        assert emu.ca_bundle_path == str(tmp_path / "ca.pem")
        trusting = ssl.create_default_context(cafile=emu.ca_bundle_path)
        with httpx.Client(base_url=running.base_url + "/", verify=trusting) as client:
            assert client.post("Login", json=_login(emu)).status_code == 200
            assert client.get("PurchaseInvoices").status_code == 200
        port = running.root_url.rsplit(":", 1)[1]
        with httpx.Client(verify=trusting) as client:  # the name is in the certificate too
            answer = client.post(f"https://localhost:{port}/b1s/v2/Login", json=_login(emu))
            assert answer.status_code == 200
        with (
            httpx.Client(verify=ssl.create_default_context()) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.post(running.base_url + "/Login", json=_login(emu))
    finally:
        running.stop()


def test_serve_in_thread_tls_returns_the_ca_bundle() -> None:
    emu = SapB1Emulator(EmulatorOptions())
    running, ca_path = serve_in_thread_tls(emu)
    try:
        assert Path(ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
        context = ssl.create_default_context(cafile=ca_path)
        with httpx.Client(verify=context) as client:
            answer = client.post(running.base_url + "/Login", json=_login(emu))
            assert answer.status_code == 200
            assert answer.json()["odata.metadata"].startswith(running.root_url)
    finally:
        running.stop()
