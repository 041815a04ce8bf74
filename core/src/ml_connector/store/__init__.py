"""The state store: everything ml-connector remembers between runs.

Connections (credentials encrypted), cursors, record links, write intents, runs, audit events, the
exception queue, account mappings, webhook subscriptions and received webhook events.
SQLite by default, PostgreSQL by URL; the schema is migrated when the store is opened::

    store = open_store(None)  # $ML_CONNECTOR_DB, else ml-connector.db in the data dir
    with store.session() as session:
        ...
"""

from ml_connector.store._database import (
    DB_FILE_NAME,
    ENV_DB,
    create_store_engine,
    database_url,
    default_database,
    open_store,
)
from ml_connector.store._secrets import (
    SECRET_COLUMNS,
    StoredSecret,
    iter_encrypted_secrets,
    reencrypt_secrets,
)
from ml_connector.store._store import Store
from ml_connector.store._tables import (
    AccountMappingRow,
    AuditEventRow,
    ConnectionRow,
    CursorRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    ObjectType,
    RecordLinkRow,
    RunRow,
    RunStatus,
    StoreTable,
    WebhookEventRow,
    WebhookSubscriptionRow,
    WriteIntentRow,
    metadata,
)

__all__ = [
    "DB_FILE_NAME",
    "ENV_DB",
    "SECRET_COLUMNS",
    "AccountMappingRow",
    "AuditEventRow",
    "ConnectionRow",
    "CursorRow",
    "ExceptionItemRow",
    "ExceptionStatus",
    "IntentStatus",
    "ObjectType",
    "RecordLinkRow",
    "RunRow",
    "RunStatus",
    "Store",
    "StoreTable",
    "StoredSecret",
    "WebhookEventRow",
    "WebhookSubscriptionRow",
    "WriteIntentRow",
    "create_store_engine",
    "database_url",
    "default_database",
    "iter_encrypted_secrets",
    "metadata",
    "open_store",
    "reencrypt_secrets",
]
