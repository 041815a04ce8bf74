"""A BILL session outlives its process: the next run reuses it instead of signing in again.

BILL allows 200 sign-ins an hour per developer key (bill.md §4), and a run killed with
``kill -9`` never signs out. The client saves the session id in the store
(``ConnectionContext.saved_session``, encrypted by the core) and the next process reuses it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from plugins.bill.tests.support import BASE_URL

from ml_connector.connections import OpenConnection, SideInput, create_connection, open_connection
from ml_connector.description import PluginInfo
from ml_connector.registry import Registry
from ml_connector.store import Store, open_store
from ml_connector.testing import reference_erp
from ml_connector.vault import Vault
from ml_connector_bill import PLUGIN_INFO, plugin
from ml_connector_bill.client import BillClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ml_connector.testing import ManualClock
    from ml_connector_bill.emulator import BillEmulator

NAME = "acme"


def logins(emulator: BillEmulator) -> int:
    return sum(1 for r in emulator.log.records if r.path.endswith("/v3/login"))


def logouts(emulator: BillEmulator) -> int:
    return sum(1 for r in emulator.log.records if r.path.endswith("/v3/logout"))


@pytest.fixture
def registry() -> Registry:
    found = Registry(path=[])
    found.add(reference_erp.PLUGIN, PluginInfo.model_validate(reference_erp.PLUGIN_INFO))
    found.add(plugin, PluginInfo.model_validate(PLUGIN_INFO))
    return found


@pytest.fixture
def store(tmp_path: Path, emulator: BillEmulator, registry: Registry) -> Iterator[Store]:
    """A state database holding one connection whose sink is the emulator's organization."""
    with open_store(str(tmp_path / "state.db")) as opened:
        create_connection(
            opened,
            Vault.from_environment(),
            registry,
            NAME,
            SideInput("reference_erp", {"instance": "acme"}, {"username": "u", "password": "p"}),
            SideInput("bill", emulator.settings(BASE_URL), emulator.credentials()),
        )
        yield opened


def process(store: Store, registry: Registry, emulator: BillEmulator) -> OpenConnection:
    """The connection as a new process opens it."""
    return open_connection(
        store, Vault.from_environment(), registry, NAME, {"bill": emulator.transport()}
    )


async def killed_run(store: Store, registry: Registry, emulator: BillEmulator) -> None:
    """A run that signs in, reads, and dies without signing out."""
    connection = process(store, registry, emulator)
    await connection.sink.authenticate()
    await connection.sink.list_accounts()
    client = connection.sink.ctx.state["bill.client"]
    assert isinstance(client, BillClient)
    await client._http.aclose()  # the process is gone: no logout is sent


async def test_a_second_process_reuses_the_stored_session(
    store: Store, registry: Registry, emulator: BillEmulator
) -> None:
    await killed_run(store, registry, emulator)
    assert logins(emulator) == 1

    second = process(store, registry, emulator)
    await second.sink.authenticate()
    await second.sink.list_accounts()
    assert (await second.sink.check_connection()).ok
    assert logins(emulator) == 1, "no second /v3/login: the stored session was reused"
    assert not [r for r in emulator.log.records if r.status == 401]

    await second.close()
    assert logouts(emulator) == 1
    assert second.sink.ctx.saved_session is not None
    assert second.sink.ctx.saved_session.load() is None, "forgotten after the sign-out"

    third = process(store, registry, emulator)
    await third.sink.list_accounts()
    assert logins(emulator) == 2, "a session signed out is not reused"
    await third.close()


async def test_a_stored_session_bill_ended_means_one_new_sign_in(
    store: Store, registry: Registry, emulator: BillEmulator, clock: ManualClock
) -> None:
    await killed_run(store, registry, emulator)
    clock.advance(timedelta(minutes=36))  # BILL ends a session after 35 idle minutes

    second = process(store, registry, emulator)
    await second.sink.list_accounts()
    assert logins(emulator) == 2
    assert [r.status for r in emulator.log.records if r.status == 401] == [401]
    await killed_run(store, registry, emulator)
    assert logins(emulator) == 2, "the new session was stored in place of the dead one"
    await second.close()


async def test_the_stored_session_id_is_encrypted(
    store: Store, registry: Registry, emulator: BillEmulator
) -> None:
    await killed_run(store, registry, emulator)
    saved = process(store, registry, emulator).sink.ctx.saved_session
    assert saved is not None
    data = saved.load()
    assert data is not None
    session_id = data["session_id"]
    with store.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT data FROM plugin_session").scalar_one()
    assert session_id.encode() not in bytes(raw)
    assert emulator.config.password not in repr(data)
