"""Which plugins are installed, which of them may run, and how one side's plugins are assembled.

A plugin distribution registers entry points named after its system key (e.g. ``acumatica``):

- ``ml_connector.plugin_info`` points at a plain dict in the plugin's light top-level package,
  validated as :class:`~ml_connector.description.PluginInfo`. It is read first, so the contract
  range is checked before any of the plugin's code is imported.
- ``ml_connector.plugins`` points at the module (or object) holding the hook implementations.
- ``ml_connector.extensions`` (optional, any name) points at a cross-cutting module or object
  (audit, metrics, a customer's own ``map_accounts``) registered into every side.

Each plugin is reported with one status:

- ``ok``: metadata valid, contract range includes :data:`~ml_connector.contract.CONTRACT_VERSION`,
  hook implementations valid, ``describe_plugin`` agrees with the metadata, and the contract at
  the range's lower bound has every hook and capability the plugin uses. A plugin whose range
  breaks the contract range rule (:func:`~ml_connector.contract.range_problems`: open, past the
  next major, or starting before the first contract) is still ``ok``, but carries one warning per
  problem in ``warnings``, each logged once when the plugin is checked.
- ``incompatible``: the declared contract range excludes this core. Its hook module is not
  imported.
- ``broken``: anything else, with the reason in ``error``: metadata missing or invalid, an entry
  point name that differs from the metadata's ``system``, an import error, a hook name or argument
  the contract does not know, a missing or failing ``describe_plugin``, a hook or capability newer
  than the range's lower bound (:func:`~ml_connector.contract.features_above_lower_bound`; a hook
  implemented with ``optionalhook=True`` is exempt), or a system key that an earlier distribution
  on the path already provides.

One plugin's failure never hides the others: each is checked on its own.

Switches, read from the environment when a :class:`Registry` is created, apply to installed entry
points by name (system key or extension name), in every group:

- ``ML_CONNECTOR_DISABLE_PLUGINS=a,b`` switches ``a`` and ``b`` off.
- ``ML_CONNECTOR_LOAD_PLUGINS=a,b`` switches off everything except ``a`` and ``b`` (an empty value
  means no allow-list).

A switched-off plugin is never imported beyond its metadata (an extension not at all), is refused
by :meth:`Registry.load` with :class:`~ml_connector.errors.PluginNotFoundError`, and is never
registered into a side. ``plugins list`` still shows it, with ``disabled: true``; its status then
reflects only the checks that ran (the metadata and the contract range, warnings included).

Entry points are listed with :mod:`importlib.metadata` and imported through stevedore; see
:class:`_OneEntryPoint` for why stevedore's own listing is not used.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from pydantic import ValidationError
from stevedore import ExtensionManager

from ml_connector import default_account_matcher, hookspecs
from ml_connector.contract import (
    CONTRACT_VERSION,
    contract_compatibility,
    features_above_lower_bound,
    range_problems,
)
from ml_connector.description import PluginDescription, PluginInfo, Role
from ml_connector.errors import IncompatiblePluginError, PluginError, PluginNotFoundError

__all__ = [
    "DISABLE_ENV",
    "EXTENSIONS_GROUP",
    "LOAD_ENV",
    "PLUGINS_GROUP",
    "PLUGIN_INFO_GROUP",
    "LoadedExtension",
    "LoadedPlugin",
    "PluginKind",
    "PluginRecord",
    "PluginStatus",
    "Registry",
]

log = logging.getLogger(__name__)

PLUGIN_INFO_GROUP = "ml_connector.plugin_info"
"""Entry-point group of the plugins' metadata dicts (name = system key)."""
PLUGINS_GROUP = "ml_connector.plugins"
"""Entry-point group of the plugins' hook modules (name = system key)."""
EXTENSIONS_GROUP = "ml_connector.extensions"
"""Entry-point group of cross-cutting extensions, registered into every side."""
DISABLE_ENV = "ML_CONNECTOR_DISABLE_PLUGINS"
"""Comma-separated names of installed plugins and extensions to switch off."""
LOAD_ENV = "ML_CONNECTOR_LOAD_PLUGINS"
"""Comma-separated allow-list: when set, every other installed plugin and extension is off."""

