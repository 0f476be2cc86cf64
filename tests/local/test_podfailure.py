"""The emulator's podFailurePolicy matching (local/cluster/podfailure.py), rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.cluster.podfailure import match_pod_failure


def _rule(action: str, values: list[int], name: str | None = None, op: str = "In") -> Any:
    codes: dict[str, Any] = {"operator": op, "values": values}
    if name:
        codes["containerName"] = name
    return {"action": action, "onExitCodes": codes}


READ = _rule("FailJob", [60, 61], "registry")
REFUSED = _rule("FailJob", [50, 51], "registry")


@pytest.mark.parametrize(
    ("rules", "exits", "want"),
    [
        ([], [("trainer", 1)], None),
        ([READ], [("registry", 60), ("trainer", None)], ("FailJob", 0, "registry", 60)),
        ([READ], [("registry", 0), ("trainer", 60)], None),  # another container's code
        ([READ], [("registry", 1)], None),  # not among the values: counted
        ([REFUSED, READ], [("registry", 61)], ("FailJob", 1, "registry", 61)),  # first match
        ([_rule("Ignore", [137])], [("main", 137)], ("Ignore", 0, "main", 137)),  # any name
        ([_rule("Count", [0, 1], op="NotIn")], [("main", 2)], ("Count", 0, "main", 2)),
        ([_rule("Count", [0, 1], op="NotIn")], [("main", 1)], None),
        (
            [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}],
            [("m", 1)],
            None,
        ),
    ],
)
def test_the_first_matching_rule_decides(rules: Any, exits: Any, want: Any) -> None:
    found = match_pod_failure({"rules": rules}, exits)
    got = None if found is None else (found.action, found.index, found.container, found.exit_code)
    assert got == want


def test_no_policy_matches_nothing() -> None:
    assert match_pod_failure(None, [("main", 1)]) is None
