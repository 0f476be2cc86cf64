"""The adoption decisions (kubeloop.controller.adoption), table-tested without kopf or a client:
whether the registry must be read before a run, when a failed read is retried, what its result
does to status (run numbering, the champion, no Create run when one exists)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.controller.adoption import (
    ADOPTED,
    Adopter,
    apply_inspect,
    first_run,
    fold_read,
    holds_runs,
    inspect_due,
    inspect_op,
    inspect_pending,
    reading_run,
    ready_reason,
    retry_delay,
    settle_read,
    waiting,
)
from kubeloop.controller.promotions import check_request

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.UTC)
ARTIFACTS = "s3://models/churn/"
ADOPTER = Adopter(ARTIFACTS, spec_hash="abc", generation=1, metric="roc_auc")
INSPECTED = {"inspectedAt": "2026-11-30T11:00:00Z", "lastRunId": 5, "failures": 0}
QUEUED = {"registryQueue": [{**inspect_op("ml/churn"), "id": "1", "job": "churn-registry-1"}]}
RUN_1 = {"id": "1", "job": "churn-run-1", "trigger": "Create", "startedAt": "2026-11-30T12:00:00Z"}
FOLDED: dict[str, Any] = {
    "lastRunId": 1,
    "currentRun": {**RUN_1, "readsRegistry": True},
    "registrySync": {"message": "reading the registry in run 1's Job"},
}


@pytest.mark.parametrize(
    ("status", "pending", "due"),
    [
        ({}, True, True),  # created: read the registry first
        (QUEUED, True, False),  # the read is queued: not twice
        ({"registrySync": INSPECTED}, False, False),  # read: runs may start
        ({"lastRunId": 3}, False, False),  # a status from before adoption existed
        (
            {"registrySync": {"failures": 1, "retryAt": "2026-11-30T12:00:30Z"}},
            True,
            False,  # backoff not over
        ),
        ({"registrySync": {"failures": 1, "retryAt": "2026-11-30T11:59:30Z"}}, True, True),
        (FOLDED, True, False),  # run 1's Job reads it: no registry Job besides
        # run 1 refused by the API server (recorded Failed): a registry Job reads it then
        ({"lastRunId": 1, "registrySync": {"message": "reading in run 1's Job"}}, True, True),
    ],
)
def test_when_the_registry_is_read(status: dict[str, Any], pending: bool, due: bool) -> None:
    assert inspect_pending(status) is pending
    assert inspect_due(status, NOW) is due


@pytest.mark.parametrize(
    ("failures", "seconds"), [(0, 0), (1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (40, 600)]
)
def test_failed_reads_back_off_to_ten_minutes(failures: int, seconds: int) -> None:
    assert retry_delay(failures) == seconds


@pytest.mark.parametrize(
    ("status", "create"),
    [
        ({}, True),  # a new pipeline
        ({"lastRunId": 1}, False),  # legacy: a run was allocated
        ({"lastRunId": 5, "registrySync": INSPECTED}, True),  # registry without champion
        ({"lastRunId": 6, "registrySync": INSPECTED}, False),  # run 6 started since
        (
            {"lastRunId": 5, "registrySync": INSPECTED, "champion": {"version": "2"}},
            False,  # adopted champion: the same YAML does not train again
        ),
    ],
)
def test_which_run_is_the_create_run(status: dict[str, Any], create: bool) -> None:
    assert first_run(status) is create


def _inspected(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "RegistryResult",
        "ok": True,
        "operation": "inspect",
        "lastRunId": 5,
        "aliases": {},
        "versions": [1, 2],
        **fields,
    }


def _apply(status: dict[str, Any], result: dict[str, Any] | None) -> tuple[str, str, bool]:
    return apply_inspect(status, result, ADOPTER, now=NOW)


def test_a_champion_in_the_registry_is_adopted_and_no_run_starts() -> None:
    status: dict[str, Any] = {}
    champion = {
        "version": "2",
        "uri": "s3://models/churn/versions/2",
        "runId": "2",
        "promotedAt": "2026-11-29T10:00:00.000+00:00",
    }
    result = _inspected(
        aliases={"champion": "2", "production": "1"},
        champion=champion,
        metrics={"roc_auc": 0.91},
        versions=[1, 2, 3, 4, 5],
    )
    reason, message, warning = _apply(status, result)
    assert (reason, warning) == (ADOPTED, False)
    assert "version 2 is the champion again" in message and "after run 5" in message
    assert status["champion"] == {**champion, "metrics": {"roc_auc": 0.91}, "score": 0.91}
    assert status["aliases"] == {"champion": "2", "production": "1"}
    assert (status["lastRunId"], status["lastRecordedRunId"]) == (5, 5)
    # The spec applied again stands for the champion: neither Create nor SpecChange.
    assert (status["lastRunGeneration"], status["lastRunSpecHash"]) == (1, "abc")
    assert not inspect_pending(status) and not first_run(status)
    # Versions 1-5 are the registry's (runs 3-5 were not promoted, their records left with the
    # old object): an approval of version 5 goes to the registry Job, 6 is refused.
    assert status["registrySync"]["latestVersion"] == 5
    assert check_request("Promote", "5", status) is None
    assert check_request("Promote", "6", status) is not None
    assert waiting(status) is None and ready_reason(status) == ADOPTED
    status["runs"] = [{"id": "6", "result": "Rejected"}]
    assert ready_reason(status) == "ChampionAvailable"


@pytest.mark.parametrize("last", [0, 5])
def test_a_registry_without_champion_starts_the_create_run_after_its_runs(last: int) -> None:
    status: dict[str, Any] = {}
    reason, message, warning = _apply(status, _inspected(lastRunId=last))
    assert (reason, warning) == ("RegistryRead", False)
    assert status["lastRunId"] == last and "champion" not in status
    assert "lastRunSpecHash" not in status  # the Create run records it
    assert first_run(status) and not inspect_pending(status)
    assert ("after run 5" if last else "at run 1") in message


def test_a_failed_read_says_so_and_is_retried_after_a_backoff() -> None:
    status: dict[str, Any] = {}
    failure = {
        "kind": "RegistryResult",
        "ok": False,
        "reason": "StorageUnreachable",
        "message": "could not reach the object store",
    }
    reason, message, warning = _apply(status, failure)
    assert (reason, warning) == ("RegistryReadFailed", True)
    assert "s3://models/churn/ failed (StorageUnreachable)" in message
    assert "attempt 1, the next in 30 s" in message
    assert status["registrySync"]["retryAt"] == "2026-11-30T12:00:30Z"
    assert inspect_pending(status) and not inspect_due(status, NOW)
    assert inspect_due(status, NOW + datetime.timedelta(seconds=30))
    assert waiting(status) == ("RegistryReadFailed", message)
    _apply(status, None)  # a Job without a result (its pod evicted): attempt 2
    assert status["registrySync"]["failures"] == 2
    assert status["registrySync"]["retryAt"] == "2026-11-30T12:01:00Z"
    _apply(status, _inspected(lastRunId=0))
    assert not inspect_pending(status) and status["registrySync"]["failures"] == 0
    assert status["registrySync"]["retryAt"] is None


def test_reading_waits_with_a_reason() -> None:
    assert waiting({}) == (
        "ReadingRegistry",
        "reading the registry (aliases, champion, run numbering) before the first run",
    )


BACKING_OFF = {"failures": 1, "retryAt": "2026-11-30T12:00:30Z", "lastRunId": 1, "message": "x"}


@pytest.mark.parametrize(
    ("status", "foldable", "holds"),
    [
        ({}, True, False),  # a new pipeline: its first run carries the read
        ({}, False, True),  # spec.search: trials would run before the read; a Job reads it
        (QUEUED, True, True),  # an older operator queued a registry Job: it reads
        (FOLDED, True, True),  # run 1 reads it (and is in progress anyway)
        ({"lastRunId": 1, "registrySync": BACKING_OFF}, True, True),  # a failed read backs off
        ({"lastRunId": 3}, False, False),  # nothing to read
        ({"registrySync": INSPECTED}, False, False),
    ],
)
def test_what_the_pending_read_holds_back(
    status: dict[str, Any], foldable: bool, holds: bool
) -> None:
    assert holds_runs(status, NOW, foldable=foldable) is holds


def test_a_new_pipelines_first_run_carries_the_read() -> None:
    status: dict[str, Any] = {}
    run = dict(RUN_1)
    fold_read(status, run)
    status.update(lastRunId=1, currentRun=run)
    assert run["readsRegistry"] is True
    assert "run 1's Job (init container registry)" in status["registrySync"]["message"]
    assert inspect_pending(status) and reading_run(status) == run
    assert not inspect_due(status, NOW) and waiting(status) is None  # training, as it reads


def _settle(status: dict[str, Any], result: dict[str, Any] | None) -> tuple[bool, str, str, bool]:
    return settle_read(status, status["currentRun"], result, ADOPTER, now=NOW)


def _folded() -> dict[str, Any]:
    return {**FOLDED, "currentRun": dict(FOLDED["currentRun"])}


def test_an_empty_registry_lets_the_first_run_stand() -> None:
    """Its own marker (a retried pod: lastRunId 1) is not the registry's: nothing is taken."""
    status = _folded()
    stands, reason, message, warning = _settle(status, _inspected(lastRunId=1, empty=True))
    assert (stands, reason, warning) == (True, "RegistryRead", False)
    assert (
        message == "the registry at s3://models/churn/ holds nothing of this pipeline: run 1 trains"
    )
    assert status["currentRun"] == FOLDED["currentRun"]  # recorded by the caller, as any run
    assert not inspect_pending(status) and status["registrySync"]["lastRunId"] == 0
    assert status["lastRunId"] == 1 and not first_run(status)
    assert "champion" not in status and "latestVersion" not in status["registrySync"]


