"""What the fake systems share: where they live, how they persist, how a request is served.

A fake system (:class:`~ml_connector.testing.FakeErp`, :class:`~ml_connector.testing.FakeSink`) is
the "remote server" of a reference plugin. It lives outside the plugin and outside the connection
context, in one of two places:

- **in memory**, registered under its tenant key (the ERP's ``instance``, the sink's
  ``organization_id``): ``FakeSink.in_memory("org-1")`` creates or returns it, and the plugin finds
  the same object through its settings;
- **in a SQLite file** (``state_path``), written through: every mutation is committed (WAL mode)
  before the hook that caused it returns, so a process killed with SIGKILL loses nothing it
  reported, and another process can open the file afterwards to check what happened.
  ``FakeSink.open(path)`` creates or returns it. One process at a time should hold a file open:
  each process keeps its own in-memory view of it.

Test configuration (faults, latency, poisoned records, the clock) is runtime state of the object
and is never persisted.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import TypeAdapter

from ml_connector.errors import AuthenticationError, SessionExpiredError
from ml_connector.testing._faults import Faults

__all__ = ["FakeSystem", "Journal", "ManualClock", "reset_fakes"]

T = TypeVar("T")


def utc_now() -> datetime:
    """The wall clock, in UTC: the default clock of a fake system."""
    return datetime.now(UTC)


class ManualClock:
    """A clock a test moves by hand; optionally advances by ``tick`` at every reading.

    Args:
        start: The first time read (timezone-aware).
        tick: How far each reading moves the clock, so consecutive writes get distinct times.
    """

    def __init__(self, start: datetime, *, tick: timedelta = timedelta(0)) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._tick = tick

    def __call__(self) -> datetime:
        now = self._now
        self._now += self._tick
        return now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self._now += delta

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (timezone-aware)."""
        self._now = when.astimezone(UTC)


