"""The core's :class:`~ml_connector.context.SessionKeeper`: sealed JSON in the state store."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from ml_connector.errors import VaultError
from ml_connector.store import clear_plugin_session, load_plugin_session, save_plugin_session

if TYPE_CHECKING:
    from ml_connector.description import Role
    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = ["StoreSessionKeeper"]

log = logging.getLogger("ml_connector")


class StoreSessionKeeper:
    """One connection side's saved session: sealed by the vault, in table ``plugin_session``.

    Never raises for the store or the vault: a session that cannot be kept or read costs the
    next run a fresh sign-in, which is no reason to fail this one. What is logged then names the
    side and the error's type, never the data.

    Args:
        store: The state store.
        vault: Seals and opens the data.
        connection_id: The connection's row id.
        role: The side.
        system: The plugin's system key; data another plugin saved is not handed out.
    """

    def __init__(
        self, store: Store, vault: Vault, connection_id: int, role: Role, system: str
    ) -> None:
        self._store = store
        self._vault = vault
        self._connection_id = connection_id
        self._role = str(role)
        self._system = system

    def __repr__(self) -> str:
        return f"StoreSessionKeeper(connection_id={self._connection_id}, role={self._role!r})"

    def load(self) -> dict[str, Any] | None:
        """The data last saved for this side, or ``None``."""
        try:
            with self._store.session(read_only=True) as session:
                row = load_plugin_session(session, self._connection_id, self._role)
                sealed = None if row is None or row.system != self._system else row.data
        except SQLAlchemyError as exc:
            self._warn("read", exc)
            return None
        if sealed is None:
            return None
        try:
            data = json.loads(self._vault.decrypt(sealed))
        except (VaultError, ValueError) as exc:
            # A key rotated away without this row, or a damaged row: start afresh.
            self._warn("open", exc)
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        """Replace the data saved for this side."""
        sealed = self._vault.encrypt(json.dumps(data, separators=(",", ":")).encode())
        try:
            with self._store.session() as session:
                save_plugin_session(session, self._connection_id, self._role, self._system, sealed)
        except SQLAlchemyError as exc:
            self._warn("save", exc)

    def clear(self) -> None:
        """Forget the data saved for this side."""
        try:
            with self._store.session() as session:
                clear_plugin_session(session, self._connection_id, self._role)
        except SQLAlchemyError as exc:
            self._warn("clear", exc)

    def _warn(self, action: str, exc: Exception) -> None:
        # The type only: a driver's message can quote the statement's parameters.
        log.warning(
            "could not %s the saved %s session of connection %d: %s",
            action,
            self._role,
            self._connection_id,
            type(exc).__name__,
        )
