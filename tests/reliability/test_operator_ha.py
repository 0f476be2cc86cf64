"""High availability: two real operators (`kubeloop operator` subprocesses) elect a leader on
one coordination.k8s.io/v1 Lease; the leader is SIGKILLed in the middle of a run, and later
the next leader in the middle of a canary rollout; each time the follower takes over. We
measure the takeovers (the Lease, then the first thing done: the killed leader's run recorded)
and count what must never happen: duplicate Jobs, lost runs, a canary restarted from its first
step or created twice.

Short lease timings (3 s lease, 1 s renew) keep it fast; `KUBELOOP_HA_LEASE_SECONDS=15` runs it
with the chart's defaults (15 s lease, 5 s renew). Faked: the API server (the emulator, in this
process) and the Job controller (the test plays it, as tests/integration does).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.harness import (
    MD,
    Cluster,
    events,
    example,
    posted,
    training_result,
    wait_for,
)
from tests.reliability import runs
from tests.reliability.operator_process import OperatorProcess

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.processes import free_port

pytestmark = pytest.mark.slow  # ~20 s: `make test` starts it first

NAME, MD_NAME = "ha", "ha-md"
DEPLOYS = "apps/v1/deployments"
NAMESPACE, LEASE = "kubeloop-system", "kubeloop-leader"
LEASES = "coordination.k8s.io/v1/leases"
# KUBELOOP_HA_LEASE_SECONDS=15 measures the chart's defaults (15 s lease, 5 s renew).
DURATION = int(os.environ.get("KUBELOOP_HA_LEASE_SECONDS", "3"))
RENEW = DURATION / 3
# Issue 17 asks for a takeover within 15 s. A follower may take over only once the lease has run
# out unrenewed on its own clock, so the bound is the lease, plus its look interval, plus kopf's
# start: 15 s holds for short leases; the default 15 s one takes 10-17 s after a SIGKILL.
TAKEOVER_LIMIT = max(15.0, DURATION + RENEW / 2 + 2.0)


def _lease(cluster: Cluster) -> dict[str, Any]:
    return (cluster.get(LEASES, NAMESPACE, LEASE) or {}).get("spec") or {}


def _probe(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        body: dict[str, Any] = json.load(resp)
    return body


def _leads(port: int) -> bool:
    """kopf's probe, on the leader, says so. kopf serves it from its own start on, and the new
    leader reconciles as soon as its informers have listed everything: the run it recorded may
    come a moment before its probe is up."""
    answer = _probe_or_none(port) or {}
    return bool((answer.get("leadership") or {}).get("role") == "leader")


def _probe_or_none(port: int) -> dict[str, Any] | None:
    try:
        return _probe(port)
    except OSError:
        return None


class Replica(OperatorProcess):
    """One operator replica: its pod name is its identity in the Lease."""

    def __init__(self, url: str, folder: Path, name: str) -> None:
        self.name, self.port = name, free_port()
        env = {
            "KUBELOOP_LEASE_NAME": LEASE,
            "KUBELOOP_OPERATOR_NAMESPACE": NAMESPACE,
            "KUBELOOP_POD_NAME": name,
            "KUBELOOP_LEASE_DURATION_SECONDS": str(DURATION),
            "KUBELOOP_LEASE_RENEW_SECONDS": str(RENEW),
        }
        super().__init__(url, folder / f"{name}.log", env, f"http://127.0.0.1:{self.port}/healthz")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Path]]:
    with EmulatorThread() as thread:
        yield Cluster(thread), tmp_path


def _takeover(api: Cluster, killed: Replica, by: Replica) -> float:
    """SIGKILL the leader `killed`; seconds until `by` holds the Lease."""
    started = time.monotonic()
    killed.kill()
    wait_for(lambda: _lease(api).get("holderIdentity") == by.name, TAKEOVER_LIMIT, "takeover")
    return time.monotonic() - started


def _mid_run(api: Cluster, a: Replica, b: Replica) -> tuple[float, float]:
    """Kill the leader while run 2's Job runs; the Job ends while nobody leads. Returns the
    seconds until b holds the Lease and until b recorded run 2."""
    runs.start_run(api, NAME, 1, timeout=60)
    runs.finish_run(api, NAME, 1, 0.8, timeout=60)
    runs.start_run(api, NAME, 2, timeout=60)
    killed = time.monotonic()
    api.finish_job("ml", f"{NAME}-run-2", training_result("2", 0.85))
    lease_taken = _takeover(api, a, b)
    wait_for(
        lambda: len(runs.status(api, NAME).get("runs") or []) >= 2,
        TAKEOVER_LIMIT,
        "run 2 recorded by the new leader",
    )
    return lease_taken, time.monotonic() - killed


def _mid_canary(api: Cluster, b: Replica, c: Replica) -> float:
    """Kill the leader at the canary's second step (50 %); the new leader holds it there (the
    canary is not ready yet), then goes on to promotion. Returns the takeover's seconds."""
    doc = example("churn-deployment.yaml", name=MD_NAME)
    doc["spec"].update(replicas=4, storageSecretRef={"name": "s3-credentials"})
    doc["spec"]["model"] = {"uri": "s3://models/churn/versions/1/"}
    doc["spec"].pop("autoscaling")
    doc["spec"]["rollout"]["canary"]["stepSeconds"] = 1
    api.create(doc)
    api.roll_out_deployment("ml", MD_NAME)
    wait_for(lambda: _md_status(api).get("modelVersion") == "1", 60, "serving v1")
    uri = {"uri": "s3://models/churn/versions/2/"}
    api.patch(MD, "ml", MD_NAME, {"spec": {"model": uri}})
    api.roll_out_deployment("ml", f"{MD_NAME}-canary")
    wait_for(lambda: (_md_status(api).get("canary") or {}).get("step") == 1, 60, "step 1")
    before = _md_status(api)["canary"]
    canary_uid = (api.get(DEPLOYS, "ml", f"{MD_NAME}-canary") or {})["metadata"]["uid"]

    taken = _takeover(api, b, c)
    runs.quiet(api, "modeldeployments", MD_NAME)  # reconciled by c, several times: it holds
    assert _md_status(api)["canary"] == before and before["trafficPercent"] == 50
    assert (api.get(DEPLOYS, "ml", f"{MD_NAME}-canary") or {})["metadata"]["uid"] == canary_uid
    assert posted(events(api, MD_NAME, "CanaryStarted")) == 1

    api.roll_out_deployment("ml", f"{MD_NAME}-canary")  # and it goes on from there
    wait_for(lambda: _stable_uri(api).endswith("/2/"), 60, "promoted")
    api.roll_out_deployment("ml", MD_NAME)
    wait_for(lambda: _md_status(api).get("modelVersion") == "2", 60, "serving v2")
    assert api.get(DEPLOYS, "ml", f"{MD_NAME}-canary") is None
    return taken


