"""The controller decisions the pod runner makes, as pure functions."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.local.cluster.cronjobs import (
    MANUAL_ANNOTATION,
    SCHEDULED_ANNOTATION,
    due_time,
    job_from_cronjob,
)
from kubeloop.local.cluster.deploymentcontroller import rollout_plan
from kubeloop.local.cluster.servicecontroller import label_match

CRONJOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {
        "name": "churn-drift",
        "namespace": "ml",
        "uid": "u-9",
        "creationTimestamp": "2026-01-01T10:05:00Z",
    },
    "spec": {
        "schedule": "*/30 * * * *",
        "jobTemplate": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"template": {"spec": {"containers": []}}},
        },
    },
}


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def test_due_time_is_latest_tick_since_creation_or_last_schedule() -> None:
    assert due_time(CRONJOB, at("2026-01-01T10:29:59")) is None
    assert due_time(CRONJOB, at("2026-01-01T11:10:00")) == at("2026-01-01T11:00:00")
    ran = {**CRONJOB, "status": {"lastScheduleTime": "2026-01-01T11:00:00Z"}}
    assert due_time(ran, at("2026-01-01T11:10:00")) is None
    suspended = {**CRONJOB, "spec": {**CRONJOB["spec"], "suspend": True}}
    assert due_time(suspended, at("2026-01-01T11:10:00")) is None
    strict = {**CRONJOB, "spec": {**CRONJOB["spec"], "startingDeadlineSeconds": 60}}
    assert due_time(strict, at("2026-01-01T11:10:00")) is None


def test_scheduled_and_manual_jobs_like_the_controller_and_kubectl() -> None:
    scheduled = job_from_cronjob(CRONJOB, scheduled=at("2026-01-01T11:00:00"))
    minutes = int(at("2026-01-01T11:00:00").timestamp()) // 60
    assert scheduled["metadata"]["name"] == f"churn-drift-{minutes}"
    assert scheduled["metadata"]["annotations"][SCHEDULED_ANNOTATION] == "2026-01-01T11:00:00Z"
    assert scheduled["metadata"]["ownerReferences"][0]["uid"] == "u-9"
    assert scheduled["metadata"]["labels"] == {"a": "b"}
    assert scheduled["spec"] == CRONJOB["spec"]["jobTemplate"]["spec"]
    manual = job_from_cronjob(CRONJOB)
    assert manual["metadata"]["name"].startswith("churn-drift-manual-")
    assert manual["metadata"]["annotations"][MANUAL_ANNOTATION] == "manual"


@pytest.mark.parametrize(
    ("state", "plan"),
    [
        # replicas 2, default 25%: surge 1, unavailable 0
        ({"new": 0, "new_ready": 0, "old": 0, "old_ready": 0}, (2, 0)),
        ({"new": 0, "new_ready": 0, "old": 2, "old_ready": 2}, (1, 0)),
        ({"new": 1, "new_ready": 0, "old": 2, "old_ready": 2}, (0, 0)),
        ({"new": 1, "new_ready": 1, "old": 2, "old_ready": 2}, (0, 1)),
        ({"new": 1, "new_ready": 1, "old": 1, "old_ready": 1}, (1, 0)),
        ({"new": 2, "new_ready": 2, "old": 1, "old_ready": 1}, (0, 1)),
        ({"new": 3, "new_ready": 3, "old": 0, "old_ready": 0}, (-1, 0)),
        # a crashed old pod can go at once
        ({"new": 1, "new_ready": 0, "old": 2, "old_ready": 1}, (0, 1)),
    ],
)
def test_rolling_update_keeps_ready_pods(state: dict[str, int], plan: tuple[int, int]) -> None:
    assert rollout_plan({"spec": {"replicas": 2}}, **state) == plan


def test_recreate_stops_old_first() -> None:
    deployment = {"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}}
    assert rollout_plan(deployment, new=0, new_ready=0, old=2, old_ready=2) == (0, 2)
    assert rollout_plan(deployment, new=0, new_ready=0, old=0, old_ready=0) == (2, 0)


def test_label_selectors() -> None:
    labels = {"app": "churn", "tier": "serve"}
    assert label_match({"app": "churn"}, labels)
    assert not label_match({}, labels)
    assert label_match(
        {
            "matchLabels": {"app": "churn"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["serve"]}],
        },
        labels,
    )
    assert not label_match(
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels
    )
