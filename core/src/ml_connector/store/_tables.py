"""The state store's tables.

Every row belongs to a connection and goes when the connection goes (``ON DELETE CASCADE``).
Conventions that hold for every table:

- times are :class:`~ml_connector.store._types.UtcDateTime`: stored in UTC, read back aware;
- secrets are ``LargeBinary`` Fernet tokens made by :class:`ml_connector.vault.Vault`, never
  plain text; the store itself never sees a master key;
- digests and fingerprints are SHA-256 hex strings of 64 characters;
- statuses are plain strings whose values are the ``StrEnum`` classes below;
- no money is stored: amounts stay in the systems they belong to (counts are integers).

The classes carry a ``Row`` suffix so that they never shadow the domain models of the same name
(:class:`ml_connector.models.AccountMapping` is what plugins exchange; :class:`AccountMappingRow`
is how the core remembers it).

No ``from __future__ import annotations`` here: SQLModel reads the annotations at runtime.

Changing a table means adding a migration in ``migrations/versions`` (see the README there); a
test fails while the tables and the migrations disagree.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from ml_connector.store._types import RowId, UtcDateTime, utcnow

__all__ = [
    "CORRELATION_ID_MAX",
    "AccountMappingRow",
    "AuditEventRow",
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
    "StoreTable",
    "WebhookEventRow",
    "WebhookSubscriptionRow",
    "WriteIntentRow",
    "metadata",
]

# Deterministic constraint names, so migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The store's own metadata rather than SQLModel's process-wide default, so that no other
# SQLModel user in the same process (a plugin, a test) mixes its tables into our migrations.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

_CONNECTION_FK = "connection.id"
_SHORT = 64  # system keys, streams, kinds, content versions
_ID = 255  # ids in remote systems
_DIGEST = 64  # SHA-256 hex
#: A remote system's request or correlation id (``UpstreamError.correlation_id``), as long as the
#: store keeps it: the engine cuts longer ones (``engine/_ledger.py``).
CORRELATION_ID_MAX = 200


class ObjectType(StrEnum):
    """The kinds of record the connector moves or links."""

    VENDOR = "vendor"
    BILL = "bill"
    PAYMENT = "payment"
    ACCOUNT = "account"


class IntentStatus(StrEnum):
    """A write intent is open until the sink id is recorded, or until it fails for good."""

    OPEN = "open"
    DONE = "done"
    FAILED = "failed"


class RunStatus(StrEnum):
    """How a run ended (or that it has not yet)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ExceptionStatus(StrEnum):
    """Where an entry of the exception queue stands."""

    OPEN = "open"
    RETRYING = "retrying"
    RESOLVED = "resolved"
    IGNORED = "ignored"


class StoreTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of every table of the state store (holds the store's own metadata)."""


def _connection_id() -> Any:
    return Field(sa_type=RowId, foreign_key=_CONNECTION_FK, ondelete="CASCADE")


def _row_id() -> Any:
    return Field(default=None, primary_key=True, sa_type=RowId)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UtcDateTime)


def _updated() -> Any:
    return Field(default_factory=utcnow, sa_type=UtcDateTime, sa_column_kwargs={"onupdate": utcnow})


