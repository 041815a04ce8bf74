"""ml-connector: sync approved ERP bills to BILL and BILL payments back.

The public API for plugin authors is re-exported here: the hook marker, the domain models, the
errors, the plugin description types and the context. Everything else is the core's own business.
"""

from importlib.metadata import PackageNotFoundError, version

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
