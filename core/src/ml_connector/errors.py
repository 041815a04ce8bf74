"""Every error ml-connector raises, in one tree.

Each system's client maps its own error bodies onto these classes, so the engine handles a throttle,
an expired session or a rejected record the same way whatever system answered::

    ConnectorError
    ├── ConfigurationError          settings or credentials are missing or malformed
    │   └── VaultError              the master key is missing, wrong, or cannot decrypt a secret
    ├── PluginError                 a plugin cannot be found, loaded or used
    │   ├── PluginNotFoundError     no installed plugin has that system key
    │   └── IncompatiblePluginError the plugin's contract range excludes this core
    ├── InvalidRecordError          one record is bad (names the record and the field); the record
    │                               goes to the exception queue and nothing else stops
    ├── WebhookVerificationError    a webhook's signature does not match; nothing in it is trusted
    └── UpstreamError               a remote system answered with an error
        ├── AuthenticationError     credentials rejected (wrong password, key or scope)
        │   └── SessionExpiredError the session or token ran out; the client logs in again once
        ├── ThrottledError          429 or a system's rate-limit code; carries retry_after
        │   └── BudgetExhaustedError  the wait asked for is longer than a run waits: the run
        │                             stops (cursor kept) and the next run resumes
        ├── TransientError          5xx, timeouts, dropped connections: safe to retry reads
        ├── NotFoundError           the record or path does not exist
        └── ConflictError           the record changed or already exists

Messages never contain secrets: clients build them from status, code and the system's message text.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigurationError",
    "ConflictError",
    "ConnectorError",
    "IncompatiblePluginError",
    "InvalidRecordError",
    "NotFoundError",
    "PluginError",
    "PluginNotFoundError",
    "SessionExpiredError",
    "ThrottledError",
    "TransientError",
    "UndecidedWriteError",
    "UpstreamError",
    "VaultError",
    "WebhookVerificationError",
]


class ConnectorError(Exception):
    """Base class of every error ml-connector raises on purpose."""

    #: Whether retrying the same call later may succeed.
    retryable: bool = False


class ConfigurationError(ConnectorError):
    """Settings or credentials are missing or malformed."""


class VaultError(ConfigurationError):
    """The master key is missing or wrong, or a stored secret cannot be decrypted."""


class PluginError(ConnectorError):
    """A plugin cannot be found, loaded or used."""


class PluginNotFoundError(PluginError):
    """No installed and loadable plugin has the requested system key."""


class IncompatiblePluginError(PluginError):
    """The plugin declares a contract range that excludes this core's contract version."""


class InvalidRecordError(ConnectorError):
    """One record cannot be synced as it is.

    Args:
        record_type: The domain name of the record, e.g. ``"payable"`` or ``"vendor"``.
        record_id: The record's id in the system it came from (or ``None`` if it has none).
        field: The offending field as a dotted path, e.g. ``"lines.2.account_id"``.
        reason: What is wrong, in words an AP clerk understands.
        system: The system that found the problem, if a remote one did.
        correlation_id: That system's request or correlation id, kept for support tickets.

    .. versionchanged:: 1.2
        ``correlation_id``.
    """

    def __init__(
        self,
        record_type: str,
        record_id: str | None,
        field: str | None,
        reason: str,
        *,
        system: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.correlation_id = correlation_id
        self.record_type = record_type
        self.record_id = record_id
        self.field = field
        self.reason = reason
        self.system = system
        where = f"{record_type} {record_id or '(no id)'}"
        if field:
            where += f", field {field}"
        origin = f" (rejected by {system})" if system else ""
        super().__init__(f"{where}: {reason}{origin}")


class WebhookVerificationError(ConnectorError):
    """A webhook delivery's signature is missing or does not match its body."""


class UpstreamError(ConnectorError):
    """A remote system answered with an error.

    Args:
        message: What went wrong, without secrets.
        system: The system key, e.g. ``"bill"``.
        status: The HTTP status, if there was a response.
        code: The system's own error code, e.g. ``"BDC_1322"``.
        correlation_id: The system's request or correlation id, kept for support tickets.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.message = message
        self.system = system
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        parts = [p for p in (system, str(status) if status else None, code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        super().__init__(f"{prefix}{message}")


class AuthenticationError(UpstreamError):
    """The system rejected the credentials (wrong password, key, or insufficient access)."""


class SessionExpiredError(AuthenticationError):
    """The session or token ran out; logging in again is expected to succeed."""

    retryable = True


class ThrottledError(UpstreamError):
    """The system asked us to slow down (HTTP 429 or a rate-limit error code).

    Args:
        retry_after: Seconds the system asked us to wait, if it said.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        system: str | None = None,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(
            message, system=system, status=status, code=code, correlation_id=correlation_id
        )
        self.retry_after = retry_after


class BudgetExhaustedError(ThrottledError):
    """A system's request budget is spent for longer than a run is willing to wait.

    Raised by the engine's retry policy, not by plugins: retrying each record would only burn its
    attempts and fill the exception queue, so the run stops with its cursors where they were.
    """

    retryable = False


class TransientError(UpstreamError):
    """A server error, timeout or dropped connection: retry reads; check before retrying writes."""

    retryable = True


class NotFoundError(UpstreamError):
    """The record or path does not exist in the remote system."""


class UndecidedWriteError(ConnectorError):
    """A create may have happened (its answer was lost) and looking it up failed as well.

    Raised by the engine, not by plugins: creating again could make a duplicate, so the record
    goes to the exception queue with its write intent open, and the next run's sweep looks it
    up before anything is created.
    """


class ConflictError(UpstreamError):
    """The record already exists or changed underneath us."""
