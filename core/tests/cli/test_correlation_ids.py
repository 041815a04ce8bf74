"""``audit`` and ``exceptions show|list`` show the failing system's correlation (request) id."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from core.tests.cli.operations_support import run_cli
from sqlmodel import select

from ml_connector.engine._ledger import AuditRecord
from ml_connector.store import ExceptionItemRow

if TYPE_CHECKING:
    from ml_connector.engine._ledger import Ledger
    from ml_connector.store import Store

REQUEST = "0HMVD4K2Q1:00000007"


@pytest.fixture
def failed(acme: Ledger, store: Store) -> dict[str, int]:
    """INV-1 failed with the sink's request id; INV-2 failed on the engine's side (none)."""
    acme.start_run()
    acme.audit(AuditRecord("bill", "fetched", "ok", "INV-1", payload_digest="a" * 64))
    acme.add_exception(
        "bill", "INV-1", None, "[bill 503] unavailable", "a" * 64, correlation_id=REQUEST
    )
    acme.add_exception("bill", "INV-2", "lines.0.account_id", "no sink account", "b" * 64)
    with store.session(read_only=True) as session:
        return {r.source_id: r.id for r in session.exec(select(ExceptionItemRow)) if r.id}


def test_audit_shows_the_id_in_a_column_and_in_json(failed: dict[str, int]) -> None:
    events = json.loads(run_cli("audit", "acme", "--json").stdout)
    by_record = {(e["source_id"], e["action"]): e for e in events}
    assert by_record[("INV-1", "failed")]["correlation_id"] == REQUEST
    assert by_record[("INV-1", "fetched")]["correlation_id"] is None
    assert by_record[("INV-2", "failed")]["correlation_id"] is None

    table = run_cli("audit", "acme", "--record", "INV-1").stdout.splitlines()
    header = table[0].split()
    assert header == [
        "AT", "RUN", "TYPE", "SOURCE_ID", "SINK_ID", "ACTION", "OUTCOME", "CORRELATION_ID",
        "ERROR",
    ]  # fmt: skip
    failed_line = next(line for line in table[1:] if " failed " in line)
    assert REQUEST in failed_line.split()
    start = table[0].index("CORRELATION_ID")
    assert failed_line[start:].startswith(REQUEST)  # under its heading
    fetched_line = next(line for line in table[1:] if " fetched " in line)
    assert REQUEST not in fetched_line


def test_audit_without_ids_keeps_its_columns(failed: dict[str, int]) -> None:
    table = run_cli("audit", "acme", "--record", "INV-2").stdout.splitlines()
    assert "CORRELATION_ID" not in table[0]
    assert table[0].split()[-1] == "ERROR"


def test_exceptions_show_has_a_line_and_a_json_field(failed: dict[str, int]) -> None:
    item = str(failed["INV-1"])
    data = json.loads(run_cli("exceptions", "show", item, "--json").stdout)
    assert data["correlation_id"] == REQUEST
    assert [(e["action"], e["correlation_id"]) for e in data["recent_audit"]] == [
        ("failed", REQUEST),
        ("fetched", None),
    ]

    text = run_cli("exceptions", "show", item).stdout
    lines = text.splitlines()
    assert f"correlation_id  {REQUEST}" in lines
    audit_header = lines[lines.index("recent audit events of this record:") + 1]
    assert audit_header.split() == [
        "AT", "RUN", "ACTION", "OUTCOME", "SINK_ID", "CORRELATION_ID", "ERROR",
    ]  # fmt: skip


def test_exceptions_show_without_an_id_has_no_such_line(failed: dict[str, int]) -> None:
    item = str(failed["INV-2"])
    data = json.loads(run_cli("exceptions", "show", item, "--json").stdout)
    assert data["correlation_id"] is None
    text = run_cli("exceptions", "show", item).stdout
    assert "correlation_id" not in text
    assert "CORRELATION_ID" not in text
    assert "reason          no sink account\n" in text


def test_exceptions_list_json_carries_the_id(failed: dict[str, int]) -> None:
    rows = json.loads(run_cli("exceptions", "list", "acme", "--json").stdout)
    assert {r["source_id"]: r["correlation_id"] for r in rows} == {"INV-1": REQUEST, "INV-2": None}
