"""``ml-connector keys``: the master key that encrypts stored credentials.

``keys rotate`` replaces the master key and re-encrypts every stored secret (connection credentials,
webhook signing keys, plugins' saved sessions: see ``store.SECRET_COLUMNS``) in one database
transaction. It first checks that every secret decrypts
with the current key(s), and changes nothing if one does not. The rest depends on where the key is:

Key file (the default)
    1. the key file is rewritten with the new key first and the old keys after it;
    2. every secret is re-encrypted under the new key, in one transaction;
    3. the key file is rewritten with the new key alone.

    A crash at any point leaves every secret decryptable (the file holds whichever keys are
    needed); running the command again finishes the job. The new key is not shown unless
    ``--print-new-key`` asks for it.

``ML_CONNECTOR_MASTER_KEY``
    The command cannot change the variable, so the operator must end up holding the new key:

    - ``--new-key-env VAR``: the new key is read from ``$VAR`` (generate one with
      ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``
      or a secret manager); after success, set ``ML_CONNECTOR_MASTER_KEY`` to it.
    - ``--print-new-key``: a new key is generated and printed on stdout, exactly once, *before*
      the secrets are re-encrypted (the status line goes to stderr), so it is never lost.
    - neither: refused (exit 2), nothing changes.

    If the command did not report success, ``ML_CONNECTOR_MASTER_KEY=NEW,CURRENT`` decrypts every
    secret whether or not the transaction committed (it says so); run the command again.

Stop ``ml-connector serve`` and other writers while rotating: a process that still holds the old
key would store new secrets under it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ml_connector.cli._app import EXIT_USAGE, AppContext, fail, pass_app
from ml_connector.errors import VaultError
from ml_connector.store import iter_encrypted_secrets
from ml_connector.vault import ENV_MASTER_KEY, default_key_file

if TYPE_CHECKING:
    from pathlib import Path

    from ml_connector.store import Store
    from ml_connector.vault import Vault

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add the ``keys`` command group to ``main``."""
    main.add_command(keys)


@click.group()
def keys() -> None:
    """Manage the master key that encrypts stored credentials."""


@keys.command("path")
def key_path() -> None:
    """Print where the key file is (never its content)."""
    click.echo(str(default_key_file()))
    if os.environ.get(ENV_MASTER_KEY, "").strip():
        click.echo(f"note: {ENV_MASTER_KEY} is set; it is used instead of the key file", err=True)


@keys.command()
@click.option(
    "--new-key-env",
    metavar="VAR",
    help="Take the new key from the environment variable VAR instead of generating one. "
    f"With keys in {ENV_MASTER_KEY}, this or --print-new-key is required.",
)
@click.option(
    "--print-new-key",
    is_flag=True,
    help="Print the generated new key on stdout, once, before re-encrypting. With keys in "
    f"{ENV_MASTER_KEY}, this or --new-key-env is required.",
)
@pass_app
def rotate(app: AppContext, new_key_env: str | None, print_new_key: bool) -> None:
    """Replace the master key and re-encrypt every stored secret with it.

    The old key stops working. With the key file, the file ends up holding the new key alone.
    With ML_CONNECTOR_MASTER_KEY, set it to the new key after the command succeeds.
    """
    if new_key_env and print_new_key:
        fail("use --new-key-env or --print-new-key, not both", EXIT_USAGE)
    new_key = None
    if new_key_env:
        new_key = os.environ.get(new_key_env, "").strip()
        if not new_key:
            fail(f"the environment variable {new_key_env} is not set or empty", EXIT_USAGE)
    vault = app.vault
    from_env = vault.key_file is None
    if from_env and not (new_key_env or print_new_key):
        fail(
            f"the master key comes from {ENV_MASTER_KEY}, which this command cannot change: "
            "pass --new-key-env VAR (a new key you generated) or --print-new-key (have one "
            "generated and printed once)",
            EXIT_USAGE,
        )
    # Open the store and check every secret before step 1: if the database cannot be reached or
    # holds a secret no current key decrypts, the key file stays untouched.
    store = app.store
    _check_every_secret_decrypts(store, vault)
    rotation = vault.begin_rotation(new_key, new_key_source=f"the variable {new_key_env}")
    if print_new_key:
        # Printed (and flushed by click) before anything is encrypted with it: never lost.
        click.echo(rotation.reveal_new_key())
    try:
        count = store.reencrypt_secrets(rotation.vault.reencrypt)
    except Exception:
        click.echo(_incomplete(from_env, new_key_env), err=True)
        raise
    rotation.finish()
    click.echo(_done(count, vault.key_file, new_key_env), err=print_new_key)


def _check_every_secret_decrypts(store: Store, vault: Vault) -> None:
    with store.session(read_only=True) as session:
        for secret in iter_encrypted_secrets(session):
            try:
                vault.decrypt(secret.token)
            except VaultError as exc:
                raise VaultError(f"{secret.label}: {exc}; nothing was changed") from None


def _incomplete(from_env: bool, new_key_env: str | None) -> str:
    if not from_env:
        return (
            "The re-encryption did not complete; the key file holds the new and the old keys, "
            "so every secret still decrypts. Run the command again."
        )
    # A failure while committing leaves it unknown whether the new key is in use, so the advice
    # must be right either way: both keys, newest first.
    new = f"the key in {new_key_env}" if new_key_env else "the printed key"
    return (
        f"The re-encryption did not complete. Keep {new}: until the command succeeds, set "
        f"{ENV_MASTER_KEY}=NEW,CURRENT (the new key, a comma, the current key), which "
        "decrypts every secret either way. Then run the command again."
    )


def _done(count: int, key_file: Path | None, new_key_env: str | None) -> str:
    secrets = f"{count} secret{'' if count == 1 else 's'}"
    if key_file is not None:
        return f"Re-encrypted {secrets}; the master key is now the only key in {key_file}"
    held = f"the key in {new_key_env}" if new_key_env else "the new key printed above"
    return (
        f"Re-encrypted {secrets} with {held}; set {ENV_MASTER_KEY} to it now "
        "(the old key no longer decrypts them)"
    )
