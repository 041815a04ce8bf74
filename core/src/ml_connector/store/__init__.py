"""The state store: everything ml-connector remembers between runs.

Connections (credentials encrypted), cursors, record links, write intents, runs, audit events, the
exception queue, account mappings, webhook subscriptions, received webhook events and plugins'
saved sessions (encrypted).
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
from ml_connector.store._locks import ConnectionBusyError
from ml_connector.store._plugin_sessions import (
    clear_plugin_session,
    load_plugin_session,
    save_plugin_session,
)
from ml_connector.store._queries import (
    count_exceptions,
    count_links,
    delete_mapping,
    get_exception,
    get_run,
    list_audit_events,
    list_cursors,
    list_exceptions,
    list_mappings,
    list_open_intents,
    list_runs,
    running_run,
    save_cursor,
    set_exception_status,
    upsert_mappings,
)
from ml_connector.store._secrets import (
    SECRET_COLUMNS,
    StoredSecret,
    iter_encrypted_secrets,
    reencrypt_secrets,
)
from ml_connector.store._store import Store, WriteTransaction
from ml_connector.store._tables import (
    AccountMappingRow,
    AuditEventRow,
    ConnectionRow,
    CursorRow,
    ExceptionItemRow,
    ExceptionStatus,
    IntentStatus,
    ObjectType,
    PluginSessionRow,
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
    "ConnectionBusyError",
    "ConnectionRow",
    "CursorRow",
    "ExceptionItemRow",
    "ExceptionStatus",
    "IntentStatus",
    "ObjectType",
    "PluginSessionRow",
    "RecordLinkRow",
    "RunRow",
    "RunStatus",
    "Store",
    "StoreTable",
    "StoredSecret",
    "WebhookEventRow",
    "WebhookSubscriptionRow",
    "WriteIntentRow",
    "WriteTransaction",
    "clear_plugin_session",
    "count_exceptions",
    "count_links",
    "create_store_engine",
    "database_url",
    "default_database",
    "delete_mapping",
    "get_exception",
    "get_run",
    "iter_encrypted_secrets",
    "list_audit_events",
    "list_cursors",
    "list_exceptions",
    "list_mappings",
    "list_open_intents",
    "list_runs",
    "load_plugin_session",
    "metadata",
    "open_store",
    "reencrypt_secrets",
    "running_run",
    "save_cursor",
    "save_plugin_session",
    "set_exception_status",
    "upsert_mappings",
]
