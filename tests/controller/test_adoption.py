"""The adoption decisions (kubeloop.controller.adoption), table-tested without kopf or a client:
whether the registry must be read before a run, when a failed read is retried, what its result
does to status (run numbering, the champion, no Create run when one exists)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.controller.adoption import (
    ADOPTED,
    apply_inspect,
    first_run,
    inspect_due,
    inspect_op,
    inspect_pending,
    ready_reason,
    retry_delay,
    waiting,
)
from kubeloop.controller.promotions import check_request

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.UTC)
ARTIFACTS = "s3://models/churn/"
INSPECTED = {"inspectedAt": "2026-11-30T11:00:00Z", "lastRunId": 5, "failures": 0}
QUEUED = {"registryQueue": [{**inspect_op("ml/churn"), "id": "1", "job": "churn-registry-1"}]}


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
    return apply_inspect(
        status,
        result,
        artifacts=ARTIFACTS,
        spec_hash="abc",
        generation=1,
        metric="roc_auc",
        now=NOW,
    )


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
