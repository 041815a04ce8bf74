"""The credential vault: stored credentials are encrypted with a master key the database never sees.

Encryption is Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``), so a token that was
tampered with or encrypted under another key is refused rather than decrypted into garbage.
:class:`~cryptography.fernet.MultiFernet` holds several keys, newest first: it encrypts with the
newest and decrypts with any, which is what makes key rotation possible without downtime.

Where the master key comes from, first match wins:

1. ``ML_CONNECTOR_MASTER_KEY``: one key, or several separated by commas, newest first (for
   deployments whose secrets live in a secret manager). An empty value counts as unset.
2. The key file: one key per line, newest first. Default ``$ML_CONNECTOR_HOME/master.key``, else
   ``master.key`` in the user data dir (e.g. ``~/.local/share/ml-connector`` on Linux). It is
   created on first use, readable by its owner only.

Rotation (``ml-connector keys rotate``) is three steps, each safe to crash after:

1. the key file is rewritten atomically with the new key first and every old key kept;
2. every stored secret is re-encrypted under the new key in one database transaction;
3. the key file is rewritten with the new key alone.

After a crash in 1 or 2 every secret still decrypts (old tokens with the old keys, which are still
in the file); after 3 the old keys are gone and nothing needs them. See
:meth:`Vault.begin_rotation`.

Keys never appear in messages, logs or reprs; neither do decrypted secrets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, Secret, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_json

from ml_connector.errors import ConfigurationError, VaultError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "ENV_HOME",
    "ENV_MASTER_KEY",
    "KEY_FILE_NAME",
    "KeyRotation",
    "Vault",
    "data_home",
    "default_key_file",
]

logger = logging.getLogger(__name__)

ENV_MASTER_KEY = "ML_CONNECTOR_MASTER_KEY"
"""Environment variable holding the master key(s), comma-separated, newest first."""

ENV_HOME = "ML_CONNECTOR_HOME"
"""Environment variable naming the directory for the key file and the default database."""

KEY_FILE_NAME = "master.key"

M = TypeVar("M", bound=BaseModel)

_MALFORMED = "a master key is 32 url-safe base64-encoded bytes, as Fernet.generate_key() makes"
# How long to wait for a key file another process is creating at this very moment.
_CREATION_WAIT_SECONDS = 2.0


def data_home() -> Path:
    """ml-connector's own directory, home of the key file and of the default SQLite database.

    Returns:
        ``$ML_CONNECTOR_HOME`` if set, else the platform's user data directory for ml-connector
        (``~/.local/share/ml-connector`` on Linux). It may not exist yet.
    """
    home = os.environ.get(ENV_HOME, "").strip()
    if home:
        return Path(home).expanduser()
    return platformdirs.user_data_path("ml-connector", appauthor=False)


def default_key_file() -> Path:
    """Where the key file lives when no path is given: ``master.key`` in :func:`data_home`."""
    return data_home() / KEY_FILE_NAME


class Vault:
    """Encrypts and decrypts stored secrets with the master key(s).

    Args:
        keys: Fernet keys, newest first; the newest encrypts, any decrypts.
        source: Where the keys came from, for messages (e.g. ``"ML_CONNECTOR_MASTER_KEY"`` or
            ``"key file /home/ap/.local/share/ml-connector/master.key"``).
        key_file: The key file the keys were read from, or ``None`` when they came from the
            environment. Rotation rewrites this file.

    Raises:
        VaultError: No key was given, or a key is malformed.
    """

    __slots__ = ("_fernet", "_key_file", "_keys", "_source")

    def __init__(
        self, keys: Sequence[str | bytes], *, source: str, key_file: Path | None = None
    ) -> None:
        if not keys:
            raise VaultError(f"{source} holds no master key")
        self._keys = tuple(_check_key(key, source) for key in keys)
        self._fernet = MultiFernet([Fernet(key) for key in self._keys])
        self._source = source
        self._key_file = key_file

    @classmethod
    def from_environment(cls, key_file: Path | None = None) -> Vault:
        """Load the master key(s) from ``ML_CONNECTOR_MASTER_KEY``, else from the key file.

        Args:
            key_file: The key file to use when the variable is unset; default
                :func:`default_key_file`. It is created, with a new key, if it does not exist.

        Returns:
            The vault.

        Raises:
            VaultError: A key is malformed, or the key file cannot be read or created.
        """
        value = os.environ.get(ENV_MASTER_KEY, "").strip()
        if value:
            items = [item.strip() for item in value.split(",")]
            keys = [
                _check_key(item, f"{ENV_MASTER_KEY} (item {n} of {len(items)})")
                for n, item in enumerate(items, start=1)
            ]
            return cls(keys, source=ENV_MASTER_KEY)
        return cls.from_key_file(key_file or default_key_file())

    @classmethod
    def from_key_file(cls, path: Path, *, create: bool = True) -> Vault:
        """Load the master key(s) from a key file, creating it on first use.

        Args:
            path: The key file: one key per line, newest first; blank lines and lines starting
                with ``#`` are ignored.
            create: Create the file with a new key if it does not exist.

        Returns:
            The vault.

        Raises:
            VaultError: The file is missing (and ``create`` is false), unreadable, empty or holds
                a malformed key.
        """
        where = f"key file {path}"
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            if not create:
                raise VaultError(f"there is no {where}") from None
            text = _create_key_file(path)
        except UnicodeDecodeError:
            raise VaultError(f"the {where} is malformed: {_MALFORMED}") from None
        except OSError as exc:
            raise VaultError(f"cannot read the {where}: {exc.strerror}") from None
        _warn_if_exposed(path)
        keys = [
            _check_key(line, f"{where} (line {number})")
            for number, line in _key_lines(text.splitlines())
        ]
        if not keys:
            raise VaultError(
                f"the {where} holds no key; if nothing was ever encrypted with it, delete it "
                "and a new key will be created"
            )
        return cls(keys, source=where, key_file=path)

    @property
    def source(self) -> str:
        """Where the keys came from, for messages: the variable's name or the key file."""
        return self._source

    @property
    def key_file(self) -> Path | None:
        """The key file, or ``None`` when the keys come from ``ML_CONNECTOR_MASTER_KEY``."""
        return self._key_file

    @property
    def key_count(self) -> int:
        """How many keys the vault holds (more than one only during or after a rotation)."""
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Vault(source={self._source!r}, keys={len(self._keys)})"

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt ``data`` with the newest key.

        Returns:
            A Fernet token (URL-safe base64 ASCII), which also authenticates the data.
        """
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt a token made by :meth:`encrypt` under any of the vault's keys.

        Raises:
            VaultError: No key decrypts the token: it was encrypted under another master key, or
                it was damaged.
        """
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise VaultError(self._wrong_key_message()) from None

    def reencrypt(self, token: bytes) -> bytes:
        """Re-encrypt a token under the newest key (decrypting it with whichever key fits).

        Raises:
            VaultError: No key decrypts the token.
        """
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise VaultError(self._wrong_key_message()) from None

    def seal(self, model: BaseModel) -> bytes:
        """Serialise a credentials model to JSON, secrets revealed, and encrypt it.

        Pydantic masks ``SecretStr`` values as ``**********`` when it writes JSON; the vault is
        the one place that must write the real value, so it reveals them before encrypting.

        Args:
            model: The credentials, e.g. an instance of a plugin's ``credentials_model``.

        Returns:
            The encrypted token, for a ``LargeBinary`` column.
        """
        # by_alias + round_trip: exactly what model_validate_json reads back, aliases included.
        plain = _reveal(model.model_dump(mode="python", by_alias=True, round_trip=True))
        return self.encrypt(to_json(plain))

    def open(self, token: bytes, model_type: type[M]) -> M:
        """Decrypt a token made by :meth:`seal` and validate it as ``model_type``.

        Args:
            token: The stored token.
            model_type: The model it was sealed from (or a compatible newer version of it).

        Returns:
            The model, with secrets as ``SecretStr`` again.

        Raises:
            VaultError: The token does not decrypt under the vault's keys.
            ConfigurationError: The decrypted credentials no longer fit ``model_type`` (for
                example the plugin added a required field); the message names the fields only.
        """
        data = self.decrypt(token)
        try:
            return model_type.model_validate_json(data)
        except ValidationError as exc:
            # str(exc) would quote the input, i.e. the secrets; name the fields instead.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(whole)'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise ConfigurationError(
                f"the stored credentials do not fit {model_type.__name__}: {problems}; "
                "enter them again"
            ) from None

    def begin_rotation(
        self, new_key: str | None = None, *, new_key_source: str = "the new key"
    ) -> KeyRotation:
        """Start a key rotation: step 1 of 3.

        With a key file, the file is rewritten at once (atomically) with the new key first and
        all current keys after it, so a crash from here on loses nothing. With keys from the
        environment nothing is written: the caller must hand the new key to the operator.

        Then re-encrypt every stored secret with ``rotation.vault.reencrypt`` in one database
        transaction (step 2), and call :meth:`KeyRotation.finish` (step 3).

        Args:
            new_key: The new key; default a freshly generated one.
            new_key_source: Where ``new_key`` came from, for the error if it is malformed.

        Returns:
            The rotation in progress.

        Raises:
            VaultError: ``new_key`` is malformed or already in use, or the key file cannot be
                written.
        """
        key = Fernet.generate_key() if new_key is None else _check_key(new_key, new_key_source)
        if key in self._keys:
            raise VaultError(f"{new_key_source} is already one of the master keys")
        keys = (key, *self._keys)
        if self._key_file is not None:
            _write_key_file(self._key_file, keys)
        return KeyRotation(Vault(keys, source=self._source, key_file=self._key_file), key)

    def _wrong_key_message(self) -> str:
        return (
            "cannot decrypt stored credentials: the master key is not the one they were "
            f"encrypted with ({self._source})"
        )


