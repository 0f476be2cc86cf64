"""The registry is the source of truth: a TrainingPipeline deleted and applied again adopts its
champion and its run numbering from storage, trains no run, and the ModelDeployment following
it keeps serving the same version throughout (its Deployment is never changed).

Real registry, real registry reads and writes: the versions live in a file:// registry under
the test's tmp dir, written by the registry's own code (as a run publishes); every registry
command (`kubeloop registry inspect --require-empty` in a first run's Job, `promote` in a
registry Job) runs in-process against it and its actual result is what the Job's pod leaves.
Only the training itself is played (the test publishes the version a run would, and finishes
its Job with that run's TrainingResult).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.integration.harness import (
    JOBS,
    MD,
    TP,
    Cluster,
    Operator,
    empty_registry,
    events,
    example,
    settled,
    wait_for,
)

from kubeloop.cli import main as cli
from kubeloop.modelformat import write_manifest
from kubeloop.registry import Registry
from kubeloop.storage import join, store_for

pytestmark = pytest.mark.slow

DEPLOYS = "apps/v1/deployments"
NAME = "adopt"


def _status(cluster: Cluster, kind: str = TP, name: str = NAME) -> dict[str, Any]:
    return (cluster.get(kind, "ml", name) or {}).get("status") or {}


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions") or []}.get(type_, {})


class RealRegistry:
    """A file:// registry and the registry Jobs' commands run against it in-process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.artifacts = f"file://{tmp}/models/{NAME}/"
        self.registry = Registry(self.artifacts)
        self.uid = "uid"  # the pipeline object's, as its run pods have it

    def command(self, args: list[str]) -> dict[str, Any]:
        """Run a registry Job's `kubeloop registry ...` args; returns the result it leaves."""
        out = self.tmp / "result.json"
        extra = ["--work-dir", str(self.tmp / "work")] if args[1] == "promote" else []
        cli([*args, *extra, "--result-path", str(out)])
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    def publish(self, run_id: int, auc: float) -> dict[str, Any]:
        """What run `run_id` writes (its run folder, then its version); returns its
        TrainingResult."""
        store = store_for(self.artifacts)
        marker = json.dumps({"runId": str(run_id), "pipelineUid": self.uid}).encode()
        store.write_bytes(join(self.artifacts, "runs", str(run_id), "run.json"), marker)
        folder = self.tmp / f"run-{run_id}"
        folder.mkdir()
        (folder / "model.bin").write_bytes(f"model of run {run_id}".encode())
        claim = self.registry.allocate(str(run_id), self.uid)
        manifest = {"pipeline": NAME, "namespace": "ml", "runId": str(run_id)}
        write_manifest(folder, {**manifest, "metrics": {"roc_auc": auc}})
        uri = self.registry.publish(folder, claim)
        return {
            "kind": "TrainingResult",
            "ok": True,
            "version": str(claim.version),
            "uri": uri,
            "metrics": {"roc_auc": auc},
        }

    def run_job(self, cluster: Cluster, job: str) -> dict[str, Any]:
        """Play a registry Job's pod: its command, for real; returns its result."""
        found = wait_for(lambda: cluster.get(JOBS, "ml", job), what=f"registry Job {job}")
        result = self.command(found["spec"]["template"]["spec"]["containers"][0]["args"])
        cluster.finish_job("ml", job, result, ok=bool(result["ok"]))
        return result


def _pipeline(artifacts: str) -> dict[str, Any]:
    doc = example("churn-pipeline.yaml", name=NAME)
    doc["spec"]["artifacts"] = artifacts
    doc["spec"].pop("schedule")
    return doc


def _train(cluster: Cluster, reg: RealRegistry, run_id: int, auc: float) -> None:
    job = f"{NAME}-run-{run_id}"
    found = wait_for(lambda: cluster.get(JOBS, "ml", job), what=job)
    reg.uid = found["metadata"]["ownerReferences"][0]["uid"]
    cluster.finish_job("ml", job, reg.publish(run_id, auc))
    wait_for(
        lambda: any(r["id"] == str(run_id) for r in _status(cluster).get("runs") or []),
        what=f"run {run_id} recorded",
    )


def _request_run(cluster: Cluster, value: str) -> None:
    annotations = {"kubeloop.io/run-requested-at": value}
    cluster.patch(TP, "ml", NAME, {"metadata": {"annotations": annotations}})


def _deployment(cluster: Cluster) -> dict[str, Any]:
    found = cluster.get(DEPLOYS, "ml", NAME)
    assert found is not None
    return found


def _model_uri(dep: dict[str, Any]) -> str:
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["KUBELOOP_MODEL_URI"]["value"])


