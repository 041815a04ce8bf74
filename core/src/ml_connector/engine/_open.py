"""Opening a stored connection's engine, and closing both sides after."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ml_connector.connections import open_connection
from ml_connector.engine._context import SyncOptions
from ml_connector.engine._engine import SyncEngine

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    import httpx

    from ml_connector.engine._context import RunObserver
    from ml_connector.engine._limits import LimiterPool
    from ml_connector.registry import Registry
    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = ["open_engine"]


@asynccontextmanager
async def open_engine(
    store: Store,
    vault: Vault,
    registry: Registry,
    name: str,
    *,
    options: SyncOptions | None = None,
    observer: RunObserver | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    limiters: LimiterPool | None = None,
) -> AsyncIterator[SyncEngine]:
    """The engine of stored connection ``name``; both sides are closed when the block ends.

    The connection's own ``create_missing_accounts`` option turns that behaviour on whatever
    ``options`` says.

    Raises:
        ConfigurationError: No such connection, or its settings no longer validate.
        VaultError: Its credentials cannot be decrypted.
        PluginError: A plugin is missing, broken or incompatible.
    """
    connection = open_connection(store, vault, registry, name, transports)
    try:
        options = options or SyncOptions()
        if connection.row.options.get("create_missing_accounts"):
            options = dataclasses.replace(options, create_missing_accounts=True)
        yield SyncEngine(
            store, connection.id, connection.source, connection.sink, options, observer, limiters
        )
    finally:
        await connection.close()
