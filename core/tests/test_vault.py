from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, SecretStr

from ml_connector.errors import ConfigurationError, VaultError
from ml_connector.vault import KeyRotation, Vault, data_home, default_key_file

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "hunter2-do-not-leak"


class Address(BaseModel):
    host: str
    port: int


class Credentials(BaseModel):
    username: str
    password: SecretStr
    api_keys: list[SecretStr] = []
    server: Address | None = None


class NewerCredentials(BaseModel):
    username: str
    password: SecretStr
    company_id: str  # a field the stored credentials do not have


def key() -> str:
    return Fernet.generate_key().decode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- Encrypting --------------------------------------------------------------------------------


def test_round_trip() -> None:
    vault = Vault([key()], source="test")
    token = vault.encrypt(SECRET.encode())
    assert SECRET.encode() not in token
    assert vault.decrypt(token) == SECRET.encode()


def test_a_wrong_key_is_a_clear_vault_error(ml_connector_home: Path) -> None:
    token = Vault([key()], source="test").encrypt(b"x")
    vault = Vault.from_environment()
    with pytest.raises(VaultError) as info:
        vault.decrypt(token)
    assert str(info.value) == (
        "cannot decrypt stored credentials: the master key is not the one they were encrypted "
        f"with (key file {ml_connector_home / 'master.key'})"
    )
    # Nothing of the original error leaks into a traceback.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_a_wrong_env_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    token = Vault([key()], source="test").encrypt(b"x")
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", key())
    with pytest.raises(VaultError, match=r"encrypted with \(ML_CONNECTOR_MASTER_KEY\)$"):
        Vault.from_environment().decrypt(token)


def test_a_damaged_token_is_refused_not_decrypted_into_garbage() -> None:
    vault = Vault([key()], source="test")
    token = bytearray(vault.encrypt(b"payload"))
    token[-5] ^= 1
    with pytest.raises(VaultError, match="cannot decrypt stored credentials"):
        vault.decrypt(bytes(token))
    with pytest.raises(VaultError):
        vault.decrypt(b"not a token at all")


# --- Where keys come from ----------------------------------------------------------------------


def test_key_file_is_created_owner_only_and_reused(ml_connector_home: Path) -> None:
    path = default_key_file()
    assert path == ml_connector_home / "master.key"
    assert not path.exists()
    token = Vault.from_environment().encrypt(b"data")
    assert path.exists()
    if os.name == "posix":
        assert mode_of(path) == 0o600
    assert Vault.from_environment().decrypt(token) == b"data"
    assert len(path.read_text().split()) == 1


def test_key_file_parent_directory_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "master.key"
    Vault.from_environment(path)
    if os.name == "posix":
        assert mode_of(path.parent) == 0o700
        assert mode_of(path) == 0o600


def test_key_file_creation_does_not_log_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    Vault.from_environment()
    stored = default_key_file().read_text().strip()
    assert "created a new master key" in caplog.text
    assert stored not in caplog.text


def test_data_home_defaults_to_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_CONNECTOR_HOME")
    assert data_home().name == "ml-connector"
    assert default_key_file() == data_home() / "master.key"


def test_env_key_wins_over_the_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = key()
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", env_key)
    vault = Vault.from_environment()
    assert vault.key_file is None
    assert vault.source == "ML_CONNECTOR_MASTER_KEY"
    assert not default_key_file().exists()
    assert Vault([env_key], source="t").decrypt(vault.encrypt(b"x")) == b"x"


def test_an_empty_env_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", "  ")
    assert Vault.from_environment().key_file == default_key_file()


def test_env_holds_several_keys_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = key(), key()
    old_token = Vault([old], source="t").encrypt(b"old")
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", f"{new}, {old}")
    vault = Vault.from_environment()
    assert vault.key_count == 2
    assert vault.decrypt(old_token) == b"old"
    # New tokens are made with the newest key alone.
    assert Vault([new], source="t").decrypt(vault.encrypt(b"new")) == b"new"


