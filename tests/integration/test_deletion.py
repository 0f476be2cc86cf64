"""Deleting a ModelDeployment through the API (as `kubectl delete` does) while its resync timer
is in the middle of a reconcile: the operator lets the object go as soon as the timer returns.

kopf puts its finalizer on every object that has a timer, and on a DELETE it waits for the
timer's task to exit before removing it. A timer that is running a reconcile cannot exit
until the reconcile returns; kopf then checks again only after `cancellation_polling`, which
by default is 60 s, the whole `kubectl delete --timeout=60s` (tests/local/test_kubectl_cluster.py
failed now and then, when the DELETE happened to land on a resync in flight).

The ordering is made deterministic by holding the timer's own reconcile (the real one runs,
only later) at a gate until the DELETE has marked the object.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from tests.integration.harness import MD, Cluster, Operator, example, wait_for

from kubeloop.controller import deployment

FINALIZER = "kubeloop.io/finalizer"


class TimerGate:
    """Holds the next reconcile that the ModelDeployment timer starts, until released."""

    def __init__(self, reconcile: Callable[[str, str], None]) -> None:
        self._reconcile = reconcile
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, namespace: str, name: str) -> None:
        from_timer = sys._getframe(1).f_code is deployment.on_timer.__code__
        if self.armed and from_timer and not self.entered.is_set():
            self.entered.set()
            # Bounded, so that a failing test cannot hang kopf's shutdown.
            self.released.wait(120)
        self._reconcile(namespace, name)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[TimerGate]:
    held = TimerGate(deployment.reconcile)
    monkeypatch.setattr(deployment, "reconcile", held)
    yield held
    held.released.set()


def test_delete_during_a_timer_reconcile_is_released_when_the_reconcile_returns(
    cluster: Cluster, operator: Operator, gate: TimerGate
) -> None:
    cluster.create(example("pinned-version-deployment.yaml", name="md-delete"))
    wait_for(
        lambda: (
            FINALIZER
            in (cluster.get(MD, "ml", "md-delete") or {}).get("metadata", {}).get("finalizers", [])
        ),
        what="kopf's finalizer (the timer needs it)",
    )
    gate.armed = True
    assert gate.entered.wait(60), "the timer never reconciled md-delete"

    marked = cluster.api_delete(MD, "ml", "md-delete")
    assert marked["metadata"].get("deletionTimestamp")  # the finalizer holds it
    gate.released.set()

    # kopf's default polling let it go only 60 s later; a generous bound far below that.
    wait_for(lambda: cluster.get(MD, "ml", "md-delete") is None, timeout=30, what="md-delete gone")