_DEFAULT_MATCHER_NAME = "ml_connector.default_account_matcher"
_EntryPoint = importlib.metadata.EntryPoint
_OnFailure = Callable[[ExtensionManager[Any], _EntryPoint, BaseException], None]


class PluginStatus(StrEnum):
    """The outcome of checking one plugin."""

    OK = "ok"
    INCOMPATIBLE = "incompatible"
    BROKEN = "broken"


class PluginKind(StrEnum):
    """What a plugin is for."""

    #: Serves one side of a connection (an ERP source or the BILL sink).
    SYSTEM = "system"
    #: Cross-cutting; registered into every side.
    EXTENSION = "extension"


@dataclass(frozen=True)
class PluginRecord:
    """One line of ``ml-connector plugins list``.

    Attributes:
        name: The system key (or the extension's name).
        kind: System plugin or extension.
        distribution: The distribution that provides it; ``None`` if registered in code.
        version: The distribution's version.
        role: Source or sink, once the metadata could be read; ``None`` for extensions.
        contract: The contract range the plugin declares.
        display_name: The system's name for people.
        status: ``ok``, ``incompatible`` or ``broken``.
        error: Why it is not ``ok``; ``None`` when it is.
        disabled: Switched off by ``ML_CONNECTOR_DISABLE_PLUGINS`` or ``ML_CONNECTOR_LOAD_PLUGINS``.
        warnings: How its contract range breaks the contract range rule, one sentence each; they
            do not keep the plugin from loading. Empty for a range that keeps the rule, and for an
            incompatible plugin or one whose range is not valid (``error`` says why).
    """

    name: str
    kind: PluginKind
    distribution: str | None
    version: str | None
    role: Role | None
    contract: str | None
    display_name: str | None
    status: PluginStatus
    error: str | None
    disabled: bool
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The record as the JSON object ``plugins list --json`` prints."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "distribution": self.distribution,
            "version": self.version,
            "role": None if self.role is None else self.role.value,
            "contract": self.contract,
            "display_name": self.display_name,
            "status": self.status.value,
            "error": self.error,
            "disabled": self.disabled,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class LoadedPlugin:
    """A system plugin that passed every check and may serve a side.

    Attributes:
        info: Its entry-point metadata.
        description: What its ``describe_plugin`` returned.
        plugin: The module or object holding its hook implementations.
        distribution: The distribution that provides it; ``None`` if registered in code.
        version: The distribution's version.
        warnings: How its contract range breaks the contract range rule (as
            :attr:`PluginRecord.warnings`).
    """

    info: PluginInfo
    description: PluginDescription
    plugin: object
    distribution: str | None
    version: str | None
    warnings: tuple[str, ...] = ()

    @property
    def system(self) -> str:
        """The system key."""
        return self.info.system

    @property
    def role(self) -> Role:
        """Source or sink."""
        return self.info.role


@dataclass(frozen=True)
class LoadedExtension:
    """A cross-cutting extension whose hook implementations passed validation."""

    name: str
    plugin: object
    distribution: str | None
    version: str | None


class _Broken(Exception):
    """A check failed; the message is the record's ``error``."""


class _Incompatible(Exception):
    """The contract range excludes this core; the message is the record's ``error``."""


@dataclass(eq=False)
class _Entry:
    """One plugin or extension as found, and what checking it produced (filled in once)."""

    name: str
    kind: PluginKind
    distribution: str | None
    version: str | None
    info_source: _EntryPoint | PluginInfo | None = None
    target: _EntryPoint | None = None
    given: object | None = None
    switched_off: str | None = None
    conflict: str | None = None
    info: PluginInfo | None = None
    warnings: tuple[str, ...] = ()
    record: PluginRecord | None = None
    loaded: LoadedPlugin | LoadedExtension | None = None


