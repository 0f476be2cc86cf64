"""The builder cases shared by the golden, schema and PSS tests: each CR -> every child it gets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kubeloop.api.canary_split import split_step
from kubeloop.api.common import NetworkPolicyPeer
from kubeloop.api.deployment import stable_replica_counts
from kubeloop.api.parse import parse_resource
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.datawatch import build_data_watch_cronjob
from kubeloop.resources.monitoring import build_monitor_cronjob, reference_uri
from kubeloop.resources.registry import build_registry_job, with_registry_read
from kubeloop.resources.serving import (
    build_hpa,
    build_network_policy,
    build_server_deployment,
    build_service,
)
from kubeloop.resources.training import (
    build_headless_service,
    build_training_job,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/data/golden"
DEFAULTS = WorkloadDefaults(
    pushgateway_url="http://pushgateway.monitoring.svc:9091",
    image_pull_secrets=("registry-credentials", "team-registry"),
    serving_peers=(
        NetworkPolicyPeer.model_validate(
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeloop"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
            }
        ),
    ),
)
UID = "00000000-0000-4000-8000-000000000001"
# An approval as the operator queues it (kubeloop.controller.promotions).
REGISTRY_OP = {
    "id": "2",
    "job": "churn-registry-2",
    "action": "Promote",
    "version": "3",
    "alias": "champion",
    "by": "annotation kubeloop.io/promote",
    "reason": "requested by the annotation kubeloop.io/promote=3",
}
# A node affinity the workload-default tests give as the chart default (zone a only).
ZONE_A = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                    ]
                }
            ]
        }
    }
}


def _example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return doc


def _variant(name: str, new_name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_example(name))
    doc["metadata"]["name"] = new_name
    doc["spec"].update(spec)
    return doc


def inputs() -> dict[str, dict[str, Any]]:
    """Case name -> custom resource: the examples plus GPU, distributed and Kueue variations."""
    cases = {
        "pipeline-churn": _example("churn-pipeline.yaml"),
        "pipeline-gpu-distributed": _example("gpu-distributed-pipeline.yaml"),
        "pipeline-datatrigger": _variant(
            "churn-pipeline.yaml",
            "churn-fresh",
            dataTrigger={"schedule": "*/15 * * * *", "skipUnchangedSchedule": True},
            resources={"cpu": "2", "memory": "4Gi", "nodeSelector": {"pool": "batch"}},
        ),
        "pipeline-gpu-single": _variant(
            "churn-pipeline.yaml",
            "churn-gpu",
            model={"framework": "torch", "task": "classification"},
            resources={
                "gpus": 1,
                "cpu": "4",
                "memory": "16Gi",
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            promotion={"metric": "roc_auc"},
        ),
        "pipeline-kueue": _variant(
            "churn-pipeline.yaml",
            "churn-queued",
            queueName="team-a",
            storageSecretRef=None,
            runPolicy={"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 0},
        ),
        "pipeline-distributed-4x2": _variant(
            "gpu-distributed-pipeline.yaml",
            "ddp",
            distributed={"workers": 4, "masterPort": 23456},
            queueName=None,
        ),
        "pipeline-custom": _variant(
            "churn-pipeline.yaml",
            "digits",
            model={"framework": "custom", "task": "classification", "params": {"epochs": 8}},
            trainer={
                "image": "registry.example.com/team/digits-train:1.4",
                "command": ["python", "train.py"],
                "args": ["--amp"],
                "env": [
                    {"name": "PYTHONPATH", "value": "/app/lib"},
                    {"name": "WANDB_MODE", "value": "offline"},
                    {
                        "name": "HF_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
                    },
                ],
                "workingDir": "/app",
                "codeRef": "git:4f2a9c1",
            },
            resources={"gpus": 1, "cpu": "4", "memory": "16Gi"},
            promotion={"metric": "accuracy", "minimum": 0.9},
        ),
        "pipeline-custom-ddp": _variant(
            "churn-pipeline.yaml",
            "digits-ddp",
            model={"framework": "custom", "task": "classification"},
            trainer={"image": "registry.example.com/team/digits-train:1.4", "command": ["train"]},
            distributed={"workers": 2},
            resources={"gpus": 2},
            promotion={"metric": "accuracy"},
        ),
        "deployment-churn": _example("churn-deployment.yaml"),
        "deployment-pinned": _example("pinned-version-deployment.yaml"),
        "deployment-gpu": _variant(
            "churn-deployment.yaml",
            "digits",
            resources={"cpu": "2", "memory": "4Gi", "gpus": 1},
        ),
        "deployment-secured": _variant(
            "churn-deployment.yaml",
            "churn-secured",
            auth={"tokenSecretRef": {"name": "churn-token", "key": "token"}},
            tls={"secretRef": {"name": "churn-tls"}},
            networkPolicy={
                "enabled": True,
                "allowFrom": [
                    {"namespaceSelector": {"matchLabels": {"team": "web"}}},
                    {"podSelector": {"matchLabels": {"app": "shop"}}},
                ],
            },
        ),
        "monitor-churn": _example("churn-monitor.yaml"),
    }
    for doc in cases.values():
        doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
        doc["metadata"]["uid"] = UID
    return cases


def build_all(doc: dict[str, Any], defaults: WorkloadDefaults = DEFAULTS) -> list[dict[str, Any]]:
    """Every manifest the builders make for one custom resource."""
    model = parse_resource(doc)
    owner = Owner.of(doc)
    kind = doc["kind"]
    if kind == "TrainingPipeline":
        spec = model.spec
        # Run 1 of a new pipeline: its Job reads the registry first (init container registry).
        run_1 = build_training_job(
            owner, spec, run_id=1, trigger="Create", generation=1, defaults=defaults
        )
        out = [with_registry_read(run_1, owner, spec, run_id=1, defaults=defaults)]
        if spec.distributed.workers > 1:
            out.append(build_headless_service(owner, spec, 1))
        out += [
            build_registry_job(owner, spec, REGISTRY_OP, defaults=defaults),
        ]
        if spec.data_trigger is not None:
            out.append(build_data_watch_cronjob(owner, spec, defaults=defaults))
        return out
    if kind == "ModelDeployment":
        spec = model.spec
        uri = "s3://models/churn/versions/3"
        counts = stable_replica_counts(spec)
        canary = split_step(counts[0], 10, counts[-1])  # a 10% step beside the fewest stable
        out = [
            build_server_deployment(
                owner, spec, model_uri=uri, model_version="3", defaults=defaults
            ),
            build_server_deployment(
                owner,
                spec,
                model_uri="s3://models/churn/versions/4",
                model_version="4",
                defaults=defaults,
                track="canary",
                replicas=canary.canary,
            ),
            build_service(owner),
        ]
        hpa = build_hpa(owner, spec)
        if hpa is not None:
            out.append(hpa)
        policy = build_network_policy(owner, spec, defaults.serving_peers)
        if policy is not None:
            out.append(policy)
        return out
    spec = model.spec
    ref = reference_uri(spec, "s3://models/churn/versions/3")
    assert ref is not None
    return [
        build_monitor_cronjob(
            owner,
            spec,
            payload_log_uri="s3://logs/churn/",
            reference=ref,
            model_version="3",
            defaults=defaults,
        )
    ]


def pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates (metadata and spec) inside a Job, Deployment or CronJob, else none."""
    spec = manifest.get("spec", {})
    if manifest["kind"] in ("Job", "Deployment"):
        return [spec["template"]]
    if manifest["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return []


def pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a manifest (Job, Deployment, CronJob), else none."""
    return [template["spec"] for template in pod_templates(manifest)]
