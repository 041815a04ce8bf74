"""``ml-connector sync run`` and ``replay`` against the reference plugins, installed as plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from core.tests.registry.fake_dists import FakeDists

from ml_connector.cli import main
from ml_connector.testing import FakeErp, FakeSink, SeedSpec, reset_fakes, seed_pair

ERP, SINK = "ml_connector.testing.reference_erp", "ml_connector.testing.reference_sink"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference plugins, registered by a distribution's entry points as a real one is."""
    site = tmp_path / "site"
    site.mkdir()
    FakeDists.write_dist_info(
        site,
        "ml-connector-reference",
        "0.1.0",
        {
            "ml_connector.plugin_info": {
                "reference_erp": f"{ERP}:PLUGIN_INFO",
                "reference_sink": f"{SINK}:PLUGIN_INFO",
            },
            "ml_connector.plugins": {
                "reference_erp": f"{ERP}:PLUGIN",
                "reference_sink": f"{SINK}:PLUGIN",
            },
        },
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ML_CONNECTOR_DB", str(tmp_path / "state.db"))
    reset_fakes()
    yield
    reset_fakes()
    sys.path_importer_cache.clear()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def add_connection() -> None:
    result = cli(
        "connections", "add", "acme", "--source", "reference_erp", "--sink", "reference_sink",
        "--source-setting", "instance=acme", "--sink-setting", "organization_id=00801ACME",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.fixture
def seeded(installed: None, monkeypatch: pytest.MonkeyPatch):
    erp, sink = FakeErp.in_memory("acme"), FakeSink.in_memory("00801ACME")
    data = seed_pair(erp, sink, SeedSpec(seed=5, vendors=4, payables=30, unmapped_account=True))
    for name, value in {
        "ML_CONNECTOR_SOURCE_USERNAME": "ap-bot",
        "ML_CONNECTOR_SOURCE_PASSWORD": "erp-pw",
        "ML_CONNECTOR_SINK_USERNAME": "ap@acme",
        "ML_CONNECTOR_SINK_PASSWORD": "bill-pw",
        "ML_CONNECTOR_SINK_DEV_KEY": "dev",
    }.items():
        monkeypatch.setenv(name, value)
    add_connection()
    return erp, sink, data


def test_sync_run_prints_a_summary_and_is_idempotent(seeded) -> None:
    _erp, sink, data = seeded
    first = cli("sync", "run", "acme")
    assert first.exit_code == 0, first.output
    assert f"bills created             {len(data.ready_ids)}" in first.output
    assert "stage=payables" in first.output  # plain log lines when not on a terminal

    again = json.loads(cli("sync", "run", "acme", "--json").stdout)
    assert again["status"] == "succeeded"
    assert again["counts"].get("bills_created", 0) == 0
    assert len(sink.bills) == len(data.ready_ids)

    runs = json.loads(cli("runs", "list", "acme", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]


def test_an_unmapped_account_is_fixed_by_a_mapping_and_a_retry(seeded) -> None:
    _erp, sink, data = seeded
    assert cli("sync", "run", "acme").exit_code == 0
    queued = json.loads(cli("exceptions", "list", "acme", "--json").stdout)
    entry = next(e for e in queued if e["source_id"] == data.unmapped_ids[0])
    assert entry["field"] == "lines.0.account_id"

    target = next(iter(sink.accounts))
    assert cli("mapping", "set", "acme", data.unmapped_account_id, target).exit_code == 0
    assert cli("exceptions", "retry", str(entry["id"])).exit_code == 0
    summary = json.loads(cli("sync", "run", "acme", "--json").stdout)
    assert summary["counts"]["exceptions_retried"] >= 1
    assert len(sink.bill_for_payable(data.unmapped_ids[0])) == 1
    shown = json.loads(cli("exceptions", "show", str(entry["id"]), "--json").stdout)
    assert shown["status"] == "resolved"


def test_replay_redrives_one_record(seeded) -> None:
    erp, sink, data = seeded
    assert cli("sync", "run", "acme").exit_code == 0
    target = data.ready_ids[0]
    record = erp.payables[target]
    erp.update_payable(target, description=f"{record.description} (replayed)")
    result = cli("replay", "acme", "--record", target)
    assert result.exit_code == 0, result.output
    assert "bills_updated 1" in result.output
    assert "(replayed)" in (sink.bill_for_payable(target)[0].description or "")


def test_a_failed_run_exits_1_with_the_reason(seeded) -> None:
    _erp, sink, _data = seeded
    sink.users["ap@acme"] = "another-password"
    result = cli("sync", "run", "acme")
    assert result.exit_code == 1
    assert "run 1: failed" in result.output
    assert "bill-pw" not in result.output
