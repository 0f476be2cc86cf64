"""High availability: two real operators (`kubeloop operator` subprocesses) elect a leader on
one coordination.k8s.io/v1 Lease; the leader is SIGKILLed in the middle of a run, and the
follower takes over. We measure the takeover (the Lease, then the first thing done: the killed
leader's run recorded) and count what must never happen: duplicate Jobs, lost runs.

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
from tests.integration.harness import Cluster, settled, wait_for
from tests.reliability import runs
from tests.reliability.operator_process import OperatorProcess

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.processes import free_port

pytestmark = pytest.mark.slow  # ~20 s: `make test` starts it first

NAME = "ha"
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


def test_the_follower_takes_over_a_killed_leader_within_15_s_losing_and_duplicating_nothing(
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
        # b follows: its probe answers (before kopf runs there), and it says so.
        follower = wait_for(lambda: _probe_or_none(b.port), 60, "b's probe")
        assert follower["role"] == "follower" and follower["leader"] == "operator-a"
        assert _probe(a.port)["leadership"]["role"] == "leader"  # kopf's probe, on the leader

        doc = runs.pipeline(NAME)
        doc["spec"].pop("storageSecretRef")
        api.create(doc)
        runs.start_run(api, NAME, 1, timeout=60)
        runs.finish_run(api, NAME, 1, 0.8, timeout=60)
        runs.start_run(api, NAME, 2, timeout=60)  # run 2's Job exists: a is mid-run

        transitions = int(_lease(api).get("leaseTransitions", 0))
        killed = time.monotonic()
        a.kill()
        api.finish_job("ml", f"{NAME}-run-2", {**_result(2, 0.85)})  # done while nobody leads
        wait_for(
            lambda: _lease(api).get("holderIdentity") == "operator-b", TAKEOVER_LIMIT, "takeover"
        )
        lease_taken = time.monotonic() - killed
        wait_for(
            lambda: len(runs.status(api, NAME).get("runs") or []) >= 2,
            TAKEOVER_LIMIT,
            "run 2 recorded by the new leader",
        )
        acted = time.monotonic() - killed
        assert _probe(b.port)["leadership"]["role"] == "leader"

        # a's pod comes back under a new name (a Deployment's new pod): it follows.
        c = Replica(api.thread.url, folder, "operator-c")
        replicas.append(c)
        c.start()
        wait_for(lambda: (_probe_or_none(c.port) or {}).get("role") == "follower", 60, "c")
        runs.start_run(api, NAME, 3, timeout=60)
        runs.finish_run(api, NAME, 3, 0.9, timeout=60)
        settled(api, "trainingpipelines", NAME)

        jobs = runs.jobs_of(api, NAME)
        names = Counter(j["metadata"]["name"] for j in jobs)
        status = runs.status(api, NAME)
        ids = Counter(r["id"] for r in status.get("runs") or [])
        lost = len({"1", "2", "3"} - set(ids))
        print(
            f"\nRELIABILITY operator-ha: lease={DURATION}s renew={RENEW:g}s, kills=1, "
            f"lease_taken_after={lease_taken:.1f}s, run_recorded_after={acted:.1f}s, "
            f"duplicate_jobs={len(jobs) - 3}, lost_runs={lost}, "
            f"lease_transitions={int(_lease(api)['leaseTransitions']) - transitions}"
        )
        assert lease_taken < TAKEOVER_LIMIT and acted < TAKEOVER_LIMIT
        assert max(names.values()) == 1 and len(jobs) == 3, f"duplicate Jobs: {names}"
        assert lost == 0 and max(ids.values()) == 1, f"runs in status: {sorted(ids.items())}"
        assert _lease(api)["holderIdentity"] == "operator-b"
        assert b.exits == 0 and c.exits == 0, "a replica exited on its own (see its log)"
        assert status["champion"]["score"] == 0.9  # the gate ran once per run
    finally:  # the followers first: the leader's release is the last word on the Lease
        for replica in reversed(replicas):
            if replica.proc is not None:
                replica.stop()
    # A stopped leader hands over: the Lease is released, not left to expire.
    assert _lease(api)["holderIdentity"] == ""


def _result(run: int, auc: float) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": str(run),
        "uri": f"s3://models/churn/versions/{run}",
        "metrics": {"roc_auc": auc},
    }
