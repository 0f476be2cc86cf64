"""Approvals and rollback against the emulator: `autoPromote: false` -> AwaitingApproval, the
annotations kubeloop.io/promote and kubeloop.io/rollback-to -> a registry Job -> the champion
moves and a ModelDeployment following it rolls (canary) to it; refusals name the annotation,
the version and the cause; a restart between allocation and Job creation makes one Job.

The tests play the registry Job's pod with `Cluster.finish_registry_job` (the RegistryResult
that `kubeloop registry promote` writes; the command itself is tested on a real registry in
tests/workloads/test_registryjob.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.harness import (
    JOBS,
    MD,
    TP,
    Cluster,
    Operator,
    events,
    example,
    pipeline_status,
    settled,
    training_result,
    wait_for,
)

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

DEPLOYS = "apps/v1/deployments"
PROMOTE = "kubeloop.io/promote"
ROLLBACK = "kubeloop.io/rollback-to"


_result = training_result
_status = pipeline_status


def _cond(cluster: Cluster, name: str, type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in _status(cluster, name).get("conditions") or []}.get(type_, {})


def _registry_jobs(cluster: Cluster, name: str) -> list[str]:
    """The registry Jobs of alias writes (the read before the first run is in run 1's Job)."""
    return sorted(
        j["metadata"]["name"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["labels"].get("kubeloop.io/registry-for") == name
        and j["spec"]["template"]["spec"]["containers"][0]["args"][1] == "promote"
    )


def _annotate(cluster: Cluster, name: str, key: str, value: str | None) -> None:
    cluster.patch(TP, "ml", name, {"metadata": {"annotations": {key: value}}})


def _approval_pipeline(cluster: Cluster, name: str, auc: float = 0.8) -> None:
    """A pipeline whose gate passes but does not promote: run 1 awaits approval."""
    doc = example("churn-pipeline.yaml", name=name)
    doc["spec"]["promotion"]["autoPromote"] = False
    cluster.create(doc)
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1")
    cluster.finish_job("ml", f"{name}-run-1", _result("1", auc))
    wait_for(lambda: _status(cluster, name).get("runs"), what="run 1 recorded")


def _champion(cluster: Cluster, name: str, version: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := _status(cluster, name)).get("champion", {}).get("version") == version and s,
        what=f"version {version} champion of {name}",
    )


@pytest.fixture(autouse=True)
def _clean(cluster: Cluster) -> Iterator[None]:
    """Delete each test's objects (children go by owner references): fewer timers to run."""
    yield
    for resource in (MD, TP, "v1/pods"):
        for obj in cluster.list(resource, "ml"):
            cluster.thread.call(cluster.em.delete_object(resource, "ml", obj["metadata"]["name"]))


def _md(name: str, pipeline: str) -> dict[str, Any]:
    doc = example("churn-deployment.yaml", name=name)
    doc["spec"]["model"]["pipelineRef"]["name"] = pipeline
    doc["spec"]["replicas"] = 2
    doc["spec"].pop("autoscaling")
    doc["spec"]["rollout"]["canary"].update(steps=[50, 100], stepSeconds=1)
    return doc


def _model_uri(dep: dict[str, Any]) -> str:
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["KUBELOOP_MODEL_URI"]["value"])


def _md_status(cluster: Cluster, name: str) -> dict[str, Any]:
    obj = cluster.get(MD, "ml", name)
    assert obj is not None
    return obj.get("status") or {}


def _md_cond(cluster: Cluster, name: str, type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in _md_status(cluster, name).get("conditions") or []}.get(type_, {})


def _canary_to(cluster: Cluster, md: str, version: str) -> None:
    """Play the Deployment controller through a canary of `version` until it serves."""

    def canary() -> dict[str, Any] | None:
        dep = cluster.get(DEPLOYS, "ml", f"{md}-canary")
        return dep if dep and _model_uri(dep).endswith(f"/versions/{version}") else None

    wait_for(canary, timeout=90, what=f"a canary of version {version}")
    cluster.roll_out_deployment("ml", f"{md}-canary")
    wait_for(
        lambda: _model_uri(cluster.get(DEPLOYS, "ml", md) or {}).endswith(f"/versions/{version}"),
        timeout=90,
        what=f"the stable Deployment promoted to version {version}",
    )
    cluster.roll_out_deployment("ml", md)
    wait_for(
        lambda: _md_status(cluster, md).get("modelVersion") == version,
        timeout=90,
        what=f"{md} serving version {version}",
    )