def test_the_follower_takes_over_a_killed_leader_mid_run_and_mid_canary(
    cluster: tuple[Cluster, Path],
) -> None:
    api, folder = cluster
    a = Replica(api.thread.url, folder, "operator-a")
    b = Replica(api.thread.url, folder, "operator-b")
    replicas = [a, b]
    try:
        a.start()
        wait_for(lambda: _lease(api).get("holderIdentity") == "operator-a", 60, "a leads")
        b.start()
        # b follows: its probe answers (before kopf runs there), and once it has looked at the
        # Lease it names the leader (its probe may answer before that first look: leader "").
        follower = wait_for(lambda: _probe_or_none(b.port), 60, "b's probe")
        assert follower["role"] == "follower"
        wait_for(
            lambda: (_probe_or_none(b.port) or {}).get("leader") == "operator-a",
            60,
            "b's probe naming operator-a as the leader",
        )
        wait_for(lambda: _leads(a.port), 30, "a's probe naming itself the leader")

        doc = runs.pipeline(NAME)
        doc["spec"].pop("storageSecretRef")
        api.create(doc)
        transitions = int(_lease(api).get("leaseTransitions", 0))
        lease_taken, acted = _mid_run(api, a, b)
        wait_for(lambda: _leads(b.port), 30, "b's probe naming itself the leader")

        # a's pod comes back under a new name (a Deployment's new pod): it follows.
        c = Replica(api.thread.url, folder, "operator-c")
        replicas.append(c)
        c.start()
        wait_for(lambda: (_probe_or_none(c.port) or {}).get("role") == "follower", 60, "c")
        runs.start_run(api, NAME, 3, timeout=60)
        runs.finish_run(api, NAME, 3, 0.9, timeout=60)
        canary_taken = _mid_canary(api, b, c)
        runs.quiet(api, "trainingpipelines", NAME)

        jobs = runs.jobs_of(api, NAME)
        names = Counter(j["metadata"]["name"] for j in jobs)
        status = runs.status(api, NAME)
        ids = Counter(r["id"] for r in status.get("runs") or [])
        lost = len({"1", "2", "3"} - set(ids))
        deployments = {d["metadata"]["name"] for d in api.list(DEPLOYS, "ml")}
        print(
            f"\nRELIABILITY operator-ha: lease={DURATION}s renew={RENEW:g}s, kills=2, "
            f"mid-run: lease_taken_after={lease_taken:.1f}s, run_recorded_after={acted:.1f}s; "
            f"mid-canary: lease_taken_after={canary_taken:.1f}s, resumed_at_step=1; "
            f"duplicate_jobs={len(jobs) - 3}, lost_runs={lost}, "
            f"lease_transitions={int(_lease(api)['leaseTransitions']) - transitions}"
        )
        assert max(lease_taken, acted, canary_taken) < TAKEOVER_LIMIT
        assert max(names.values()) == 1 and len(jobs) == 3, f"duplicate Jobs: {names}"
        assert lost == 0 and max(ids.values()) == 1, f"runs in status: {sorted(ids.items())}"
        assert deployments == {MD_NAME}, deployments  # the canary's gone, no stray copy
        assert c.exits == 0, "a replica exited on its own (see its log)"
        assert status["champion"]["score"] == 0.9  # the gate ran once per run
    finally:  # the followers first: the leader's release is the last word on the Lease
        for replica in reversed(replicas):
            if replica.proc is not None:
                replica.stop()
    # A stopped leader hands over: the Lease is released, not left to expire.
    assert _lease(api)["holderIdentity"] == ""


def _md_status(api: Cluster) -> dict[str, Any]:
    return ((api.get(MD, "ml", MD_NAME) or {}).get("status")) or {}


def _stable_uri(api: Cluster) -> str:
    dep = api.get(DEPLOYS, "ml", MD_NAME) or {}
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "KUBELOOP_MODEL_URI"))
