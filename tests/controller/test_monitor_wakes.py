"""Which ModelDeployment events wake its DriftMonitors (controller/monitor.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.controller import monitor


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(monitor, "reconcile", lambda ns, name: calls.append((ns, name)))
    monkeypatch.setattr(monitor, "_SEEN", {})
    watching = {("ml", "churn"): ["churn-monitor"]}
    monkeypatch.setattr(monitor, "monitors_of", lambda ns, name: watching.get((ns, name), []))
    return calls


def _event(kind: str, version: str, replicas: int = 2) -> dict[str, Any]:
    body = {
        "spec": {"model": {"pipeline": "churn"}, "replicas": replicas},
        "status": {"modelVersion": version, "modelUri": f"file:///m/versions/{version}"},
    }
    return {"type": kind, "namespace": "ml", "name": "churn", "body": body}


def test_only_what_a_monitor_reads_wakes_it(woken: list[tuple[str, str]]) -> None:
    monitor.on_deployment_event(**_event("ADDED", "1"))
    monitor.on_deployment_event(**_event("MODIFIED", "1", replicas=3))  # not read: no wake
    monitor.on_deployment_event(**_event("MODIFIED", "2"))
    assert woken == [("ml", "churn-monitor"), ("ml", "churn-monitor")]


def test_a_deleted_deployment_is_forgotten(woken: list[tuple[str, str]]) -> None:
    monitor.on_deployment_event(**_event("ADDED", "1"))
    monitor.on_deployment_event(**_event("DELETED", "1"))
    assert monitor._SEEN == {}
    monitor.on_deployment_event(**_event("ADDED", "1"))  # re-created as it was: wakes again
    assert len(woken) == 3
    assert monitor._SEEN != {}


def test_a_deployment_no_monitor_reads_is_not_remembered(woken: list[tuple[str, str]]) -> None:
    event = {**_event("ADDED", "1"), "name": "unwatched"}
    monitor.on_deployment_event(**event)
    assert woken == [] and monitor._SEEN == {}
