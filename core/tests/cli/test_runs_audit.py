"""``ml-connector runs list|show`` and ``ml-connector audit``, over rows a run wrote."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from core.tests.cli.operations_support import add_connection, one_line_error, run_cli

from ml_connector.engine._ledger import AuditRecord
from ml_connector.store import RunStatus

if TYPE_CHECKING:
    from ml_connector.engine._ledger import Ledger
    from ml_connector.store import Store

COUNTS = {
    "payables_read": 11,
    "bills_created": 3,
    "bills_updated": 1,
    "bills_unchanged": 5,
    "bills_failed": 1,
    "payables_rejected": 1,
    "payments_recorded": 2,
}


def test_runs_list_is_newest_first_with_key_counts(acme: Ledger, store: Store) -> None:
    globex = add_connection(store, "globex")
    first = acme.start_run()
    acme.finish_run(RunStatus.SUCCEEDED, COUNTS, None)
    failed = globex.start_run()
    globex.finish_run(RunStatus.FAILED, {}, "[bill 401] password rejected")
    running = acme.start_run()

    listed = json.loads(run_cli("runs", "list", "--json").stdout)
    assert [(r["id"], r["connection"], r["status"]) for r in listed] == [
        (running, "acme", "running"),
        (failed, "globex", "failed"),
        (first, "acme", "succeeded"),
    ]
    assert listed[2]["counts"] == dict(sorted(COUNTS.items()))
    assert listed[0]["finished_at"] is None

    table = run_cli("runs", "list", "acme").stdout.splitlines()
    assert table[0].split() == [
        "ID", "CONNECTION", "STARTED", "FINISHED", "STATUS",
        "CREATED", "UPDATED", "UNCHANGED", "FAILED", "PAYMENTS",
    ]  # fmt: skip
    assert len(table) == 3
    cells = table[2].split()
    assert cells[0] == str(first)
    assert cells[4:] == ["succeeded", "3", "1", "5", "2", "2"]  # failed = bills + rejected

    limited = json.loads(run_cli("runs", "list", "--limit", "1", "--json").stdout)
    assert [r["id"] for r in limited] == [running]


def test_runs_show_has_every_count_and_the_error(acme: Ledger) -> None:
    run_id = acme.start_run()
    acme.finish_run(RunStatus.FAILED, COUNTS, "[bill 503] service unavailable")

    data = json.loads(run_cli("runs", "show", str(run_id), "--json").stdout)
    assert data["status"] == "failed"
    assert data["counts"] == dict(sorted(COUNTS.items()))
    assert data["error"] == "[bill 503] service unavailable"
    assert data["duration_seconds"] >= 0

    text = run_cli("runs", "show", str(run_id))
    assert text.exit_code == 0
    assert text.stdout.startswith(f"run {run_id} of acme: failed\n")
    assert "    payables_read      11\n" in text.stdout
    assert "  error     [bill 503] service unavailable\n" in text.stdout


def test_unknown_run_and_connection_are_one_line_usage_errors(store: Store) -> None:
    one_line_error(run_cli("runs", "show", "999"), "no run with id 999")
    one_line_error(run_cli("runs", "list", "ghost"), "no connection named 'ghost'")
    one_line_error(run_cli("audit", "ghost"), "no connection named 'ghost'")
    assert run_cli("runs", "show", "latest").exit_code == 2
    empty = run_cli("runs", "list")
    assert empty.exit_code == 0
    assert "No runs yet" in empty.stdout


def seed_audit(ledger: Ledger) -> int:
    run_id = ledger.start_run()
    ledger.audit_now(AuditRecord("bill", "fetched", "ok", "INV-1", payload_digest="a" * 64))
    asyncio.run(ledger.begin_intents("bill", [("INV-1", "v1")]))
    ledger.complete(
        "bill", "INV-1", "00n1", "f" * 64, AuditRecord("bill", "created", "ok", "INV-1", "00n1")
    )
    ledger.add_exception("bill", "INV-2", "lines.0.account_id", "no sink account", "b" * 64)
    ledger.audit_now(AuditRecord("vendor", "created", "ok", "V-1", "009v1"))
    return run_id


def test_audit_is_newest_first_and_filters(acme: Ledger, store: Store) -> None:
    run_id = seed_audit(acme)
    seed_audit(add_connection(store, "globex"))

    events = json.loads(run_cli("audit", "acme", "--json").stdout)
    assert [(e["type"], e["source_id"], e["action"]) for e in events] == [
        ("vendor", "V-1", "created"),
        ("bill", "INV-2", "failed"),
        ("bill", "INV-1", "created"),
        ("bill", "INV-1", "fetched"),
    ]
    assert {e["run"] for e in events} == {run_id}
    assert events[1]["error"] == "lines.0.account_id: no sink account"
    assert events[1]["outcome"] == "exception_queued"
    assert events[2]["sink_id"] == "00n1"
    assert events[3]["payload_digest"] == "a" * 64
    assert events[0]["plugin_versions"] == {"erp": "1.2.0", "bill": "0.9.1"}

    record = json.loads(run_cli("audit", "acme", "--record", "INV-1", "--json").stdout)
    assert [e["action"] for e in record] == ["created", "fetched"]
    vendors = json.loads(run_cli("audit", "acme", "--type", "vendor", "--json").stdout)
    assert [e["source_id"] for e in vendors] == ["V-1"]
    limited = json.loads(run_cli("audit", "acme", "--limit", "2", "--json").stdout)
    assert [e["source_id"] for e in limited] == ["V-1", "INV-2"]

    table = run_cli("audit", "acme", "--record", "INV-2").stdout.splitlines()
    assert table[0].split() == [
        "AT", "RUN", "TYPE", "SOURCE_ID", "SINK_ID", "ACTION", "OUTCOME", "ERROR",
    ]  # fmt: skip
    assert table[1].split()[1:] == [
        str(run_id), "bill", "INV-2", "failed", "exception_queued",
        "lines.0.account_id:", "no", "sink", "account",
    ]  # fmt: skip
    nothing = run_cli("audit", "acme", "--record", "INV-404")
    assert nothing.stdout == "No audit events match.\n"
    assert run_cli("audit", "acme", "--type", "invoice").exit_code == 2
