"""OAuth 2.0 client credentials (M2M): the signed assertion, the token, renewal, host names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from ml_connector.errors import AuthenticationError
from ml_connector.testing import ManualClock
from pydantic import ValidationError

from ml_connector_netsuite._auth import ASSERTION_LIFETIME, Signer
from ml_connector_netsuite.client import TOKEN_PATH, NetSuiteClient
from ml_connector_netsuite.emulator import NetSuiteEmulator
from ml_connector_netsuite.schemas import Credentials, Settings, host_for_account

try:  # the plugin's own pytest configuration: this folder is on sys.path
    import netsuite_testkit as kit
except ModuleNotFoundError:  # the repository's (import mode importlib, rootdir the repository)
    from plugins.netsuite.tests import netsuite_testkit as kit  # type: ignore[import-not-found,no-redef]

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TOKEN_URL = "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def test_the_assertion_is_ps256_signed_and_verifiable(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = Signer("client-1", "cert-1", _pem(rsa_key))
    token = signer.assertion(TOKEN_URL, NOW)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "PS256", "typ": "JWT", "kid": "cert-1"}
    claims = jwt.decode(
        token,
        rsa_key.public_key(),
        algorithms=["PS256"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "client-1"
    assert claims["aud"] == TOKEN_URL
    assert claims["scope"] == ["rest_webservices"]
    assert claims["iat"] == int(NOW.timestamp())
    assert 0 < claims["exp"] - claims["iat"] == ASSERTION_LIFETIME <= 3600
    assert claims["jti"]
    # never RS256: a verifier insisting on RS256 refuses it
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)


def test_each_assertion_is_new(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = Signer("client-1", "cert-1", _pem(rsa_key))
    first = jwt.decode(signer.assertion(TOKEN_URL, NOW), options={"verify_signature": False})
    second = jwt.decode(signer.assertion(TOKEN_URL, NOW), options={"verify_signature": False})
    assert first["jti"] != second["jti"]


def test_the_scope_may_be_a_string(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = Signer("client-1", "cert-1", _pem(rsa_key), scope_form="string")
    claims = jwt.decode(signer.assertion(TOKEN_URL, NOW), options={"verify_signature": False})
    assert claims["scope"] == "rest_webservices"


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")],
)
def test_an_ec_key_signs_with_ecdsa(curve: ec.EllipticCurve, algorithm: str) -> None:
    key = ec.generate_private_key(curve)
    token = Signer("c", "k", _pem(key)).assertion(TOKEN_URL, NOW)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    jwt.decode(
        token,
        key.public_key(),
        algorithms=[algorithm],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )


def test_a_short_rsa_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationError, match="3072 or 4096"):
        Signer("c", "k", _pem(key))


def test_an_unreadable_key_is_refused_without_quoting_it() -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"
    with pytest.raises(AuthenticationError) as caught:
        Signer("c", "k", garbage)
    assert "c2VjcmV0" not in str(caught.value)


def test_credentials_need_pem_text_and_hide_it() -> None:
    with pytest.raises(ValidationError) as caught:
        Credentials.model_validate(
            {"client_id": "c", "certificate_id": "k", "private_key": "not a key"}
        )
    (error,) = caught.value.errors(include_input=False)
    assert "PEM" in error["msg"]
    assert "not a key" not in error["msg"]
    creds = Credentials.model_validate(
        {"client_id": "c", "certificate_id": "k", "private_key": "-----BEGIN X-----"}
    )
    assert "BEGIN" not in repr(creds)


@pytest.mark.parametrize(
    ("account", "host"),
    [
        ("1234567", "https://1234567.suitetalk.api.netsuite.com"),
        ("1234567_SB1", "https://1234567-sb1.suitetalk.api.netsuite.com"),
        ("TSTDRV123_RP", "https://tstdrv123-rp.suitetalk.api.netsuite.com"),
    ],
)
def test_the_host_comes_from_the_account_id(account: str, host: str) -> None:
    assert host_for_account(account) == host
    settings = Settings(account_id=account)
    assert settings.rest_url == host
    override = Settings(account_id=account, base_url="https://acme.example/")
    assert override.rest_url == "https://acme.example"


def test_an_account_id_with_other_characters_is_refused() -> None:
    with pytest.raises(ValidationError, match="account id"):
        Settings(account_id="1234567.evil.example/")


# --- Against the emulator ------------------------------------------------------------------


def _client(emu: NetSuiteEmulator, clock: ManualClock) -> NetSuiteClient:
    settings = kit.settings(emu)
    credentials = Credentials.model_validate(emu.credentials())
    http = httpx.AsyncClient(transport=emu.transport(), base_url=settings.rest_url)
    return NetSuiteClient(http, settings, credentials, clock=clock)


def _token_requests(emu: NetSuiteEmulator) -> int:
    return sum(1 for entry in emu.log.records if entry.path == TOKEN_PATH)


async def test_a_token_is_renewed_before_it_expires() -> None:
    clock = ManualClock(kit.START)
    emu = kit.emulator(clock)
    client = _client(emu, clock)
    await client.sign_in()
    assert client.expires_at == kit.START + timedelta(hours=1)
    await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert _token_requests(emu) == 1
    clock.advance(timedelta(minutes=54))
    await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert _token_requests(emu) == 1  # still good
    clock.advance(timedelta(minutes=2))  # within 5 minutes of the end: a new assertion first
    await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert _token_requests(emu) == 2
    await client.close()


async def test_a_refused_token_is_replaced_once() -> None:
    clock = ManualClock(kit.START)
    emu = kit.emulator(clock)
    client = _client(emu, clock)
    await client.sign_in()
    emu.expire_tokens()
    page = await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert page.items == []
    assert _token_requests(emu) == 2
    await client.close()


async def test_refused_credentials_are_an_authentication_error() -> None:
    clock = ManualClock(kit.START)
    emu = kit.emulator(clock)
    client = _client(emu, clock)
    await client.sign_in()
    emu.credentials_valid = False
    emu.expire_tokens()
    with pytest.raises(AuthenticationError, match="Login Audit Trail"):
        await client.suiteql("SELECT t.id FROM transaction t", limit=1)
    assert _token_requests(emu) == 2  # one new assertion, no loop
    await client.close()
