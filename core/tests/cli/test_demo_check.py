"""``ml-connector demo``'s check line and exit code, from the summary alone (no emulators)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import ml_connector.cli._demo as demo_command
from ml_connector.cli import main
from ml_connector.demo import check_problems
from ml_connector.emulation import DemoSink, DemoSource, missing_members

OK = "Check: nothing duplicated, nothing missing, nothing moved that must not."


def _summary(**counts: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "source": "acumatica", "status": "succeeded", "errors": [], "bills_eligible": 10,
        "bills_held": 4, "accounts_mapped": 3, "vendors_created": 2, "bills_created": 10,
        "bills_skipped_unchanged": 0, "exceptions": 0, "exception_queue": [],
        "bills_paid_in_bill": 3, "payments_recorded": 3, "payments_posted_twice": 0,
        "payments_missing": 0, "duplicates": 0, "missing": 0, "unexpected": 0, "held_moved": 0,
        "state": "temporary (deleted at exit)", "seconds": 0.5,
    }  # fmt: skip
    summary.update(counts)
    return summary


def _run(monkeypatch: pytest.MonkeyPatch, summary: dict[str, Any]) -> tuple[int, str]:
    monkeypatch.setattr(demo_command, "run_demo", lambda options, observer=None: summary)
    result = CliRunner().invoke(main, ["demo"])
    (check,) = [line for line in result.output.splitlines() if line.startswith("Check:")]
    return result.exit_code, check


def test_a_clean_run_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch, _summary()) == (0, OK)


@pytest.mark.parametrize(
    ("counts", "why"),
    [
        ({"held_moved": 3}, "3 bills that must not move are in BILL"),
        ({"held_moved": 1}, "1 bill that must not move is in BILL"),
        ({"duplicates": 2}, "2 duplicate bills in BILL"),
        ({"missing": 1}, "1 eligible bill missing in BILL"),
        ({"payments_posted_twice": 2}, "2 BILL payments posted twice in the ERP"),
        ({"payments_missing": 1}, "1 BILL payment never posted in the ERP"),
        (
            {"duplicates": 1, "missing": 2, "held_moved": 3},
            "1 duplicate bill in BILL; 2 eligible bills missing in BILL; "
            "3 bills that must not move are in BILL",
        ),
    ],
)
def test_a_failed_check_says_why_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, counts: dict[str, int], why: str
) -> None:
    assert _run(monkeypatch, _summary(**counts)) == (1, f"Check: FAILED. {why}.")


def test_a_failed_run_exits_1_even_when_the_counts_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = _summary(status="failed", errors=["BILL answered 500"])
    monkeypatch.setattr(demo_command, "run_demo", lambda options, observer=None: summary)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert "  error: BILL answered 500" in result.output.splitlines()


def test_the_check_is_the_function_the_command_uses() -> None:
    assert check_problems(_summary()) == []
    assert check_problems(_summary(held_moved=2)) == ["2 bills that must not move are in BILL"]


def test_missing_members_names_what_an_object_lacks_in_protocol_order() -> None:
    class Partial:
        def seed_chart(self, accounts: dict[str, str]) -> None: ...

        bills_by_key = None  # not callable: as good as missing

    assert missing_members(Partial(), DemoSink) == [
        "bills_by_key", "pay_bills", "bill_totals", "expire_sessions"
    ]  # fmt: skip
    assert "held_bill_keys" in missing_members(object(), DemoSource)
    assert "held_bills" not in missing_members(object(), DemoSource)