@pytest.mark.parametrize("bad", ["not-a-key", "", key()[:-4]])
def test_a_malformed_env_key_is_a_vault_error_that_does_not_quote_it(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", f"{key()},{bad}" if bad else f"{key()},")
    with pytest.raises(VaultError) as info:
        Vault.from_environment()
    message = str(info.value)
    assert message.startswith(
        "the master key in ML_CONNECTOR_MASTER_KEY (item 2 of 2) is malformed"
    )
    if bad:
        assert bad not in message


def test_a_malformed_key_file_names_the_file_and_line(ml_connector_home: Path) -> None:
    path = ml_connector_home / "master.key"
    path.write_text(f"# rotated keys\n{key()}\n\nsecret-but-malformed\n")
    with pytest.raises(VaultError) as info:
        Vault.from_environment()
    assert str(info.value).startswith(f"the master key in key file {path} (line 4) is malformed")
    assert "secret-but-malformed" not in str(info.value)


def test_an_empty_key_file_is_refused(ml_connector_home: Path) -> None:
    (ml_connector_home / "master.key").write_text("\n")
    with pytest.raises(VaultError, match="holds no key"):
        Vault.from_environment()


def test_a_missing_key_file_is_refused_when_creation_is_off(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="there is no key file"):
        Vault.from_key_file(tmp_path / "absent.key", create=False)


def test_a_key_file_readable_by_others_is_reported(
    ml_connector_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path = ml_connector_home / "master.key"
    path.write_text(key() + "\n")
    path.chmod(0o644)
    Vault.from_environment()
    assert "can be read by other users" in caplog.text


def test_reprs_show_no_key() -> None:
    secret_key = key()
    vault = Vault([secret_key], source="test")
    rotation = vault.begin_rotation()
    assert secret_key not in repr(vault)
    assert rotation.reveal_new_key() not in repr(rotation)
    assert repr(vault) == "Vault(source='test', keys=1)"


# --- Sealing models ----------------------------------------------------------------------------


def test_seal_keeps_the_secrets_and_open_restores_the_model() -> None:
    vault = Vault([key()], source="test")
    creds = Credentials(
        username="ap",
        password=SecretStr(SECRET),
        api_keys=[SecretStr("k1"), SecretStr("k2")],
        server=Address(host="erp.example", port=443),
    )
    token = vault.seal(creds)
    assert SECRET.encode() not in token
    opened = vault.open(token, Credentials)
    assert opened == creds
    assert opened.password.get_secret_value() == SECRET  # not "**********"
    assert [k.get_secret_value() for k in opened.api_keys] == ["k1", "k2"]


class AliasedCredentials(BaseModel):
    api_key: SecretStr = Field(alias="apiKey")
    company: str = Field(alias="companyId")


def test_seal_and_open_models_with_aliases() -> None:
    vault = Vault([key()], source="test")
    creds = AliasedCredentials(apiKey=SecretStr(SECRET), companyId="acme")
    assert vault.open(vault.seal(creds), AliasedCredentials) == creds


def test_open_with_a_model_that_no_longer_fits_names_fields_not_secrets() -> None:
    vault = Vault([key()], source="test")
    token = vault.seal(Credentials(username="ap", password=SecretStr(SECRET)))
    with pytest.raises(ConfigurationError) as info:
        vault.open(token, NewerCredentials)
    assert not isinstance(info.value, VaultError)
    assert "NewerCredentials" in str(info.value)
    assert "company_id" in str(info.value)
    assert SECRET not in str(info.value)


def test_open_with_the_wrong_key_is_a_vault_error() -> None:
    token = Vault([key()], source="test").seal(Credentials(username="a", password=SecretStr("b")))
    with pytest.raises(VaultError, match="cannot decrypt stored credentials"):
        Vault([key()], source="other").open(token, Credentials)


# --- Rotation ----------------------------------------------------------------------------------


def key_file_lines(path: Path) -> list[str]:
    return path.read_text().split()


def test_file_rotation_keeps_old_keys_until_finished(ml_connector_home: Path) -> None:
    vault = Vault.from_environment()
    path = default_key_file()
    [old] = key_file_lines(path)
    old_token = vault.encrypt(b"secret")

    rotation = vault.begin_rotation()
    assert isinstance(rotation, KeyRotation)
    new = rotation.reveal_new_key()
    # Step 1 is on disk before anything is re-encrypted: new key first, old kept.
    assert key_file_lines(path) == [new, old]
    assert Vault.from_environment().decrypt(old_token) == b"secret"

    new_token = rotation.vault.reencrypt(old_token)
    finished = rotation.finish()
    assert key_file_lines(path) == [new]
    assert finished.key_count == 1
    assert Vault.from_environment().decrypt(new_token) == b"secret"
    with pytest.raises(VaultError):
        Vault.from_environment().decrypt(old_token)
    with pytest.raises(VaultError):
        vault.decrypt(new_token)
    if os.name == "posix":
        assert mode_of(path) == 0o600
    assert [p.name for p in ml_connector_home.iterdir()] == ["master.key"]  # no temp files left


def test_rotation_keeps_every_older_key_of_an_unfinished_rotation() -> None:
    first = Vault.from_environment()
    token = first.encrypt(b"x")
    first.begin_rotation()  # "crashed" before finishing
    second = Vault.from_environment()
    assert second.key_count == 2
    second.begin_rotation()
    assert Vault.from_environment().key_count == 3
    assert Vault.from_environment().decrypt(token) == b"x"


def test_env_rotation_writes_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", key())
    vault = Vault.from_environment()
    new = key()
    rotation = vault.begin_rotation(new, new_key_source="the variable NEW")
    token = rotation.vault.reencrypt(vault.encrypt(b"x"))
    rotation.finish()
    assert not default_key_file().exists()
    assert Vault([new], source="t").decrypt(token) == b"x"


def test_rotation_refuses_a_malformed_or_current_key() -> None:
    current = key()
    vault = Vault([current], source="test")
    with pytest.raises(VaultError, match="the master key in the variable NEW is malformed"):
        vault.begin_rotation("nope", new_key_source="the variable NEW")
    with pytest.raises(VaultError, match="already one of the master keys"):
        vault.begin_rotation(current)


def test_reencrypt_refuses_a_token_of_an_unknown_key() -> None:
    with pytest.raises(VaultError, match="cannot decrypt stored credentials"):
        Vault([key()], source="t").reencrypt(Vault([key()], source="u").encrypt(b"x"))
