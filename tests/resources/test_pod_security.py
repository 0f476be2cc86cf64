"""Every pod the operator creates meets the Pod Security Standard "restricted", field by field,
and carries credentials only by secretKeyRef."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from tests.resources.cases import DEFAULTS, build_all, inputs, pod_specs

from kubeloop.api.common import WorkloadSecurity

PODS = [
    pytest.param(pod, id=f"{case}:{m['kind']}/{m['metadata']['name']}")
    for case, doc in sorted(inputs().items())
    for m in build_all(doc)
    for pod in pod_specs(m)
]


def test_every_workload_kind_is_covered() -> None:
    kinds = {m["kind"] for doc in inputs().values() for m in build_all(doc) if pod_specs(m)}
    assert kinds == {"Job", "Deployment", "CronJob"}


@pytest.mark.parametrize("pod", PODS)
def test_pod_is_restricted(pod: dict[str, Any]) -> None:
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc.get("runAsUser") != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
    for volume in pod["volumes"]:  # restricted allows only these volume types here
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "configMap", "projected"}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # The user's own training image (framework custom) keeps a writable root: docs/byo.md.
        user_code = any(e["name"] == "KUBELOOP_CONTEXT" for e in container["env"])
        assert sc["readOnlyRootFilesystem"] is not user_code
        assert "privileged" not in sc
        assert container["terminationMessagePath"] == "/dev/termination-log"
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/scratch" in mounts
        scratch = next(v for v in pod["volumes"] if v["name"] == mounts["/scratch"])
        assert "emptyDir" in scratch
        env = {e["name"]: e for e in container["env"]}
        assert env["KUBELOOP_WORK_DIR"]["value"] == "/scratch"
        for name, entry in env.items():
            if name.startswith("AWS_"):
                assert "value" not in entry
                assert set(entry["valueFrom"]) == {"secretKeyRef"}


@pytest.mark.parametrize("case", sorted(inputs()))
def test_ids_left_to_the_platform_leave_the_rest_restricted(case: str) -> None:
    """OpenShift's restricted-v2 assigns the uid and gids from the namespace's range and refuses
    a pod that names others: with the ids unset (chart `workloadPods.securityContext: null`) the
    pods name none, and every other restricted setting is the same as with the fixed uid."""
    platform = dataclasses.replace(
        DEFAULTS, security=WorkloadSecurity(run_as_user=None, run_as_group=None, fs_group=None)
    )
    doc = inputs()[case]
    fixed = [pod for m in build_all(doc) for pod in pod_specs(m)]
    assigned = [pod for m in build_all(doc, platform) for pod in pod_specs(m)]
    assert len(assigned) == len(fixed)
    for with_ids, without in zip(fixed, assigned, strict=True):
        assert with_ids["securityContext"]["runAsUser"] == 65532
        assert without["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert {**without, "securityContext": with_ids["securityContext"]} == with_ids


@pytest.mark.parametrize("pod", PODS)
def test_pod_pulls_with_the_operators_image_pull_secrets(pod: dict[str, Any]) -> None:
    """Workload images may come from a private registry: every pod names the pull secrets the
    operator was given (chart value workloadPods.imagePullSecrets), in order."""
    assert DEFAULTS.image_pull_secrets  # the cases are built with some
    assert pod["imagePullSecrets"] == [{"name": n} for n in DEFAULTS.image_pull_secrets]


@pytest.mark.parametrize("case", sorted(inputs()))
def test_children_are_owned_and_gitops_safe(case: str) -> None:
    doc = inputs()[case]
    for manifest in build_all(doc):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kubeloop"
        # Never the owner's labels, never Argo CD's tracking label.
        assert "app.kubernetes.io/instance" not in labels
        assert not set(doc["metadata"].get("labels", {})) & set(labels)
        if manifest["kind"] != "ServiceAccount":  # shared by every pipeline of a namespace
            (ref,) = manifest["metadata"]["ownerReferences"]
            assert ref["uid"] == doc["metadata"]["uid"] and ref["kind"] == doc["kind"]
