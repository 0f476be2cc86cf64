"""The elector against the emulated API server, with injected monotonic clocks: one replica
creates the Lease, another waits it out and takes it over; a leader past its renew deadline
sends no write and stops before the Lease runs out; a released Lease is taken at once; a
follower's probe says who leads."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from kubeloop.controller import kube
from kubeloop.controller.config import LeaderElection
from kubeloop.controller.leader import LEADER, Elector, FollowerProbe
from kubeloop.decide.lease import LeaseTiming
from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.processes import free_port

NAMESPACE = "kubeloop-system"
TIMING = LeaseTiming(duration=15, renew=5.0)


class Clock:
    """A monotonic clock a test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread() as thread:
        yield thread


def _elector(url: str, lease: str, name: str, lost: list[str]) -> tuple[Elector, Clock]:
    clock = Clock()
    election = LeaderElection(lease, NAMESPACE, name, TIMING)
    return Elector(kube.connect(url), election, lost.append, clock), clock


def _lease(cluster: EmulatorThread, elector: Elector) -> dict[str, Any]:
    found = cluster.emulator.get_object(
        "coordination.k8s.io/v1/leases", NAMESPACE, elector.election.lease
    )
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


def _gauge(elector: Elector) -> float:
    election = elector.election
    return float(LEADER.labels(election.namespace, election.identity)._value.get())


def test_takeover_only_after_the_lease_ran_out_and_fencing_before_it(
    cluster: EmulatorThread,
) -> None:
    lost: list[str] = []
    a, a_clock = _elector(cluster.url, "takeover", "operator-a", lost)
    b, b_clock = _elector(cluster.url, "takeover", "operator-b", lost)

    assert a.step() == TIMING.renew  # no Lease: a creates it and leads
    assert a.leading.is_set() and a.may_act() and _gauge(a) == 1
    assert _lease(cluster, a)["holderIdentity"] == "operator-a"
    served = cluster.emulator.requests_served
    assert a.step() == TIMING.renew and cluster.emulator.requests_served == served + 1  # a PUT
    assert b.step() == TIMING.retry and not b.leading.is_set()  # b follows
    assert b.describe()["role"] == "follower" and b.describe()["leader"] == "operator-a"

    # a cannot renew (say, its node lost the API): 10 s later it stops writing...
    api = kube.connect(cluster.url)
    api.fence = a.may_act
    a_clock.now += TIMING.renew_deadline
    assert not a.may_act()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": "ml"}}
    with pytest.raises(kopf.TemporaryError, match="no longer holds the leader lease"):
        api.create(job)
    assert cluster.emulator.get_object("batch/v1/jobs", "ml", "x") is None
    # ... while b, whose clock started when it saw a's last renew, still waits for 5 s more.
    b_clock.now += TIMING.renew_deadline
    assert b.step() == pytest.approx(TIMING.retry) and not b.leading.is_set()
    b_clock.now += TIMING.duration - TIMING.renew_deadline - 0.5
    assert b.step() == pytest.approx(0.5)  # it looks again exactly when the lease runs out
    b_clock.now += 0.5
    assert b.step() == TIMING.renew and b.leading.is_set() and _gauge(b) == 1
    spec = _lease(cluster, b)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("operator-b", 1)

    # a, back, finds b's name in the Lease: it stops (the process would exit here).
    a_clock.now += 1
    assert a.step() == 0.0  # its renew (from the version it wrote) is refused: read at once
    a.step()
    assert lost == [f"the leader lease {NAMESPACE}/takeover is held by operator-b"]
    assert _gauge(a) == 0 and a.describe()["role"] == "follower" and not a.may_act()

    # b stops on purpose: it releases, and a third replica takes over at its first look.
    b.release()
    assert _lease(cluster, b)["holderIdentity"] == "" and _gauge(b) == 0
    c, _ = _elector(cluster.url, "takeover", "operator-c", lost)
    c.step()
    assert c.leading.is_set() and _lease(cluster, c)["leaseTransitions"] == 2


def test_a_leader_that_cannot_reach_the_api_stops_at_its_renew_deadline(
    cluster: EmulatorThread,
) -> None:
    lost: list[str] = []
    a, clock = _elector(cluster.url, "unreachable", "operator-a", lost)
    a.step()
    assert a.leading.is_set()
    a.api = kube.connect(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    clock.now += TIMING.renew_deadline
    stopped = threading.Event()
    a.on_lost = lambda why: (lost.append(why), stopped.set())  # type: ignore[func-returns-value]
    a.start()
    assert stopped.wait(10)
    a.stop()
    assert lost == [f"could not renew the leader lease {NAMESPACE}/unreachable for 10 s"]


def test_a_followers_probe_says_who_leads(cluster: EmulatorThread) -> None:
    a, _ = _elector(cluster.url, "probe", "operator-a", [])
    a.holder = "operator-b"
    port = free_port()
    probe = FollowerProbe(f"http://127.0.0.1:{port}/healthz", a.describe)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert json.load(resp) == {
                "role": "follower",
                "identity": "operator-a",
                "leader": "operator-b",
                "lease": f"{NAMESPACE}/probe",
            }
    finally:
        probe.close()
