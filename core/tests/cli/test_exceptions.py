"""``ml-connector exceptions list|show|retry|resolve|ignore``, over entries the engine queued."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from core.tests.cli.operations_support import add_connection, one_line_error, run_cli
from sqlmodel import select

from ml_connector.engine._ledger import AuditRecord
from ml_connector.store import ExceptionItemRow

if TYPE_CHECKING:
    from ml_connector.engine._ledger import Ledger
    from ml_connector.store import Store

DIGEST = "d" * 64
CHANGED = "e" * 64


def entry_ids(store: Store) -> dict[str, int]:
    with store.session(read_only=True) as session:
        return {r.source_id: r.id for r in session.exec(select(ExceptionItemRow)) if r.id}


def status_of(store: Store, item_id: int) -> str:
    with store.session(read_only=True) as session:
        row = session.get(ExceptionItemRow, item_id)
        assert row is not None
        return row.status


@pytest.fixture
def queued(acme: Ledger, store: Store) -> dict[str, int]:
    """Three acme entries and one of globex, all open."""
    acme.start_run()
    acme.add_exception("bill", "INV-1", "lines.0.account_id", "no sink account for 6100", DIGEST)
    acme.add_exception("payment", "stp1:00n1", None, "[erp 500] server error", "c" * 64)
    acme.add_exception("bill", "INV-9", "vendor.name", "missing", None)  # rejected by the source
    add_connection(store, "globex").add_exception("bill", "G-1", None, "boom", DIGEST)
    return entry_ids(store)


def listed(*args: str) -> list[tuple[str, str, str]]:
    rows = json.loads(run_cli("exceptions", "list", *args, "--json").stdout)
    return sorted((r["connection"], r["source_id"], r["status"]) for r in rows)


def test_list_shows_what_needs_someone_by_default(queued: dict[str, int], store: Store) -> None:
    run_cli("exceptions", "resolve", str(queued["INV-9"]))
    run_cli("exceptions", "retry", str(queued["stp1:00n1"]))

    assert listed("acme") == [("acme", "INV-1", "open"), ("acme", "stp1:00n1", "retrying")]
    assert listed() == [
        ("acme", "INV-1", "open"),
        ("acme", "stp1:00n1", "retrying"),
        ("globex", "G-1", "open"),
    ]
    assert listed("acme", "--status", "resolved") == [("acme", "INV-9", "resolved")]
    assert len(listed("--status", "all")) == 4

    table = run_cli("exceptions", "list", "acme").stdout.splitlines()
    assert table[0].split()[:6] == ["ID", "CONNECTION", "TYPE", "SOURCE_ID", "FIELD", "REASON"]
    assert any(line.split()[:5] == [str(queued["INV-1"]), "acme", "bill", "INV-1",
                                    "lines.0.account_id"] for line in table)  # fmt: skip
    none = run_cli("exceptions", "list", "acme", "--status", "ignored")
    assert none.stdout == "No exceptions.\n"
    one_line_error(run_cli("exceptions", "list", "ghost"), "ghost")


def test_show_has_the_entry_and_its_record_s_audit(queued: dict[str, int]) -> None:
    data = json.loads(run_cli("exceptions", "show", str(queued["INV-1"]), "--json").stdout)
    assert data["connection"] == "acme"
    assert (data["type"], data["source_id"], data["status"]) == ("bill", "INV-1", "open")
    assert data["field"] == "lines.0.account_id"
    assert data["reason"] == "no sink account for 6100"
    assert data["payload_digest"] == DIGEST
    assert data["attempts"] == 1
    assert [(e["action"], e["outcome"]) for e in data["recent_audit"]] == [
        ("failed", "exception_queued")
    ]
    text = run_cli("exceptions", "show", str(queued["INV-1"])).stdout
    assert "reason          no sink account for 6100\n" in text
    assert "recent audit events of this record:" in text


def test_retry_marks_it_and_says_what_re_drives_it(queued: dict[str, int], store: Store) -> None:
    result = run_cli("exceptions", "retry", str(queued["INV-1"]))
    assert result.exit_code == 0
    assert result.stdout == (
        f"Exception {queued['INV-1']} (bill INV-1 of acme): open -> retrying.\n"
        "The next `ml-connector sync run acme` re-drives it.\n"
        "To re-drive it now: `ml-connector replay acme --record INV-1`.\n"
    )
    assert status_of(store, queued["INV-1"]) == "retrying"
    again = run_cli("exceptions", "retry", str(queued["INV-1"]))
    assert again.stdout == f"Exception {queued['INV-1']} is already retrying; nothing changed.\n"
    payment = run_cli("exceptions", "retry", str(queued["stp1:00n1"])).stdout
    assert "replay" not in payment  # replay re-drives payables only


def test_a_retried_entry_is_resolved_when_the_engine_writes_the_record(
    queued: dict[str, int], acme: Ledger, store: Store
) -> None:
    run_cli("exceptions", "retry", str(queued["INV-1"]))
    asyncio.run(acme.begin_intents("bill", [("INV-1", "v2")]))
    acme.complete("bill", "INV-1", "00n1", "f" * 64, AuditRecord("bill", "created", "ok"))
    acme.flush()
    assert status_of(store, queued["INV-1"]) == "resolved"


def test_resolve_takes_it_off_the_queue(queued: dict[str, int], store: Store) -> None:
    result = run_cli("exceptions", "resolve", str(queued["INV-1"]))
    assert result.exit_code == 0
    assert "open -> resolved" in result.stdout
    assert status_of(store, queued["INV-1"]) == "resolved"
    assert ("acme", "INV-1", "open") not in listed("acme")


def test_ignore_skips_this_content_only(queued: dict[str, int], acme: Ledger, store: Store) -> None:
    result = run_cli("exceptions", "ignore", str(queued["INV-1"]))
    assert result.exit_code == 0
    assert "open -> ignored" in result.stdout
    assert "once it changes in the source, it is synced again" in result.stdout
    assert result.stderr == ""
    # What the engine asks before it touches the record: skip while the content is this one.
    assert acme.ignored_digest("bill", "INV-1") == DIGEST
    # The record changed and failed again: back in the queue, no longer ignored.
    acme.add_exception("bill", "INV-1", None, "still no account", CHANGED)
    assert status_of(store, queued["INV-1"]) == "open"
    assert acme.ignored_digest("bill", "INV-1") is None


def test_ignoring_an_entry_without_a_digest_warns(queued: dict[str, int]) -> None:
    result = run_cli("exceptions", "ignore", str(queued["INV-9"]))
    assert result.exit_code == 0
    assert "no content digest" in result.stderr


@pytest.mark.parametrize("action", ["show", "retry", "resolve", "ignore"])
def test_unknown_exception_is_a_one_line_usage_error(store: Store, action: str) -> None:
    one_line_error(run_cli("exceptions", action, "4242"), "no exception with id 4242")
    assert run_cli("exceptions", action, "INV-1").exit_code == 2
