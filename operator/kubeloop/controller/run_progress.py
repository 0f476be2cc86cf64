"""Live training progress, read from the run's own pod.

Training pods have no Kubernetes API access (no service-account token): rank 0 serves its latest
progress at `GET /progress` on the container port named `progress`
(`kubeloop_sdk.progressendpoint`), and the operator reads it from the pod's IP on its resync,
as the canary analysis reads the model server's `/metrics` (`canary_analysis`). The pods are
the ones the reconcile lists anyway (to tell a pod that cannot start): reading costs no API
request. Only a live pod is read: one with an IP that has not ended (a custom run's user code is
an init container, so its pod is still Pending), and of an Indexed Job only pod 0, where rank 0
runs. A pod that cannot be reached (no IP yet, NetworkPolicy, the process between reports) is
not an error: the progress is simply not updated this time (a debug line, no Event).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubeloop.controller.podhttp import read_bounded
from kubeloop_sdk.progressendpoint import PATH, PORT_NAME

__all__ = ["pod_progress_url", "read_progress"]

log = logging.getLogger("kubeloop.progress")
_INDEX = "batch.kubernetes.io/job-completion-index"
_LIVE_PHASES = ("Pending", "Running")
_MAX_BYTES = 64 << 10


def pod_progress_url(pod: dict[str, Any]) -> str | None:
    """`http://<podIP>:<port named progress>/progress` of a live pod that serves progress (pod 0
    of an Indexed Job), else None."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or meta.get("deletionTimestamp") or status.get("phase") not in _LIVE_PHASES:
        return None
    if (meta.get("annotations") or {}).get(_INDEX, "0") != "0":
        return None
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            if port.get("name") == PORT_NAME and port.get("containerPort"):
                host = f"[{ip}]" if ":" in ip else ip
                return f"http://{host}:{int(port['containerPort'])}{PATH}"
    return None  # a Job from before progress was served: nothing to read


def _fetch(url: str, timeout: float) -> Any:
    # The pod runs the team's own image: a body that trickles in, or never ends, must not hold
    # the reconcile (podhttp.read_bounded: one deadline for the whole answer).
    body = read_bounded(url, timeout, _MAX_BYTES)
    if body is None:  # unreachable, 204 (nothing reported yet), too big or too slow
        log.debug("progress not read from %s", url)
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        log.debug("progress not read from %s: %s", url, exc)
        return None


def read_progress(pods: list[dict[str, Any]], timeout: float = 1.0) -> Any:
    """What the first live pod that answers serves (decoded JSON, unchecked), or None."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        url = pod_progress_url(pod)
        if url is None:
            continue
        served = _fetch(url, timeout)
        if served is not None:
            return served
    return None
