"""The core's default ``map_accounts``: manual mappings, then account number, then name.

Registered in every side's plugin manager as ``trylast``, so any plugin or extension that
implements ``map_accounts`` with ``tryfirst=True`` (or plain) overrides it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_connector.hookspecs import hookimpl
from ml_connector.models import AccountMapping, MappingMethod

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


def _match_accounts(
    source: Sequence[Account], sink: Sequence[Account], taken: set[tuple[str, str]]
) -> list[AccountMapping]:
    active = [a for a in sink if a.active]
    by_number = _unique_index((_normalise(a.number), a.id) for a in active)
    by_name = _unique_index((_normalise(a.name), a.id) for a in active)
    found: list[AccountMapping] = []
    for account in source:
        if (ACCOUNT_KIND, account.id) in taken:
            continue
        number_key = _normalise(account.number or account.id)
        if number_key is not None and number_key in by_number:
            sink_id, method = by_number[number_key], MappingMethod.NUMBER
        elif (name_key := _normalise(account.name)) is not None and name_key in by_name:
            sink_id, method = by_name[name_key], MappingMethod.NAME
        else:
            continue
        found.append(
            AccountMapping(
                source_kind=ACCOUNT_KIND,
                source_id=account.id,
                sink_kind=ACCOUNT_KIND,
                sink_id=sink_id,
                method=method,
            )
        )
    return found


def _match_dimensions(
    source: Sequence[Dimension], sink: Sequence[Dimension], taken: set[tuple[str, str]]
) -> list[AccountMapping]:
    found: list[AccountMapping] = []
    for kind in {d.kind for d in source}:
        candidates = [d for d in sink if d.kind == kind and d.active]
        by_code = _unique_index((_normalise(d.code), d.id) for d in candidates)
        by_name = _unique_index((_normalise(d.name), d.id) for d in candidates)
        for value in (d for d in source if d.kind == kind):
            if (kind.value, value.id) in taken:
                continue
            code_key = _normalise(value.code or value.id)
            if code_key is not None and code_key in by_code:
                sink_id, method = by_code[code_key], MappingMethod.NUMBER
            elif (name_key := _normalise(value.name)) is not None and name_key in by_name:
                sink_id, method = by_name[name_key], MappingMethod.NAME
            else:
                continue
            found.append(
                AccountMapping(
                    source_kind=kind.value,
                    source_id=value.id,
                    sink_kind=kind.value,
                    sink_id=sink_id,
                    method=method,
                )
            )
    return found


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
    return [
        *manual,
        *_match_accounts(source.accounts, sink.accounts, taken),
        *_match_dimensions(source.dimensions, sink.dimensions, taken),
    ]


@hookimpl(trylast=True)
async def map_accounts(
    source: AccountCatalog, sink: AccountCatalog, manual: Sequence[AccountMapping]
) -> list[AccountMapping]:
    """The default matcher as a hook implementation; see :func:`match_catalogs`."""
    return match_catalogs(source, sink, manual)
