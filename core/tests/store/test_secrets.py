"""Finding and re-encrypting every stored secret (what key rotation relies on)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr
from sqlalchemy import LargeBinary
from sqlmodel import col, select

from ml_connector.errors import VaultError
from ml_connector.store import (
    SECRET_COLUMNS,
    ConnectionRow,
    Store,
    WebhookSubscriptionRow,
    iter_encrypted_secrets,
    metadata,
)
from ml_connector.vault import Vault


class Password(BaseModel):
    password: SecretStr


def seed(store: Store, vault: Vault) -> None:
    for name in ("acme", "globex"):
        row = store.add_connection(
            name,
            source_system="sapb1",
            sink_system="bill",
            source_credentials=vault.seal(Password(password=SecretStr(f"{name}-erp"))),
            sink_credentials=vault.seal(Password(password=SecretStr(f"{name}-bill"))),
        )
        assert row.id is not None
        with store.session() as session:
            session.add(
                WebhookSubscriptionRow(
                    connection_id=row.id,
                    sink_id=f"sub-{name}",
                    notification_url="https://x.example/hook",
                    security_key=vault.encrypt(f"{name}-hook".encode()),
                )
            )
            # A subscription whose key is not stored (NULL) is not a secret to re-encrypt.
            session.add(
                WebhookSubscriptionRow(
                    connection_id=row.id,
                    sink_id=f"sub-{name}-nokey",
                    notification_url="https://x.example/h",
                )
            )


def plaintexts(store: Store, vault: Vault) -> dict[str, str]:
    with store.session(read_only=True) as session:
        found = {
            f"{s.connection}/{s.column}/{s.row_id}": vault.decrypt(s.token).decode()
            for s in iter_encrypted_secrets(session)
        }
    return found


def test_every_binary_column_is_a_known_secret_column() -> None:
    binary = {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }
    declared = {(table, column) for table, columns in SECRET_COLUMNS.items() for column in columns}
    assert binary == declared


def test_iter_encrypted_secrets_finds_all_and_hides_tokens(store: Store, vault: Vault) -> None:
    seed(store, vault)
    with store.session(read_only=True) as session:
        found = list(iter_encrypted_secrets(session))
    assert len(found) == 6
    assert {s.label for s in found if s.table == "connection"} == {
        "connection 'acme': source credentials",
        "connection 'acme': sink credentials",
        "connection 'globex': source credentials",
        "connection 'globex': sink credentials",
    }
    assert all(s.token.decode() not in repr(s) for s in found)


def test_reencrypt_moves_every_secret_to_the_new_key(store: Store, vault: Vault) -> None:
    seed(store, vault)
    before = plaintexts(store, vault)
    with store.session(read_only=True) as session:
        stamps = session.exec(select(col(ConnectionRow.name), col(ConnectionRow.updated_at))).all()

    rotation = vault.begin_rotation()
    assert store.reencrypt_secrets(rotation.vault.reencrypt) == 6
    new_only = rotation.finish()

    assert plaintexts(store, new_only) == before
    with store.session(read_only=True) as session:
        tokens = [s.token for s in iter_encrypted_secrets(session)]
        # A re-encrypted secret is the same secret: the rows are not "updated".
        assert (
            session.exec(select(col(ConnectionRow.name), col(ConnectionRow.updated_at))).all()
            == stamps
        )
    for token in tokens:
        with pytest.raises(VaultError):
            vault.decrypt(token)


def test_a_failure_midway_changes_nothing(store: Store, vault: Vault) -> None:
    seed(store, vault)
    with store.session(read_only=True) as session:
        tokens_before = [s.token for s in iter_encrypted_secrets(session)]
    rotation = vault.begin_rotation()
    calls = 0

    def crash_on_the_fourth(token: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("killed")
        return rotation.vault.reencrypt(token)

    with pytest.raises(RuntimeError):
        store.reencrypt_secrets(crash_on_the_fourth)

    with store.session(read_only=True) as session:
        assert [s.token for s in iter_encrypted_secrets(session)] == tokens_before
    # The key file of the unfinished rotation still decrypts everything.
    assert len(plaintexts(store, Vault.from_environment())) == 6


def test_an_undecryptable_secret_is_named(store: Store, vault: Vault) -> None:
    seed(store, vault)
    stranger = Vault([Fernet.generate_key()], source="stranger")
    with pytest.raises(VaultError, match=r"^connection 'acme': source credentials: cannot decrypt"):
        store.reencrypt_secrets(stranger.reencrypt)