class _OneEntryPoint(ExtensionManager[Any]):
    """stevedore's loader over one entry point we chose, rather than over its own listing.

    stevedore 5.10 lists a group through ``stevedore._cache``, which does not fit here:

    - It rebuilds entry points from ``(name, value, group)`` only, so ``entry_point.dist`` is
      ``None``: the distribution name and version ``plugins list`` shows are lost.
    - ``ExtensionManager.ENTRY_POINT_CACHE`` memoises each group's listing for the life of the
      process, so a plugin installed after the first listing never appears.
    - Its on-disk cache (under ``$XDG_CACHE_HOME/python-entrypoints``) is keyed by ``sys.path``
      and by file mtimes packed as 32-bit floats, about two minutes of resolution, so an
      ``entry_points.txt`` rewritten within that window can be served stale.

    So entry points are listed with :mod:`importlib.metadata` (their ``dist`` intact, nothing
    cached, nothing written to the user's cache dir) and handed to stevedore one at a time: the
    registry decides which modules to import at all (metadata first, hook modules only for
    compatible plugins that are switched on), and stevedore re-raises an ``AssertionError`` from
    a plugin's import, which must not stop the other plugins' loading.
    """

    def __init__(self, entry_point: _EntryPoint, on_failure: _OnFailure) -> None:
        self._chosen = [entry_point]
        super().__init__(
            entry_point.group, invoke_on_load=False, on_load_failure_callback=on_failure
        )

    def list_entry_points(self) -> list[_EntryPoint]:
        """Return the chosen entry point, instead of stevedore's cached listing."""
        return self._chosen


def _load_entry_point(entry_point: _EntryPoint) -> Any:
    """Import an entry point's target through stevedore; raise :class:`_Broken` on failure."""
    failures: list[BaseException] = []

    def on_failure(_manager: ExtensionManager[Any], _ep: _EntryPoint, exc: BaseException) -> None:
        failures.append(exc)

    try:
        manager = _OneEntryPoint(entry_point, on_failure)
        if not failures:
            return manager.extensions[0].plugin
    # stevedore lets AssertionError through; a plugin may even call sys.exit() on import.
    except (Exception, SystemExit) as exc:
        failures.append(exc)
    cause = failures[0]
    raise _Broken(
        f"cannot import {entry_point.value}: {type(cause).__name__}: {_one_line(cause)}"
    ) from cause


def _one_line(exc: BaseException) -> str:
    # pluggy's validation messages span lines; a listing row must not.
    return " ".join(str(exc).split())


def _switch(value: str | None) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in (value or "").split(",") if part.strip())


def _contract_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _validate_hooks(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin`` and reject hooks or arguments the contract does not know."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except Exception as exc:  # pluggy raises PluginValidationError, ValueError, or a plugin's own
        raise _Broken(f"invalid hook implementations: {_one_line(exc)}") from exc


def _describe(pm: pluggy.PluginManager, info: PluginInfo) -> PluginDescription:
    caller = pm.hook.describe_plugin
    if not caller.get_hookimpls():
        raise _Broken("does not implement describe_plugin")
    try:
        description = caller()
    except Exception as exc:
        raise _Broken(f"describe_plugin raised {type(exc).__name__}: {_one_line(exc)}") from exc
    if inspect.iscoroutine(description):
        description.close()  # never awaited on purpose: describe_plugin must be a plain def
        raise _Broken("describe_plugin is async; it must be a plain def")
    if not isinstance(description, PluginDescription):
        raise _Broken(
            f"describe_plugin returned {type(description).__name__}, not a PluginDescription"
        )
    if (description.system, description.role) != (info.system, info.role):
        raise _Broken(
            f"describe_plugin says system {description.system!r} with role "
            f"{description.role.value!r}, but its metadata says system {info.system!r} with role "
            f"{info.role.value!r}"
        )
    return description


def _check_lower_bound(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    info: PluginInfo,
    description: PluginDescription,
) -> None:
    """Refuse a plugin that uses a hook or capability its range's lower bound lacks.

    On an older core inside its range, such a plugin would not load (a hook that core does not
    know) or would run without what it relies on. ``optionalhook=True`` implementations are
    passed as such: so marked, an older core loads the plugin and never calls them.
    """
    hooks: set[str] = set()
    required: set[str] = set()
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin_name != name:
                continue
            hooks.add(caller.name)
            if not impl.optionalhook:
                required.add(caller.name)
    optional = hooks - required  # a hook is optional only if every implementation of it says so
    capabilities = [capability.value for capability in description.capabilities]
    found = features_above_lower_bound(info.contract, hooks, capabilities, optional_hooks=optional)
    if found:
        raise _Broken("; ".join(found))


def _read_info(entry: _Entry) -> PluginInfo:
    source = entry.info_source
    if source is None:
        raise _Broken(
            f"no metadata: distribution {entry.distribution} has no {PLUGIN_INFO_GROUP!r} "
            f"entry point named {entry.name!r}"
        )
    if isinstance(source, PluginInfo):
        info = source
    else:
        raw = _load_entry_point(source)
        if not isinstance(raw, Mapping):
            raise _Broken(f"metadata {source.value} is a {type(raw).__name__}, not a dict")
        try:
            info = PluginInfo.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'metadata'}: {error['msg']}"
                for error in exc.errors()
            )
            raise _Broken(f"invalid metadata in {source.value}: {problems}") from exc
    if info.system != entry.name:
        raise _Broken(
            f"metadata says system {info.system!r}, but the entry point is named {entry.name!r}"
        )
    return info


