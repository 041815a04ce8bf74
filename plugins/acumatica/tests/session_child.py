"""A run that signs in to a served Acumatica emulator, says so, and waits to be killed.

    python -m plugins.acumatica.tests.session_child STATE_DB NAME

Prints ``signed-in`` once the source side is signed in and has read the GL accounts; the test
then kills the process with SIGKILL, so it never signs out.
"""

from __future__ import annotations

import asyncio
import sys

from ml_connector.connections import open_connection
from ml_connector.description import PluginInfo
from ml_connector.registry import Registry
from ml_connector.store import open_store
from ml_connector.testing import reference_sink
from ml_connector.vault import Vault
from ml_connector_acumatica import PLUGIN_INFO, plugin


async def run(db: str, name: str) -> None:
    registry = Registry(path=[])
    registry.add(plugin, PluginInfo.model_validate(PLUGIN_INFO))
    registry.add(reference_sink.PLUGIN, PluginInfo.model_validate(reference_sink.PLUGIN_INFO))
    store = open_store(db)
    connection = open_connection(store, Vault.from_environment(), registry, name)
    await connection.source.authenticate()
    await connection.source.list_accounts()
    print("signed-in", flush=True)
    await asyncio.sleep(600)  # the test kills us long before


def main() -> None:
    asyncio.run(run(*sys.argv[1:3]))


if __name__ == "__main__":
    main()
