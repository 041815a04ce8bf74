"""The OAuth 2.0 client-credentials (M2M) assertion: a JWT signed with the customer's key.

NetSuite accepts PS256/384/512 and ES256/384/512 and no longer RS256 (netsuite.md §2, NSH
``section_162755359851``; RS256 stopped on 2025-03-01, CORROBORATED). The header carries
``kid`` = the certificate id; the claims ``iss`` = client id, ``scope``, ``aud`` = the token URL,
``iat`` and ``exp`` (less than 60 minutes later).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from ml_connector.errors import AuthenticationError

from ml_connector_netsuite.schemas import SYSTEM

__all__ = ["ASSERTION_LIFETIME", "SCOPES", "Signer"]

SCOPES = ("rest_webservices",)
"""REST records and SuiteQL need ``rest_webservices`` only."""

ASSERTION_LIFETIME = 300
"""Seconds an assertion is valid: short, as real clients keep it (NetSuite allows < 3600)."""

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class Signer:
    """Signs client assertions with one private key.

    Args:
        client_id: The integration's client ID (``iss``).
        certificate_id: The M2M mapping's certificate id (``kid``).
        private_key_pem: The PEM private key (RSA -> PS256, EC -> ES256/384/512 by curve).
        scope_form: ``"array"`` (the official sample) or ``"string"`` (comma-separated).

    Raises:
        AuthenticationError: The key cannot be read or is neither RSA nor EC.
    """

    def __init__(
        self,
        client_id: str,
        certificate_id: str,
        private_key_pem: str,
        *,
        scope_form: Literal["array", "string"] = "array",
    ) -> None:
        try:
            key = load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            # The message names no part of the key.
            raise AuthenticationError(
                "the private key is not a readable, unencrypted PEM private key",
                system=SYSTEM,
            ) from exc
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 3072:
                raise AuthenticationError(
                    f"the RSA key has {key.key_size} bits; NetSuite needs 3072 or 4096",
                    system=SYSTEM,
                )
            self.algorithm = "PS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = _EC_ALGORITHMS.get(key.curve.name)
            if algorithm is None:
                raise AuthenticationError(
                    f"the EC key's curve {key.curve.name} is not P-256, P-384 or P-521",
                    system=SYSTEM,
                )
            self.algorithm = algorithm
        else:
            raise AuthenticationError("the private key is neither RSA nor EC", system=SYSTEM)
        self._key: Any = key
        self.client_id = client_id
        self.certificate_id = certificate_id
        self.scope_form = scope_form

    def assertion(self, token_url: str, now: datetime) -> str:
        """A signed assertion for ``token_url``, issued at ``now`` (tz-aware)."""
        issued = int(now.timestamp())
        scope: list[str] | str = list(SCOPES) if self.scope_form == "array" else ",".join(SCOPES)
        claims = {
            "iss": self.client_id,
            "scope": scope,
            "aud": token_url,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": secrets.token_hex(16),
        }
        headers = {"typ": "JWT", "kid": self.certificate_id}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)