def test_a_registry_with_a_champion_withdraws_the_run_and_is_adopted() -> None:
    status = _folded()
    result = _inspected(
        lastRunId=5,
        empty=False,
        aliases={"champion": "2"},
        champion={"version": "2", "uri": "s3://models/churn/versions/2", "runId": "2"},
        metrics={"roc_auc": 0.9},
    )
    stands, reason, message, warning = _settle(status, result)
    assert (stands, reason, warning) == (False, ADOPTED, False)
    assert message.startswith("run 1 withdrawn before it trained: version 2 is the champion")
    assert status["currentRun"] is None and "runs" not in status
    assert status["champion"]["version"] == "2" and status["lastRunId"] == 5
    assert status["lastRecordedRunId"] == 5  # run 1's Job is never recorded
    assert not inspect_pending(status) and not first_run(status)


@pytest.mark.parametrize("last", [0, 5])
def test_a_registry_with_runs_but_no_champion_starts_after_both(last: int) -> None:
    """Run ids after max(the registry's last run, the withdrawn run): no Job name taken twice."""
    status = _folded()
    result = _inspected(
        lastRunId=last, empty=False, aliases={"production": "1"} if not last else {}
    )
    stands, reason, message, _ = _settle(status, result)
    after = max(last, 1)
    assert (stands, reason) == (False, "RegistryRead")
    assert f"first run starts after run {after}" in message
    assert status["lastRunId"] == status["lastRecordedRunId"] == after
    assert status["currentRun"] is None and first_run(status)  # the Create run, next id
    assert not holds_runs(status, NOW, foldable=True) and not inspect_pending(status)


