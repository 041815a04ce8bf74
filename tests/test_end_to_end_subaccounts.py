"""Acumatica -> engine -> BILL with subaccounts on the lines, one of them without a mapping.

BILL has no subaccounts: the Acumatica plugin maps each one to the one BILL department, class
or location with the same code or name (plugins/acumatica/README.md, "Subaccounts"), and the
engine codes every line with the mappings (core ``engine/_mapping.py``, ``AccountCoder``). The
documented rule for a subaccount without a mapping: its bill goes to the exception queue, naming
the bill and ``lines.N.dimensions.subaccount``, while the other bills go on; a person maps it
(``ml-connector mapping set … --kind subaccount``) and retries the entry. Nothing is guessed and
no bill goes to BILL without its classification.

Real HTTP stacks on both sides, in process: the real plugins, the emulators, the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from tests.e2e_support import NAME, SINK, SOURCES, Pair, make_emulators

from ml_connector.cli import main
from ml_connector.connections import SideInput, create_connection
from ml_connector.registry import Registry
from ml_connector.store import RunStatus, open_store
from ml_connector.vault import Vault

SOURCE = "acumatica"
UNMAPPED = "MKT-000"  # "Marketing": BILL has no department, class or location for it

pytestmark = pytest.mark.skipif(SOURCE not in SOURCES, reason="no Acumatica emulator installed")


async def add_classification(bill: Any, resource: str, name: str, code: str) -> str:
    """Add a BILL department, class or location through BILL's API, as its admin would."""
    async with httpx.AsyncClient(
        base_url="http://bill.emulator/connect/v3", transport=bill.transport()
    ) as http:
        creds = bill.credentials()
        login = await http.post(
            "/login",
            json={"username": creds["username"], "password": creds["password"],
                  "organizationId": bill.config.organization_id, "devKey": creds["dev_key"]},
        )  # fmt: skip
        login.raise_for_status()
        headers = {"devKey": creds["dev_key"], "sessionId": login.json()["sessionId"]}
        created = await http.post(
            f"/classifications/{resource}", json={"name": name, "shortName": code}, headers=headers
        )
        created.raise_for_status()
        await http.post("/logout", headers=headers)
        return str(created.json()["id"])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """The demo's data, with subaccounts sent to BILL (``subaccount_maps_to=classification``).

    BILL's seeded departments take ``ADM-000`` (Administration) and ``OPS-000`` (Operations) by
    name; a class and a location are added for ``000-000`` (by name) and ``OPS-WH1`` (by
    code), so that every subaccount of the demo's open bills has exactly one match.
    """
    erp, bill = make_emulators(SOURCE, bills=10)
    store = open_store(str(tmp_path / "state.db"))
    registry = Registry()
    erp_url, bill_url = "http://erp.emulator", "http://bill.emulator"
    settings = {**erp.settings(erp_url + erp.base_path), "subaccount_maps_to": "classification"}
    create_connection(
        store,
        Vault.from_environment(),
        registry,
        NAME,
        SideInput(SOURCE, settings, erp.credentials()),
        SideInput(SINK, bill.settings(bill_url + bill.base_path), bill.credentials()),
    )
    transports = {SOURCE: erp.transport(), SINK: bill.transport()}
    yield Pair(SOURCE, erp, bill, store, registry, transports)
    store.dispose()


def lines_in_bill(pair: Pair, vendor_name: str, invoice: str) -> list[dict[str, Any]]:
    """The lines of the one BILL bill with that vendor name and invoice number."""
    (found,) = [
        b for b in pair.bill.bills.values()
        if b["vendorName"] == vendor_name and b["invoice"]["invoiceNumber"] == invoice
        and not b["archived"]
    ]  # fmt: skip
    return list(found["billLineItems"])


def dimensions(line: dict[str, Any]) -> dict[str, str]:
    """A BILL line's classifications other than its GL account."""
    return {k: v for k, v in line["classifications"].items() if k != "chartOfAccountId"}