def test_approve_then_roll_back_moves_the_champion_and_the_deployment(
    cluster: Cluster, operator: Operator
) -> None:
    name = "ap"
    _approval_pipeline(cluster, name)
    status = wait_for(
        lambda: (s := _status(cluster, name)).get("phase") == "AwaitingApproval" and s,
        what="phase AwaitingApproval",
    )
    run = status["runs"][0]
    assert run["result"] == "AwaitingApproval"
    assert f"`kubectl annotate tp {name} {PROMOTE}=1`" in run["message"]
    assert "champion" not in status
    ready = _cond(cluster, name, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AwaitingApproval")
    assert (
        f"version 1 passed the gate and awaits approval: `kubectl annotate tp {name} "
        in (ready["message"])
    )
    assert _cond(cluster, name, "Succeeded")["status"] == "True"  # not shown as a failure
    assert _registry_jobs(cluster, name) == []  # the gate wrote nothing

    # Approve: a registry Job verifies and writes the alias; then the champion moves.
    _annotate(cluster, name, PROMOTE, "1")
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-registry-1"), what="registry Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    args = pod["containers"][0]["args"]
    assert args[:2] == ["registry", "promote"] and args[args.index("--version") + 1] == "1"
    assert args[args.index("--by") + 1] == f"annotation {PROMOTE}"
    assert args[args.index("--pipeline") + 1] == f"ml/{name}"
    assert "champion" not in _status(cluster, name)  # not before the registry said yes
    cluster.finish_registry_job("ml", f"{name}-registry-1", metrics={"roc_auc": 0.8})
    status = _champion(cluster, name, "1")
    assert status["champion"]["metrics"] == {"roc_auc": 0.8}
    assert status["champion"]["score"] == 0.8
    assert status["aliases"] == {"champion": "1"}
    assert status["handledPromoteRequest"] == "1" and not status.get("registryQueue")
    entry = status["promotions"][0]
    assert (entry["version"], entry["alias"], entry["by"]) == (
        "1",
        "champion",
        f"annotation {PROMOTE}",
    )
    assert f"{PROMOTE}=1" in entry["reason"] and entry["at"]
    assert status["phase"] == "Succeeded"
    assert "promoted version 1" in events(cluster, name, "Promoted")[0]["message"]

    # A ModelDeployment follows the champion.
    cluster.create(_md("ap-md", name))
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "ap-md"), what="Deployment ap-md")
    cluster.roll_out_deployment("ml", "ap-md")
    wait_for(lambda: _md_status(cluster, "ap-md").get("modelVersion") == "1", what="serving v1")

    # Run 2 passes the gate too and waits, while version 1 stays the champion and serves.
    _annotate(cluster, name, "kubeloop.io/run-requested-at", "r2")
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-2"), what="run 2")
    cluster.finish_job("ml", f"{name}-run-2", _result("2", 0.9))
    wait_for(lambda: _status(cluster, name).get("phase") == "AwaitingApproval", what="awaiting 2")
    ready = _cond(cluster, name, "Ready")
    assert ready["status"] == "True" and "version 2 passed the gate and awaits" in ready["message"]
    assert _status(cluster, name)["champion"]["version"] == "1"

    _annotate(cluster, name, PROMOTE, "2")
    cluster.finish_registry_job("ml", f"{name}-registry-2", metrics={"roc_auc": 0.9}, previous="1")
    _champion(cluster, name, "2")
    _canary_to(cluster, "ap-md", "2")

    # Roll back to version 1: the champion moves back, and the deployment rolls to it too.
    _annotate(cluster, name, ROLLBACK, "1")
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-registry-3"), what="rollback Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--version") + 1] == "1"
    assert args[args.index("--by") + 1] == f"annotation {ROLLBACK}"
    cluster.finish_registry_job("ml", f"{name}-registry-3", metrics={"roc_auc": 0.8}, previous="2")
    status = _champion(cluster, name, "1")
    assert status["aliases"] == {"champion": "1"}
    assert [(p["version"], p.get("previous")) for p in status["promotions"]] == [
        ("1", "2"),
        ("2", "1"),
        ("1", None),
    ]
    assert "rolled back from version 2" in status["promotions"][0]["reason"]
    assert (
        "rolled back to version 1 (was version 2)"
        in (events(cluster, name, "RolledBack")[0]["message"])
    )
    _canary_to(cluster, "ap-md", "1")
    assert _registry_jobs(cluster, name) == [f"{name}-registry-{i}" for i in (1, 2, 3)]


