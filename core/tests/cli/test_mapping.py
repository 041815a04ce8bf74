"""``ml-connector mapping show|set|unset|export|import``: manual mappings the engine keeps."""

from __future__ import annotations

import json
import tomllib
from typing import TYPE_CHECKING

import pytest
from core.tests.cli.operations_support import one_line_error, run_cli

from ml_connector.models import AccountMapping, MappingMethod

if TYPE_CHECKING:
    from pathlib import Path

    from ml_connector.engine._ledger import Ledger


def derived(source_id: str, sink_id: str, kind: str = "account") -> AccountMapping:
    return AccountMapping(
        source_kind=kind,
        source_id=source_id,
        sink_kind=kind,
        sink_id=sink_id,
        method=MappingMethod.NUMBER,
    )


def stored(ledger: Ledger) -> dict[tuple[str, str], tuple[str, str, str]]:
    """What the store holds: (kind, source id) -> (sink kind, sink id, method)."""
    rows = json.loads(run_cli("mapping", "show", "acme", "--json").stdout)
    return {
        (r["source_kind"], r["source_id"]): (r["sink_kind"], r["sink_id"], r["method"])
        for r in rows
    }


@pytest.fixture
def mapped(acme: Ledger) -> Ledger:
    """acme after a run mapped two accounts by number."""
    acme.save_mappings([derived("6100", "0ca61"), derived("6200", "0ca62")])
    return acme


def test_show(mapped: Ledger) -> None:
    table = run_cli("mapping", "show", "acme").stdout.splitlines()
    assert [line.split() for line in table] == [
        ["SOURCE_KIND", "SOURCE_ID", "SINK_KIND", "SINK_ID", "METHOD"],
        ["account", "6100", "account", "0ca61", "number"],
        ["account", "6200", "account", "0ca62", "number"],
    ]
    one_line_error(run_cli("mapping", "show", "ghost"), "no connection named 'ghost'")


def test_set_is_manual_and_the_engine_keeps_it(mapped: Ledger) -> None:
    result = run_cli("mapping", "set", "acme", "6100", "0caXX")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "acme: account 6100 -> account 0caXX, manual; sync runs keep it "
        "(was account 6100 -> account 0ca61, number).\n"
    )
    # The next run derives 6100 -> 0ca61 again and drops 6200: the manual mapping stays.
    mapped.save_mappings([derived("6100", "0ca61")])
    assert stored(mapped) == {("account", "6100"): ("account", "0caXX", "manual")}
    assert [(m.source_id, m.sink_id) for m in mapped.manual_mappings()] == [("6100", "0caXX")]


def test_set_a_dimension_value(acme: Ledger) -> None:
    assert run_cli("mapping", "set", "acme", "OPS", "0cl1", "--kind", "department").exit_code == 0
    result = run_cli(
        "mapping", "set", "acme", "SUB-1", "0cl2", "--kind", "subaccount", "--sink-kind", "class"
    )
    assert result.exit_code == 0, result.output
    assert stored(acme) == {
        ("department", "OPS"): ("department", "0cl1", "manual"),
        ("subaccount", "SUB-1"): ("class", "0cl2", "manual"),
    }
    assert run_cli("mapping", "set", "acme", "X", "Y", "--kind", "project").exit_code == 2
    one_line_error(run_cli("mapping", "set", "acme", "  ", "0ca1"), "source_id is empty")
    assert stored(acme).keys() == {("department", "OPS"), ("subaccount", "SUB-1")}


def test_unset(mapped: Ledger) -> None:
    run_cli("mapping", "set", "acme", "OPS", "0cl1", "--kind", "department")
    result = run_cli("mapping", "unset", "acme", "OPS", "--kind", "department")
    assert result.exit_code == 0, result.output
    assert "removed department OPS -> department 0cl1 (manual)" in result.stdout
    assert run_cli("mapping", "unset", "acme", "6100").exit_code == 0
    assert stored(mapped) == {("account", "6200"): ("account", "0ca62", "number")}
    one_line_error(run_cli("mapping", "unset", "acme", "OPS"), "no mapping for account 'OPS'")


def test_export_csv_and_import_it_back_as_manual(mapped: Ledger, tmp_path: Path) -> None:
    exported = run_cli("mapping", "export", "acme")
    assert exported.stdout == (
        "source_kind,source_id,sink_kind,sink_id,method\n"
        "account,6100,account,0ca61,number\n"
        "account,6200,account,0ca62,number\n"
    )
    path = tmp_path / "map.csv"
    path.write_text(exported.stdout.replace("0ca62", "0caNEW") + "class,C1,class,0cl7,\n")
    result = run_cli("mapping", "import", "acme", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Imported 3 mappings into acme as manual (1 new, 2 replaced); sync runs keep them.\n"
    )
    assert stored(mapped) == {
        ("account", "6100"): ("account", "0ca61", "manual"),
        ("account", "6200"): ("account", "0caNEW", "manual"),
        ("class", "C1"): ("class", "0cl7", "manual"),
    }


