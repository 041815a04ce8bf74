"""The contract range rule and the lower-bound check, as pure functions (``ml_connector.contract``).

Also that the tables they read (which contract added each hook and capability) agree with the
hookspecs and with :class:`~ml_connector.description.Capability`.
"""

from __future__ import annotations

import inspect
import re

import pytest
from packaging.version import Version

from ml_connector import hookspecs
from ml_connector.contract import (
    CAPABILITIES_ADDED,
    CONTRACT_VERSION,
    FIRST_CONTRACT,
    HOOKS_ADDED,
    features_above_lower_bound,
    lower_bound,
    range_problems,
)
from ml_connector.description import Capability

HOOKSPECS = {
    name: fn
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
}

FIND_PAYMENT_ABOVE_1_0 = (
    "uses hook find_payment (added in contract 1.2) but declares contract >=1.0,<2, whose lower "
    "bound 1.0 lacks it: declare >=1.2, or mark the hook @hookimpl(optionalhook=True) if the "
    "plugin works without it"
)


# --- The tables -----------------------------------------------------------------------------------


def test_hooks_added_lists_exactly_the_hookspecs() -> None:
    assert HOOKSPECS, "no hookspecs found"
    assert set(HOOKS_ADDED) == set(HOOKSPECS)


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_hooks_added_agrees_with_the_hookspec_versionadded(name: str) -> None:
    doc = inspect.getdoc(HOOKSPECS[name]) or ""
    added = re.findall(r"^\.\. versionadded:: (\S+)\s*$", doc, re.MULTILINE)
    assert len(added) == 1, f"{name}: expected one '.. versionadded::' line, found {added}"
    assert HOOKS_ADDED[name] == added[0], (
        f"{name}: HOOKS_ADDED says {HOOKS_ADDED[name]}, its hookspec says {added[0]}"
    )


def test_capabilities_added_covers_exactly_the_capabilities() -> None:
    assert set(CAPABILITIES_ADDED) == {capability.value for capability in Capability}


@pytest.mark.parametrize(
    ("table", "name", "since"),
    [
        *(pytest.param("hook", n, v, id=f"hook-{n}") for n, v in HOOKS_ADDED.items()),
        *(pytest.param("capability", n, v, id=f"cap-{n}") for n, v in CAPABILITIES_ADDED.items()),
    ],
)
def test_every_feature_was_added_by_an_existing_contract(table: str, name: str, since: str) -> None:
    assert Version(FIRST_CONTRACT) <= Version(since) <= Version(CONTRACT_VERSION), (
        f"{table} {name}: added in {since}, outside {FIRST_CONTRACT}..{CONTRACT_VERSION}"
    )


# --- lower_bound ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (">=1.2,<2", "1.2"),
        (">=1.0", "1.0"),
        ("~=1.1", "1.1"),
        ("==1.2.*", "1.2"),
        (">1.0,>=1.1,<2", "1.1"),
        ("<2", None),
        ("banana", None),
    ],
)
def test_lower_bound(declared: str, expected: str | None) -> None:
    assert lower_bound(declared) == (None if expected is None else Version(expected))


# --- range_problems -------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [">=1.0,<2", ">=1.2,<2", "~=1.2", ">=1.0,<1.5", "==1.2.*"])
def test_ranges_that_keep_the_rule(declared: str) -> None:
    assert range_problems(declared) == []


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        pytest.param(
            ">=1.0",
            [
                "contract range '>=1.0' is open: end it before the next major contract "
                "(e.g. '>=1.2,<2'), which may change or remove any hook"
            ],
            id="open",
        ),
        pytest.param(
            ">=1.0,<3",
            [
                "contract range '>=1.0,<3' reaches contract 2: a major contract changes or "
                "removes hooks, so no plugin can claim it before it exists (end the range at <2)"
            ],
            id="past-the-next-major",
        ),
        pytest.param(
            ">=1.0,<=2",
            [
                "contract range '>=1.0,<=2' reaches contract 2: a major contract changes or "
                "removes hooks, so no plugin can claim it before it exists (end the range at <2)"
            ],
            id="up-to-the-next-major",
        ),
        pytest.param(
            ">=0.9,<2",
            [
                "contract range '>=0.9,<2' starts at 0.9, before the first contract 1.0: no such "
                "contract exists"
            ],
            id="before-the-first-contract",
        ),
        pytest.param(
            "<2",
            [
                "contract range '<2' has no lower bound: start it at the oldest contract whose "
                "hooks the plugin uses (e.g. '>=1.2,<2')"
            ],
            id="no-lower-bound",
        ),
        pytest.param(
            ">=0.9",
            [
                "contract range '>=0.9' starts at 0.9, before the first contract 1.0: no such "
                "contract exists",
                "contract range '>=0.9' is open: end it before the next major contract "
                "(e.g. '>=1.2,<2'), which may change or remove any hook",
            ],
            id="early-and-open",
        ),
        pytest.param(
            "banana",
            ["contract range 'banana' is not a PEP 440 range (expected e.g. '>=1.2,<2')"],
            id="not-a-range",
        ),
    ],
)
def test_ranges_that_break_the_rule(declared: str, expected: list[str]) -> None:
    assert range_problems(declared) == expected


# --- features_above_lower_bound -------------------------------------------------------------------


def test_a_hook_newer_than_the_lower_bound_is_named_with_its_contract_and_the_range() -> None:
    found = features_above_lower_bound(">=1.0,<2", ["describe_plugin", "find_payment"])
    assert found == [FIND_PAYMENT_ABOVE_1_0]


def test_an_optional_hook_newer_than_the_lower_bound_is_exempt() -> None:
    hooks = ["describe_plugin", "record_payment", "find_payment"]
    assert features_above_lower_bound(">=1.0,<2", hooks, optional_hooks=["find_payment"]) == []


@pytest.mark.parametrize("declared", [">=1.2,<2", "~=1.2", "==1.2.*"])
def test_a_lower_bound_at_the_hooks_contract_covers_it(declared: str) -> None:
    assert features_above_lower_bound(declared, ["find_payment"]) == []


def test_a_lower_bound_before_the_first_contract_counts_as_the_first() -> None:
    # Every contract there is has the 1.0 hooks; range_problems reports the 0.9 itself.
    hooks = ["describe_plugin", "authenticate", "record_payment"]
    assert features_above_lower_bound(">=0.9,<2", hooks, ["webhooks"]) == []
    assert features_above_lower_bound(">=0.9,<2", [*hooks, "find_payment"]) == [
        "uses hook find_payment (added in contract 1.2) but declares contract >=0.9,<2, whose "
        "lower bound 0.9 lacks it: declare >=1.2, or mark the hook @hookimpl(optionalhook=True) "
        "if the plugin works without it"
    ]


def test_no_lower_bound_is_left_to_range_problems() -> None:
    assert features_above_lower_bound("<2", ["find_payment"]) == []


def test_unknown_names_are_left_to_hook_validation() -> None:
    assert features_above_lower_bound(">=1.0,<2", ["create_invoice"], ["teleport"]) == []


def test_a_capability_newer_than_the_lower_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_connector import contract

    monkeypatch.setattr(contract, "CAPABILITIES_ADDED", {**CAPABILITIES_ADDED, "webhooks": "1.1"})
    found = features_above_lower_bound(">=1.0,<2", ["describe_plugin"], ["webhooks", "dimensions"])
    assert found == [
        "uses capability webhooks (added in contract 1.1) but declares contract >=1.0,<2, whose "
        "lower bound 1.0 lacks it: declare >=1.1"
    ]
