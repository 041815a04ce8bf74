"""``ml-connector state show|set|reset``: cursors, over state a run wrote."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from core.tests.cli.operations_support import one_line_error, run_cli

from ml_connector.engine._ledger import AuditRecord
from ml_connector.store import RunStatus

if TYPE_CHECKING:
    from ml_connector.engine._ledger import Ledger
    from ml_connector.store import Store

MAY = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def synced(acme: Ledger) -> Ledger:
    """acme after a run: both cursors moved, two bills and a vendor linked, one of each pending."""
    acme.start_run()
    for source_id, sink_id in (("INV-1", "00n1"), ("INV-2", "00n2")):
        asyncio.run(acme.begin_intents("bill", [(source_id, "v1")]))
        acme.complete("bill", source_id, sink_id, "f" * 64, AuditRecord("bill", "created", "ok"))
    asyncio.run(acme.begin_intents("vendor", [("V-1", "v1")]))
    acme.complete("vendor", "V-1", "009v1", "f" * 64, AuditRecord("vendor", "created", "ok"))
    asyncio.run(acme.begin_intents("bill", [("INV-3", "v1")]))  # killed before the create answered
    acme.add_exception("bill", "INV-4", None, "boom", "d" * 64)
    acme.set_cursor("payables", MAY)
    acme.set_cursor("payments", MAY + timedelta(hours=1))
    acme.finish_run(RunStatus.SUCCEEDED, {}, None)
    return acme


def test_show_a_new_connection_reads_from_the_beginning(acme: Ledger) -> None:
    data = json.loads(run_cli("state", "show", "acme", "--json").stdout)
    assert data == {
        "connection": "acme",
        "cursors": {
            "payables": {"position": None, "updated_at": None},
            "payments": {"position": None, "updated_at": None},
        },
        "open_intents": 0,
        "open_intent_records": [],
        "links": {"vendor": 0, "bill": 0, "payment": 0, "account": 0},
        "exceptions": {"open": 0, "retrying": 0},
    }
    text = run_cli("state", "show", "acme").stdout
    assert "  payables  from the beginning\n" in text


def test_show_after_a_run(synced: Ledger) -> None:
    data = json.loads(run_cli("state", "show", "acme", "--json").stdout)
    assert data["cursors"]["payables"]["position"] == "2024-05-01T08:30:00+00:00"
    assert data["cursors"]["payments"]["position"] == "2024-05-01T09:30:00+00:00"
    assert data["open_intents"] == 1
    [intent] = data["open_intent_records"]
    assert (intent["object_type"], intent["source_id"], intent["attempts"]) == ("bill", "INV-3", 1)
    assert data["links"] == {"vendor": 1, "bill": 2, "payment": 0, "account": 0}
    assert data["exceptions"] == {"open": 1, "retrying": 0}
    text = run_cli("state", "show", "acme").stdout
    assert text == (
        "connection acme\n"
        "cursors:\n"
        "  payables  2024-05-01T08:30:00+00:00\n"
        "  payments  2024-05-01T09:30:00+00:00\n"
        "open write intents: 1\n"
        f"  bill INV-3: since {intent['since']}, 1 attempt(s)\n"
        "links: vendor 1, bill 2, payment 0, account 0\n"
        "exceptions: 1 open, 0 retrying\n"
    )


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2024-04-01T00:00:00Z", datetime(2024, 4, 1, tzinfo=UTC)),
        ("2024-04-01T02:00:00+02:00", datetime(2024, 4, 1, tzinfo=UTC)),
        ("2024-03-31T19:00:00-05:00", datetime(2024, 4, 1, tzinfo=UTC)),
    ],
)
def test_set_moves_one_cursor(synced: Ledger, given: str, stored: datetime) -> None:
    result = run_cli("state", "set", "acme", "payables", given)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "payables cursor of acme: 2024-05-01T08:30:00+00:00 -> 2024-04-01T00:00:00+00:00\n"
    )
    assert synced.cursor("payables") == stored
    assert synced.cursor("payments") == MAY + timedelta(hours=1)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("2024-04-01T00:00:00", "has no time zone; add one, e.g. 2024-04-01T00:00:00Z"),
        ("2024-04-01", "has no time zone"),
        ("yesterday", "is not an ISO 8601 date and time"),
        ("2999-01-01T00:00:00Z", "is in the future"),
    ],
)
def test_set_refuses_a_time_it_cannot_place(synced: Ledger, given: str, says: str) -> None:
    result = run_cli("state", "set", "acme", "payables", given)
    assert result.exit_code == 2
    assert "Invalid value for 'ISO_DATETIME'" in result.stderr
    assert says in result.stderr
    assert synced.cursor("payables") == MAY


def test_set_knows_only_the_engine_s_streams(synced: Ledger) -> None:
    result = run_cli("state", "set", "acme", "vendors", "2024-04-01T00:00:00Z")
    assert result.exit_code == 2
    assert "'payables', 'payments'" in result.stderr
    one_line_error(run_cli("state", "set", "ghost", "payables", "2024-04-01T00:00:00Z"), "'ghost'")


def test_set_while_a_run_is_marked_running_warns(synced: Ledger) -> None:
    run_id = synced.start_run()
    result = run_cli("state", "set", "acme", "payments", "2024-04-01T00:00:00Z")
    assert result.exit_code == 0
    assert f"run {run_id} of acme" in result.stderr
    assert "is marked running" in result.stderr


def test_reset_one_stream_keeps_the_links(synced: Ledger, store: Store) -> None:
    result = run_cli("state", "reset", "acme", "payables", "--yes")
    assert result.exit_code == 0, result.output
    assert "links are kept" in result.stdout
    assert synced.cursor("payables") is None
    assert synced.cursor("payments") == MAY + timedelta(hours=1)
    link = synced.link("bill", "INV-1")
    assert link is not None
    assert link.sink_id == "00n1"
    assert json.loads(run_cli("state", "show", "acme", "--json").stdout)["links"]["bill"] == 2


def test_reset_asks_first(synced: Ledger) -> None:
    declined = run_cli("state", "reset", "acme", input="n\n")
    assert declined.exit_code == 1
    assert synced.cursor("payables") == MAY

    confirmed = run_cli("state", "reset", "acme", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "Re-read payables and payments of acme from the beginning" in confirmed.stdout
    assert synced.cursor("payables") is None
    assert synced.cursor("payments") is None


def test_reset_help_says_unchanged_records_are_not_written() -> None:
    text = " ".join(run_cli("state", "reset", "--help").stdout.split())
    assert "Links are kept, so the full re-read writes nothing that is unchanged" in text