async def cli(folder: Path, *args: str) -> str:
    """``ml-connector --db … ARGS``, as an operator types it (in a thread: it runs its own loop)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["--db", str(folder / "state.db"), *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


async def test_an_unmapped_acumatica_subaccount_holds_its_bill_and_no_other(
    pair: Pair, tmp_path: Path
) -> None:
    erp, bill = pair.erp, pair.bill
    company_wide = await add_classification(bill, "accounting-classes", "Company Wide", "CW")
    warehouse = await add_classification(bill, "locations", "Warehouse One", "OPS-WH1")
    administration = next(
        d["id"] for d in bill.classifications["departments"].values()
        if d["name"] == "Administration"
    )  # fmt: skip
    # A clerk codes half of a bill to Marketing, a subaccount BILL has nothing for.
    vendor_name = erp.books.get("Vendor", "ACMEOFFICE")["VendorName"]
    ref = erp.add_bill(
        "ACMEOFFICE",
        [("61000", "ADM-000", Decimal("40.00"), "Copy paper"),
         ("61000", UNMAPPED, Decimal("60.00"), "Trade show flyers")],
        vendor_ref="INV-MKT-1",
    )  # fmt: skip
    held = (vendor_name, "INV-MKT-1")

    summary = await pair.sync()
    assert summary.status is RunStatus.SUCCEEDED, summary.error

    # The bill waits in the exception queue, named with the line and the field.
    queued = {item.source_id: item for item in pair.exceptions()}
    item = queued[ref]
    assert item.object_type == "bill"
    assert item.field == "lines.1.dimensions.subaccount"
    assert f"subaccount {UNMAPPED} is not mapped to a sink classification" in item.reason
    assert "ml-connector mapping set" in item.reason
    assert held not in bill.bills_by_key(), "never sent without its classification"
    # Nothing else waits but the demo's deliberately unmapped GL account.
    others = {k: v.field for k, v in queued.items() if k != ref}
    assert list(others.values()) == ["lines.0.account_id"]

    # Every other bill went, once, with its subaccount's classification on its lines.
    pair.assert_exactly_once()
    expected = {
        "ADM-000": {"departmentId": administration},
        "000-000": {"accountingClassId": company_wide},
        "OPS-WH1": {"locationId": warehouse},
    }
    checked = 0
    for b in erp.books.ordered("Bill"):
        key = (erp.books.get("Vendor", b["Vendor"])["VendorName"], b["VendorRef"])
        if key not in erp.eligible_bills():
            continue
        lines = lines_in_bill(pair, *key)
        for detail, line in zip(b["Details"], lines, strict=False):
            if detail["Subaccount"] in expected:
                assert dimensions(line) == expected[detail["Subaccount"]], key
                checked += 1
    assert checked >= 10, "the demo's bills exercise the three mapped subaccounts"

    # The documented remedy: map it by hand, retry the entry, run again.
    marketing = await add_classification(bill, "departments", "Trade Marketing", "TMK")
    await cli(tmp_path, "mapping", "set", NAME, UNMAPPED, marketing,
        "--kind", "subaccount", "--sink-kind", "department")  # fmt: skip
    await cli(tmp_path, "exceptions", "retry", str(item.id))
    writes_before = bill.log.writes(exclude=("/login", "/logout"))
    again = await pair.sync()
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert ref not in {i.source_id for i in pair.exceptions()}
    assert [dimensions(line) for line in lines_in_bill(pair, *held)] == [
        {"departmentId": administration},
        {"departmentId": marketing},
    ]
    in_bill = bill.bills_by_key()
    assert set(in_bill) == erp.eligible_bills() | {held}
    assert set(in_bill.values()) == {1}, "no duplicates"
    # Only the held bill was written (its vendor already existed): the others were untouched.
    assert bill.log.writes(exclude=("/login", "/logout")) == writes_before + 1
