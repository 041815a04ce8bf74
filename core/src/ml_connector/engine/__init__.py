"""The sync engine: one run of a connection pairs its source plugin with its sink plugin.

Accounts are mapped, approved payables flow to the sink (vendors first, once each), paid sink
payments flow back; state lives in the store so a killed run resumes without duplicates.
"""

from ml_connector.engine._context import RunObserver, SyncOptions
from ml_connector.engine._engine import RunSummary, SyncEngine
from ml_connector.engine._limits import LimiterPool, RequestLimiter
from ml_connector.engine._loop import run_async
from ml_connector.engine._open import open_engine
from ml_connector.engine._retry import RetryPolicy
from ml_connector.engine._webhooks import (
    PAYMENT_EVENTS,
    DeliveryOutcome,
    WebhookReceiver,
    ensure_subscription,
)

__all__ = [
    "PAYMENT_EVENTS",
    "DeliveryOutcome",
    "LimiterPool",
    "RequestLimiter",
    "RetryPolicy",
    "RunObserver",
    "RunSummary",
    "SyncEngine",
    "SyncOptions",
    "WebhookReceiver",
    "ensure_subscription",
    "open_engine",
    "run_async",
]
