"""Every encrypted value in the store, for key rotation.

:data:`SECRET_COLUMNS` is the one list of columns that hold vault tokens; a test checks that every
binary column of the schema is on it, so a new secret column cannot be forgotten by rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ml_connector.errors import VaultError
from ml_connector.store._tables import metadata

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Connection
    from sqlmodel import Session

__all__ = ["SECRET_COLUMNS", "StoredSecret", "iter_encrypted_secrets", "reencrypt_secrets"]

#: Table name -> the columns of that table that hold vault tokens.
SECRET_COLUMNS: dict[str, tuple[str, ...]] = {
    "connection": ("source_credentials", "sink_credentials"),
    "webhook_subscription": ("security_key",),
    "plugin_session": ("data",),
}


@dataclass(frozen=True)
class StoredSecret:
    """One encrypted value and where it lives (the token is encrypted; still kept out of reprs).

    Attributes:
        table: The table's name.
        row_id: The row's id.
        column: The column's name.
        connection: The name of the connection the secret belongs to.
        token: The vault token.
    """

    table: str
    row_id: int
    column: str
    connection: str
    token: bytes = field(repr=False)

    @property
    def label(self) -> str:
        """Where the secret is, in words, e.g. ``connection 'acme': source credentials``."""
        what = self.column.replace("_", " ")
        if self.table != "connection":
            what = f"{self.table.replace('_', ' ')} {self.row_id} {what}"
        return f"connection {self.connection!r}: {what}"


def iter_encrypted_secrets(session: Session, *, lock: bool = False) -> Iterator[StoredSecret]:
    """Yield every non-null encrypted value in the store.

    Args:
        session: The transaction to read in.
        lock: Lock the rows against concurrent updates until the transaction ends (PostgreSQL
            ``FOR UPDATE``; on SQLite an IMMEDIATE session already holds the write lock).
    """
    connection = session.connection()
    for table_name, columns in SECRET_COLUMNS.items():
        yield from _secrets_of(connection, table_name, columns, lock=lock)


def reencrypt_secrets(session: Session, transform: Callable[[bytes], bytes]) -> int:
    """Replace every encrypted value by ``transform(value)`` within ``session``'s transaction.

    ``updated_at`` is left alone: a re-encrypted secret is the same secret.

    Args:
        session: The transaction; roll it back to undo everything if anything fails.
        transform: E.g. :meth:`ml_connector.vault.Vault.reencrypt`.

    Returns:
        How many values were re-encrypted.

    Raises:
        VaultError: ``transform`` could not decrypt a value; the message says which one.
    """
    connection = session.connection()
    stored = list(iter_encrypted_secrets(session, lock=True))
    for secret in stored:
        try:
            token = transform(secret.token)
        except VaultError as exc:
            raise VaultError(f"{secret.label}: {exc}") from None
        table = metadata.tables[secret.table]
        connection.execute(
            update(table)
            .where(table.c.id == secret.row_id)
            .values({secret.column: token, "updated_at": table.c.updated_at})
        )
    return len(stored)


def _secrets_of(
    connection: Connection, table_name: str, columns: tuple[str, ...], *, lock: bool
) -> Iterator[StoredSecret]:
    table = metadata.tables[table_name]
    owner = metadata.tables["connection"]
    query = select(table.c.id, owner.c.name, *(table.c[name] for name in columns))
    if table is not owner:
        query = query.join_from(table, owner, table.c.connection_id == owner.c.id)
    query = query.order_by(table.c.id)
    if lock:
        query = query.with_for_update(of=table)
    for row in connection.execute(query).mappings():
        for name in columns:
            token = row[name]
            if token is not None:
                yield StoredSecret(table_name, row["id"], name, row["name"], bytes(token))
