"""Webhooks: keeping the sink's subscription alive, and acting on verified deliveries.

Polling (``sync run``) stays the baseline; webhooks only make payments arrive sooner. So a
delivery is verified against the stored signing key before anything in it is read, deduplicated on
its event id, and a payment event is confirmed by re-reading the payment from the sink (payloads are
hints) before it is recorded against the ERP bill.

A delivery that is signed but cannot be used (an event type the plugin does not handle, another
organization's event, no entity id, a body that is not JSON within the plugin's limits) is set
aside in the exception queue for a person, never refused: the sink retries a refused delivery
and, once its retries are spent, disables the subscription (bill.md §6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlmodel import col, select

from ml_connector.engine._context import RunContext
from ml_connector.engine._ledger import correlation_id_of
from ml_connector.engine._payments import PaymentSync
from ml_connector.errors import InvalidRecordError, WebhookVerificationError
from ml_connector.models import WebhookBatch, WebhookSubscription
from ml_connector.store import RunStatus, WebhookEventRow, WebhookSubscriptionRow
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ml_connector.engine._engine import SyncEngine
    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = [
    "PAYMENT_EVENTS",
    "WEBHOOK_OBJECT",
    "DeliveryOutcome",
    "WebhookReceiver",
    "ensure_subscription",
]

PAYMENT_EVENTS = ("payment.updated", "payment.failed")
"""The sink events that make a payment arrive before the next poll."""

WEBHOOK_OBJECT = "webhook"
"""The exception queue's object type for signed deliveries that could not be used."""

# The store's id, field and text columns: what a set-aside delivery's entry may hold.
_MAX_ID = 255
_MAX_REASON = 500


def _subscription_row(store: Store, connection_id: int) -> WebhookSubscriptionRow | None:
    with store.session(read_only=True) as session:
        return session.exec(
            select(WebhookSubscriptionRow).where(
                WebhookSubscriptionRow.connection_id == connection_id
            )
        ).first()


async def ensure_subscription(
    store: Store,
    vault: Vault,
    engine: SyncEngine,
    notification_url: str,
    events: Sequence[str] = PAYMENT_EVENTS,
) -> WebhookSubscriptionRow:
    """Make sure the sink delivers ``events`` to ``notification_url``; store what it says.

    A signing key the sink returns (it does so only once, on creation or rotation) is encrypted
    and committed before anything else happens: a key lost here could never be read again.
    """
    run = engine.run_context
    connection_id = engine.ledger.connection_id
    row = _subscription_row(store, connection_id)
    existing = None
    if row is not None:
        existing = WebhookSubscription(
            sink_id=row.sink_id,
            notification_url=row.notification_url,
            events=tuple(row.events),
            enabled=row.enabled,
        )
    result = await run.sink_read(
        lambda: run.sink.ensure_webhook_subscription(notification_url, events, existing)
    )
    with store.session() as session:
        row = session.exec(
            select(WebhookSubscriptionRow)
            .where(WebhookSubscriptionRow.connection_id == connection_id)
            .where(WebhookSubscriptionRow.sink_id == result.sink_id)
        ).first() or WebhookSubscriptionRow(
            connection_id=connection_id,
            sink_id=result.sink_id,
            notification_url=result.notification_url,
        )
        for stale in session.exec(
            select(WebhookSubscriptionRow)
            .where(WebhookSubscriptionRow.connection_id == connection_id)
            .where(WebhookSubscriptionRow.sink_id != result.sink_id)
        ):
            session.delete(stale)  # the sink replaced it; its key is useless now
        row.notification_url = result.notification_url
        row.events = list(result.events)
        row.enabled = result.enabled
        if result.security_key is not None:
            row.security_key = vault.encrypt(result.security_key.get_secret_value().encode())
        row.updated_at = utcnow()
        session.add(row)
    if row.security_key is None:
        raise WebhookVerificationError(
            f"subscription {row.sink_id} has no stored signing key; delete it in the sink so a "
            "new one (with a new key) is created"
        )
    return row


@dataclass
class DeliveryOutcome:
    """What one delivery did.

    Attributes:
        events: Events the delivery carried.
        duplicates: Events already processed (a replayed or retried delivery).
        payments_recorded: Payments recorded in the ERP.
        ignored: Types of the events the connector does not act on (vendor, bill).
        set_aside: Exception-queue ids of signed deliveries that could not be used.
    """

    events: int = 0
    duplicates: int = 0
    payments_recorded: int = 0
    ignored: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)


def _storable(text: str | None, limit: int) -> str | None:
    """``text`` as the store can hold it: valid UTF-8 and at most ``limit`` characters."""
    if text is None:
        return None
    # A plugin's reason may quote what the sink sent; a lone surrogate cannot be stored.
    clean = text.encode("utf-8", "backslashreplace").decode()
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


