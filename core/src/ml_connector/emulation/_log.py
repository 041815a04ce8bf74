"""What an emulator was asked, for assertions ("no write calls on an unchanged rerun")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

__all__ = ["RequestLog", "RequestRecord"]

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RequestRecord:
    """One request and the status it got."""

    method: str
    path: str
    status: int


class RequestLog:
    """Every request an emulator served, in order (bounded, oldest dropped first)."""

    def __init__(self, keep: int = 100_000) -> None:
        self.records: list[RequestRecord] = []
        self.keep = keep
        self.by_route: Counter[tuple[str, str]] = Counter()

    def add(self, method: str, path: str, status: int, route: str) -> None:
        """Record one request."""
        self.records.append(RequestRecord(method, path, status))
        if len(self.records) > self.keep:
            del self.records[: len(self.records) - self.keep]
        self.by_route[(method, route)] += 1

    def writes(self, *, exclude: tuple[str, ...] = ()) -> int:
        """Write requests (POST/PUT/PATCH/DELETE) counted by route, minus ``exclude`` routes."""
        return sum(
            n for (method, route), n in self.by_route.items()
            if method in _WRITES and not any(x in route for x in exclude)
        )  # fmt: skip

    def clear(self) -> None:
        """Forget everything."""
        self.records.clear()
        self.by_route.clear()
