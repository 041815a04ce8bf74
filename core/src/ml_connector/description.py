"""What a plugin says about itself: cheap metadata and the full description.

Two levels, as Airflow providers do it:

- :class:`PluginInfo` is read from the ``ml_connector.plugin_info`` entry point, which points at a
  plain dict in the plugin's top-level package. Reading it imports nothing heavy, so the core can
  check compatibility before it imports the plugin's code.
- :class:`PluginDescription` is returned by the ``describe_plugin`` hook once the plugin is loaded:
  its settings and credentials schemas, its limits and its capabilities.

.. versionadded:: 1.0
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Capability",
    "ConcurrencyLimits",
    "PluginDescription",
    "PluginInfo",
    "Role",
]


class Role(StrEnum):
    """Which side of a connection a plugin serves."""

    SOURCE = "source"
    SINK = "sink"


class Capability(StrEnum):
    """Optional abilities a plugin may declare; the engine uses them only when declared."""

    #: The sink creates many bills in one call (``create_bills``).
    BULK_CREATE_BILLS = "bulk_create_bills"
    #: The sink can create chart-of-accounts entries (``create_account``).
    CREATE_ACCOUNTS = "create_accounts"
    #: The sink delivers signed webhooks (``ensure_webhook_subscription``, ``parse_webhook``).
    WEBHOOKS = "webhooks"
    #: The source reports dimensions (subaccounts, departments, …) besides accounts.
    DIMENSIONS = "dimensions"


class PluginInfo(BaseModel):
    """Metadata readable without importing the plugin's code.

    Published by a plugin as a dict under the ``ml_connector.plugin_info`` entry-point group, with
    the system key as the entry point's name.

    Attributes:
        system: The system key, e.g. ``"acumatica"``; equals the entry point's name.
        display_name: The system's name for people, e.g. ``"Acumatica"``.
        role: Source (ERP) or sink (BILL).
        contract: The contract range the plugin supports, e.g. ``">=1.0,<2"``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    system: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    display_name: Annotated[str, Field(min_length=1)]
    role: Role
    contract: Annotated[str, Field(min_length=1)]


class ConcurrencyLimits(BaseModel):
    """The limits a system imposes, which the core enforces for the plugin.

    Attributes:
        max_in_flight: Requests allowed in flight at once per scope (BILL: 3 per organisation);
            ``None`` means no documented limit.
        scope_setting: The settings field whose value identifies the scope the limit applies to
            (e.g. ``"organization_id"``); ``None`` means one scope per connection.
        requests_per_hour: An hourly request budget, if the system has one.
        batch_size: The most records one bulk call takes, for plugins with bulk calls.
        per_request: The plugin makes every request through clients built by
            :meth:`~ml_connector.context.ConnectionContext.http_client`, so the core can hold a
            slot per HTTP request (from before its first byte is sent until its response's last
            byte is in) and count requests, not hook calls, against ``requests_per_hour``. The
            default, ``False``, holds a slot for each whole hook call: right for any plugin, but
            the time a call spends building its request and reading its answer then keeps a
            slot from the next request.

    .. versionchanged:: 1.1
        ``per_request``.
    """

    model_config = ConfigDict(frozen=True)

    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    scope_setting: str | None = None
    requests_per_hour: Annotated[int, Field(ge=1)] | None = None
    batch_size: Annotated[int, Field(ge=1)] | None = None
    per_request: bool = False


class PluginDescription(BaseModel):
    """Everything the core needs to know to run a loaded plugin.

    Attributes:
        system: Same as :attr:`PluginInfo.system`.
        role: Same as :attr:`PluginInfo.role`.
        settings_model: A pydantic model of the connection's non-secret settings (URLs, tenant).
        credentials_model: A pydantic model of the secrets; secret fields are ``SecretStr``.
        limits: The system's limits.
        capabilities: Optional abilities the plugin implements.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    system: str
    role: Role
    settings_model: type[BaseModel]
    credentials_model: type[BaseModel]
    limits: ConcurrencyLimits = ConcurrencyLimits()
    capabilities: frozenset[Capability] = frozenset()
