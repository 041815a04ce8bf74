"""Plugins' saved sessions (``ConnectionContext.saved_session``): sealed, per side, rotated."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr
from sqlalchemy import text

from ml_connector._saved_sessions import StoreSessionKeeper
from ml_connector.cli import main
from ml_connector.description import Role
from ml_connector.store import Store, iter_encrypted_secrets, open_store
from ml_connector.vault import Vault

if TYPE_CHECKING:
    from pathlib import Path

COOKIE = "session-cookie-value-7c41d2"
SESSION = {"mode": "cookie", "cookies": [{"name": "session", "value": COOKIE}]}


class Password(BaseModel):
    password: SecretStr


def add_connection(store: Store, vault: Vault, name: str = "acme") -> int:
    row = store.add_connection(
        name,
        source_system="acumatica",
        sink_system="bill",
        source_credentials=vault.seal(Password(password=SecretStr("erp-pw"))),
        sink_credentials=vault.seal(Password(password=SecretStr("bill-pw"))),
    )
    assert row.id is not None
    return row.id


def keeper(
    store: Store, vault: Vault, connection_id: int, role: Role = Role.SOURCE
) -> StoreSessionKeeper:
    system = "acumatica" if role is Role.SOURCE else "bill"
    return StoreSessionKeeper(store, vault, connection_id, role, system)


def raw_rows(store: Store) -> list[tuple[str, str, bytes]]:
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT role, system, data FROM plugin_session"))
        return [(role, system, bytes(data)) for role, system, data in rows]


def test_a_saved_session_round_trips_encrypted(store: Store, vault: Vault) -> None:
    kept = keeper(store, vault, add_connection(store, vault))
    assert kept.load() is None
    kept.save(SESSION)
    assert kept.load() == SESSION
    [(role, system, data)] = raw_rows(store)
    assert (role, system) == ("source", "acumatica")
    assert COOKIE.encode() not in data
    assert b"cookie" not in data, "the whole JSON is sealed, not only its values"
    assert COOKIE not in repr(kept)


def test_save_replaces_and_clear_forgets(store: Store, vault: Vault) -> None:
    kept = keeper(store, vault, add_connection(store, vault))
    kept.save(SESSION)
    kept.save({"mode": "oauth", "access_token": "t2"})
    assert kept.load() == {"mode": "oauth", "access_token": "t2"}
    assert len(raw_rows(store)) == 1
    kept.clear()
    assert kept.load() is None
    assert raw_rows(store) == []
    kept.clear()  # nothing to clear: no error


def test_each_side_and_each_connection_keeps_its_own(store: Store, vault: Vault) -> None:
    acme, globex = add_connection(store, vault, "acme"), add_connection(store, vault, "globex")
    keeper(store, vault, acme).save({"side": "acme source"})
    keeper(store, vault, acme, Role.SINK).save({"side": "acme sink"})
    keeper(store, vault, globex).save({"side": "globex source"})
    assert keeper(store, vault, acme).load() == {"side": "acme source"}
    assert keeper(store, vault, acme, Role.SINK).load() == {"side": "acme sink"}
    keeper(store, vault, acme).clear()
    assert keeper(store, vault, acme, Role.SINK).load() == {"side": "acme sink"}
    assert keeper(store, vault, globex).load() == {"side": "globex source"}


def test_another_plugins_session_is_not_handed_out(store: Store, vault: Vault) -> None:
    connection_id = add_connection(store, vault)
    keeper(store, vault, connection_id).save(SESSION)
    other = StoreSessionKeeper(store, vault, connection_id, Role.SOURCE, "epicor")
    assert other.load() is None


def test_a_session_sealed_under_another_key_reads_as_none(
    store: Store, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    connection_id = add_connection(store, vault)
    keeper(store, vault, connection_id).save(SESSION)
    stranger = Vault([Fernet.generate_key()], source="elsewhere")
    assert keeper(store, stranger, connection_id).load() is None
    assert "could not open the saved source session" in caplog.text
    assert COOKIE not in caplog.text


def test_the_saved_session_goes_with_its_connection(store: Store, vault: Vault) -> None:
    doomed, kept = add_connection(store, vault, "doomed"), add_connection(store, vault, "kept")
    keeper(store, vault, doomed).save(SESSION)
    keeper(store, vault, kept).save(SESSION)
    store.remove_connection("doomed")
    assert len(raw_rows(store)) == 1
    assert keeper(store, vault, kept).load() == SESSION


def test_key_rotation_re_encrypts_saved_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "state.db")
    monkeypatch.setenv("ML_CONNECTOR_DB", db)
    old_vault = Vault.from_environment()
    with open_store(db) as store:
        connection_id = add_connection(store, old_vault)
        keeper(store, old_vault, connection_id).save(SESSION)
        [before] = raw_rows(store)
        with store.session(read_only=True) as session:
            labels = [s.label for s in iter_encrypted_secrets(session)]
    assert "connection 'acme': plugin session 1 data" in labels

    result = CliRunner().invoke(main, ["keys", "rotate"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "Re-encrypted 3 secrets" in result.output
    new_vault = Vault.from_environment()
    with open_store(db) as store:
        [after] = raw_rows(store)
        assert after[2] != before[2]
        assert keeper(store, new_vault, connection_id).load() == SESSION
        assert keeper(store, old_vault, connection_id).load() is None
