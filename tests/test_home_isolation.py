"""The test suite never touches the user's home: every test runs with temporary directories.

The root ``conftest.py`` gives each test its own ``ML_CONNECTOR_HOME`` and the session a temporary
``HOME`` and XDG data directory; these tests hold it to that, here in ``tests/`` (whose tests once
used the vault with the real home) and for the code paths that ignore ``ML_CONNECTOR_HOME``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from ml_connector.store import default_database
from ml_connector.vault import ENV_HOME, Vault, data_home, default_key_file

REPO = Path(__file__).resolve().parents[1]


def _is_under(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def test_the_default_key_file_and_database_are_in_a_temporary_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    temp = tmp_path_factory.getbasetemp()
    assert _is_under(default_key_file(), temp), default_key_file()
    assert _is_under(Path(default_database()), temp), default_database()
    for name in ("ML_CONNECTOR_MASTER_KEY", "ML_CONNECTOR_DB"):
        assert name not in os.environ


def test_the_vault_creates_its_key_file_in_the_temporary_home(ml_connector_home: Path) -> None:
    Vault.from_environment()
    assert (ml_connector_home / "master.key").is_file()


def test_each_test_gets_its_own_home(ml_connector_home: Path) -> None:
    assert list(ml_connector_home.iterdir()) == []  # the test above wrote into another one


def test_without_ml_connector_home_the_platform_data_dir_is_temporary(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data_home()`` falls back on platformdirs, which follows HOME and XDG_DATA_HOME."""
    monkeypatch.delenv(ENV_HOME, raising=False)
    temp = tmp_path_factory.getbasetemp()
    assert _is_under(Path.home(), temp), Path.home()
    assert _is_under(platformdirs.user_data_path("ml-connector", appauthor=False), temp)
    assert _is_under(data_home(), temp), data_home()
    key_file = Vault.from_environment().key_file
    assert key_file is not None
    assert _is_under(key_file, temp), key_file


# --- The session-end guard, in a pytest run of its own ------------------------------------------

CLEAN_TEST = """
def test_nothing():
    pass
"""

# The "real" data dir is the one the child pytest had before its conftest moved HOME.
WRITING_TEST = """
import os
from pathlib import Path

def test_writes_into_the_real_data_dir():
    folder = Path(os.environ["WATCHED_DATA_DIR"])
    folder.mkdir(parents=True)
    (folder / "master.key").write_text("not a key")
"""


def _child_pytest(
    folder: Path, test_source: str, fake_home: Path
) -> subprocess.CompletedProcess[str]:
    project = folder / "project"
    project.mkdir(parents=True)
    shutil.copy(REPO / "conftest.py", project / "conftest.py")
    (project / "test_it.py").write_text(test_source)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ML_CONNECTOR_", "XDG_", "PYTEST_")) and k != "USERPROFILE"
    }
    env["HOME"] = str(fake_home)
    env["WATCHED_DATA_DIR"] = str(fake_home / ".local" / "share" / "ml-connector")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:asyncio", "-q",
         f"--basetemp={folder / 'basetemp'}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


@pytest.mark.skipif(sys.platform != "linux", reason="the child's data dir is the XDG one")
def test_the_session_fails_if_the_real_data_dir_gains_a_key_file(tmp_path: Path) -> None:
    clean = _child_pytest(tmp_path / "clean", CLEAN_TEST, tmp_path / "home-clean")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    fake_home = tmp_path / "home-written"
    written = _child_pytest(tmp_path / "written", WRITING_TEST, fake_home)
    assert (fake_home / ".local" / "share" / "ml-connector" / "master.key").exists()
    assert written.returncode == pytest.ExitCode.TESTS_FAILED, written.stdout + written.stderr
    assert "1 passed" in written.stdout  # the test itself passed: the session check failed it
    assert "wrote into the real ml-connector data directory" in written.stdout