def test_a_recreated_pipeline_adopts_its_champion_and_run_numbering_and_serving_goes_on(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    reg = RealRegistry(tmp_path)
    cluster.inspect = reg.command
    try:
        _recreated(cluster, reg)
    finally:
        cluster.inspect = empty_registry


def _recreated(cluster: Cluster, reg: RealRegistry) -> None:
    # First life: run 1's Job reads the registry first (empty: it trains), runs 1-3; v2 beats
    # v1 and is the champion, run 3 is rejected. Each gate promotion's alias write is a real
    # registry Job.
    cluster.create(_pipeline(reg.artifacts))
    _train(cluster, reg, 1, 0.80)
    assert _status(cluster)["registrySync"]["message"] == (
        f"the registry at {reg.artifacts} holds nothing of this pipeline: run 1 trains"
    )
    reg.run_job(cluster, f"{NAME}-registry-1")
    md = example("churn-deployment.yaml", name=NAME)
    md["spec"]["model"]["pipelineRef"]["name"] = NAME
    md["spec"].pop("autoscaling")
    md["spec"]["rollout"] = {"strategy": "RollingUpdate"}
    cluster.create(md)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", NAME), what="the Deployment")
    cluster.roll_out_deployment("ml", NAME)
    _request_run(cluster, "a")
    _train(cluster, reg, 2, 0.90)
    reg.run_job(cluster, f"{NAME}-registry-2")
    wait_for(lambda: _model_uri(_deployment(cluster)).endswith("/versions/2"), what="v2 rolls")
    cluster.roll_out_deployment("ml", NAME)
    wait_for(lambda: _status(cluster, MD).get("modelVersion") == "2", what="v2 serves")
    _request_run(cluster, "b")
    _train(cluster, reg, 3, 0.70)  # below the minimum: rejected
    assert reg.registry.get_alias("champion")["version"] == "2"  # type: ignore[index]
    serving = _deployment(cluster)

    # Deleted (Argo CD prunes it): the ModelDeployment keeps serving, says why it cannot follow.
    cluster.delete(TP, "ml", NAME)
    wait_for(lambda: not cluster.list(JOBS, "ml") or None, what="the pipeline's Jobs collected")
    wait_for(
        lambda: _cond(_status(cluster, MD), "Stalled").get("reason") == "PipelineNotFound",
        what="PipelineNotFound",
    )
    assert (
        _deployment(cluster)["metadata"]["resourceVersion"]
        == serving["metadata"]["resourceVersion"]
    )

    # The same YAML applied again: run 1's Job reads the registry first, which holds runs 1-3
    # (another object's): the Job fails at once, v2 and run 3 come back, run 1 is withdrawn
    # (never recorded, never trained).
    cluster.create(_pipeline(reg.artifacts))
    status = wait_for(
        lambda: (s := _status(cluster)).get("champion") and s, what="the champion adopted"
    )
    assert status["champion"]["version"] == "2"
    assert status["champion"]["uri"] == reg.registry.version_uri(2)
    assert status["champion"]["metrics"] == {"roc_auc": 0.9}
    assert (status["lastRunId"], status["lastRecordedRunId"]) == (3, 3)
    assert status["aliases"] == {"champion": "2"}
    ready = wait_for(
        lambda: (c := _cond(_status(cluster), "Ready")).get("reason") == "ChampionRestored" and c,
        what="Ready ChampionRestored",
    )
    assert ready["status"] == "True"
    wait_for(
        lambda: any(
            "version 2 is the champion again" in e["message"]
            for e in events(cluster, NAME, "ChampionRestored")
        ),
        what="the ChampionRestored Event naming the version",
    )
    settled(cluster, "trainingpipelines", NAME)
    settled(cluster, "modeldeployments", NAME)
    (read,) = cluster.list(JOBS, "ml")  # the read, in the withdrawn run 1's Job
    assert read["metadata"]["name"] == f"{NAME}-run-1"
    assert {c["type"] for c in read["status"]["conditions"]} == {"Failed"}
    assert "runs" not in status and status.get("currentRun") is None
    assert any(
        e["message"].startswith("run 1 withdrawn before it trained: version 2 is the champion")
        for e in events(cluster, NAME, "ChampionRestored")
    )
    dep = _deployment(cluster)
    assert dep["metadata"]["resourceVersion"] == serving["metadata"]["resourceVersion"]
    assert _model_uri(dep) == reg.registry.version_uri(2)
    assert _cond(_status(cluster, MD), "Stalled").get("status") == "False"

    # Numbering goes on where the registry left it: the next run is 4, never a second run 1.
    _request_run(cluster, "c")
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{NAME}-run-4"), what="run 4")
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "Manual"
    assert "initContainers" not in job["spec"]["template"]["spec"]  # read already
    cluster.delete(TP, "ml", NAME)
    cluster.delete(MD, "ml", NAME)


def test_a_registry_read_that_cannot_start_or_fails_says_so_and_no_run_starts(
    cluster: Cluster, operator: Operator
) -> None:
    """The storage Secret is missing: run 1's pod (its registry read first) cannot start, the
    pipeline is Stalled naming it. The read then fails (storage unreachable): Ready says so
    with the store and the cause, run 1 is withdrawn without training, and the next read waits
    for its backoff (no hot loop)."""
    name = "adopt-fail"
    cluster.inspect = None  # this test plays the registry reads itself
    try:
        cluster.create(example("churn-pipeline.yaml", name=name))
        job = f"{name}-run-1"
        wait_for(lambda: cluster.get(JOBS, "ml", job), what="run 1's Job")
        cluster.block_job("ml", job)
        stalled = wait_for(
            lambda: (
                (c := _cond(_status(cluster, name=name), "Stalled")).get("reason") == "RunBlocked"
                and c
            ),
            what="Stalled RunBlocked",
        )
        assert stalled["message"] == (
            f"run 1: pod {job}-x7k2p cannot start: "
            'CreateContainerConfigError: secret "s3-credentials" not found'
        ), stalled
        status = _status(cluster, name=name)
        assert status["currentRun"]["readsRegistry"] is True
        ready = _cond(status, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NoChampion")

        for pod in cluster.list("v1/pods", "ml"):
            if pod["metadata"]["name"].startswith(job):
                cluster.delete("v1/pods", "ml", pod["metadata"]["name"])
        failure = {
            "kind": "RegistryResult",
            "ok": False,
            "operation": "inspect",
            "reason": "StorageUnreachable",
            "message": "could not reach the object store at https://s3.example.com",
        }
        cluster.finish_job("ml", job, None, ok=False, read=failure)
        ready = wait_for(
            lambda: (
                (c := _cond(_status(cluster, name=name), "Ready")).get("reason")
                == "RegistryReadFailed"
                and c
            ),
            what="Ready RegistryReadFailed",
        )
        assert ready["message"].startswith(
            "reading the registry at s3://models/churn/ failed (StorageUnreachable): could not "
            "reach the object store at https://s3.example.com; no run starts until it is read"
        )
        assert "attempt 1, the next in 30 s" in ready["message"]
        (event,) = events(cluster, name, "RegistryReadFailed")
        assert event["type"] == "Warning"
        assert event["message"].startswith("run 1 withdrawn before it trained: reading the")
        settled(cluster, "trainingpipelines", name)
        # Within the backoff: no second read, no run; run 1 is not recorded.
        assert sorted(j["metadata"]["name"] for j in cluster.list(JOBS, "ml")) == [job]
        status = _status(cluster, name=name)
        assert status["registrySync"]["failures"] == 1 and not status.get("runs")
        assert (status["lastRunId"], status["lastRecordedRunId"]) == (1, 1)
    finally:
        cluster.inspect = empty_registry
        cluster.delete(TP, "ml", name)


def test_a_run_job_another_object_still_owns_is_never_recorded_and_waits_to_be_collected(
    cluster: Cluster, operator: Operator
) -> None:
    """A pipeline deleted and applied again before the garbage collector took its Jobs: the
    new run 1 meets the old `<name>-run-1` (finished, with a result). It is not this object's:
    never recorded, never taken as run 1's Job; once collected, run 1's own Job is created."""
    name = "adopt-gc"
    old = cluster.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "ml"}}
    )
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "old", "uid": old["metadata"]["uid"]}
    labels = {"kubeloop.io/trainingpipeline": name, "kubeloop.io/run-id": "1"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [], "restartPolicy": "Never"},
    }
    cluster.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{name}-run-1",
                "namespace": "ml",
                "labels": labels,
                "ownerReferences": [owner],
            },
            "spec": {"template": template},
        }
    )
    cluster.finish_job(
        "ml", f"{name}-run-1", {"kind": "TrainingResult", "ok": True, "version": "9"}
    )
    try:
        cluster.create(example("churn-pipeline.yaml", name=name))
        wait_for(lambda: _status(cluster, name=name).get("currentRun"), what="run 1 allocated")
        settled(cluster, "trainingpipelines", name)
        status = _status(cluster, name=name)
        assert status["currentRun"]["id"] == "1" and not status.get("runs")
        job = cluster.get(JOBS, "ml", f"{name}-run-1")
        assert job is not None and job["metadata"]["ownerReferences"] == [owner]

        cluster.delete("v1/configmaps", "ml", "old")  # the garbage collector takes the Job
        mine = wait_for(
            lambda: (
                (j := cluster.get(JOBS, "ml", f"{name}-run-1"))
                and j["metadata"]["ownerReferences"][0]["kind"] == "TrainingPipeline"
                and j
            ),
            what="run 1's own Job",
        )
        assert mine["spec"]["template"]["spec"]["initContainers"][0]["name"] == "registry"
    finally:
        cluster.delete(TP, "ml", name)
