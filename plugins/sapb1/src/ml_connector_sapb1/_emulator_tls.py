"""HTTPS for the emulator: a throwaway CA and a server certificate for loopback, made at runtime.

The Service Layer is served over HTTPS (default port 50000, SAP-UG §1.3, §3: sapb1.md §1), often
with a certificate from the company's own CA, which a client must be told to trust. The
emulator reproduces that: :func:`make_certificates` writes a self-signed CA and a server
certificate it signed (for ``127.0.0.1``, ``::1`` and ``localhost``) with ``cryptography``, and
:func:`serve_in_thread_tls` serves an emulator with them. A client verifying against the CA's
PEM file succeeds; one verifying against the system's trust store fails, as against a real
server with a private CA.

Certificates carry what strict verifiers want (Python 3.13's ``VERIFY_X509_STRICT``: key usage,
subject and authority key identifiers, a critical basic-constraints extension on the CA) and
are valid from a day before the wall clock's now for 30 days: TLS checks real time, not the
emulator's clock.
"""

from __future__ import annotations

import ipaddress
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ml_connector.emulation import RunningEmulator, serve_in_thread

if TYPE_CHECKING:
    from ml_connector.emulation import Emulator

__all__ = ["TlsFiles", "make_certificates", "serve_in_thread_tls"]

_KEPT: list[tempfile.TemporaryDirectory[str]] = []


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA's certificate (the bundle clients trust), the server's cert and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ml-connector SAP B1 emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificates(directory: Path, hostnames: tuple[str, ...] = ("localhost",)) -> TlsFiles:
    """Write a new CA and a server certificate for loopback into ``directory``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ml-connector emulator CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0] if hostnames else "127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_path.chmod(0o600)
    return files


def serve_in_thread_tls(
    emulator: Emulator, port: int = 0, *, directory: Path | None = None, timeout: float = 10.0
) -> tuple[RunningEmulator, str]:
    """Serve ``emulator`` over HTTPS on ``127.0.0.1:port``; returns it and the CA's PEM path.

    The files go to ``directory``, or to a temporary directory removed when the process ends.
    """
    if directory is None:
        holder = tempfile.TemporaryDirectory(prefix="sapb1-tls-")
        _KEPT.append(holder)  # its finalizer removes it at exit
        directory = Path(holder.name)
    files = make_certificates(directory)
    running = serve_in_thread(
        emulator,
        port,
        timeout,
        ssl_certfile=str(files.cert_path),
        ssl_keyfile=str(files.key_path),
    )
    return running, str(files.ca_path)
