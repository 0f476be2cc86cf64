"""The promotion decisions (kubeloop.controller.promotions), table-tested without kopf or a
client: the verdict of a run, which annotation requests status alone refuses, the queue, and
what a registry Job's result does to status."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller.promotions import (
    QUEUE_LIMIT,
    apply_result,
    approving,
    awaiting_approval,
    check_alias,
    check_request,
    enqueue,
    queue_full,
    run_verdict,
)
from kubeloop.decide.gate import gate


def _spec(auto_promote: bool = True) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "data": {"train": "s3://datasets/train/", "target": "y"},
            "model": {"task": "classification"},
            "artifacts": "s3://models/churn/",
            "promotion": {"metric": "roc_auc", "minimum": 0.75, "autoPromote": auto_promote},
        }
    )


@pytest.mark.parametrize(
    ("auto_promote", "auc", "expected"),
    [
        (True, 0.9, "Promoted"),
        (True, 0.6, "Rejected"),
        (False, 0.9, "AwaitingApproval"),
        (False, 0.6, "Rejected"),  # below the minimum: nothing to approve
    ],
)
def test_run_verdict(auto_promote: bool, auc: float, expected: str) -> None:
    spec = _spec(auto_promote)
    passed, message = gate(approving(spec), {"metrics": {"roc_auc": auc}}, None)
    result, said = run_verdict(spec, passed, message, "churn", "4")
    assert result == expected
    if expected == "AwaitingApproval":
        assert said.endswith("approve it with `kubectl annotate tp churn kubeloop.io/promote=4`")
    assert spec.promotion is not None and spec.promotion.auto_promote is auto_promote  # a copy


RUNS = {
    "runs": [
        {"id": "3", "result": "AwaitingApproval", "modelVersion": "3"},
        {"id": "2", "result": "Failed"},
        {"id": "1", "result": "Promoted", "modelVersion": "1"},
    ],
    "champion": {"version": "1"},
}


@pytest.mark.parametrize(
    ("action", "value", "status", "reason"),
    [
        ("Promote", "3", RUNS, None),
        ("Promote", "abc", RUNS, "InvalidVersion"),
        ("Promote", "0", RUNS, "InvalidVersion"),
        ("Promote", "1", RUNS, "AlreadyChampion"),
        ("Promote", "9", RUNS, "VersionNotFound"),  # above every version status knows
        ("Promote", "2", RUNS, None),  # older, left the history (or never ours): the Job checks
        ("Promote", "1", {}, "VersionNotFound"),  # nothing recorded at all
        ("Rollback", "1", {**RUNS, "champion": {"version": "3"}}, None),
        ("Rollback", "3", {**RUNS, "champion": {"version": "3"}}, "NotOlder"),
        ("Rollback", "5", {**RUNS, "champion": {"version": "3"}}, "NotOlder"),
        ("Rollback", "1", {"runs": RUNS["runs"]}, "NoChampion"),
        ("Rollback", "x", RUNS, "InvalidVersion"),
    ],
)
def test_check_request(action: str, value: str, status: dict[str, Any], reason: str | None) -> None:
    refusal = check_request(action, value, status)
    assert (refusal[0] if refusal else None) == reason
    if refusal is not None:
        annotation = "kubeloop.io/promote" if action == "Promote" else "kubeloop.io/rollback-to"
        assert refusal[1].startswith(f"{annotation}={value}: ")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RUNS, "3"),
        ({**RUNS, "champion": {"version": "3"}}, None),  # approved since
        ({**RUNS, "registryQueue": [{"version": "3"}]}, None),  # approval under way
        ({"runs": [{"id": "1", "result": "Rejected", "modelVersion": "1"}]}, None),
        ({}, None),
    ],
)
def test_awaiting_approval(status: dict[str, Any], expected: str | None) -> None:
    assert awaiting_approval(status) == expected


def test_enqueue_allocates_ids_and_jobs_in_order_and_stays_bounded() -> None:
    status: dict[str, Any] = {"lastRegistryOpId": 4}
    first = enqueue(status, "churn", "Gate", "5", by="gate", reason="passed")
    second = enqueue(status, "churn", "Promote", "3", by="annotation", reason="asked")
    assert (first["id"], first["job"]) == ("5", "churn-registry-5")
    assert (second["id"], second["job"]) == ("6", "churn-registry-6")
    assert [op["id"] for op in status["registryQueue"]] == ["5", "6"]
    assert status["lastRegistryOpId"] == 6
    for version in range(10, 10 + QUEUE_LIMIT):
        enqueue(status, "churn", "Gate", str(version), by="gate", reason="passed")
    # Full (the Jobs do not finish): a new gate promotion replaces the last queued one, whose
    # Job was never created.
    assert len(status["registryQueue"]) == QUEUE_LIMIT
    last = status["registryQueue"][-1]
    assert last["version"] == str(9 + QUEUE_LIMIT)
    assert last["job"] == f"churn-registry-{int(last['id'])}"


OP = {"id": "2", "job": "churn-registry-2", "action": "Promote", "version": "3",
      "alias": "champion", "by": "annotation kubeloop.io/promote", "reason": "asked"}  # fmt: skip
OK = {"kind": "RegistryResult", "ok": True, "version": "3", "uri": "s3://models/churn/versions/3",
      "metrics": {"roc_auc": 0.9}, "runId": "3", "previous": "1"}  # fmt: skip


def test_an_approval_moves_the_champion_and_records_it() -> None:
    status: dict[str, Any] = {"champion": {"version": "1"}, "registryQueue": [OP]}
    event = apply_result(_spec(False), status, OP, OK)
    assert event == ("Promoted", "promoted version 3 (was version 1) by kubeloop.io/promote", False)
    assert status["champion"]["version"] == "3" and status["champion"]["score"] == 0.9
    assert status["aliases"] == {"champion": "3"}
    assert status["promotions"][0]["previous"] == "1"


def test_a_later_decision_for_the_alias_wins() -> None:
    """The gate promoted version 4 after the approval of 3 was queued: status.champion stays
    4 (the gate's write lands after this one's)."""
    gate_op = {**OP, "id": "3", "action": "Gate", "version": "4", "by": "gate"}
    status: dict[str, Any] = {"champion": {"version": "4"}, "registryQueue": [OP, gate_op]}
    apply_result(_spec(), status, OP, OK)
    assert status["champion"] == {"version": "4"} and status["aliases"] == {"champion": "3"}


@pytest.mark.parametrize(
    ("action", "result", "reason", "message"),
    [
        ("Promote", {"ok": False, "reason": "ChecksumMismatch", "message": "version 3 is corrupt"},
         "ChecksumMismatch", "kubeloop.io/promote=3 refused: version 3 is corrupt"),
        ("Rollback", None, "NoResult",
         "kubeloop.io/rollback-to=3 refused: the registry Job ended without a result"),
        ("Gate", {"ok": False, "reason": "StorageUnreachable", "message": "no endpoint"},
         "AliasNotWritten", "alias champion -> version 3: no endpoint"),
    ],
)  # fmt: skip
def test_a_refusal_changes_nothing_but_says_why(
    action: str, result: dict[str, Any] | None, reason: str, message: str
) -> None:
    op = {**OP, "action": action}
    status: dict[str, Any] = {"champion": {"version": "1"}, "registryQueue": [op]}
    assert apply_result(_spec(), status, op, result) == (reason, message, True)
    assert status == {"champion": {"version": "1"}, "registryQueue": [op]}


KNOWN = {"runs": [{"modelVersion": "2"}, {"modelVersion": "1"}], "champion": {"version": "2"}}


@pytest.mark.parametrize(
    ("key", "value", "reason", "says"),
    [
        ("alias.kubeloop.io/production", "1", None, None),
        ("alias.kubeloop.io/staging", "2", None, None),  # the champion's version: fine
        ("alias.kubeloop.io/champion", "1", "InvalidAlias", "moves by kubeloop.io/promote"),
        ("alias.kubeloop.io/latest", "1", "InvalidAlias", "not 'latest' or a number"),
        ("alias.kubeloop.io/Prod_1", "1", "InvalidAlias", "lowercase letters, digits and '-'"),
        ("alias.kubeloop.io/7", "1", "InvalidAlias", "not 'latest' or a number"),
        ("alias.kubeloop.io/production", "v1", "InvalidVersion", "must be a version number"),
        ("alias.kubeloop.io/production", "9", "VersionNotFound", "recorded no version 9"),
    ],
)
def test_which_alias_annotations_status_refuses(
    key: str, value: str, reason: str | None, says: str | None
) -> None:
    refusal = check_alias(key, value, KNOWN)
    if reason is None:
        assert refusal is None
        return
    assert refusal is not None and refusal[0] == reason
    assert refusal[1].startswith(f"{key}={value}: ") and says in refusal[1]


def test_a_named_alias_is_mirrored_and_never_moves_the_champion() -> None:
    op = {**OP, "action": "Alias", "alias": "production", "version": "1",
          "by": "annotation alias.kubeloop.io/production"}  # fmt: skip
    status: dict[str, Any] = {"champion": {"version": "2"}, "registryQueue": [op]}
    result = {**OK, "version": "1", "alias": "production", "previous": None}
    event = apply_result(_spec(), status, op, result)
    assert event == (
        "AliasSet",
        "alias production -> version 1 by alias.kubeloop.io/production",
        False,
    )
    assert status["champion"] == {"version": "2"}
    assert status["aliases"] == {"production": "1"}
    entry = status["promotions"][0]
    assert (entry["alias"], entry["version"], entry["by"]) == (
        "production",
        "1",
        "annotation alias.kubeloop.io/production",
    )
    refused = {"ok": False, "reason": "ChecksumMismatch", "message": "version 1 is corrupt"}
    status = {"registryQueue": [op]}
    assert apply_result(_spec(), status, op, refused) == (
        "ChecksumMismatch",
        "alias.kubeloop.io/production=1 refused: version 1 is corrupt",
        True,
    )


@pytest.mark.parametrize(
    ("waiting", "refused"), [(0, False), (QUEUE_LIMIT - 1, False), (QUEUE_LIMIT, True)]
)
def test_an_annotation_is_refused_while_the_registry_queue_is_full(
    waiting: int, refused: bool
) -> None:
    status = {"registryQueue": [{"id": i} for i in range(waiting)]}
    refusal = queue_full(status, "kubeloop.io/promote=2")
    assert (refusal is not None) == refused
    if refusal is not None:
        assert refusal[0] == "RegistryBusy"
        assert refusal[1].startswith("kubeloop.io/promote=2: ")