class Journal:
    """A write-through SQLite copy of a fake system's records.

    One table of records, ``(kind, id) -> JSON``, and one of metadata (tenant key, id sequences).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (not a power cut) and costs no fsync.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS record "
            "(kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def meta(self) -> dict[str, str]:
        """Every metadata entry."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def records(self) -> Iterator[tuple[str, str, str]]:
        """Every record as ``(kind, id, json)``, in insertion order."""
        yield from self._db.execute("SELECT kind, id, body FROM record ORDER BY rowid")

    def commit(self, records: Mapping[tuple[str, str], str], meta: Mapping[str, str]) -> None:
        """Write records and metadata in one transaction, committed before returning."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO record (kind, id, body) VALUES (?, ?, ?)",
                [(kind, rid, body) for (kind, rid), body in records.items()],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self._db.close()


_REGISTRY: dict[tuple[str, str, str], FakeSystem] = {}


def reset_fakes() -> None:
    """Close every registered fake system and forget them all (call between tests)."""
    for fake in list(_REGISTRY.values()):
        fake.close()
    _REGISTRY.clear()


class FakeSystem:
    """Base of the fake systems: registry, persistence, sessions and request serving.

    Subclasses declare ``system`` (the plugin's system key), ``codecs`` (one TypeAdapter per
    persisted record kind) and implement :meth:`_restore` to rebuild their indexes from a record.

    Args:
        key: The tenant key (ERP instance, BILL organization id).
        journal: Where to persist, or ``None`` to live in memory only.

    Attributes:
        key: The tenant key.
        faults: Latency, scripted failures, the concurrency cap and call counters.
        clock: Where change times come from (default: the wall clock in UTC); set a
            :class:`ManualClock` for exact times.
        users: Accepted logins (username to password); empty accepts any non-empty pair.
    """

    system: ClassVar[str]
    codecs: ClassVar[Mapping[str, TypeAdapter[Any]]]
    write_hooks: ClassVar[frozenset[str]]

    def __init__(self, key: str, *, journal: Journal | None = None) -> None:
        if not key:
            raise ValueError("a fake system needs a non-empty tenant key")
        self.key = key
        self.faults = self._make_faults()
        self.clock: Callable[[], datetime] = utc_now
        self.users: dict[str, str] = {}
        self._journal: Journal | None = None
        self._sequences: dict[str, int] = {}
        self._sessions: set[str] = set()
        self._session_numbers = itertools.count(1)
        self._pending: dict[tuple[str, str], Any] | None = None
        self._pending_meta: dict[str, str] = {}
        self._registry_key: tuple[str, str, str] | None = None
        if journal is not None:
            self._load(journal)  # before the journal is attached: restoring writes nothing
            self._journal = journal

    def _make_faults(self) -> Faults:
        return Faults(self.system)

    # --- Where it lives ------------------------------------------------------------------------

    @classmethod
    def in_memory(cls, key: str) -> Self:
        """Return the in-memory system registered under ``key``, creating it if needed."""
        registry_key = (cls.system, "memory", key)
        found = _REGISTRY.get(registry_key)
        if found is None:
            found = cls(key)
            found._registry_key = registry_key
            _REGISTRY[registry_key] = found
        assert isinstance(found, cls)
        return found

    @classmethod
    def open(cls, path: str | Path, key: str | None = None) -> Self:
        """Return the system persisted at ``path``, creating the file if needed.

        Args:
            path: The SQLite file.
            key: The tenant key; required for a new file, checked against an existing one.

        Raises:
            ValueError: A new file without a key, or a key other than the file's.
        """
        resolved = Path(path).resolve()
        registry_key = (cls.system, "file", str(resolved))
        found = _REGISTRY.get(registry_key)
        if found is None:
            journal = Journal(resolved)
            meta = journal.meta()
            if meta.get("system", cls.system) != cls.system:
                journal.close()
                raise ValueError(f"{resolved} holds {meta['system']} state, not {cls.system}")
            stored = meta.get("key")
            if stored is None and key is None:
                journal.close()
                raise ValueError(f"{resolved} holds no {cls.system} state; give its tenant key")
            found = cls(stored or key or "", journal=journal)
            if stored is None:
                journal.commit({}, {"key": found.key, "system": cls.system})
            found._registry_key = registry_key
            _REGISTRY[registry_key] = found
        assert isinstance(found, cls)
        if key is not None and key != found.key:
            raise ValueError(f"{resolved} holds tenant {found.key!r}, not {key!r}")
        return found

    @classmethod
    def attach(cls, key: str, state_path: str | None) -> Self:
        """Find the system a plugin's settings name, as a client reaches its server.

        Raises:
            AuthenticationError: No such system (not created in memory, or no such file), or the
                file belongs to another tenant.
        """
        if state_path is None:
            found = _REGISTRY.get((cls.system, "memory", key))
            if found is None:
                raise AuthenticationError(
                    f"no {cls.system} tenant {key!r} in memory; create it with "
                    f"{cls.__name__}.in_memory({key!r}) before connecting",
                    system=cls.system,
                    status=401,
                )
            assert isinstance(found, cls)
            return found
        if not Path(state_path).exists():
            raise AuthenticationError(
                f"no {cls.system} state file at {state_path}", system=cls.system, status=401
            )
        try:
            return cls.open(state_path, key)
        except ValueError as exc:
            raise AuthenticationError(str(exc), system=cls.system, status=401) from None

    @property
    def persistent(self) -> bool:
        """Whether this system writes through to a file."""
        return self._journal is not None

    def close(self) -> None:
        """Close the file (if any) and unregister; a later ``open`` reloads from disk."""
        if self._registry_key is not None and _REGISTRY.get(self._registry_key) is self:
            del _REGISTRY[self._registry_key]
        self._registry_key = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # --- Sessions ------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """Check a login and open a session.

        Raises:
            AuthenticationError: Empty or unknown credentials.
        """
        if not username or not password or (self.users and self.users.get(username) != password):
            raise AuthenticationError(
                "User name and/or password do not match our records.",
                system=self.system,
                status=401,
            )
        token = f"session-{next(self._session_numbers)}"
        self._sessions.add(token)
        return token

    def logout(self, token: str) -> None:
        """End a session; unknown sessions are ignored."""
        self._sessions.discard(token)

    def expire_sessions(self) -> None:
        """End every open session, as an idle timeout does: the next call of each gets a 401."""
        self._sessions.clear()

    def _session_expired(self) -> SessionExpiredError:
        return SessionExpiredError(
            "Session is invalid. Please log in.",
            system=self.system,
            status=401,
            code=self.faults.session_code,
        )

    # --- Serving a request ---------------------------------------------------------------------

    async def serve(self, hook: str, session: str | None, op: Callable[[], T]) -> T:
        """Run one request: cap, latency, session check, faults, then the operation.

        Args:
            hook: The hook the request serves (for counters and fault rules).
            session: The caller's session token; ``None`` only for a login.
            op: The operation, run synchronously; its writes are committed before it returns.

        Returns:
            What ``op`` returned.
        """
        faults = self.faults
        call = faults.admit(hook)
        try:
            await asyncio.sleep(faults.delay(hook))
            if session is not None and session not in self._sessions:
                raise self._session_expired()
            faults.before(hook, call)
            with self.writing():
                result = op()
            faults.applied[hook] += 1
            faults.after(hook, call)
            return result
        finally:
            faults.release()

    def write_calls(self) -> int:
        """Calls received by every hook that writes (for "an unchanged rerun writes nothing")."""
        return self.faults.total_calls(self.write_hooks)

    # --- Persistence ---------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Group the writes inside into one committed transaction (nested uses join the outer)."""
        if self._pending is not None:
            yield
            return
        self._pending = {}
        self._pending_meta = {}
        try:
            yield
            if self._journal is not None and (self._pending or self._pending_meta):
                records = {
                    (kind, rid): self.codecs[kind].dump_json(obj).decode()
                    for (kind, rid), obj in self._pending.items()
                }
                self._journal.commit(records, self._pending_meta)
        finally:
            self._pending = None
            self._pending_meta = {}

    def _stage(self, kind: str, record_id: str, record: object) -> None:
        """Mark a record as changed; it is written when the surrounding transaction ends."""
        if self._journal is None:
            return
        with self.writing():
            assert self._pending is not None
            self._pending[(kind, record_id)] = record

    def _next_id(self, prefix: str, width: int = 17) -> str:
        """The next id with ``prefix``, from a sequence persisted with the records."""
        number = self._sequences.get(prefix, 0) + 1
        self._sequences[prefix] = number
        if self._journal is not None:
            with self.writing():
                self._pending_meta[f"seq:{prefix}"] = str(number)
        return f"{prefix}{number:0{width}d}"

    def _load(self, journal: Journal) -> None:
        for name, value in journal.meta().items():
            if name.startswith("seq:"):
                self._sequences[name.removeprefix("seq:")] = int(value)
        for kind, _record_id, body in journal.records():
            codec = self.codecs.get(kind)
            if codec is not None:
                self._restore(kind, codec.validate_json(body))

    def _restore(self, kind: str, record: Any) -> None:
        raise NotImplementedError
