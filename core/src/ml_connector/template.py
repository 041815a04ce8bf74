"""The plugin template behind ``ml-connector plugin new``.

The template is package data under ``ml_connector/templates/plugin/<role>/``: a directory tree
shaped like the distribution it writes. Files ending in ``.tmpl`` are :class:`string.Template`
texts (``$system``, ``$package``, …; a literal dollar is ``$$``) written without the suffix; other
files are copied as they are; a directory named ``package`` becomes the import package
(``ml_connector_<system>``).

.. versionadded:: 1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from ml_connector import __version__
from ml_connector.contract import CAPABILITIES_ADDED, CONTRACT_VERSION, FIRST_CONTRACT, HOOKS_ADDED
from ml_connector.description import Capability, Role

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "TemplateError",
    "TemplateSpec",
    "contract_range",
    "core_requirement",
    "default_display_name",
    "render",
    "validate_display_name",
    "validate_name",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""A system key: what ``PluginInfo.system`` accepts, and a valid package-name suffix."""
MAX_NAME = 30
"""The longest system key (so the rendered code keeps within 100 columns)."""
MAX_DISPLAY_NAME = 40
"""The longest display name."""

_SUFFIX = ".tmpl"
_PACKAGE_DIR = "package"
_ROLES_WITH_TEMPLATES = frozenset({Role.SOURCE, Role.SINK})


class TemplateError(ValueError):
    """The template cannot be rendered as asked (bad name, existing target, unsupported role)."""


