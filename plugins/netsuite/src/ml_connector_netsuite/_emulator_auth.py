"""OAuth 2.0 client credentials (M2M) as NetSuite checks them (netsuite.md §2, §7).

The emulator plays the integration record and the M2M mapping: at start it makes a key pair and a
self-signed x.509 certificate (as an administrator would upload it), and verifies each client
assertion with PyJWT against that certificate's public key.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ALGORITHMS", "AssertionError_", "Integration", "make_integration"]

ALGORITHMS = ["PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
"""netsuite.md §2 (CONFIRMED): the accepted ``alg`` values. RS256 stopped working on 2025-03-01
(CORROBORATED) and is refused."""
MAX_ASSERTION_LIFETIME = 3600
"""netsuite.md §2/§8: ``exp - iat`` must not exceed 60 minutes (the safe rule: reject > 3600)."""
SCOPES = {"restlets", "rest_webservices", "suite_analytics"}


class AssertionError_(Exception):
    """A refused client assertion: the OAuth ``error`` and its ``error_description``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass
class Integration:
    """One integration record + M2M certificate mapping."""

    client_id: str
    certificate_id: str
    private_key_pem: str
    certificate_pem: str
    public_key: object


def make_integration(now: datetime) -> Integration:
    """A client id, and an EC P-256 key pair with a self-signed certificate (valid 2 years).

    netsuite.md §2 (CONFIRMED): EC keys of 256/384/521 bits or RSA 3072/4096 are accepted; P-256
    is used because it is quick to make at every emulator start.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ml-connector emulator")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Integration(
        client_id=uuid.uuid4().hex + uuid.uuid4().hex[:32],
        certificate_id=secrets.token_urlsafe(32),
        private_key_pem=pem,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        public_key=cert.public_key(),
    )


def verify_assertion(
    assertion: str, integration: Integration, token_urls: Sequence[str], now: datetime
) -> dict[str, object]:
    """The assertion's claims, or :class:`AssertionError_` (``invalid_grant`` / ``invalid_client``).

    UNCONFIRMED (netsuite.md §2): the M2M error body; Oracle documents ``{"error": ...}`` for the
    other grants and real clients read ``error`` + ``error_description``. Emulator choice: a bad
    signature, algorithm, lifetime, audience or scope is ``invalid_grant`` (400); an unknown
    ``kid`` or ``iss`` is ``invalid_client`` (401), since no mapping matches.
    """
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AssertionError_("invalid_request", f"Malformed client assertion: {exc}") from exc
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise AssertionError_("invalid_grant", f"Unsupported signing algorithm {alg!r}")
    if header.get("kid") != integration.certificate_id:
        raise AssertionError_("invalid_client", "Unknown certificate id (kid)")
    try:
        claims = jwt.decode(
            assertion,
            integration.public_key,  # type: ignore[arg-type]
            algorithms=ALGORITHMS,
            audience=list(token_urls),
            options={
                "require": ["iss", "aud", "iat", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise AssertionError_("invalid_grant", "The aud claim must be the token URL") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AssertionError_("invalid_grant", str(exc)) from exc
    except jwt.PyJWTError as exc:
        raise AssertionError_("invalid_grant", f"Invalid client assertion: {exc}") from exc
    if claims.get("iss") != integration.client_id:
        raise AssertionError_("invalid_client", "Unknown client id (iss)")
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise AssertionError_("invalid_grant", "iat and exp must be epoch seconds")
    # Expiry on the emulator's clock, not the wall clock (tests move a ManualClock).
    if exp <= now.astimezone(UTC).timestamp():
        raise AssertionError_("invalid_grant", "The client assertion has expired")
    if exp - iat > MAX_ASSERTION_LIFETIME:
        raise AssertionError_("invalid_grant", "exp must be at most 60 minutes after iat")
    scope = claims.get("scope")
    # netsuite.md §2/§8: scope as a comma-separated string or a JSON array; accept both.
    scopes = scope if isinstance(scope, list) else str(scope or "").split(",")
    scopes = [str(s).strip() for s in scopes if str(s).strip()]
    if not scopes or not set(scopes) <= SCOPES:
        raise AssertionError_("invalid_grant", "Invalid scope")
    if "rest_webservices" not in scopes:
        raise AssertionError_("invalid_grant", "The rest_webservices scope is required")
    return claims