def test_refusals_name_the_annotation_the_version_and_the_cause(
    cluster: Cluster, operator: Operator
) -> None:
    name = "ap-no"
    _approval_pipeline(cluster, name)

    # A version status never saw: refused at once, without a registry Job.
    _annotate(cluster, name, PROMOTE, "9")
    refused = wait_for(
        lambda: (c := _cond(cluster, name, "PromotionRefused")).get("status") == "True" and c,
        what="PromotionRefused",
    )
    assert refused["reason"] == "VersionNotFound"
    assert refused["message"] == (
        f"{PROMOTE}=9: this pipeline recorded no version 9 (its versions: 1)"
    )
    assert events(cluster, name, "PromotionRefused")[0]["type"] == "Warning"
    settled(cluster, "trainingpipelines", name)
    assert _registry_jobs(cluster, name) == []
    assert _status(cluster, name)["handledPromoteRequest"] == "9"

    # Nothing to roll back from yet.
    _annotate(cluster, name, ROLLBACK, "1")
    wait_for(
        lambda: _cond(cluster, name, "PromotionRefused").get("reason") == "NoChampion",
        what="rollback refused: no champion",
    )

    # A version that status knows but the registry finds corrupt: the Job's refusal.
    _annotate(cluster, name, PROMOTE, "1")
    cluster.finish_registry_job(
        "ml",
        f"{name}-registry-1",
        refusal=("ChecksumMismatch", "is corrupt: model.joblib: sha256 differs from the manifest"),
    )
    refused = wait_for(
        lambda: (
            (c := _cond(cluster, name, "PromotionRefused")).get("reason") == "ChecksumMismatch"
            and c
        ),
        what="PromotionRefused ChecksumMismatch",
    )
    assert refused["status"] == "True"
    assert refused["message"].startswith(f"{PROMOTE}=1 refused: version 1 under s3://models/")
    assert "model.joblib: sha256 differs" in refused["message"]
    status = _status(cluster, name)
    assert "champion" not in status and not status.get("registryQueue")
    assert status["phase"] == "AwaitingApproval"  # still waiting for a valid approval

    # The same value again is a new request once the annotation was removed; it goes through
    # and clears the refusal.
    _annotate(cluster, name, PROMOTE, None)
    wait_for(lambda: "handledPromoteRequest" not in _status(cluster, name), what="forgotten")
    _annotate(cluster, name, PROMOTE, "1")
    cluster.finish_registry_job("ml", f"{name}-registry-2", metrics={"roc_auc": 0.8})
    _champion(cluster, name, "1")
    refused = wait_for(
        lambda: (c := _cond(cluster, name, "PromotionRefused")).get("status") == "False" and c,
        what="PromotionRefused cleared",
    )
    assert refused["reason"] == "Promoted"


def test_the_gate_writes_the_champion_alias_through_a_registry_job(
    cluster: Cluster, operator: Operator
) -> None:
    """autoPromote (the default): status.champion moves at once, and a registry Job writes the
    alias with the gate's reason; status mirrors it when the Job is done."""
    name = "ap-gate"
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1")
    cluster.finish_job("ml", f"{name}-run-1", _result("1", 0.9))
    _champion(cluster, name, "1")
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-registry-1"), what="registry Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--by") + 1] == "gate"
    assert args[args.index("--reason") + 1] == "roc_auc 0.9 passed the gate"
    cluster.finish_registry_job("ml", f"{name}-registry-1", metrics={"roc_auc": 0.9})
    status = wait_for(
        lambda: (s := _status(cluster, name)).get("aliases") and s, what="aliases mirrored"
    )
    assert status["aliases"] == {"champion": "1"}
    assert (status["promotions"][0]["by"], status["promotions"][0]["version"]) == ("gate", "1")


def test_a_restart_between_allocation_and_job_creation_makes_one_job(
    cluster: Cluster, operator: Operator
) -> None:
    """An approval allocated in status whose Job was never created (the operator died in
    between) gets its Job under its deterministic name, once."""
    name = "ap-crash"
    _approval_pipeline(cluster, name)
    wait_for(lambda: _status(cluster, name).get("phase") == "AwaitingApproval", what="awaiting")
    operator.stop()
    try:
        op = {
            "id": "1",
            "job": f"{name}-registry-1",
            "action": "Promote",
            "version": "1",
            "alias": "champion",
            "by": f"annotation {PROMOTE}",
            "reason": "allocated before the crash",
        }
        cluster.patch(
            TP,
            "ml",
            name,
            {
                "status": {
                    "registryQueue": [op],
                    "lastRegistryOpId": 1,
                    "handledPromoteRequest": "1",
                }
            },
            "status",
        )
        _annotate(cluster, name, PROMOTE, "1")
    finally:
        operator.start()
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-registry-1"), what="the Job, once")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--reason") + 1] == "allocated before the crash"
    settled(cluster, "trainingpipelines", name)
    assert _registry_jobs(cluster, name) == [f"{name}-registry-1"]
    cluster.finish_registry_job("ml", f"{name}-registry-1", metrics={"roc_auc": 0.8})
    status = _champion(cluster, name, "1")
    assert status["lastRegistryOpId"] == 1 and not status.get("registryQueue")
    settled(cluster, "trainingpipelines", name)
    assert _registry_jobs(cluster, name) == [f"{name}-registry-1"]


