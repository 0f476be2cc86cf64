"""A child the API server refuses, for the controllers that re-apply their children on every
resync (ModelDeployment here; DriftMonitor goes through the same path): the owner is
Stalled=True/ChildRefused naming the field, with one Warning Event, the child is not POSTed again
while its backoff lasts, and a fixed spec clears Stalled. (The TrainingPipeline's refused Job is
in test_training.py: there the run fails instead.)"""

from __future__ import annotations

from typing import Any

import kmock
from tests.integration.harness import (
    MD,
    Cluster,
    Operator,
    events,
    example,
    resync_requests,
    wait_for,
)

FIELD = "spec.minReplicas"


def _conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    obj = cluster.get(MD, "ml", name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_a_refused_hpa_stalls_the_deployment_once_and_is_not_posted_again(
    cluster: Cluster, operator: Operator
) -> None:
    name = "md-refused"
    posts: list[dict[str, Any]] = []

    def refuse_small_hpa(obj: dict[str, Any]) -> None:
        # As a ValidatingAdmissionPolicy of the cluster would: at least 3 replicas.
        if obj.get("kind") == "HorizontalPodAutoscaler" and obj["metadata"]["name"] == name:
            posts.append(obj)
            if obj["spec"]["minReplicas"] < 3:
                raise kmock.KubernetesError(
                    status=422,
                    reason="Invalid",
                    message=f"HorizontalPodAutoscaler.autoscaling {name!r} is invalid: "
                    f"{FIELD}: Invalid value: {obj['spec']['minReplicas']}: must be at least 3",
                    details={"name": name, "kind": "HorizontalPodAutoscaler",
                             "causes": [{"field": FIELD}]},
                )  # fmt: skip

    cluster.em.admission_hooks.append(refuse_small_hpa)
    try:
        doc = example("churn-deployment.yaml", name=name)
        doc["spec"]["model"] = {"uri": "s3://models/churn/versions/1/"}
        doc["spec"]["storageSecretRef"] = {"name": "s3-credentials"}
        cluster.create(doc)
        stalled = wait_for(
            lambda: (
                (c := _conditions(cluster, name).get("Stalled")) and c["status"] == "True" and c
            ),
            what="Stalled",
        )
        assert stalled["reason"] == "ChildRefused" and FIELD in stalled["message"]
        assert f"HorizontalPodAutoscaler {name}" in stalled["message"]
        # Several resyncs later: answered from the refusal's backoff, nothing POSTed again.
        resync_requests(cluster, "modeldeployments", name)
        assert len(posts) == 1
        assert _conditions(cluster, name)["Stalled"]["reason"] == "ChildRefused"
        (event,) = events(cluster, name, "ChildRefused")
        assert event["type"] == "Warning" and FIELD in event["message"]

        cluster.patch(MD, "ml", name, {"spec": {"autoscaling": {"minReplicas": 3}}})
        wait_for(
            lambda: _conditions(cluster, name)["Stalled"]["status"] == "False", what="unstalled"
        )
        assert cluster.get("autoscaling/v2/horizontalpodautoscalers", "ml", name)
    finally:
        cluster.em.admission_hooks.remove(refuse_small_hpa)
