"""The core's default ``map_accounts``: manual mappings, then account number, then name.

Registered in every side's plugin manager as ``trylast``, so any plugin or extension that
implements ``map_accounts`` with ``tryfirst=True`` (or plain) overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_connector.hookspecs import hookimpl
from ml_connector.models import AccountMapping, DimensionKind, MappingMethod

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ml_connector.models import Account, AccountCatalog, Dimension

__all__ = ["ACCOUNT_KIND", "map_accounts", "match_catalogs"]

ACCOUNT_KIND = "account"
"""The ``source_kind`` / ``sink_kind`` of a mapping between accounts (not dimensions)."""


def _normalise(text: str | None) -> str | None:
    if text is None:
        return None
    folded = " ".join(text.casefold().split())
    return folded or None


def _unique_index(items: Iterable[tuple[str | None, str]]) -> dict[str, str]:
    # A key shared by two sink records is ambiguous: matching on it could pick the wrong
    # account, so it is dropped and the source record stays unmapped.
    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for key, sink_id in items:
        if key is None or key in ambiguous:
            continue
        if key in index and index[key] != sink_id:
            del index[key]
            ambiguous.add(key)
        else:
            index[key] = sink_id
    return index


@dataclass(frozen=True)
class _Entry:
    """An account or a dimension value, as the matcher compares them."""

    id: str
    code: str | None  # account number or dimension code
    name: str
    active: bool = True


def _match(
    kind: str, source: Iterable[_Entry], sink: Iterable[_Entry], taken: set[tuple[str, str]]
) -> list[AccountMapping]:
    """Match one kind of entry: equal code (or id) first, then equal name."""
    active = [e for e in sink if e.active]
    by_code = _unique_index((_normalise(e.code), e.id) for e in active)
    by_name = _unique_index((_normalise(e.name), e.id) for e in active)
    found: list[AccountMapping] = []
    for entry in source:
        if (kind, entry.id) in taken:
            continue
        code_key = _normalise(entry.code or entry.id)
        if code_key is not None and code_key in by_code:
            sink_id, method = by_code[code_key], MappingMethod.NUMBER
        elif (name_key := _normalise(entry.name)) is not None and name_key in by_name:
            sink_id, method = by_name[name_key], MappingMethod.NAME
        else:
            continue
        found.append(
            AccountMapping(
                source_kind=kind, source_id=entry.id, sink_kind=kind, sink_id=sink_id, method=method
            )
        )
    return found


def _accounts(accounts: Iterable[Account]) -> list[_Entry]:
    return [_Entry(a.id, a.number, a.name, a.active) for a in accounts]


def _dimensions(dimensions: Iterable[Dimension], kind: DimensionKind) -> list[_Entry]:
    return [_Entry(d.id, d.code, d.name, d.active) for d in dimensions if d.kind == kind]


def match_catalogs(
    source: AccountCatalog, sink: AccountCatalog, manual: Sequence[AccountMapping]
) -> list[AccountMapping]:
    """Map every source account and dimension value that has one clear sink counterpart.

    Manual mappings win; then an equal account number (or dimension code) in the sink; then an
    equal name, compared without case and extra spaces. A number or name that two active sink
    records share is ambiguous and matches nothing.

    Args:
        source: The source catalog.
        sink: The sink catalog.
        manual: Operator-set mappings.

    Returns:
        The manual mappings followed by the matched ones.
    """
    taken = {(m.source_kind, m.source_id) for m in manual}
    found = [
        *manual,
        *_match(ACCOUNT_KIND, _accounts(source.accounts), _accounts(sink.accounts), taken),
    ]
    for kind in sorted({d.kind for d in source.dimensions}):
        source_values = _dimensions(source.dimensions, kind)
        found += _match(kind.value, source_values, _dimensions(sink.dimensions, kind), taken)
    return found


@hookimpl(trylast=True)
async def map_accounts(
    source: AccountCatalog, sink: AccountCatalog, manual: Sequence[AccountMapping]
) -> list[AccountMapping]:
    """The default matcher as a hook implementation; see :func:`match_catalogs`."""
    return match_catalogs(source, sink, manual)
