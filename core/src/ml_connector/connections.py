"""Connections: creating one (validated, sealed) and opening one (both sides, ready to drive)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_connector._saved_sessions import StoreSessionKeeper
from ml_connector.context import ConnectionContext
from ml_connector.description import Role
from ml_connector.drivers import SinkDriver, SourceDriver
from ml_connector.settings import validate_section

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

    from ml_connector.registry import LoadedPlugin, Registry
    from ml_connector.store import ConnectionRow, Store
    from ml_connector.vault import Vault

__all__ = ["OpenConnection", "SideInput", "create_connection", "open_connection"]


@dataclass(frozen=True)
class SideInput:
    """What an operator gave for one side of a new connection."""

    system: str
    settings: Mapping[str, Any]
    credentials: Mapping[str, Any]


def _label(role: Role, system: str, part: str) -> str:
    return f"{role.value} {part} ({system})"


def _validated(plugin: LoadedPlugin, side: SideInput) -> tuple[BaseModel, BaseModel]:
    description = plugin.description
    settings = validate_section(
        description.settings_model, side.settings, _label(plugin.role, plugin.system, "settings")
    )
    credentials = validate_section(
        description.credentials_model,
        side.credentials,
        _label(plugin.role, plugin.system, "credentials"),
    )
    return settings, credentials


def create_connection(
    store: Store,
    vault: Vault,
    registry: Registry,
    name: str,
    source: SideInput,
    sink: SideInput,
    options: Mapping[str, Any] | None = None,
) -> ConnectionRow:
    """Validate both sides against their plugins' schemas, seal the credentials, store it.

    Raises:
        PluginError: A plugin is missing, broken or incompatible.
        ConfigurationError: A setting or credential is missing or invalid (names the field), or
            the name is taken.
    """
    source_plugin = registry.load(source.system, Role.SOURCE)
    sink_plugin = registry.load(sink.system, Role.SINK)
    source_settings, source_credentials = _validated(source_plugin, source)
    sink_settings, sink_credentials = _validated(sink_plugin, sink)
    return store.add_connection(
        name,
        source_system=source.system,
        sink_system=sink.system,
        source_settings=source_settings.model_dump(mode="json"),
        sink_settings=sink_settings.model_dump(mode="json"),
        source_credentials=vault.seal(source_credentials),
        sink_credentials=vault.seal(sink_credentials),
        options=dict(options or {}),
    )


@dataclass
class OpenConnection:
    """A stored connection with both sides ready to drive; close it when done."""

    row: ConnectionRow
    source: SourceDriver
    sink: SinkDriver

    @property
    def id(self) -> int:
        """The connection's row id."""
        assert self.row.id is not None
        return self.row.id

    async def close(self) -> None:
        """Log out and release both sides; never raises."""
        await self.source.close()
        await self.sink.close()


def _context(
    store: Store,
    row: ConnectionRow,
    plugin: LoadedPlugin,
    vault: Vault,
    transport: httpx.AsyncBaseTransport | None,
) -> ConnectionContext:
    role = plugin.role
    assert row.id is not None
    raw_settings = row.source_settings if role is Role.SOURCE else row.sink_settings
    sealed = row.source_credentials if role is Role.SOURCE else row.sink_credentials
    settings = validate_section(
        plugin.description.settings_model,
        raw_settings,
        f"connection {row.name}: " + _label(role, plugin.system, "settings"),
    )
    credentials = vault.open(sealed, plugin.description.credentials_model)
    return ConnectionContext(
        connection=row.name,
        system=plugin.system,
        role=role,
        settings=settings,
        credentials=credentials,
        transport=transport,
        # A session a killed run left on the server is found here by the next run (1.2).
        saved_session=StoreSessionKeeper(store, vault, row.id, role, plugin.system),
    )


def open_connection(
    store: Store,
    vault: Vault,
    registry: Registry,
    name: str,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> OpenConnection:
    """Load both plugins of a stored connection and build their drivers.

    Args:
        store: The state store.
        vault: The vault that sealed the credentials.
        registry: The installed plugins.
        name: The connection's name.
        transports: Per system key, an httpx transport to use instead of the network (the demo
            and tests point them at in-process emulators).

    Raises:
        ConfigurationError: No such connection, or its stored settings no longer validate.
        VaultError: The credentials cannot be decrypted with this master key.
        PluginError: A plugin is missing, broken or incompatible.
    """
    row = store.get_connection(name)
    transports = transports or {}
    source_plugin = registry.load(row.source_system, Role.SOURCE)
    sink_plugin = registry.load(row.sink_system, Role.SINK)
    source = SourceDriver(
        source_plugin,
        registry.plugin_manager(source_plugin),
        _context(store, row, source_plugin, vault, transports.get(row.source_system)),
    )
    sink = SinkDriver(
        sink_plugin,
        registry.plugin_manager(sink_plugin),
        _context(store, row, sink_plugin, vault, transports.get(row.sink_system)),
    )
    return OpenConnection(row=row, source=source, sink=sink)
