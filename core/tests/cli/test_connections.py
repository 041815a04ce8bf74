"""``ml-connector connections …`` and ``ping``, against test plugins installed as real ones are."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from core.tests.registry.fake_dists import FakeDists

from ml_connector.cli import main

ERP_PASSWORD = "erp-S3cret-passw0rd-4711"
BILL_PASSWORD = "bill-S3cret-passw0rd-0815"
DEV_KEY = "devkey-0123456789-abcdef"

SECRET_PLUGIN = """
from pydantic import BaseModel, Field, SecretStr

from ml_connector import PluginDescription, Role, hookimpl, AuthenticationError
from ml_connector.models import AuthResult, ConnectionCheck


class Settings(BaseModel):
    base_url: str = Field(description="where the API lives")
    company: str = "MAIN"


class Credentials(BaseModel):
    username: str
    password: SecretStr
{extra_credentials}


@hookimpl
def describe_plugin():
    return PluginDescription(
        system={system!r}, role=Role({role!r}), settings_model=Settings,
        credentials_model=Credentials,
    )


@hookimpl
async def authenticate(ctx):
    if ctx.credentials.password.get_secret_value() == "wrong":
        raise AuthenticationError("password rejected", system={system!r}, status=401)
    return AuthResult(principal=ctx.credentials.username)


@hookimpl
async def check_connection(ctx):
    return ConnectionCheck(ok=True, detail="reached " + ctx.settings.base_url)
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDists:
    dists = FakeDists(tmp_path / "sites", on_new_site=lambda p: monkeypatch.syspath_prepend(p))
    dists.write(
        "erp",
        role="source",
        plugin_source=SECRET_PLUGIN.format(system="erp", role="source", extra_credentials=""),
    )
    dists.write(
        "billx",
        role="sink",
        plugin_source=SECRET_PLUGIN.format(
            system="billx", role="sink", extra_credentials="    dev_key: SecretStr"
        ),
    )
    yield dists
    for name in [m for m in sys.modules if m.startswith("mlc_fake_")]:
        del sys.modules[name]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state.db"
    monkeypatch.setenv("ML_CONNECTOR_DB", str(path))
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def credentials_file(tmp_path: Path, name: str, **values: str) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return str(path)


def add_acme(tmp_path: Path, erp_password: str = ERP_PASSWORD) -> Result:
    return cli(
        "connections", "add", "acme", "--source", "erp", "--sink", "billx",
        "--source-setting", "base_url=https://erp.example",
        "--sink-setting", "base_url=https://bill.example",
        "--source-credentials",
        credentials_file(tmp_path, "erp.json", username="ap", password=erp_password),
        env={"ML_CONNECTOR_SINK_USERNAME": "ap@acme", "ML_CONNECTOR_SINK_PASSWORD": BILL_PASSWORD,
             "ML_CONNECTOR_SINK_DEV_KEY": DEV_KEY},
    )  # fmt: skip


def test_add_list_show_remove(plugins: FakeDists, db: Path, tmp_path: Path) -> None:
    added = add_acme(tmp_path)
    assert added.exit_code == 0, added.output
    assert "Added connection acme: erp -> billx" in added.output

    listed = json.loads(cli("connections", "list", "--json").output)
    assert [(c["name"], c["source"], c["sink"]) for c in listed] == [("acme", "erp", "billx")]

    shown = json.loads(cli("connections", "show", "acme", "--json").output)
    assert shown["source_settings"] == {"base_url": "https://erp.example", "company": "MAIN"}
    assert shown["sink_credentials"] == {
        "username": "********",
        "password": "********",
        "dev_key": "********",
    }

    removed = cli("connections", "remove", "acme", "--yes")
    assert removed.exit_code == 0
    assert json.loads(cli("connections", "list", "--json").output) == []


def test_missing_credential_names_the_field(plugins: FakeDists, db: Path, tmp_path: Path) -> None:
    result = cli(
        "connections", "add", "acme", "--source", "erp", "--sink", "billx",
        "--source-setting", "base_url=https://erp.example",
        "--sink-setting", "base_url=https://bill.example",
        "--source-credentials", credentials_file(tmp_path, "erp.json", username="ap"),
        "--sink-credentials",
        credentials_file(tmp_path, "bill.json", username="u", password="p", dev_key="k"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "source credentials (erp): field 'password': Field required" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_never_echoes_the_value(plugins: FakeDists, db: Path, tmp_path: Path) -> None:
    bad = credentials_file(tmp_path, "erp.json", username=["not", "a", ERP_PASSWORD], password="x")
    result = cli(
        "connections", "add", "acme", "--source", "erp", "--sink", "billx",
        "--source-setting", "base_url=https://erp.example",
        "--sink-setting", "base_url=https://bill.example", "--source-credentials", bad,
        "--sink-credentials",
        credentials_file(tmp_path, "bill.json", username="u", password="p", dev_key="k"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "field 'username'" in result.output
    assert ERP_PASSWORD not in result.output


def test_unknown_plugin_and_duplicate_name(plugins: FakeDists, db: Path, tmp_path: Path) -> None:
    unknown = cli("connections", "add", "x", "--source", "nope", "--sink", "billx")
    assert unknown.exit_code == 2
    assert "nope" in unknown.output
    assert add_acme(tmp_path).exit_code == 0
    again = add_acme(tmp_path)
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_show_unknown_connection_is_one_line(db: Path) -> None:
    result = cli("connections", "show", "ghost")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "ghost" in result.output


def test_ping_reports_each_side(plugins: FakeDists, db: Path, tmp_path: Path) -> None:
    assert add_acme(tmp_path).exit_code == 0
    ok = cli("ping", "acme")
    assert ok.exit_code == 0, ok.output
    assert "source erp: ok - reached https://erp.example" in ok.output
    assert "sink billx: ok - reached https://bill.example" in ok.output

    assert cli("connections", "remove", "acme", "--yes").exit_code == 0
    assert add_acme(tmp_path, erp_password="wrong").exit_code == 0
    failed = cli("ping", "acme", "--json")
    assert failed.exit_code == 1
    sides = {side["role"]: side for side in json.loads(failed.output)}
    assert sides["source"]["ok"] is False
    assert "password rejected" in sides["source"]["detail"]
    assert sides["sink"]["ok"] is True


def test_a_known_secret_appears_nowhere(
    plugins: FakeDists, db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = [add_acme(tmp_path).output]
    for args in (
        ("connections", "list"),
        ("connections", "show", "acme"),
        ("connections", "show", "acme", "--json"),
        ("--debug", "ping", "acme"),
        ("keys", "rotate"),
        ("ping", "acme", "--json"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    # Every row of every table these commands wrote (what a real sync writes is searched by
    # tests/test_secret_leak.py).
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        rows = repr([connection.execute(f'SELECT * FROM "{name}"').fetchall() for name in tables])
    assert "erp" in rows  # the connection row is in what we searched
    files = [db.read_bytes(), *(p.read_bytes() for p in db.parent.glob("state.db*"))]
    for secret in (ERP_PASSWORD, BILL_PASSWORD, DEV_KEY):
        for text in (*outputs, caplog.text, rows):
            assert secret not in text
        for data in files:
            assert secret.encode() not in data
