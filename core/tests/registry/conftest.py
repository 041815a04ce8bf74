"""Fixtures for the registry and driver tests: fake installed plugins, a clean environment."""

from __future__ import annotations

import sys

import pytest
from core.tests.registry.fake_dists import FakeDists

from ml_connector.registry import DISABLE_ENV, LOAD_ENV, Registry


@pytest.fixture(autouse=True)
def _no_plugin_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    # A switch exported in the developer's shell must not change what these tests see.
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(LOAD_ENV, raising=False)


@pytest.fixture
def fake_dists(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Write fake plugin distributions into sites that are on sys.path for the test's duration."""
    dists = FakeDists(tmp_path / "sites", on_new_site=lambda p: monkeypatch.syspath_prepend(p))
    before = set(sys.modules)
    yield dists
    for name in set(sys.modules) - before:
        if name.startswith("mlc_fake_"):
            del sys.modules[name]


@pytest.fixture
def registry_for(fake_dists):
    """Make a registry that sees only the fake distributions, not what the venv has installed.

    The sites are searched in sys.path order, as imports see them.
    """

    def make() -> Registry:
        sites = {str(p) for p in fake_dists.sites}
        return Registry(path=[p for p in sys.path if p in sites])

    return make
