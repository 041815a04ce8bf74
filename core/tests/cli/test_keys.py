"""``ml-connector keys``: where the key is, and rotating it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr

from ml_connector.cli import main
from ml_connector.errors import VaultError
from ml_connector.store import Store, WebhookSubscriptionRow, iter_encrypted_secrets, open_store
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


class Password(BaseModel):
    password: SecretStr


SECRETS = {
    "acme/source_credentials": "acme-erp-pw",
    "acme/sink_credentials": "acme-bill-pw",
    "globex/source_credentials": "globex-erp-pw",
    "globex/sink_credentials": "globex-bill-pw",
    "globex/security_key": "globex-hook-key",
}


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "state.db")
    monkeypatch.setenv("ML_CONNECTOR_DB", path)
    return path


def seed(db: str) -> None:
    """Two connections and a webhook key: five secrets, under the current master key."""
    vault = Vault.from_environment()
    with open_store(db) as store:
        for name in ("acme", "globex"):
            row = store.add_connection(
                name,
                source_system="netsuite",
                sink_system="bill",
                source_credentials=vault.seal(
                    Password(password=SecretStr(SECRETS[f"{name}/source_credentials"]))
                ),
                sink_credentials=vault.seal(
                    Password(password=SecretStr(SECRETS[f"{name}/sink_credentials"]))
                ),
            )
        assert row.id is not None
        with store.session() as session:
            session.add(
                WebhookSubscriptionRow(
                    connection_id=row.id,
                    sink_id="sub-1",
                    notification_url="https://x.example/hook",
                    security_key=vault.encrypt(SECRETS["globex/security_key"].encode()),
                )
            )


def stored_tokens(db: str) -> dict[str, bytes]:
    with open_store(db) as store, store.session(read_only=True) as session:
        return {f"{s.connection}/{s.column}": s.token for s in iter_encrypted_secrets(session)}


def decrypted(db: str, vault: Vault) -> dict[str, str]:
    found = {}
    for where, token in stored_tokens(db).items():
        if where.endswith("security_key"):
            found[where] = vault.decrypt(token).decode()
        else:
            found[where] = vault.open(token, Password).password.get_secret_value()
    return found


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def key_lines(path: Path) -> list[str]:
    return path.read_text().split()


def new_key() -> str:
    return Fernet.generate_key().decode()


# --- keys path ---------------------------------------------------------------------------------


def test_keys_path_prints_the_key_file_and_creates_nothing(ml_connector_home: Path) -> None:
    result = invoke("keys", "path")
    assert result.exit_code == 0
    assert result.stdout == f"{ml_connector_home / 'master.key'}\n"
    assert list(ml_connector_home.iterdir()) == []


def test_keys_path_says_when_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", key)
    result = invoke("keys", "path")
    assert result.exit_code == 0
    assert "ML_CONNECTOR_MASTER_KEY is set" in result.stderr
    assert key not in result.output


# --- keys rotate with the key file -------------------------------------------------------------


def test_rotate_with_the_key_file(db: str, ml_connector_home: Path) -> None:
    seed(db)
    key_file = ml_connector_home / "master.key"
    [old_key] = key_lines(key_file)
    old_vault = Vault.from_environment()

    result = invoke("keys", "rotate")

    assert result.exit_code == 0, result.output
    assert (
        result.stdout
        == f"Re-encrypted 5 secrets; the master key is now the only key in {key_file}\n"
    )
    [current] = key_lines(key_file)
    assert current != old_key
    assert current not in result.output
    assert old_key not in result.output
    assert decrypted(db, Vault.from_environment()) == SECRETS
    with pytest.raises(VaultError):
        decrypted(db, old_vault)


def test_rotate_refuses_before_step_one_if_a_secret_does_not_decrypt(
    db: str, ml_connector_home: Path
) -> None:
    seed(db)
    with open_store(db) as store:
        store.add_connection(
            "stranger",
            source_system="netsuite",
            sink_system="bill",
            source_credentials=Vault([new_key()], source="elsewhere").encrypt(b"x"),
            sink_credentials=Vault.from_environment().encrypt(b"y"),
        )
    key_file = ml_connector_home / "master.key"
    before = key_file.read_text()

    result = invoke("keys", "rotate")

    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: connection 'stranger': source credentials: cannot decrypt stored credentials"
    )
    assert "nothing was changed" in result.stderr
    assert key_file.read_text() == before


def test_rotate_can_print_the_new_key_on_request(db: str, ml_connector_home: Path) -> None:
    seed(db)
    result = invoke("keys", "rotate", "--print-new-key")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == key_lines(ml_connector_home / "master.key")
    assert "Re-encrypted 5 secrets" in result.stderr


def crash_after(calls: int) -> Callable[..., int]:
    """A Store.reencrypt_secrets that dies inside its transaction after re-encrypting ``calls``."""
    original = Store.reencrypt_secrets

    def reencrypt_secrets(self: Store, transform: Callable[[bytes], bytes]) -> int:
        done = 0

        def dying(token: bytes) -> bytes:
            nonlocal done
            if done == calls:
                raise RuntimeError("the process was killed")
            done += 1
            return transform(token)

        return original(self, dying)

    return reencrypt_secrets


def test_a_crash_during_rotation_leaves_everything_decryptable(
    db: str, ml_connector_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    key_file = ml_connector_home / "master.key"
    [old_key] = key_lines(key_file)
    tokens = stored_tokens(db)
    working = Store.reencrypt_secrets
    monkeypatch.setattr(Store, "reencrypt_secrets", crash_after(3))

    result = invoke("keys", "rotate")

    assert result.exit_code == 1
    assert "did not complete; the key file holds the new and the old keys" in result.stderr
    assert "RuntimeError: the process was killed" in result.stderr
    # Step 1 happened (new key first, old kept); step 2 rolled back; step 3 never ran.
    lines = key_lines(key_file)
    assert len(lines) == 2
    assert lines[1] == old_key
    assert stored_tokens(db) == tokens
    assert decrypted(db, Vault.from_environment()) == SECRETS

    # Running it again finishes the job.
    monkeypatch.setattr(Store, "reencrypt_secrets", working)
    assert invoke("keys", "rotate").exit_code == 0
    assert len(key_lines(key_file)) == 1
    assert decrypted(db, Vault.from_environment()) == SECRETS


def test_a_crash_after_the_transaction_leaves_everything_decryptable(
    db: str, ml_connector_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    key_file = ml_connector_home / "master.key"

    def killed(*_args: Any) -> None:
        raise RuntimeError("the process was killed")

    monkeypatch.setattr("ml_connector.vault.KeyRotation.finish", killed)
    assert invoke("keys", "rotate").exit_code == 1
    assert len(key_lines(key_file)) == 2  # committed under the new key; old key still listed
    assert decrypted(db, Vault.from_environment()) == SECRETS


# --- keys rotate with ML_CONNECTOR_MASTER_KEY --------------------------------------------------


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = new_key()
    monkeypatch.setenv("ML_CONNECTOR_MASTER_KEY", key)
    return key


def test_rotate_refuses_an_env_key_without_a_way_to_hand_over_the_new_one(
    db: str, env_key: str, ml_connector_home: Path
) -> None:
    seed(db)
    tokens = stored_tokens(db)
    result = invoke("keys", "rotate")
    assert result.exit_code == 2
    assert "pass --new-key-env VAR" in result.stderr
    assert "--print-new-key" in result.stderr
    assert stored_tokens(db) == tokens
    assert not (ml_connector_home / "master.key").exists()


def test_rotate_an_env_key_to_a_key_from_another_variable(
    db: str, env_key: str, ml_connector_home: Path
) -> None:
    seed(db)
    replacement = new_key()
    result = invoke("keys", "rotate", "--new-key-env", "NEW_KEY", env={"NEW_KEY": replacement})
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Re-encrypted 5 secrets with the key in NEW_KEY; set ML_CONNECTOR_MASTER_KEY to it now "
        "(the old key no longer decrypts them)\n"
    )
    assert replacement not in result.output
    assert env_key not in result.output
    assert decrypted(db, Vault([replacement], source="new")) == SECRETS
    with pytest.raises(VaultError):
        decrypted(db, Vault([env_key], source="old"))
    assert not (ml_connector_home / "master.key").exists()


def test_rotate_an_env_key_and_print_the_new_one_once(db: str, env_key: str) -> None:
    seed(db)
    result = invoke("keys", "rotate", "--print-new-key")
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip()
    assert result.stdout == f"{printed}\n"  # stdout is the key alone, for $(...) capture
    assert result.output.count(printed) == 1
    assert "with the new key printed above" in result.stderr
    assert decrypted(db, Vault([printed], source="printed")) == SECRETS


def test_a_failed_env_rotation_advises_both_keys(
    db: str, env_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    tokens = stored_tokens(db)
    monkeypatch.setattr(Store, "reencrypt_secrets", crash_after(2))
    result = invoke("keys", "rotate", "--print-new-key")
    assert result.exit_code == 1
    assert "Keep the printed key" in result.stderr
    assert "set ML_CONNECTOR_MASTER_KEY=NEW,CURRENT" in result.stderr
    assert stored_tokens(db) == tokens
    # The advice holds: new and current key together decrypt everything.
    printed = result.stdout.strip()
    assert decrypted(db, Vault([printed, env_key], source="both")) == SECRETS


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--new-key-env", "K", "--print-new-key"], {"K": "x"}, "not both"),
        (["--new-key-env", "UNSET_KEY_VAR"], {}, "UNSET_KEY_VAR is not set or empty"),
        (["--new-key-env", "K"], {"K": "short-and-wrong"}, "the variable K is malformed"),
    ],
)
def test_rotate_usage_errors(
    db: str, env_key: str, args: list[str], env: dict[str, str], message: str
) -> None:
    seed(db)
    tokens = stored_tokens(db)
    result = invoke("keys", "rotate", *args, env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "short-and-wrong" not in result.output
    assert stored_tokens(db) == tokens
