"""Security of the operator as it runs: the RBAC it is granted is exactly the RBAC it uses, the
pods it creates need none (no service-account token), and no secret value ever reaches a
status, an Event or a log line.

The real operator (kopf, in a thread) drives the three kinds through a run, a deployment and a
drift check against the emulated API, which records every request. Those requests, mapped to
(apiGroup, resource, verb), are compared with the ClusterRole the Helm chart grants (rendered
by the real helm 4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tests.chart.helmlib import helm_path, operator_roles, render
from tests.integration.harness import (
    CRONJOBS,
    DM,
    JOBS,
    MD,
    TP,
    Cluster,
    Operator,
    example,
    wait_for,
)

from kubeloop.local.cluster.emulator import EmulatorThread

SECRET_VALUE = "s3cr3t-Value-8f2c1d"  # must never show up outside the Secret
SECRET_KEY_ID = "AKIA-kubeloop-test-91"

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def loop() -> Iterator[tuple[Cluster, _Capture]]:
    """One pass through the loop with a storage Secret; yields the cluster and the logs."""
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    previous = root.level
    root.setLevel(logging.DEBUG)
    with EmulatorThread(keep_requests=None) as thread:  # the audit reads every request
        cluster = Cluster(thread)
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}})
        cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3-credentials", "namespace": "ml"},
                "stringData": {
                    "AWS_ACCESS_KEY_ID": SECRET_KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": SECRET_VALUE,
                },
            }
        )
        operator = Operator(thread.url)
        operator.start()
        try:
            _drive(cluster)
        finally:
            operator.stop()
            root.removeHandler(capture)
            root.setLevel(previous)
        yield cluster, capture


def _drive(cluster: Cluster) -> None:
    cluster.create(example("churn-pipeline.yaml"))
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
        lambda: ((cluster.get(TP, "ml", "churn") or {}).get("status") or {}).get("champion"),
        what="champion",
    )
    cluster.create(example("churn-deployment.yaml"))
    wait_for(lambda: cluster.get("apps/v1/deployments", "ml", "churn"), what="Deployment")
    cluster.create(example("churn-monitor.yaml"))
    wait_for(lambda: cluster.get(CRONJOBS, "ml", "churn"), what="CronJob")


def _granted() -> set[tuple[str, str, str]]:
    objs = render(helm_path())
    granted: set[tuple[str, str, str]] = set()
    for role in (o for o in operator_roles(objs) if o["kind"] == "ClusterRole"):
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        granted.add((group, resource, verb))
    return granted


def _used(cluster: Cluster) -> set[tuple[str, str, str]]:
    used: set[tuple[str, str, str]] = set()
    for request in cluster.em.recorded_requests:
        resource = request.resource
        if resource is None or not getattr(resource, "plural", None):
            continue  # discovery (/api, /apis): allowed to every authenticated client
        method = str(request.method).upper().rsplit(".", 1)[-1]
        if method == "GET":
            watching = request.params.get("watch") in ("true", "1")
            verb = "watch" if watching else ("get" if request.name else "list")
        else:
            verb = _VERBS.get(method, method.lower())
        plural = resource.plural + (f"/{request.subresource}" if request.subresource else "")
        used.add((resource.group or "", plural, verb))
    return used


def test_every_request_the_operator_makes_is_granted(loop: tuple[Cluster, Any]) -> None:
    """Dynamic half of the RBAC audit: what the running operator asked the API for is exactly
    covered by the chart. The static half (tests/chart: every granted verb has a call site in
    the controller, and nothing more) covers paths this short loop does not reach (rollbacks,
    deletions)."""
    cluster, _ = loop
    granted = _granted()
    used = _used(cluster)
    missing = used - granted
    unused = granted - used
    print(
        f"\nRELIABILITY rbac-audit: requests={len(cluster.em.recorded_requests)}, "
        f"distinct_permissions_used={len(used)}, granted={len(granted)}, missing={len(missing)}, "
        f"granted_not_reached_by_this_loop={len(unused)}"
    )
    assert len(used) >= 15, "the loop exercised too little to audit anything"
    assert not missing, f"the operator needs RBAC the chart does not grant: {sorted(missing)}"


def test_workload_pods_need_no_permissions(loop: tuple[Cluster, Any]) -> None:
    """The workload half of the RBAC audit: no pod the operator creates (training, registry,
    serving, monitoring) mounts a service-account token or names a ServiceAccount, and the
    operator never made one, nor a Role or RoleBinding: results leave by the termination
    message, progress by the pod's own endpoint that the operator reads."""
    cluster, _ = loop
    templates: dict[str, dict[str, Any]] = {}
    for job in cluster.list(JOBS):
        templates[f"Job {job['metadata']['name']}"] = job["spec"]["template"]["spec"]
    for cron in cluster.list(CRONJOBS):
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        templates[f"CronJob {cron['metadata']['name']}"] = pod
    for deploy in cluster.list("apps/v1/deployments"):
        templates[f"Deployment {deploy['metadata']['name']}"] = deploy["spec"]["template"]["spec"]
    kinds = {place.split()[0] for place in templates}
    assert kinds == {"Job", "CronJob", "Deployment"}, templates.keys()
    with_token = [
        place
        for place, pod in templates.items()
        if pod.get("automountServiceAccountToken") is not False or "serviceAccountName" in pod
    ]
    rbac = [p for p in _used(cluster) if p[1] in ("serviceaccounts", "roles", "rolebindings")]
    print(
        f"\nRELIABILITY workload-rbac: pod_templates={len(templates)}, "
        f"with_token={len(with_token)}, rbac_requests={len(rbac)}"
    )
    assert not with_token, f"pods that could reach the Kubernetes API: {with_token}"
    assert not rbac, f"the operator still manages RBAC for workloads: {sorted(rbac)}"


def test_no_secret_value_in_status_events_or_logs(loop: tuple[Cluster, _Capture]) -> None:
    cluster, capture = loop
    places: dict[str, str] = {}
    for kind in (TP, MD, DM):
        for obj in cluster.list(kind):
            places[f"{kind} {obj['metadata']['name']} status"] = repr(obj.get("status"))
    for event in cluster.list("v1/events") + cluster.list("events.k8s.io/v1/events"):
        places[f"Event {event['metadata']['name']}"] = repr(event)
    for kind in (JOBS, CRONJOBS, "apps/v1/deployments"):
        for obj in cluster.list(kind):  # workloads get credentials only by reference
            places[f"{kind} {obj['metadata']['name']}"] = repr(obj)
    places["operator log"] = "\n".join(capture.lines)
    assert len(capture.lines) > 10, "no operator log captured: the check would prove nothing"
    assert any("Event" in p for p in places), "no Events recorded"
    leaks = [p for p, text in places.items() if SECRET_VALUE in text or SECRET_KEY_ID in text]
    print(f"\nRELIABILITY secret-grep: places={len(places)}, leaks={len(leaks)}")
    assert not leaks, f"secret values leaked into: {leaks}"
    job = cluster.get(JOBS, "ml", "churn-run-1")
    assert job is not None
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = [e for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in refs} == {"s3-credentials"}