class KeyRotation:
    """A key rotation in progress (see :meth:`Vault.begin_rotation`).

    Attributes:
        vault: A vault holding the new key first and every old key after it: use its
            :meth:`Vault.reencrypt` to move each stored secret to the new key.
    """

    __slots__ = ("_new_key", "vault")

    def __init__(self, vault: Vault, new_key: bytes) -> None:
        self.vault = vault
        self._new_key = new_key

    def __repr__(self) -> str:
        return f"KeyRotation(source={self.vault.source!r})"

    def reveal_new_key(self) -> str:
        """The new key itself, for the one case where the operator must be shown it."""
        return self._new_key.decode("ascii")

    def finish(self) -> Vault:
        """Drop the old keys: step 3 of 3. Call only after every secret was re-encrypted.

        With a key file, the file is rewritten atomically with the new key alone. With keys from
        the environment nothing is written; the operator replaces the variable's value.

        Returns:
            A vault holding only the new key.
        """
        key_file = self.vault.key_file
        if key_file is not None:
            _write_key_file(key_file, (self._new_key,))
        return Vault([self._new_key], source=self.vault.source, key_file=key_file)


# --- Keys --------------------------------------------------------------------------------------


def _check_key(key: str | bytes, where: str) -> bytes:
    raw = key.encode("ascii", "replace") if isinstance(key, str) else key
    try:
        Fernet(raw)
    except ValueError:  # also binascii.Error; its text never matters and may quote the key
        raise VaultError(f"the master key in {where} is malformed: {_MALFORMED}") from None
    return raw