class ConnectionRow(StoreTable, table=True):
    """A connection: one ERP (source) paired with one BILL organisation (sink).

    ``source_settings`` / ``sink_settings`` are the plugins' non-secret settings as JSON;
    ``source_credentials`` / ``sink_credentials`` are sealed credentials models
    (:meth:`ml_connector.vault.Vault.seal`). ``options`` holds connection-wide switches such as
    ``create_missing_accounts``.
    """

    __tablename__ = "connection"

    id: int | None = _row_id()
    name: str = Field(sa_type=String(200), unique=True)
    source_system: str = Field(sa_type=String(_SHORT))
    sink_system: str = Field(sa_type=String(_SHORT))
    source_settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    sink_settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    source_credentials: bytes = Field(sa_type=LargeBinary, repr=False)
    sink_credentials: bytes = Field(sa_type=LargeBinary, repr=False)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class CursorRow(StoreTable, table=True):
    """How far a stream of a connection has been read (e.g. ``payables``, ``payments``).

    ``position`` is the source's change time up to which everything is durably recorded; ``None``
    means "from the beginning".
    """

    __tablename__ = "cursor"
    __table_args__ = (Unique("connection_id", "stream"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    stream: str = Field(sa_type=String(_SHORT))
    position: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = _updated()


class RecordLinkRow(StoreTable, table=True):
    """A source record and its counterpart in the sink, with a fingerprint of what was sent.

    An unchanged fingerprint means the record needs no write.
    """

    __tablename__ = "record_link"
    __table_args__ = (
        Unique("connection_id", "object_type", "source_id"),
        Index(None, "connection_id", "object_type", "sink_id"),
    )

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    object_type: str = Field(sa_type=String(32))
    source_id: str = Field(sa_type=String(_ID))
    sink_id: str = Field(sa_type=String(_ID))
    fingerprint: str = Field(sa_type=String(_DIGEST))
    updated_at: datetime = _updated()


class WriteIntentRow(StoreTable, table=True):
    """A create the engine is about to make in the sink, recorded before the call.

    ``key`` is deterministic (connection, object type, source id, content version), so a retried
    write finds its own intent; an ``open`` intent found after a restart is reconciled by looking
    the record up in the sink before anything is created again. ``lookup`` holds what that
    look-up needs (a vendor's name, a bill's vendor and invoice number), so it can be made
    without reading the record from the source again; ``failed`` means the look-up found
    nothing, so nothing was created and the record comes again through its stream or the
    exception queue.
    """

    __tablename__ = "write_intent"
    __table_args__ = (Index(None, "connection_id", "status"),)

    id: int | None = _row_id()
    key: str = Field(sa_type=String(512), unique=True)
    connection_id: int = _connection_id()
    object_type: str = Field(sa_type=String(32))
    source_id: str = Field(sa_type=String(_ID))
    content_version: str = Field(sa_type=String(_SHORT))
    status: str = Field(default=IntentStatus.OPEN.value, sa_type=String(16))
    sink_id: str | None = Field(default=None, sa_type=String(_ID))
    attempts: int = Field(default=0, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=Text)
    lookup: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class RunRow(StoreTable, table=True):
    """One run of a connection; ``counts`` holds per-object tallies (created, skipped, …)."""

    __tablename__ = "run"
    __table_args__ = (Index(None, "connection_id", "started_at"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    started_at: datetime = _created()
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    status: str = Field(default=RunStatus.RUNNING.value, sa_type=String(16))
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    error: str | None = Field(default=None, sa_type=Text)


class AuditEventRow(StoreTable, table=True):
    """Something that happened to one record: enough to explain it and to replay it.

    ``action`` is e.g. ``fetched``, ``mapped``, ``skipped_unchanged``, ``created``, ``updated``,
    ``payment_recorded`` or ``failed``. ``payload_digest`` identifies the exact content without
    storing it; ``plugin_versions`` maps system keys to the plugin versions that did the work.
    ``correlation_id`` is the request id the failing system gave (see
    :attr:`ml_connector.errors.UpstreamError.correlation_id`), for a support ticket.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index(None, "connection_id", "object_type", "source_id"),
        Index(None, "run_id"),
    )

    id: int | None = _row_id()
    run_id: int | None = Field(
        default=None, sa_type=RowId, foreign_key="run.id", ondelete="SET NULL"
    )
    connection_id: int = _connection_id()
    at: datetime = _created()
    object_type: str = Field(sa_type=String(32))
    source_id: str | None = Field(default=None, sa_type=String(_ID))
    sink_id: str | None = Field(default=None, sa_type=String(_ID))
    action: str = Field(sa_type=String(32))
    outcome: str = Field(sa_type=String(32))
    error: str | None = Field(default=None, sa_type=Text)
    payload_digest: str | None = Field(default=None, sa_type=String(_DIGEST))
    plugin_versions: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    correlation_id: str | None = Field(default=None, sa_type=String(CORRELATION_ID_MAX))


class ExceptionItemRow(StoreTable, table=True):
    """An entry of the exception queue: a record that cannot be synced until someone acts.

    One entry per record (``connection_id``, ``object_type``, ``source_id``): seeing the record
    fail again updates ``last_seen`` and ``attempts`` instead of adding a row.
    ``correlation_id`` is the request id of the latest failure's system answer, if it gave one.
    """

    __tablename__ = "exception_item"
    __table_args__ = (
        Unique("connection_id", "object_type", "source_id"),
        Index(None, "connection_id", "status"),
    )

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    run_id: int | None = Field(
        default=None, sa_type=RowId, foreign_key="run.id", ondelete="SET NULL"
    )
    object_type: str = Field(sa_type=String(32))
    source_id: str = Field(sa_type=String(_ID))
    field: str | None = Field(default=None, sa_type=String(_ID))
    reason: str = Field(sa_type=Text)
    status: str = Field(default=ExceptionStatus.OPEN.value, sa_type=String(16))
    payload_digest: str | None = Field(default=None, sa_type=String(_DIGEST))
    first_seen: datetime = _created()
    last_seen: datetime = _created()
    attempts: int = Field(default=1, sa_type=Integer)
    correlation_id: str | None = Field(default=None, sa_type=String(CORRELATION_ID_MAX))


class AccountMappingRow(StoreTable, table=True):
    """A source account or dimension value and the sink entry it is coded to."""

    __tablename__ = "account_mapping"
    __table_args__ = (Unique("connection_id", "source_kind", "source_id"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    source_kind: str = Field(sa_type=String(_SHORT))
    source_id: str = Field(sa_type=String(_ID))
    sink_kind: str = Field(sa_type=String(_SHORT))
    sink_id: str = Field(sa_type=String(_ID))
    method: str = Field(sa_type=String(16))
    updated_at: datetime = _updated()


class WebhookSubscriptionRow(StoreTable, table=True):
    """A webhook subscription in the sink; ``security_key`` is the sealed signing key."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (Unique("connection_id", "sink_id"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    sink_id: str = Field(sa_type=String(_ID))
    notification_url: str = Field(sa_type=Text)
    events: list[str] = Field(default_factory=list, sa_type=JSON)
    enabled: bool = Field(default=True, sa_type=Boolean)
    security_key: bytes | None = Field(default=None, sa_type=LargeBinary, repr=False)
    updated_at: datetime = _updated()


class WebhookEventRow(StoreTable, table=True):
    """A verified webhook event, kept to drop duplicate deliveries (unique per connection)."""

    __tablename__ = "webhook_event"
    __table_args__ = (Unique("connection_id", "event_id"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    event_id: str = Field(sa_type=String(_ID))
    received_at: datetime = _created()
    event_type: str = Field(sa_type=String(_SHORT))
    entity_type: str = Field(sa_type=String(32))
    entity_id: str = Field(sa_type=String(_ID))
    processed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    payload_digest: str | None = Field(default=None, sa_type=String(_DIGEST))


class PluginSessionRow(StoreTable, table=True):
    """A plugin's server-side session, kept so that a run after a crash can reuse or end it.

    One per connection side (``role``: ``source`` or ``sink``; ``system`` is the plugin's key).
    ``data`` is the sealed JSON the plugin saved through
    :class:`ml_connector.context.SessionKeeper` (cookies, tokens, a session id): a secret.
    """

    __tablename__ = "plugin_session"
    __table_args__ = (Unique("connection_id", "role"),)

    id: int | None = _row_id()
    connection_id: int = _connection_id()
    role: str = Field(sa_type=String(16))
    system: str = Field(sa_type=String(_SHORT))
    data: bytes = Field(sa_type=LargeBinary, repr=False)
    updated_at: datetime = _updated()