def test_a_named_alias_by_annotation_and_a_deployment_following_it(
    cluster: Cluster, operator: Operator
) -> None:
    """`alias.kubeloop.io/production` is checked and written like a promotion, mirrored in
    status.aliases; a ModelDeployment with `alias: production` serves that version and rolls
    when the alias moves; the champion stays where it is; a bad alias name is refused."""
    name = "ap-alias"
    prod = "alias.kubeloop.io/production"
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1")
    cluster.finish_job("ml", f"{name}-run-1", _result("1", 0.8))
    _champion(cluster, name, "1")
    cluster.finish_registry_job("ml", f"{name}-registry-1", metrics={"roc_auc": 0.8})
    _annotate(cluster, name, "kubeloop.io/run-requested-at", "r2")
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-2"), what="run 2")
    cluster.finish_job("ml", f"{name}-run-2", _result("2", 0.9))
    _champion(cluster, name, "2")
    cluster.finish_registry_job("ml", f"{name}-registry-2", metrics={"roc_auc": 0.9})

    # A deployment following an alias that is not set yet waits, naming how to set it.
    md = _md("ap-alias-md", name)
    md["spec"]["model"] = {"pipelineRef": {"name": name}, "alias": "production"}
    md["spec"]["rollout"] = {"strategy": "RollingUpdate"}
    cluster.create(md)
    waiting = wait_for(
        lambda: (
            (c := _md_cond(cluster, "ap-alias-md", "Ready")).get("reason") == "WaitingForModel"
            and c
        ),
        what="waiting for the alias",
    )
    assert f"`kubectl annotate tp {name} {prod}=<version>`" in waiting["message"]

    _annotate(cluster, name, prod, "1")
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-registry-3"), what="alias Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--alias") + 1] == "production"
    assert args[args.index("--version") + 1] == "1"
    assert args[args.index("--by") + 1] == f"annotation {prod}"
    cluster.finish_registry_job("ml", f"{name}-registry-3", metrics={"roc_auc": 0.8})
    status = wait_for(
        lambda: (s := _status(cluster, name)).get("aliases", {}).get("production") and s,
        what="alias production mirrored",
    )
    assert status["aliases"] == {"champion": "2", "production": "1"}
    assert status["champion"]["version"] == "2"  # a named alias never moves the champion
    assert status["promotions"][0]["by"] == f"annotation {prod}"
    assert "alias production -> version 1" in events(cluster, name, "AliasSet")[0]["message"]
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "ap-alias-md"), what="Deployment")
    assert dep["metadata"]["annotations"]["kubeloop.io/model-version"] == "1"
    cluster.roll_out_deployment("ml", "ap-alias-md")
    wait_for(lambda: _md_status(cluster, "ap-alias-md").get("modelVersion") == "1", what="v1")

    # The alias moves: the deployment rolls to it.
    _annotate(cluster, name, prod, "2")
    cluster.finish_registry_job("ml", f"{name}-registry-4", metrics={"roc_auc": 0.9}, previous="1")
    wait_for(
        lambda: _model_uri(cluster.get(DEPLOYS, "ml", "ap-alias-md") or {}).endswith("/versions/2"),
        what="the deployment rolls to version 2",
    )
    cluster.roll_out_deployment("ml", "ap-alias-md")
    wait_for(lambda: _md_status(cluster, "ap-alias-md").get("modelVersion") == "2", what="v2")

    # Invalid: refused with the condition naming the annotation, without a Job.
    _annotate(cluster, name, "alias.kubeloop.io/latest", "1")
    refused = wait_for(
        lambda: (
            (c := _cond(cluster, name, "PromotionRefused")).get("reason") == "InvalidAlias" and c
        ),
        what="PromotionRefused InvalidAlias",
    )
    assert refused["status"] == "True"
    assert refused["message"].startswith("alias.kubeloop.io/latest=1: ")
    settled(cluster, "trainingpipelines", name)
    assert cluster.get(JOBS, "ml", f"{name}-registry-5") is None