def _key_lines(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def _reveal(value: Any) -> Any:
    """Replace pydantic secrets in a ``model_dump`` by their values, recursively."""
    if isinstance(value, SecretStr | SecretBytes | Secret):
        return _reveal(value.get_secret_value())
    if isinstance(value, dict):
        return {key: _reveal(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_reveal(item) for item in value]
    return value


# --- The key file ------------------------------------------------------------------------------


def _create_key_file(path: Path) -> str:
    """Create ``path`` holding a new key, owner-only; return the file's text."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # O_EXCL: if two processes start at once, exactly one creates the key; the other reads
        # it below instead of overwriting it with a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
    except FileExistsError:
        return _read_once_written(path)
    except OSError as exc:
        raise VaultError(f"cannot create the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
        file.flush()
        os.fsync(file.fileno())
    _fsync_directory(path.parent)
    logger.info("created a new master key in %s", path)
    return key.decode("ascii")


def _read_once_written(path: Path) -> str:
    deadline = time.monotonic() + _CREATION_WAIT_SECONDS
    while True:
        text = path.read_text(encoding="ascii")
        if text.strip() or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def _write_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Replace ``path`` atomically with ``keys``, one per line, owner-only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(b"".join(key + b"\n" for key in keys))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise VaultError(f"cannot write the key file {path}: {exc.strerror}") from None
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the new directory entry (creation or rename) durable, not just the file's bytes.
    # Not possible on Windows, where the rename is durable enough for our purposes.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _warn_if_exposed(path: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "the key file %s can be read by other users (mode %03o); run: chmod 600 %s",
                path,
                mode,
                path,
            )


_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines
