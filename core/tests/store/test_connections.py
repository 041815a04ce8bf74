"""Connections in the store, with credentials encrypted by the vault."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import func, select, text

from ml_connector.errors import ConfigurationError
from ml_connector.store import (
    AccountMappingRow,
    AuditEventRow,
    ConnectionRow,
    CursorRow,
    ExceptionItemRow,
    PluginSessionRow,
    RecordLinkRow,
    RunRow,
    Store,
    WebhookEventRow,
    WebhookSubscriptionRow,
    WriteIntentRow,
    metadata,
    open_store,
)

if TYPE_CHECKING:
    from pathlib import Path

    from sqlmodel import Session

    from ml_connector.vault import Vault

ERP_PASSWORD = "erp-password-1f7c2b"
BILL_KEY = "bill-dev-key-90d1e4"
WEBHOOK_KEY = "webhook-signing-key-5a3e"


class ErpCredentials(BaseModel):
    username: str
    password: SecretStr


class BillCredentials(BaseModel):
    user_name: str
    password: SecretStr
    dev_key: SecretStr


def add_sealed_connection(
    store: Store, vault: Vault, name: str = "acme-acumatica"
) -> ConnectionRow:
    return store.add_connection(
        name,
        source_system="acumatica",
        sink_system="bill",
        source_settings={"base_url": "https://erp.example", "tenant": "Acme"},
        sink_settings={"organization_id": "00801"},
        source_credentials=vault.seal(
            ErpCredentials(username="ap.clerk", password=SecretStr(ERP_PASSWORD))
        ),
        sink_credentials=vault.seal(
            BillCredentials(
                user_name="ap@acme.example",
                password=SecretStr(ERP_PASSWORD + "-bill"),
                dev_key=SecretStr(BILL_KEY),
            )
        ),
        options={"create_missing_accounts": True},
    )


def add_webhook(store: Store, vault: Vault, connection_id: int) -> None:
    with store.session() as session:
        session.add(
            WebhookSubscriptionRow(
                connection_id=connection_id,
                sink_id="sub-1",
                notification_url="https://connector.example/webhooks/bill",
                events=["payment.updated"],
                security_key=vault.encrypt(WEBHOOK_KEY.encode()),
            )
        )


# --- Round trip --------------------------------------------------------------------------------


def test_credentials_round_trip_encrypted(store: Store, vault: Vault) -> None:
    add_sealed_connection(store, vault)
    row = store.get_connection("acme-acumatica")
    assert ERP_PASSWORD.encode() not in row.source_credentials
    assert BILL_KEY.encode() not in row.sink_credentials
    erp = vault.open(row.source_credentials, ErpCredentials)
    bill = vault.open(row.sink_credentials, BillCredentials)
    assert erp.password.get_secret_value() == ERP_PASSWORD
    assert bill.dev_key.get_secret_value() == BILL_KEY
    assert row.source_settings == {"base_url": "https://erp.example", "tenant": "Acme"}
    assert row.sink_settings == {"organization_id": "00801"}
    assert row.options == {"create_missing_accounts": True}
    assert row.created_at.tzinfo == UTC
    assert "source_credentials" not in repr(row)


def test_no_secret_is_readable_in_any_column(store: Store, vault: Vault) -> None:
    row = add_sealed_connection(store, vault)
    assert row.id is not None
    add_webhook(store, vault, row.id)
    with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for values in connection.execute(select(table)):
                dumped = repr(tuple(values)).encode() + b"".join(
                    bytes(v) for v in values if isinstance(v, bytes | memoryview)
                )
                for secret in (ERP_PASSWORD, BILL_KEY, WEBHOOK_KEY):
                    assert secret.encode() not in dumped, (table.name, secret)


def test_the_sqlite_file_holds_no_secret(tmp_path: Path, vault: Vault) -> None:
    path = tmp_path / "state.db"
    with open_store(str(path)) as store:
        row = add_sealed_connection(store, vault)
        assert row.id is not None
        add_webhook(store, vault, row.id)
        with store.engine.connect() as connection:
            # Move everything from the write-ahead log into the database file itself.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("state.db"))
    assert b"acme-acumatica" in raw  # the rows are in what we read...
    assert b"https://erp.example" in raw
    for secret in (ERP_PASSWORD, BILL_KEY, WEBHOOK_KEY):  # ...the secrets are not
        assert secret.encode() not in raw


# --- Adding, finding, listing, removing --------------------------------------------------------


def test_get_list_and_remove(store: Store, vault: Vault) -> None:
    add_sealed_connection(store, vault, "zeta")
    add_sealed_connection(store, vault, "alpha")
    assert [c.name for c in store.list_connections()] == ["alpha", "zeta"]
    store.remove_connection("zeta")
    assert [c.name for c in store.list_connections()] == ["alpha"]


def test_an_unknown_connection_is_a_configuration_error(store: Store) -> None:
    with pytest.raises(ConfigurationError, match="no connection named 'nope'"):
        store.get_connection("nope")
    with pytest.raises(ConfigurationError, match="no connection named 'nope'"):
        store.remove_connection("nope")


def test_names_are_unique(store: Store, vault: Vault) -> None:
    add_sealed_connection(store, vault)
    with pytest.raises(ConfigurationError, match="'acme-acumatica' already exists"):
        add_sealed_connection(store, vault)
    assert len(store.list_connections()) == 1


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_names_are_refused(store: Store, vault: Vault, name: str) -> None:
    with pytest.raises(ConfigurationError, match="1 to 200 characters"):
        add_sealed_connection(store, vault, name)


def fill_every_table(session: Session, connection_id: int) -> None:
    now = datetime.now(UTC)
    run = RunRow(connection_id=connection_id)
    session.add(run)
    session.flush()
    session.add_all(
        [
            CursorRow(connection_id=connection_id, stream="payables", position=now),
            RecordLinkRow(
                connection_id=connection_id,
                object_type="bill",
                source_id="AP-1",
                sink_id="00n1",
                fingerprint="0" * 64,
            ),
            WriteIntentRow(
                key=f"{connection_id}:bill:AP-1:v1",
                connection_id=connection_id,
                object_type="bill",
                source_id="AP-1",
                content_version="v1",
            ),
            AuditEventRow(
                run_id=run.id,
                connection_id=connection_id,
                object_type="bill",
                source_id="AP-1",
                action="created",
                outcome="ok",
                plugin_versions={"acumatica": "1.0.0"},
            ),
            ExceptionItemRow(
                connection_id=connection_id,
                run_id=run.id,
                object_type="bill",
                source_id="AP-2",
                field="lines.0.account_id",
                reason="account 6100 is not mapped",
            ),
            AccountMappingRow(
                connection_id=connection_id,
                source_kind="account",
                source_id="6100",
                sink_kind="account",
                sink_id="0ca1",
                method="number",
            ),
            WebhookSubscriptionRow(
                connection_id=connection_id,
                sink_id=f"sub-{connection_id}",
                notification_url="https://x.example/hook",
            ),
            WebhookEventRow(
                connection_id=connection_id,
                event_id="evt-1",
                event_type="payment.updated",
                entity_type="payment",
                entity_id="pay-1",
            ),
            PluginSessionRow(
                connection_id=connection_id,
                role="source",
                system="acumatica",
                data=b"sealed session",
            ),
        ]
    )


def test_removing_a_connection_removes_its_rows_only(store: Store, vault: Vault) -> None:
    doomed = add_sealed_connection(store, vault, "doomed").id
    kept = add_sealed_connection(store, vault, "kept").id
    assert doomed is not None
    assert kept is not None
    with store.session() as session:
        fill_every_table(session, doomed)
        fill_every_table(session, kept)

    store.remove_connection("doomed")

    with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            owner = table.c.id if table.name == "connection" else table.c.connection_id
            grouped = connection.execute(select(owner, func.count()).group_by(owner))
            counts = {owner_id: count for owner_id, count in grouped}
            assert counts == {kept: 1}, table.name
        # The kept connection's audit event still points at its run.
        assert connection.execute(text("SELECT run_id FROM audit_event")).scalar() is not None
