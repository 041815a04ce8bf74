"""Finding a system's emulator: the ``ml_connector.emulators`` entry-point group.

A plugin distribution registers ``<system> = ml_connector_<system>.emulator:create_emulator``,
a callable taking :class:`~ml_connector.emulation.EmulatorOptions` and returning an
:class:`~ml_connector.emulation.Emulator`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ml_connector.errors import PluginNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ml_connector.emulation._emulator import Emulator, EmulatorOptions

__all__ = ["EMULATORS_GROUP", "available_emulators", "load_emulator"]

EMULATORS_GROUP = "ml_connector.emulators"


def available_emulators() -> list[str]:
    """The system keys that have an installed emulator, sorted."""
    return sorted({ep.name for ep in entry_points(group=EMULATORS_GROUP)})


def load_emulator(system: str) -> Callable[[EmulatorOptions], Emulator]:
    """The factory of ``system``'s emulator.

    Raises:
        PluginNotFoundError: No installed distribution provides one.
    """
    for entry_point in entry_points(group=EMULATORS_GROUP):
        if entry_point.name == system:
            factory: Callable[[EmulatorOptions], Emulator] = entry_point.load()
            return factory
    known = ", ".join(available_emulators()) or "none installed"
    raise PluginNotFoundError(f"no emulator for {system!r} (available: {known})")
