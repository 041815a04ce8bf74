"""Webhooks: keeping the sink's subscription alive, and acting on verified deliveries.

Polling (``sync run``) stays the baseline; webhooks only make payments arrive sooner. So a
delivery is verified against the stored signing key before anything in it is read, deduplicated on
its event id, and a payment event is confirmed by re-reading the payment from the sink (payloads are
hints) before it is recorded against the ERP bill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlmodel import select

from ml_connector.engine._context import RunContext
from ml_connector.engine._payments import PaymentSync
from ml_connector.errors import WebhookVerificationError
from ml_connector.models import WebhookBatch, WebhookSubscription
from ml_connector.store import RunStatus, WebhookEventRow, WebhookSubscriptionRow
from ml_connector.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ml_connector.engine._engine import SyncEngine
    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = ["PAYMENT_EVENTS", "DeliveryOutcome", "WebhookReceiver", "ensure_subscription"]

PAYMENT_EVENTS = ("payment.updated", "payment.failed")
"""The sink events that make a payment arrive before the next poll."""


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
    """What one delivery did."""

    events: int = 0
    duplicates: int = 0
    payments_recorded: int = 0
    ignored: list[str] = field(default_factory=list)


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
        """Verify, deduplicate and act on one delivery.

        Raises:
            WebhookVerificationError: The signature does not match; nothing was read or stored.
        """
        return await self.act(await self.verify(headers, body))

    async def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookBatch:
        """Check the signature against the stored key and parse the events.

        Raises:
            WebhookVerificationError: The signature does not match, or no key is stored.
        """
        return await self._engine.run_context.sink.parse_webhook(headers, body, self._key())

    async def act(self, batch: WebhookBatch) -> DeliveryOutcome:
        """Record the payments a verified batch announces, each event once.

        Raises:
            ConnectionBusyError: Another process is running this connection.
        """
        with self._engine.exclusive():
            return await self._act(batch)

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
