"""ml-connector: sync approved ERP bills to BILL and BILL payments back.

The public API for plugin authors is re-exported here: the hook marker, the domain models, the
errors, the plugin description types and the context. Everything else is the core's own business.

The re-exports are loaded on first use (PEP 562), so ``import ml_connector`` (and with it
``ml-connector --version`` and ``--help``) costs almost nothing: the context alone pulls in httpx
and aiohttp.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_connector.context import ConnectionContext, SessionKeeper
    from ml_connector.contract import CONTRACT_VERSION
    from ml_connector.description import (
        Capability,
        ConcurrencyLimits,
        PluginDescription,
        PluginInfo,
        Role,
    )
    from ml_connector.errors import (
        AuthenticationError,
        BudgetExhaustedError,
        ConfigurationError,
        ConflictError,
        ConnectorError,
        IncompatiblePluginError,
        InvalidRecordError,
        NotFoundError,
        PluginError,
        PluginNotFoundError,
        SessionExpiredError,
        ThrottledError,
        TransientError,
        UndecidedWriteError,
        UpstreamError,
        VaultError,
        WebhookVerificationError,
    )
    from ml_connector.hookspecs import hookimpl

try:
    __version__ = version("ml-connector")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_ERRORS = (
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
)
_DESCRIPTION = ("Capability", "ConcurrencyLimits", "PluginDescription", "PluginInfo", "Role")
_HOMES: dict[str, str] = {
    "CONTRACT_VERSION": "ml_connector.contract",
    "ConnectionContext": "ml_connector.context",
    "SessionKeeper": "ml_connector.context",
    "hookimpl": "ml_connector.hookspecs",
    **dict.fromkeys(_ERRORS, "ml_connector.errors"),
    **dict.fromkeys(_DESCRIPTION, "ml_connector.description"),
}

__all__ = [
    "CONTRACT_VERSION",
    "AuthenticationError",
    "BudgetExhaustedError",
    "Capability",
    "ConcurrencyLimits",
    "ConfigurationError",
    "ConflictError",
    "ConnectionContext",
    "ConnectorError",
    "IncompatiblePluginError",
    "InvalidRecordError",
    "NotFoundError",
    "PluginDescription",
    "PluginError",
    "PluginInfo",
    "PluginNotFoundError",
    "Role",
    "SessionExpiredError",
    "SessionKeeper",
    "ThrottledError",
    "TransientError",
    "UndecidedWriteError",
    "UpstreamError",
    "VaultError",
    "WebhookVerificationError",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ml_connector' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
