"""Test-only plugins, installed the way a real one is: a package plus a ``*.dist-info``.

:class:`FakeDists` writes a distribution from a few parameters into a directory of its own (a
"site"), which tests put on ``sys.path`` (in-process) or ``PYTHONPATH`` (subprocesses).
"""

from __future__ import annotations

import importlib
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# A light package: the metadata dict and nothing else.
INFO_TEMPLATE = "PLUGIN_INFO = {info!r}\n"

# A complete, minimal plugin for either role. CALLS records what reached this plugin.
GOOD_PLUGIN = """
from pydantic import BaseModel

from ml_connector import PluginDescription, Role, hookimpl
from ml_connector.models import AccountCatalog, AuthResult, ConnectionCheck

CALLS = []


class Settings(BaseModel):
    pass


class Credentials(BaseModel):
    pass


@hookimpl
def describe_plugin():
    return PluginDescription(
        system={system!r},
        role=Role({role!r}),
        settings_model=Settings,
        credentials_model=Credentials,
    )


@hookimpl
async def authenticate(ctx):
    CALLS.append("authenticate")
    return AuthResult(principal={system!r})


@hookimpl
async def check_connection(ctx):
    CALLS.append("check_connection")
    return ConnectionCheck(ok=True, detail={system!r})


@hookimpl
async def list_accounts(ctx):
    CALLS.append("list_accounts")
    return AccountCatalog()
"""


def plugin_code(system: str, role: str, extra: str = "") -> str:
    """The source of :data:`GOOD_PLUGIN` for ``system`` and ``role``, plus ``extra`` code."""
    return GOOD_PLUGIN.format(system=system, role=role) + textwrap.dedent(extra)


RAISES_ON_IMPORT = 'raise RuntimeError("this module must not be imported")\n'


@dataclass(frozen=True)
class FakeDist:
    """What was written."""

    system: str
    distribution: str
    version: str
    package: str
    site: Path

    @property
    def plugin_module(self) -> str:
        """The dotted name of the heavy module with the hook implementations."""
        return f"{self.package}.plugin"


class FakeDists:
    """Writes fake plugin distributions, each package under a name unique to this test."""

    def __init__(self, root: Path, on_new_site: Callable[[Path], None] | None = None) -> None:
        self.root = root
        self.token = uuid.uuid4().hex[:8]
        self.sites: list[Path] = []
        self._on_new_site = on_new_site

    def site(self, name: str = "site") -> Path:
        """A directory to install into, created (and announced) on first use."""
        path = self.root / name
        if path not in self.sites:
            path.mkdir(parents=True, exist_ok=True)
            self.sites.append(path)
            if self._on_new_site is not None:
                self._on_new_site(path)
        return path

    def package_name(self, system: str) -> str:
        return f"mlc_fake_{system}_{self.token}"

    def write(
        self,
        system: str = "acme",
        *,
        role: str = "source",
        distribution: str | None = None,
        version: str = "1.0.0",
        contract: str = ">=1.0,<2",
        display_name: str | None = None,
        info: object | None = None,
        plugin_source: str | None = None,
        package: str | None = None,
        entry_points: dict[str, dict[str, str]] | None = None,
        site: Path | None = None,
    ) -> FakeDist:
        """Write one distribution providing a system plugin (or anything else).

        Args:
            system: The system key (the entry points' name).
            role: ``"source"`` or ``"sink"``.
            distribution: Its name; ``ml-connector-<system>`` by default.
            version: Its version.
            contract: The contract range its metadata declares.
            display_name: Its display name; the system key capitalised by default.
            info: The metadata object, instead of the dict built from the above.
            plugin_source: The heavy module's source, instead of :func:`plugin_code`'s.
            package: The package name, instead of a unique one.
            entry_points: The entry points, group -> {name: value}, instead of the standard two.
            site: Where to write; :meth:`site` by default.
        """
        distribution = distribution or f"ml-connector-{system}"
        package = package or self.package_name(system)
        site = site or self.site()
        if info is None:
            info = {
                "system": system,
                "display_name": display_name or system.capitalize(),
                "role": role,
                "contract": contract,
            }
        if plugin_source is None:
            plugin_source = plugin_code(system, role)
        pkg_dir = site / package
        pkg_dir.mkdir(parents=True, exist_ok=True)
        (pkg_dir / "__init__.py").write_text(INFO_TEMPLATE.format(info=info))
        (pkg_dir / "plugin.py").write_text(textwrap.dedent(plugin_source))
        if entry_points is None:
            entry_points = {
                "ml_connector.plugin_info": {system: f"{package}:PLUGIN_INFO"},
                "ml_connector.plugins": {system: f"{package}.plugin"},
            }
        self.write_dist_info(site, distribution, version, entry_points)
        return FakeDist(system, distribution, version, package, site)

    def write_extension(
        self, name: str, source: str, *, distribution: str | None = None, site: Path | None = None
    ) -> FakeDist:
        """Write a distribution providing one extension module."""
        distribution = distribution or f"ml-connector-ext-{name}"
        package = f"mlc_fake_ext_{name}_{self.token}"
        site = site or self.site()
        (site / package).mkdir(parents=True, exist_ok=True)
        (site / package / "__init__.py").write_text(textwrap.dedent(source))
        self.write_dist_info(
            site, distribution, "0.3.0", {"ml_connector.extensions": {name: package}}
        )
        return FakeDist(name, distribution, "0.3.0", package, site)

    @staticmethod
    def write_dist_info(
        site: Path, distribution: str, version: str, entry_points: dict[str, dict[str, str]]
    ) -> None:
        dist_info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True, exist_ok=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        sections = [
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in names.items())
            for group, names in entry_points.items()
        ]
        (dist_info / "entry_points.txt").write_text("\n".join(sections))
        # Directory listings are cached by mtime, which may not tick between two writes.
        importlib.invalidate_caches()
