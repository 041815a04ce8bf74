"""The demo's check fails when bills that must not move reach BILL (issue #16).

A source plugin that reads bills on hold, unapproved or otherwise not ready as if they were open
makes the demo create them in BILL; the check must see them there and fail the command.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from click.testing import CliRunner

from ml_connector import demo
from ml_connector.cli import main
from ml_connector.demo import DemoOptions, check_problems, run_demo
from ml_connector.errors import ConfigurationError

acumatica = importlib.import_module("ml_connector_acumatica.plugin")
epicor = importlib.import_module("ml_connector_epicor.plugin")


def _acumatica_reads_every_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its server filter loses ``Status eq 'Open'`` and its re-check sees every bill as open.

    Bills on hold, balanced, pending approval, rejected, scheduled, paid, voided or reserved
    become payables (other document types and purchase orders still are not read).
    """
    bill_filter, eligible = acumatica.bill_filter, acumatica._eligible

    def every_status(window: Any) -> str:
        text = bill_filter(window)
        broken = re.sub(r"Status eq '[^']*' and ", "", text)
        assert broken != text, f"the plugin's filter changed shape: {text}"
        return broken

    def as_open(bill: Any, window: Any, settings: Any) -> bool:
        return bool(eligible(bill.model_copy(update={"status": acumatica.OPEN}), window, settings))

    monkeypatch.setattr(acumatica, "bill_filter", every_status)
    monkeypatch.setattr(acumatica, "_eligible", as_open)


def _epicor_reads_every_posted_invoice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every posted invoice reads as ready: on payment hold, debit memos and paid ones move."""
    monkeypatch.setattr(epicor, "is_ready", lambda row: True)


BREAK = {"acumatica": _acumatica_reads_every_status, "epicor": _epicor_reads_every_posted_invoice}


@pytest.mark.parametrize("source", sorted(BREAK))
def test_held_bills_in_bill_fail_the_check(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    BREAK[source](monkeypatch)
    summary = run_demo(DemoOptions(source=source, bills=5, pay=0))
    assert summary["bills_held"] > 0
    assert summary["held_moved"] >= 3, summary
    # Every bill that should not be in BILL is found by its key among the held ones.
    assert summary["held_moved"] == summary["unexpected"]
    assert (summary["duplicates"], summary["missing"]) == (0, 0)
    assert check_problems(summary) == [
        f"{summary['held_moved']} bills that must not move are in BILL"
    ]


def test_the_command_prints_failed_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    _acumatica_reads_every_status(monkeypatch)
    result = CliRunner().invoke(main, ["demo", "--bills", "5"])
    assert result.exit_code == 1, result.output
    (check,) = [line for line in result.output.splitlines() if line.startswith("Check:")]
    assert re.fullmatch(r"Check: FAILED\. \d+ bills that must not move are in BILL\.", check)


class _OldSource:
    """An ERP emulator written against the first DemoSource: ``held_bills`` counted, no keys."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def seed_demo(self, bills: int, seed: int) -> None:
        raise AssertionError("the demo must refuse this emulator before seeding it")

    def eligible_bills(self) -> set[tuple[str, str]]:
        return set()

    def held_bills(self) -> int:
        return 0

    def payments_posted(self) -> dict[tuple[str, str], int]:
        return {}

    def account_numbers(self) -> dict[str, str]:
        return {}

    def unmapped_account(self) -> str:
        return ""

    def bill_totals(self) -> dict[tuple[str, str], Any]:
        return {}

    def change_bill(self, key: tuple[str, str]) -> None:
        pass

    def expire_sessions(self) -> None:
        pass


def test_an_emulator_without_the_protocol_is_named_with_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = demo.load_emulator
    monkeypatch.setattr(
        demo, "load_emulator", lambda system: real(system) if system == "bill" else _OldSource
    )
    with pytest.raises(ConfigurationError) as raised:
        run_demo(DemoOptions(source="oldsystem"))
    message = str(raised.value)
    assert "the oldsystem emulator (tests.test_demo_check._OldSource)" in message
    assert "does not implement ml_connector.emulation.DemoSource" in message
    assert "(it lacks held_bill_keys);" in message
    assert '"The demo protocol" in docs/plugin-guide.md' in message


def test_a_sink_emulator_without_the_protocol_is_named_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = demo.load_emulator
    monkeypatch.setattr(
        demo,
        "load_emulator",
        lambda system: real("acumatica") if system == "bill" else real(system),
    )
    with pytest.raises(ConfigurationError, match=r"ml_connector\.emulation\.DemoSink \(it lacks "
                       r"seed_chart, bills_by_key, pay_bills\)"):  # fmt: skip
        run_demo(DemoOptions(source="acumatica"))