class WebhookReceiver:
    """Acts on deliveries for one connection.

    Args:
        store: The state store.
        vault: Decrypts the stored signing key.
        engine: The connection's engine (its sink driver verifies and parses, its payment sync
            records).
    """

    def __init__(self, store: Store, vault: Vault, engine: SyncEngine) -> None:
        self._store = store
        self._vault = vault
        self._engine = engine

    def _key(self) -> SecretStr:
        row = _subscription_row(self._store, self._engine.ledger.connection_id)
        if row is None or row.security_key is None:
            raise WebhookVerificationError("no webhook subscription with a signing key is stored")
        return SecretStr(self._vault.decrypt(row.security_key).decode())

    def _unprocessed(self, event_id: str, event_type: str, entity: tuple[str, str]) -> bool:
        """Record the event; ``False`` if it was already processed (a duplicate delivery).

        An event seen before but not processed (the process died while handling it) is
        processed again: recording a payment is idempotent, losing one is not acceptable.
        """
        connection_id = self._engine.ledger.connection_id
        with self._store.session() as session:
            row = session.exec(
                select(WebhookEventRow)
                .where(WebhookEventRow.connection_id == connection_id)
                .where(WebhookEventRow.event_id == event_id)
            ).first()
            if row is not None:
                return row.processed_at is None
            session.add(
                WebhookEventRow(
                    connection_id=connection_id,
                    event_id=event_id,
                    event_type=event_type,
                    entity_type=entity[0],
                    entity_id=entity[1],
                )
            )
        return True

    async def receive(self, headers: Mapping[str, str], body: bytes) -> DeliveryOutcome:
        """Verify, deduplicate and act on one delivery; set aside one that cannot be used.

        Raises:
            WebhookVerificationError: The signature does not match; nothing was read or stored.
        """
        try:
            batch = await self.verify(headers, body)
        except InvalidRecordError as exc:
            return DeliveryOutcome(set_aside=[self.set_aside(body, exc)])
        return await self.act(batch)

    async def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookBatch:
        """Check the signature against the stored key and parse the events.

        Raises:
            WebhookVerificationError: The signature does not match, or no key is stored.
            InvalidRecordError: The delivery is signed but not an event the plugin can use.
        """
        return await self._engine.run_context.sink.parse_webhook(headers, body, self._key())

    async def accept(self, headers: Mapping[str, str], body: bytes) -> WebhookBatch | None:
        """Verify a delivery; one that is signed but cannot be used is set aside (``None``).

        Raises:
            WebhookVerificationError: The signature does not match, or no key is stored; nothing
                was read or stored.
        """
        try:
            return await self.verify(headers, body)
        except InvalidRecordError as exc:
            self.set_aside(body, exc)
            return None

    def set_aside(self, body: bytes, error: InvalidRecordError) -> str:
        """List a signed delivery that cannot be used in the exception queue, for a person.

        One entry per event (its id, or the body's SHA-256 when it has none): the same event
        delivered again counts another attempt on the same entry. The entry names the field and
        what was wrong; the body itself is not kept (the sink keeps its events, bill.md §6).

        Returns:
            The entry's id in the queue (``source_id``).
        """
        digest = hashlib.sha256(body).hexdigest()
        event_id = error.record_id
        # The event id when the store can hold it as it is; else the body's own digest.
        if event_id and event_id.strip() and _storable(event_id, _MAX_ID) == event_id:
            source_id = event_id
        else:
            source_id = f"sha256:{digest}"
        self._engine.ledger.add_exception(
            WEBHOOK_OBJECT,
            source_id,
            _storable(error.field, _MAX_ID),
            _storable(f"signed webhook delivery not used: {error.reason}", _MAX_REASON) or "",
            digest,
            correlation_id=correlation_id_of(error),
        )
        return source_id

    async def act(self, batch: WebhookBatch) -> DeliveryOutcome:
        """Record the payments a verified batch announces, each event once.

        Raises:
            ConnectionBusyError: Another process is running this connection.
        """
        if self._all_processed(batch):
            # A replayed or retried delivery: nothing to do, and no run to record for it.
            return DeliveryOutcome(events=len(batch.events), duplicates=len(batch.events))
        with self._engine.exclusive():
            return await self._act(batch)

    def _all_processed(self, batch: WebhookBatch) -> bool:
        ids = {event.event_id for event in batch.events}
        if not ids:
            return False
        with self._store.session(read_only=True) as session:
            done = session.exec(
                select(WebhookEventRow.event_id)
                .where(WebhookEventRow.connection_id == self._engine.ledger.connection_id)
                .where(col(WebhookEventRow.event_id).in_(ids))
                .where(col(WebhookEventRow.processed_at).is_not(None))
            ).all()
        return set(done) == ids

    async def _act(self, batch: WebhookBatch) -> DeliveryOutcome:
        run: RunContext = self._engine.run_context
        outcome = DeliveryOutcome()
        payments = PaymentSync(run)
        ledger = self._engine.ledger
        ledger.start_run()
        status, error = RunStatus.SUCCEEDED, None
        try:
            for event in batch.events:
                outcome.events += 1
                key = (event.entity_type, event.entity_id)
                if not self._unprocessed(event.event_id, event.event_type, key):
                    outcome.duplicates += 1
                    continue
                if event.entity_type != "payment":
                    outcome.ignored.append(event.event_type)
                    continue
                entity_id = event.entity_id
                payment = await run.sink_read(lambda p=entity_id: run.sink.get_payment(p))  # type: ignore[misc]
                if payment is not None:
                    before = run.counts["payments_recorded"]
                    await payments.sync_one(payment)
                    outcome.payments_recorded += run.counts["payments_recorded"] - before
                self._mark_processed(event.event_id)
        except BaseException as exc:
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            ledger.finish_run(status, dict(run.counts), error)
        return outcome

    def _mark_processed(self, event_id: str) -> None:
        # What the event recorded is durable before the event counts as processed.
        self._engine.ledger.flush()
        with self._store.session() as session:
            row = session.exec(
                select(WebhookEventRow)
                .where(WebhookEventRow.connection_id == self._engine.ledger.connection_id)
                .where(WebhookEventRow.event_id == event_id)
            ).one()
            row.processed_at = utcnow()
            session.add(row)
