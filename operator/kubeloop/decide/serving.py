"""What an observed serving Deployment says: the version it serves, whether its rollout is
complete or stuck, its pod counts. Read from the Deployment as the API server returned it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeloop.resources.serving import VERSION_LABEL

__all__ = ["count", "deadline_exceeded", "rolled_out", "served_uri", "served_version"]


def served_version(dep: Mapping[str, Any] | None) -> str | None:
    """The model version the Deployment's pods serve (its annotation), None without one."""
    if dep is None:
        return None
    annotations: Mapping[str, str] = dep["metadata"].get("annotations") or {}
    return annotations.get(VERSION_LABEL)


def served_uri(dep: Mapping[str, Any] | None) -> str | None:
    """The model version URI its server container loads."""
    if dep is None:
        return None
    for container in dep["spec"]["template"]["spec"].get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "KUBELOOP_MODEL_URI":
                return str(env.get("value"))
    return None


def count(dep: Mapping[str, Any] | None, field: str) -> int:
    """A pod count of its status (`replicas`, `readyReplicas`...); 0 without a Deployment."""
    return int(((dep or {}).get("status") or {}).get(field) or 0)


def rolled_out(dep: Mapping[str, Any] | None) -> bool:
    """Every desired pod runs the current template and is ready; no old pod is left."""
    if dep is None:
        return False
    want = int(dep["spec"].get("replicas", 1))
    st = dep.get("status") or {}
    return (
        int(st.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 1)
        and int(st.get("updatedReplicas") or 0) >= want
        and int(st.get("readyReplicas") or 0) >= want
        and int(st.get("replicas") or 0) <= want
    )


def deadline_exceeded(dep: Mapping[str, Any] | None) -> str | None:
    """The Deployment controller's verdict that a rollout is stuck, as a message."""
    for cond in ((dep or {}).get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "Progressing"
            and cond.get("status") == "False"
            and cond.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(cond.get("message") or "the Deployment exceeded its progress deadline")
    return None
