"""The peer of bench/operator_bench.py: a bare kopf operator that only creates one Job per
TrainingPipeline (same kopf, same `kubernetes` client, same emulator). Run by the bench as
`kopf run -A --standalone bench/operator_bare_kopf.py` with BENCH_KUBE_SERVER set."""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes

_api: Any = None


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=os.environ["BENCH_KUBE_SERVER"], insecure=True)


@kopf.on.startup()
def startup(**_: Any) -> None:
    global _api  # noqa: PLW0603 (one client per process, as in the operator)
    config = kubernetes.client.Configuration()
    config.host = os.environ["BENCH_KUBE_SERVER"]
    _api = kubernetes.client.BatchV1Api(kubernetes.client.ApiClient(config))


@kopf.on.create("kubeloop.io", "v1alpha1", "trainingpipelines")
def create_job(*, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-run-1", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "trainer", "image": "trainer", "command": ["train"]}],
                }
            }
        },
    }
    kopf.adopt(job, owner=body)
    _api.create_namespaced_job(namespace, job)