def test_a_failed_read_withdraws_the_run_and_reads_again_in_a_later_run() -> None:
    status = _folded()
    failure = {
        "kind": "RegistryResult",
        "ok": False,
        "reason": "StorageAccessDenied",
        "message": "403",
    }
    stands, reason, message, warning = _settle(status, failure)
    assert (stands, reason, warning) == (False, "RegistryReadFailed", True)
    assert message.startswith("run 1 withdrawn before it trained: reading the registry at")
    assert status["currentRun"] is None and status["lastRecordedRunId"] == 1
    assert inspect_pending(status) and waiting(status) == (
        "RegistryReadFailed",
        status["registrySync"]["message"],
    )
    assert holds_runs(status, NOW, foldable=True)  # backing off
    later = NOW + datetime.timedelta(seconds=30)
    # After the backoff: the Create run again (run 2 carries the read), not a registry Job...
    assert not holds_runs(status, later, foldable=True) and first_run(status)
    # ...unless no run can carry it.
    assert inspect_due(status, later)
    run_2 = {**RUN_1, "id": "2", "job": "churn-run-2"}
    fold_read(status, run_2)
    status.update(lastRunId=2, currentRun=run_2)
    _, reason, message, _ = _settle(status, None)  # no result (its pod never ran): attempt 2
    assert reason == "RegistryReadFailed"
    assert "(NoResult): run 2's init container registry ended without a result" in message
    sync = status["registrySync"]
    assert (sync["failures"], sync["lastRunId"], status["lastRecordedRunId"]) == (2, 2, 2)
    assert first_run(status)  # run 3 next, after this backoff
