"""The operator's workload-pod defaults, from its env, on the children it really creates.

The kopf operator is started against the emulator with the env the chart sets from
`workloadPods` (the chart -> env step is tests/chart/test_operator_contract.py); a pipeline, a
deployment and a monitor are driven until each has its Job, Deployment and CronJob, whose pod
templates are read back from the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.harness import CRONJOBS, JOBS, TP, Cluster, Operator, example, wait_for
from tests.resources.cases import ZONE_A

from kubeloop.local.cluster.emulator import EmulatorThread

pytestmark = pytest.mark.slow

SPREAD = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "server"}},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    }
}
ENV = {
    "KUBELOOP_IMAGE_PULL_SECRETS": "regcred",
    "KUBELOOP_WORKLOAD_PLACEMENT": json.dumps(
        {
            "nodeSelector": {"pool": "ml"},
            "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "priorityClassName": "ml-batch",
            "affinity": ZONE_A,
        }
    ),
    "KUBELOOP_WORKLOAD_POD_LABELS": json.dumps({"team": "ml-platform"}),
    "KUBELOOP_WORKLOAD_POD_ANNOTATIONS": json.dumps({"owner.example.com/team": "ml"}),
    "KUBELOOP_WORKLOAD_SECURITY": json.dumps(
        {"runAsUser": None, "runAsGroup": None, "fsGroup": None}
    ),
}


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Cluster, Operator]]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        op = Operator(thread.url)
        op.start()
        try:
            yield cluster, op
        finally:
            op.stop()


def _template(cluster: Cluster, resource: str, owner_label: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for obj in cluster.list(resource, "ml"):
            if obj["metadata"].get("labels", {}).get(owner_label) == "churn":
                return obj
        return None

    obj = wait_for(found, what=f"{resource} of churn")
    spec = obj["spec"]
    template: dict[str, Any] = (
        spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    )
    return template


def test_an_operator_started_with_workload_defaults_applies_them(
    operator: tuple[Cluster, Operator],
) -> None:
    cluster, _ = operator
    cluster.create(example("churn-pipeline.yaml", name="churn"))
    wait_for(lambda: cluster.get(JOBS, "ml", "churn-run-1"), what="run 1")
    result = {
        "kind": "TrainingResult",
        "ok": True,
        "version": "1",
        "uri": "s3://models/churn/versions/1",
        "metrics": {"roc_auc": 0.9},
    }
    cluster.finish_job("ml", "churn-run-1", result)
    wait_for(
        lambda: (cluster.get(TP, "ml", "churn") or {}).get("status", {}).get("champion"),
        what="champion",
    )
    md = example("churn-deployment.yaml", name="churn")
    md["spec"]["model"]["pipelineRef"]["name"] = "churn"
    # The deployment's own placement: its priority class and affinity win.
    md["spec"].setdefault("resources", {}).update(
        {"priorityClassName": "serving", "affinity": SPREAD}
    )
    cluster.create(md)
    dm = example("churn-monitor.yaml", name="churn")
    dm["spec"]["deploymentRef"]["name"] = "churn"
    cluster.create(dm)

    templates = {
        "Job": _template(cluster, JOBS, "kubeloop.io/trainingpipeline"),
        "Deployment": _template(cluster, "apps/v1/deployments", "kubeloop.io/modeldeployment"),
        "CronJob": _template(cluster, CRONJOBS, "kubeloop.io/driftmonitor"),
    }
    for kind, template in templates.items():
        pod, meta = template["spec"], template["metadata"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}], kind
        assert pod["nodeSelector"]["pool"] == "ml", kind
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ], kind
        own = kind == "Deployment"
        assert pod["priorityClassName"] == ("serving" if own else "ml-batch"), kind
        assert pod["affinity"] == (SPREAD if own else ZONE_A), kind
        assert meta["labels"]["team"] == "ml-platform", kind
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubeloop", kind
        assert meta["annotations"] == {"owner.example.com/team": "ml"}, kind
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, kind
