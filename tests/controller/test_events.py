"""controller/events.py against the emulated API server: Events are queued, never sent by the
caller, posted in order; the same Event again counts up (a PATCH, or nothing while one is still
queued); a full queue drops its oldest; a deposed leader posts nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubeloop.controller import kube
from kubeloop.controller.events import DROPPED, Recorder
from kubeloop.local.cluster.emulator import EmulatorThread

BODY = {
    "apiVersion": "kubeloop.io/v1alpha1",
    "kind": "TrainingPipeline",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-churn"},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread(admission=False) as thread:
        yield thread


@pytest.fixture
def client(cluster: EmulatorThread) -> Iterator[kube.Kube]:
    api = kube.connect(cluster.url)
    yield api
    for event in cluster.emulator.list_objects("v1/events", "ml"):
        cluster.call(cluster.emulator.delete_object("v1/events", "ml", event["metadata"]["name"]))


def _events(cluster: EmulatorThread) -> list[dict[str, Any]]:
    found = cluster.emulator.list_objects("v1/events", "ml")
    return sorted(found, key=lambda e: str(e["firstTimestamp"]))


def test_events_are_posted_in_order_and_the_same_one_counts_up(
    cluster: EmulatorThread, client: kube.Kube
) -> None:
    recorder = Recorder(lambda: client, senders=1)
    recorder.record(BODY, "Normal", "RegistryRead", "the registry holds no champion")
    recorder.record(BODY, "Normal", "RunStarted", "run 1 (Create): Job churn-run-1")
    recorder.record(BODY, "Normal", "RunStarted", "run 1 (Create): Job churn-run-1")
    assert recorder.flush(10)
    recorder.record(BODY, "Normal", "RunStarted", "run 1 (Create): Job churn-run-1")
    assert recorder.flush(10)
    events = _events(cluster)
    assert [(e["reason"], e["count"]) for e in events] == [("RegistryRead", 1), ("RunStarted", 3)]
    assert events[1]["involvedObject"] == {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "name": "churn",
        "uid": "u-churn",
        "namespace": "ml",
    }
    assert (events[1]["type"], events[1]["source"]) == ("Normal", {"component": "kubeloop"})


def test_a_full_queue_drops_its_oldest_event_and_counts_it(
    cluster: EmulatorThread, client: kube.Kube
) -> None:
    release = threading.Event()

    def slow_client() -> kube.Kube:  # the sender holds the first Event until released
        release.wait(10)
        return client

    dropped = DROPPED.labels(namespace="ml", why="queue_full")
    before = dropped._value.get()
    recorder = Recorder(slow_client, limit=2, senders=1)
    for reason in ("First", "Second", "Third", "Fourth"):
        recorder.record(BODY, "Normal", reason, reason.lower())
        if reason == "First":  # taken by the sender, no longer queued
            while recorder.pending() != 1 or recorder._senders[0].queue:
                threading.Event().wait(0.01)
    release.set()
    assert recorder.flush(10)
    assert [e["reason"] for e in _events(cluster)] == ["First", "Third", "Fourth"]
    assert dropped._value.get() == before + 1


def test_a_deposed_leader_posts_nothing(cluster: EmulatorThread, client: kube.Kube) -> None:
    client.fence = lambda: False
    recorder = Recorder(lambda: client, senders=1)
    recorder.record(BODY, "Warning", "RunFailed", "run 1: no column churned")
    assert recorder.flush(10)
    assert _events(cluster) == []