def test_export_toml_round_trips_awkward_text(acme: Ledger, tmp_path: Path) -> None:
    awkward = 'Büro "A"\\B\tC\x7f'
    acme.save_mappings([derived(awkward, "0ca1"), derived("OPS", "0cl1", "department")])
    out = tmp_path / "map.toml"
    result = run_cli("mapping", "export", "acme", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Exported 2 mappings of acme" in result.stderr
    data = tomllib.loads(out.read_text(encoding="utf-8"))
    assert data["mapping"][0] == {
        "source_kind": "account",
        "source_id": awkward,
        "sink_kind": "account",
        "sink_id": "0ca1",
        "method": "number",
    }
    assert run_cli("mapping", "import", "acme", str(out)).exit_code == 0
    assert stored(acme)[("account", awkward)] == ("account", "0ca1", "manual")
    assert "[[mapping]]" in run_cli("mapping", "export", "acme", "--format", "toml").stdout


def test_import_toml(acme: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(
        '[[mapping]]\nsource_kind = "account"\nsource_id = "6100"\n'
        'sink_kind = "account"\nsink_id = "0ca61"\n\n'
        '[[mapping]]\nsource_kind = "location"\nsource_id = "NYC"\n'
        'sink_kind = "location"\nsink_id = "0lo1"\n'
    )
    assert run_cli("mapping", "import", "acme", str(path)).exit_code == 0
    assert stored(acme) == {
        ("account", "6100"): ("account", "0ca61", "manual"),
        ("location", "NYC"): ("location", "0lo1", "manual"),
    }


HEADER = "source_kind,source_id,sink_kind,sink_id\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (HEADER + "account,6300,account,0ca63\naccount,6400,account,\n",
         "line 3: sink_id is empty"),
        (HEADER + "account,6300,account,0ca63\nproject,P1,account,0ca1\n",
         "line 3: source_kind 'project' is not one of account, subaccount"),
        (HEADER + "account,6300,account\n", "line 2: sink_id is missing"),
        (HEADER + "account,6300,account,0ca63,x,y\n", "line 2: more fields than the header has"),
        (HEADER + "account,6300,account,0ca63\naccount, 6300 ,account,0ca64\n",
         "line 3: source_id '6300' (account) is mapped already at line 2"),
        ("source_kind,source_id,sink_id\naccount,1,2\n", "line 1: missing column sink_kind"),
        ("source_kind,source_id,sink_kind,sinkid\n",
         "line 1: missing column sink_id; unknown column 'sinkid'"),
        ("", "is empty; expected the header"),
        (HEADER + "account,,account,0ca1\naccount,2,account,\n",
         "line 2: source_id is empty (and 1 more)"),
    ],
)  # fmt: skip
def test_a_bad_csv_row_imports_nothing(
    mapped: Ledger, tmp_path: Path, text: str, says: str
) -> None:
    before = stored(mapped)
    path = tmp_path / "map.csv"
    path.write_text(text)
    one_line_error(run_cli("mapping", "import", "acme", str(path)), says)
    assert stored(mapped) == before


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[mapping]]\nsource_kind = "account"\nsource_id = 6100\n'
         'sink_kind = "account"\nsink_id = "0ca1"\n',
         "[[mapping]] entry 1: source_id must be a string (quote it)"),
        ('[[mapping]]\nsource_kind = "account"\nsource_id = "1"\n'
         'sink_kind = "account"\nsink_id = "0ca1"\n[[mapping]]\nsource_kind = "account"\n',
         "[[mapping]] entry 2: source_id is missing"),
        ('[[mapping]]\nsource_kind = "account"\nsourceid = "1"\n',
         "entry 1: unknown key 'sourceid'"),
        ('[[mappings]]\nsource_kind = "account"\n', "unknown key 'mappings'"),
        ("[[mapping]\n", "is not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_toml_entry_imports_nothing(
    mapped: Ledger, tmp_path: Path, text: str, says: str
) -> None:
    before = stored(mapped)
    path = tmp_path / "map.toml"
    path.write_text(text)
    one_line_error(run_cli("mapping", "import", "acme", str(path)), says)
    assert stored(mapped) == before


def test_import_wants_a_csv_or_toml_file_that_exists(acme: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text("[]")
    one_line_error(run_cli("mapping", "import", "acme", str(path)), "use a .csv or .toml file")
    assert run_cli("mapping", "import", "acme", str(tmp_path / "none.csv")).exit_code == 2
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert run_cli("mapping", "import", "acme", str(empty)).stdout.endswith("nothing changed.\n")
