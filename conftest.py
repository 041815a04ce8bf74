"""Fixtures for every test of the workspace (core/tests, plugins/*/tests, tests): no real home.

pytest loads the rootdir's ``conftest.py`` for every test path, so what is here applies to all of
them:

- for the whole session, ``HOME`` and the XDG data and state directories point at a temporary
  directory, so anything that resolves the platform's user data directory (``platformdirs``, as
  :func:`ml_connector.vault.data_home` does without ``ML_CONNECTOR_HOME``) cannot reach the real
  one; the user's cache and configuration directories stay where they are (uv's package cache);
- for every test, ``ML_CONNECTOR_HOME`` is a fresh directory (the ``ml_connector_home`` fixture),
  and ``ML_CONNECTOR_MASTER_KEY`` and ``ML_CONNECTOR_DB``, which a developer may have set, are
  cleared;
- at the end of the session, the run fails if the real data directory gained a key file or a
  database that was not there at the start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

# The ml_connector names, spelled out so that this file imports nothing of the package under test.
_APP = "ml-connector"
_ENV_HOME = "ML_CONNECTOR_HOME"
_ENV_MASTER_KEY = "ML_CONNECTOR_MASTER_KEY"
_ENV_DB = "ML_CONNECTOR_DB"
_WATCHED_FILES = ("master.key", "ml-connector.db")

_REAL_FILES = pytest.StashKey[dict[Path, bool]]()


def _real_data_homes() -> list[Path]:
    """The data directories ml-connector would use outside the tests, with the caller's env."""
    homes = [platformdirs.user_data_path(_APP, appauthor=False)]
    configured = os.environ.get(_ENV_HOME, "").strip()
    if configured:
        homes.append(Path(configured).expanduser())
    return homes


def pytest_configure(config: pytest.Config) -> None:
    """Note which of the real key files and databases exist before any test runs (stat only)."""
    config.stash[_REAL_FILES] = {
        home / name: (home / name).exists()
        for home in _real_data_homes()
        for name in _WATCHED_FILES
    }


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if a test created a key file or database in the real data directory."""
    before = session.config.stash.get(_REAL_FILES, {})
    created = sorted(str(path) for path, existed in before.items() if not existed and path.exists())
    if not created:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "the test run wrote into the real ml-connector data directory: " + ", ".join(created)
    if reporter is not None:
        reporter.write_sep("=", message, red=True)


@pytest.fixture(autouse=True, scope="session")
def _temporary_user_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``HOME`` and the XDG data and state directories at a temporary directory."""
    home = tmp_path_factory.mktemp("user-home")
    # Caches and configuration are not ml-connector's: keep the real ones (uv's package cache
    # makes the packaging tests' installs fast and offline), spelled out before HOME moves.
    kept = {
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(platformdirs.user_cache_path()),
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME")
        or str(platformdirs.user_config_path()),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in kept.items():
            patch.setenv(name, value)
        patch.setenv("HOME", str(home))
        patch.setenv("USERPROFILE", str(home))
        patch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        patch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
        yield home


@pytest.fixture(autouse=True)
def ml_connector_home(
    _temporary_user_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Point ML_CONNECTOR_HOME at a fresh directory, so no test touches a real key or database.

    Also clears ML_CONNECTOR_MASTER_KEY and ML_CONNECTOR_DB, which a developer may have set.
    """
    home = tmp_path_factory.mktemp("ml-connector-home")
    monkeypatch.setenv(_ENV_HOME, str(home))
    monkeypatch.delenv(_ENV_MASTER_KEY, raising=False)
    monkeypatch.delenv(_ENV_DB, raising=False)
    return home