def _check_contract(info: PluginInfo, distribution: str | None) -> None:
    reason = contract_compatibility(info.contract)
    if reason is None:
        return
    try:
        valid_range = bool(str(SpecifierSet(info.contract)))
    except InvalidSpecifier:
        valid_range = False
    if not valid_range:
        raise _Broken(f"invalid metadata: {reason}")
    release = f"a release of {distribution}" if distribution else "a version of the plugin"
    raise _Incompatible(f"{reason}; install {release} that supports contract {CONTRACT_VERSION}")


class Registry:
    """The plugins and extensions found on the path, checked on demand and remembered.

    A registry is a snapshot: it lists entry points once, on first use; create a new one to see
    plugins installed since. Listing imports nothing; :meth:`plugins` checks every plugin,
    :meth:`load` only the one asked for.

    Args:
        path: Where to look for installed distributions; ``sys.path`` by default. The plugins'
            code is imported the usual way, so their directories must be importable too.
    """

    def __init__(self, path: Iterable[str | os.PathLike[str]] | None = None) -> None:
        self._path = None if path is None else [os.fspath(p) for p in path]
        self._disabled = _switch(os.environ.get(DISABLE_ENV))
        self._allowed = _switch(os.environ.get(LOAD_ENV))
        self._installed: list[_Entry] | None = None
        self._added: list[_Entry] = []

    # --- What is there ----------------------------------------------------------------------------

    def plugins(self) -> list[PluginRecord]:
        """Check every plugin and extension and report each one.

        Returns:
            System plugins first, then extensions, each in name order; a system key claimed by two
            distributions appears twice, in path order.
        """
        records = [self._check(entry) for entry in self._entries()]
        return sorted(records, key=lambda r: (r.kind is not PluginKind.SYSTEM, r.name))

    def load(self, system: str, role: Role) -> LoadedPlugin:
        """Return the checked plugin that serves ``system`` as ``role``.

        Args:
            system: The system key, e.g. ``"acumatica"``.
            role: The side the plugin must serve.

        Returns:
            The plugin, imported and described.

        Raises:
            PluginNotFoundError: No plugin has that key, or it is switched off.
            IncompatiblePluginError: Its contract range excludes this core.
            PluginError: It is broken, or it serves the other role.
        """
        entry = self._owner(PluginKind.SYSTEM, system)
        if entry is None:
            known = sorted({e.name for e in self._entries() if e.kind is PluginKind.SYSTEM})
            installed = f" (installed: {', '.join(known)})" if known else " (none is installed)"
            raise PluginNotFoundError(f"no plugin {system!r} is installed{installed}")
        if entry.switched_off:
            raise PluginNotFoundError(f"plugin {system!r} is {entry.switched_off}")
        record = self._check(entry)
        if record.status is PluginStatus.INCOMPATIBLE:
            raise IncompatiblePluginError(f"plugin {system!r} is incompatible: {record.error}")
        if not isinstance(entry.loaded, LoadedPlugin):
            raise PluginError(f"plugin {system!r} is broken: {record.error}")
        if entry.loaded.role != role:
            raise PluginError(
                f"plugin {system!r} is a {entry.loaded.role.value} plugin; "
                f"it cannot serve as the {role.value}"
            )
        return entry.loaded

    def extensions(self) -> list[LoadedExtension]:
        """Return the extensions every side gets, in name order.

        A second distribution claiming an extension's name is skipped (the first one serves), as
        for system plugins.

        Raises:
            PluginError: An extension that is switched on is broken. Runs are refused rather than
                run without it: an extension may carry audit records or a customer's own account
                mapping, and running without it would silently change what a run does.
        """
        loaded: list[LoadedExtension] = []
        for entry in self._entries():
            if entry.kind is not PluginKind.EXTENSION or entry.switched_off or entry.conflict:
                continue
            record = self._check(entry)
            if not isinstance(entry.loaded, LoadedExtension):
                raise PluginError(
                    f"extension {entry.name!r} is broken: {record.error}; fix it, or switch it "
                    f"off with {DISABLE_ENV}={entry.name}"
                )
            loaded.append(entry.loaded)
        return sorted(loaded, key=lambda e: e.name)

    def plugin_manager(self, plugin: LoadedPlugin) -> pluggy.PluginManager:
        """Assemble a new plugin manager for one side of one connection.

        It holds the contract's hookspecs, the core's default account matcher, ``plugin`` and the
        extensions, registered in that order, so a hook call reaches this side's system plugin and
        no other, while extensions can override it (``tryfirst``) or wrap it (``wrapper=True``).
        Note that pluggy calls later registrations first among equals, so an extension's plain
        implementation of a first-result hook also answers before the system plugin's.

        Args:
            plugin: A plugin returned by :meth:`load`.

        Returns:
            A fresh manager; nothing is shared with other sides.

        Raises:
            PluginError: An extension is broken, or the implementations cannot be registered
                together.
        """
        extensions = self.extensions()
        pm = _contract_manager()
        try:
            pm.register(default_account_matcher, name=_DEFAULT_MATCHER_NAME)
            pm.register(plugin.plugin, name=plugin.system)
            for extension in extensions:
                pm.register(extension.plugin, name=f"extension:{extension.name}")
            pm.check_pending()
        except Exception as exc:
            raise PluginError(
                f"cannot assemble the {plugin.role.value} side for plugin {plugin.system!r}: "
                f"{_one_line(exc)}"
            ) from exc
        return pm

    # --- Registering in code ----------------------------------------------------------------------

    def add(
        self,
        plugin: object,
        info: PluginInfo,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a system plugin in code, as if it were installed (tests, the demo).

        It is checked like an installed plugin (contract range, hook implementations,
        ``describe_plugin``) when it is listed or loaded. The switches do not apply to it; a key an
        installed distribution already provides makes it broken, as any second claimant.

        Args:
            plugin: The module or object holding the hook implementations.
            info: Its metadata.
            distribution: A distribution name to show, if any.
            version: A version to show, if any.
        """
        self._add(
            _Entry(
                name=info.system,
                kind=PluginKind.SYSTEM,
                distribution=distribution,
                version=version,
                info_source=info,
                given=plugin,
            )
        )

    def add_extension(
        self,
        extension: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register an extension in code, as if it were installed (tests, the demo).

        Args:
            extension: The module or object holding the hook implementations.
            name: The extension's name.
            distribution: A distribution name to show, if any.
            version: A version to show, if any.
        """
        self._add(
            _Entry(
                name=name,
                kind=PluginKind.EXTENSION,
                distribution=distribution,
                version=version,
                given=extension,
            )
        )

    # --- Internals --------------------------------------------------------------------------------

    def _add(self, entry: _Entry) -> None:
        owner = self._owner(entry.kind, entry.name)
        if owner is not None:
            entry.conflict = _conflict_message(entry.kind, entry.name, owner)
        self._added.append(entry)

    def _entries(self) -> list[_Entry]:
        if self._installed is None:
            self._installed = self._scan()
        return [*self._installed, *self._added]

    def _owner(self, kind: PluginKind, name: str) -> _Entry | None:
        return next((e for e in self._entries() if e.kind is kind and e.name == name), None)

    def _switched_off(self, name: str) -> str | None:
        if name.lower() in self._disabled:
            return f"disabled by {DISABLE_ENV}"
        if self._allowed and name.lower() not in self._allowed:
            return f"not listed in {LOAD_ENV}"
        return None

    def _scan(self) -> list[_Entry]:
        """List our entry points per distribution, without importing anything."""
        entries: dict[tuple[PluginKind, str, str], _Entry] = {}
        seen: set[str] = set()
        path = sys.path if self._path is None else self._path
        for dist in importlib.metadata.distributions(path=list(path)):
            name = dist.name
            key = canonicalize_name(name) if name else f"(unnamed {len(seen)})"
            # The same distribution further down the path (an editable and a regular install, or
            # a directory listed twice) is shadowed, as it is for imports: the first one serves.
            if key in seen:
                continue
            seen.add(key)
            try:
                entry_points = list(dist.entry_points)
            except Exception:  # a malformed entry_points.txt of some unrelated distribution
                log.warning("cannot read the entry points of distribution %s", name, exc_info=True)
                continue
            for ep in entry_points:
                if ep.group not in (PLUGIN_INFO_GROUP, PLUGINS_GROUP, EXTENSIONS_GROUP):
                    continue
                kind = PluginKind.EXTENSION if ep.group == EXTENSIONS_GROUP else PluginKind.SYSTEM
                entry = entries.setdefault(
                    (kind, ep.name, key),
                    _Entry(
                        name=ep.name,
                        kind=kind,
                        distribution=name,
                        version=dist.version,
                        switched_off=self._switched_off(ep.name),
                    ),
                )
                if ep.group == PLUGIN_INFO_GROUP:
                    entry.info_source = entry.info_source or ep
                else:
                    entry.target = entry.target or ep
        found = list(entries.values())
        owners: dict[tuple[PluginKind, str], _Entry] = {}
        for entry in found:
            owner = owners.setdefault((entry.kind, entry.name), entry)
            if owner is not entry:
                entry.conflict = _conflict_message(entry.kind, entry.name, owner)
        return found

    def _check(self, entry: _Entry) -> PluginRecord:
        if entry.record is None:
            status, error = PluginStatus.OK, None
            try:
                self._run_checks(entry)
            except _Incompatible as exc:
                status, error = PluginStatus.INCOMPATIBLE, str(exc)
            except _Broken as exc:
                status, error = PluginStatus.BROKEN, str(exc)
                log.debug("plugin %r is broken: %s", entry.name, error)
            info = entry.info
            entry.record = PluginRecord(
                name=entry.name,
                kind=entry.kind,
                distribution=entry.distribution,
                version=entry.version,
                role=info.role if info else None,
                contract=info.contract if info else None,
                display_name=info.display_name if info else None,
                status=status,
                error=error,
                disabled=entry.switched_off is not None,
                warnings=entry.warnings,
            )
            for warning in entry.warnings:
                log.warning("plugin %r: %s", entry.name, warning)
        return entry.record

    def _run_checks(self, entry: _Entry) -> None:
        # A second claimant is not even read: it may ship a package of the same name as the
        # first, and importing would just return the first one's module from sys.modules.
        if entry.conflict:
            raise _Broken(entry.conflict)
        if entry.kind is PluginKind.EXTENSION:
            if not entry.switched_off:
                pm = _contract_manager()
                plugin = self._import_target(entry, EXTENSIONS_GROUP)
                _validate_hooks(pm, plugin, f"extension:{entry.name}")
                entry.loaded = LoadedExtension(
                    entry.name, plugin, entry.distribution, entry.version
                )
            return
        info = entry.info = _read_info(entry)
        _check_contract(info, entry.distribution)
        entry.warnings = tuple(range_problems(info.contract))
        if entry.switched_off:
            return
        plugin = self._import_target(entry, PLUGINS_GROUP)
        pm = _contract_manager()
        _validate_hooks(pm, plugin, entry.name)
        description = _describe(pm, info)
        _check_lower_bound(pm, plugin, entry.name, info, description)
        entry.loaded = LoadedPlugin(
            info, description, plugin, entry.distribution, entry.version, entry.warnings
        )

    @staticmethod
    def _import_target(entry: _Entry, group: str) -> object:
        if entry.given is not None:
            return entry.given
        if entry.target is None:
            raise _Broken(
                f"distribution {entry.distribution} has no {group!r} entry point named "
                f"{entry.name!r}"
            )
        target: object = _load_entry_point(entry.target)
        return target


def _conflict_message(kind: PluginKind, name: str, owner: _Entry) -> str:
    what = "system key" if kind is PluginKind.SYSTEM else "extension name"
    provider = (
        f"distribution {owner.distribution}"
        if owner.distribution
        else "a plugin registered in code"
    )
    return f"{what} {name!r} is already provided by {provider}"