def validate_name(name: str) -> str:
    """Check a system key for a new plugin.

    Args:
        name: The key, e.g. ``"mysystem"``.

    Returns:
        The key, unchanged.

    Raises:
        TemplateError: It is not a lowercase identifier, ends in an underscore, or is too long.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise TemplateError(
            f"invalid plugin name {name!r}: use a lowercase identifier "
            "(a letter, then letters, digits or underscores), e.g. 'mysystem'"
        )
    if name.endswith("_") or "__" in name:
        raise TemplateError(f"invalid plugin name {name!r}: no trailing or doubled underscores")
    if len(name) > MAX_NAME:
        raise TemplateError(f"invalid plugin name {name!r}: at most {MAX_NAME} characters")
    return name


def validate_display_name(text: str) -> str:
    """Check a display name: it goes into Python and TOML strings as it is.

    Raises:
        TemplateError: It is empty or too long, or has quotes, backslashes or control characters.
    """
    if not text.strip() or not text.isprintable() or any(c in text for c in '"\\'):
        raise TemplateError(
            f"invalid display name {text!r}: use printable text without quotes or backslashes"
        )
    if len(text) > MAX_DISPLAY_NAME:
        raise TemplateError(f"invalid display name {text!r}: at most {MAX_DISPLAY_NAME} characters")
    return text


def core_requirement(core_version: str = __version__) -> str:
    """The range of core releases a new plugin depends on: this release line.

    ``0.4.2`` gives ``>=0.4,<0.5`` (before 1.0 a minor release may break); ``1.3.0`` gives
    ``>=1.3,<2``.
    """
    try:
        version = Version(core_version)
    except InvalidVersion:
        return ">=0.1"
    major, minor = version.major, version.minor
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    return f">={major}.{minor},<{upper}"


def contract_range(hooks: Iterable[str], capabilities: Iterable[str] = ()) -> str:
    """The contract range a plugin using these hooks and capabilities declares.

    From the newest contract that added one of them (:data:`~ml_connector.contract.HOOKS_ADDED`,
    :data:`~ml_connector.contract.CAPABILITIES_ADDED`) to the next major: contract 1.0 hooks and
    ``find_payment`` (1.2) give ``>=1.2,<2``. Never the running core's contract blindly: a range
    that starts later than the plugin needs shuts out older cores for nothing.

    Args:
        hooks: The hooks the plugin implements (optional hooks left out: they do not count).
        capabilities: The capabilities its ``describe_plugin`` declares.

    Raises:
        ValueError: A hook or capability the contract does not have.

    .. versionchanged:: 1.2
        From the hooks and capabilities, not from a contract version.
    """
    added: list[Version] = []
    for names, table, kind in (
        (hooks, HOOKS_ADDED, "hook"),
        (capabilities, CAPABILITIES_ADDED, "capability"),
    ):
        for name in names:
            if name not in table:
                raise ValueError(f"contract {CONTRACT_VERSION} has no {kind} {name!r}")
            added.append(Version(table[name]))
    low = max(added, default=Version(FIRST_CONTRACT))
    return f">={low.major}.{low.minor},<{low.major + 1}"


_HOOKIMPL = re.compile(r"^@hookimpl(?P<options>\([^)]*\))?\n(?:async )?def (?P<hook>\w+)\(", re.M)
_CAPABILITY = re.compile(r"\bCapability\.(?P<member>[A-Z_]+)\b")


def _template_features(role: Role) -> tuple[list[str], list[str]]:
    """The hooks and capabilities the role's template ``plugin.py`` uses, read from its text.

    A hook counts when its ``def`` follows ``@hookimpl`` (not ``@hookimpl(optionalhook=True)``),
    a capability when the text names ``Capability.<MEMBER>``; :func:`contract_range` turns them
    into the range the rendered plugin declares, so that range follows the template.

    Returns:
        ``(hooks, capabilities)``, sorted; both empty for a role without a template.
    """
    plugin = files("ml_connector").joinpath(
        "templates", "plugin", role.value, "src", _PACKAGE_DIR, "plugin.py" + _SUFFIX
    )
    if not plugin.is_file():
        return [], []
    text = plugin.read_text("utf-8")
    hooks = {
        m["hook"]
        for m in _HOOKIMPL.finditer(text)
        if "optionalhook=True" not in (m["options"] or "")
    }
    capabilities = {Capability[m["member"]].value for m in _CAPABILITY.finditer(text)}
    return sorted(hooks), sorted(capabilities)


@dataclass(frozen=True)
class TemplateSpec:
    """What to render.

    Attributes:
        system: The system key (entry-point name, ``PLUGIN_INFO["system"]``).
        role: Source or sink.
        display_name: The system's name for people.
    """

    system: str
    role: Role
    display_name: str

    @property
    def package(self) -> str:
        """The import package, ``ml_connector_<system>``."""
        return f"ml_connector_{self.system}"

    @property
    def distribution(self) -> str:
        """The distribution name, ``ml-connector-<system>`` (normalised: hyphens)."""
        return f"ml-connector-{self.system.replace('_', '-')}"

    def variables(self) -> dict[str, str]:
        """The values the ``.tmpl`` files use."""
        return {
            "system": self.system,
            "display_name": self.display_name,
            "role": self.role.value,
            "package": self.package,
            "distribution": self.distribution,
            "core_requirement": core_requirement(),
            "core_version": __version__,
            "contract": contract_range(*_template_features(self.role)),
            "contract_version": CONTRACT_VERSION,
            "today": datetime.now(UTC).date().isoformat(),
        }


def default_display_name(system: str) -> str:
    """``"my_erp"`` -> ``"My Erp"``."""
    return system.replace("_", " ").title()


def render(spec: TemplateSpec, target: Path) -> list[Path]:
    """Write a new plugin distribution into ``target``.

    Args:
        spec: What to render.
        target: The directory to create; it must not exist.

    Returns:
        The files written, relative to ``target``, sorted.

    Raises:
        TemplateError: The role has no template yet, or ``target`` exists.
    """
    validate_name(spec.system)
    validate_display_name(spec.display_name)
    if spec.role not in _ROLES_WITH_TEMPLATES:
        raise TemplateError(f"not yet: {spec.role.value} templates are planned")
    if target.exists():
        raise TemplateError(f"{target} already exists; choose another --dir or remove it")
    root = files("ml_connector").joinpath("templates", "plugin", spec.role.value)
    variables = spec.variables()
    written: list[Path] = []
    for relative, source in _walk(root, Path()):
        out = target / _output_path(relative, spec.package)
        out.parent.mkdir(parents=True, exist_ok=True)
        if source.name.endswith(_SUFFIX):
            out.write_text(Template(source.read_text("utf-8")).substitute(variables), "utf-8")
        else:
            out.write_bytes(source.read_bytes())
        written.append(out.relative_to(target))
    return sorted(written)


def _walk(node: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            found += _walk(child, relative / child.name)
        else:
            found.append((relative / child.name, child))
    return found


def _output_path(relative: Path, package: str) -> Path:
    parts = [package if part == _PACKAGE_DIR else part for part in relative.parts]
    if parts[-1].endswith(_SUFFIX):
        parts[-1] = parts[-1].removesuffix(_SUFFIX)
    return Path(*parts)
