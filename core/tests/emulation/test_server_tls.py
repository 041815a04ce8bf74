"""``serve_in_thread`` over HTTPS: a certificate and key in, an ``https://`` root out."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ml_connector.emulation import Emulator, serve_in_thread


class Hello(Emulator):
    system = "hello"
    base_path = "/api"

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/hello", self._hello)]

    async def _hello(self, request: Request) -> Response:
        return JSONResponse({"scheme": request.url.scheme})

    def error_response(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def credentials(self) -> dict[str, str]:
        return {}

    def settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_in_thread_serves_https_with_a_certificate_and_key(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    running = serve_in_thread(Hello(), ssl_certfile=str(cert_path), ssl_keyfile=str(key_path))
    try:
        assert running.root_url.startswith("https://127.0.0.1:")
        assert running.base_url == running.root_url + "/api"
        trusting = ssl.create_default_context(cafile=str(cert_path))
        with httpx.Client(verify=trusting) as client:
            assert client.get(running.base_url + "/hello").json() == {"scheme": "https"}
        with (
            httpx.Client(verify=ssl.create_default_context()) as client,
            pytest.raises(httpx.ConnectError),
        ):
            client.get(running.base_url + "/hello")
    finally:
        running.stop()


def test_serve_in_thread_stays_plain_http_by_default() -> None:
    running = serve_in_thread(Hello())
    try:
        assert running.root_url.startswith("http://127.0.0.1:")
        assert httpx.get(running.base_url + "/hello").json() == {"scheme": "http"}
    finally:
        running.stop()
