"""The contract version, and how a plugin's declared range is checked against it.

The contract is everything a plugin relies on: the hookspecs, the domain models, the errors and the
context. It follows semantic versioning: a minor release adds hooks or optional fields, a major
release removes or changes them. A plugin declares the range it supports as a PEP 440 specifier,
e.g. ``">=1.0,<2"``.

.. versionadded:: 1.0
"""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

__all__ = ["CONTRACT_VERSION", "contract_compatibility"]

CONTRACT_VERSION = "1.2.0"
"""The version of the plugin contract this core implements."""


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
        return f"declares an invalid contract range {declared!r} (expected e.g. '>=1.0,<2')"
    if not str(spec):
        return "declares an empty contract range (expected e.g. '>=1.0,<2')"
    if Version(CONTRACT_VERSION) not in spec:
        return f"supports contract {spec}, but this core implements contract {CONTRACT_VERSION}"
    return None
