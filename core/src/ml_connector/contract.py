"""The contract version, and how a plugin's declared range is checked against it.

The contract is everything a plugin relies on: the hookspecs, the domain models, the errors and the
context. It follows semantic versioning: a minor release adds hooks or optional fields, a major
release removes or changes them. A plugin declares the range it supports as a PEP 440 specifier,
e.g. ``">=1.2,<2"``.

Three checks, from the least to the most binding (``docs/releasing.md``, "The contract range
rule"):

- :func:`contract_compatibility`: the range admits this core. A plugin whose range excludes it is
  ``incompatible`` and never imported.
- :func:`range_problems`: the range keeps the rule: a lower bound from an existing contract, an
  upper bound, and that upper bound no later than the next major. The registry warns about a
  range that breaks it (``plugins list`` shows the warning); the conformance suite and the
  release check refuse it.
- :func:`features_above_lower_bound`: every hook and capability the plugin uses exists in the
  contract its lower bound names. A plugin that fails it is refused everywhere: on an older core
  inside its range it would not load, or would be run without the hook it relies on.

.. versionadded:: 1.0
.. versionchanged:: 1.2
    :func:`range_problems`, :func:`features_above_lower_bound`, :data:`HOOKS_ADDED`,
    :data:`CAPABILITIES_ADDED`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = [
    "CAPABILITIES_ADDED",
    "CONTRACT_VERSION",
    "FIRST_CONTRACT",
    "HOOKS_ADDED",
    "contract_compatibility",
    "features_above_lower_bound",
    "lower_bound",
    "range_problems",
]

CONTRACT_VERSION = "1.2.0"
"""The version of the plugin contract this core implements."""

FIRST_CONTRACT = "1.0"
"""The oldest contract there is: no range may start below it."""

HOOKS_ADDED: Mapping[str, str] = MappingProxyType(
    {
        "describe_plugin": "1.0",
        "authenticate": "1.0",
        "check_connection": "1.0",
        "list_accounts": "1.0",
        "map_accounts": "1.0",
        "close_connection": "1.0",
        "list_changed_payables": "1.0",
        "get_payable": "1.0",
        "record_payment": "1.0",
        "find_payment": "1.2",
        "find_vendor": "1.0",
        "upsert_vendor": "1.0",
        "find_bill": "1.0",
        "create_bill": "1.0",
        "create_bills": "1.0",
        "create_account": "1.0",
        "list_changed_payments": "1.0",
        "get_payment": "1.0",
        "ensure_webhook_subscription": "1.0",
        "parse_webhook": "1.0",
    }
)
"""The contract version that added each hook (its ``.. versionadded::`` in ``hookspecs``)."""

CAPABILITIES_ADDED: Mapping[str, str] = MappingProxyType(
    {
        "bulk_create_bills": "1.0",
        "create_accounts": "1.0",
        "webhooks": "1.0",
        "dimensions": "1.0",
    }
)
"""The contract version that added each :class:`~ml_connector.description.Capability` value."""

_EXAMPLE = "'>=1.2,<2'"


def contract_compatibility(declared: str) -> str | None:
    """Check a plugin's declared contract range against this core.

    Args:
        declared: A PEP 440 specifier set such as ``">=1.0,<2"``.

    Returns:
        ``None`` when compatible, otherwise the reason in one sentence.
    """
    try:
        spec = SpecifierSet(declared)
    except InvalidSpecifier:
        return f"declares an invalid contract range {declared!r} (expected e.g. {_EXAMPLE})"
    if not str(spec):
        return f"declares an empty contract range (expected e.g. {_EXAMPLE})"
    if Version(CONTRACT_VERSION) not in spec:
        return f"supports contract {spec}, but this core implements contract {CONTRACT_VERSION}"
    return None


def lower_bound(declared: str) -> Version | None:
    """The oldest contract a range admits, as its ``>=``, ``>``, ``==`` or ``~=`` clause says.

    Returns:
        The highest such bound, or ``None`` when the range has none (or is not a valid range).
    """
    bounds = [v for op, v in _clauses(declared) if op in (">=", ">", "==", "~=", "===")]
    return max(bounds) if bounds else None


def range_problems(declared: str) -> list[str]:
    """What in a declared range breaks the contract range rule, one sentence each.

    The rule: from the oldest contract whose hooks the plugin uses to the next major, e.g.
    ``>=1.2,<2``. So a range needs a lower bound no older than :data:`FIRST_CONTRACT`, and an
    upper bound (``<``) no later than the major after its lower bound.

    Args:
        declared: The plugin's ``PLUGIN_INFO["contract"]``.

    Returns:
        An empty list when the range keeps the rule.
    """
    try:
        SpecifierSet(declared)
    except InvalidSpecifier:
        return [f"contract range {declared!r} is not a PEP 440 range (expected e.g. {_EXAMPLE})"]
    clauses = _clauses(declared)
    problems: list[str] = []
    low = lower_bound(declared)
    if low is None:
        problems.append(
            f"contract range {declared!r} has no lower bound: start it at the oldest contract "
            f"whose hooks the plugin uses (e.g. {_EXAMPLE})"
        )
    elif low < Version(FIRST_CONTRACT):
        problems.append(
            f"contract range {declared!r} starts at {low}, before the first contract "
            f"{FIRST_CONTRACT}: no such contract exists"
        )
    if not any(op in ("<", "<=", "==", "~=", "===") for op, _ in clauses):
        problems.append(
            f"contract range {declared!r} is open: end it before the next major contract "
            f"(e.g. {_EXAMPLE}), which may change or remove any hook"
        )
        return problems
    next_major = Version(
        str(max(low or Version(FIRST_CONTRACT), Version(FIRST_CONTRACT)).major + 1)
    )
    if SpecifierSet(declared).contains(next_major, prereleases=True):
        problems.append(
            f"contract range {declared!r} reaches contract {next_major}: a major contract "
            f"changes or removes hooks, so no plugin can claim it before it exists (end the "
            f"range at <{next_major})"
        )
    return problems


def features_above_lower_bound(
    declared: str,
    hooks: Iterable[str],
    capabilities: Iterable[str] = (),
    *,
    optional_hooks: Iterable[str] = (),
) -> list[str]:
    """Each hook or capability a plugin uses that the contract at its lower bound lacks.

    A hook implemented with ``@hookimpl(optionalhook=True)`` is left out: so marked, a core
    without the hook loads the plugin and never calls it, and the plugin says it works without
    it (as a ``record_payment`` that looks for an earlier posting itself works without
    ``find_payment``).

    Args:
        declared: The plugin's ``PLUGIN_INFO["contract"]``.
        hooks: The names of the hooks the plugin implements.
        capabilities: The capabilities its ``describe_plugin`` declares.
        optional_hooks: Those of ``hooks`` implemented with ``optionalhook=True``.

    Returns:
        One sentence per feature, naming it, the contract that added it and the declared range;
        empty when the range's lower bound covers everything (or it has no lower bound, which
        :func:`range_problems` reports). A lower bound before :data:`FIRST_CONTRACT` counts as
        the first contract, as no older one exists (:func:`range_problems` reports it too).
    """
    low = lower_bound(declared)
    if low is None:
        return []
    oldest = max(low, Version(FIRST_CONTRACT))
    optional = set(optional_hooks)
    found: list[str] = []
    for kind, names, added in (
        ("hook", sorted(set(hooks) - optional), HOOKS_ADDED),
        ("capability", sorted(set(capabilities)), CAPABILITIES_ADDED),
    ):
        for name in names:
            since = added.get(name)
            if since is not None and Version(since) > oldest:
                found.append(
                    f"uses {kind} {name} (added in contract {since}) but declares contract "
                    f"{declared}, whose lower bound {low} lacks it: declare >={since}"
                    + (
                        ", or mark the hook @hookimpl(optionalhook=True) if the plugin works "
                        "without it"
                        if kind == "hook"
                        else ""
                    )
                )
    return found


def _clauses(declared: str) -> list[tuple[str, Version]]:
    try:
        spec = SpecifierSet(declared)
    except InvalidSpecifier:
        return []
    clauses: list[tuple[str, Version]] = []
    for item in spec:
        try:
            clauses.append((item.operator, Version(item.version.rstrip(".*"))))
        except InvalidVersion:
            continue
    return clauses
