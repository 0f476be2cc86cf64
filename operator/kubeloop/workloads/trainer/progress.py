"""Progress reporting: a log line per step and, when asked, a status patch.

`KUBELOOP_PROGRESS_PATCH=true` makes the trainer merge-patch
`status.currentRun.progress` of its TrainingPipeline through the status subresource
(docs/contracts.md). The API call sits behind `StatusPatcher`, a one-method protocol, so the
patch body is tested without a cluster and a failed patch never fails training.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "KubernetesStatusPatcher",
    "ProgressReporter",
    "StatusPatcher",
    "progress_patch_body",
]

log = logging.getLogger("kubeloop.train")
GROUP, VERSION, PLURAL = "kubeloop.io", "v1alpha1", "trainingpipelines"
_FIELDS = ("percent", "epoch", "epochs", "loss", "etaSeconds")


class StatusPatcher(Protocol):
    """Sends one merge patch to the TrainingPipeline's status subresource."""

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> None: ...


def progress_patch_body(progress: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The merge-patch body: only status.currentRun.progress, in RunProgress's fields."""
    out: dict[str, Any] = {k: progress[k] for k in _FIELDS if progress.get(k) is not None}
    out["percent"] = max(0, min(100, int(out.get("percent", 0))))
    if "loss" in out:
        out["loss"] = float(out["loss"])
    out["updatedAt"] = (
        (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    return {"status": {"currentRun": {"progress": out}}}


class KubernetesStatusPatcher:
    """The real channel: in-cluster config, or KUBECONFIG on a laptop."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            # KUBECONFIG read now: the client library reads it once, when first imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        self.api = client.CustomObjectsApi()

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Merge-patch the status subresource (the trainer's Role allows only this)."""
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
        )


class ProgressReporter:
    """Logs every report; patches status at most every `interval` seconds (and at 100%)."""

    def __init__(
        self,
        namespace: str | None,
        pipeline: str | None,
        patcher: StatusPatcher | None = None,
        interval: float = 5.0,
    ) -> None:
        self.namespace, self.pipeline = namespace, pipeline
        self.patcher = patcher
        self.interval = interval
        self._last = -float("inf")

    @classmethod
    def from_env(cls) -> ProgressReporter:
        """Patching on when KUBELOOP_PROGRESS_PATCH=true and the pipeline is known."""
        namespace = os.environ.get("KUBELOOP_NAMESPACE")
        pipeline = os.environ.get("KUBELOOP_PIPELINE")
        patcher: StatusPatcher | None = None
        if (
            os.environ.get("KUBELOOP_PROGRESS_PATCH", "").lower() == "true"
            and namespace
            and pipeline
        ):
            try:
                patcher = KubernetesStatusPatcher()
            except Exception as exc:  # no config: progress stays in the log
                log.warning("progress patching off: %s", exc)
        return cls(namespace, pipeline, patcher)

    def report(self, progress: dict[str, Any]) -> None:
        """One progress line in the log, and a throttled status patch."""
        parts = [
            f"{k}={progress[k]:.4g}" if isinstance(progress[k], float) else f"{k}={progress[k]}"
            for k in progress
        ]
        print("kubeloop-progress " + " ".join(parts), flush=True)
        if self.patcher is None or not self.namespace or not self.pipeline:
            return
        now = time.monotonic()
        if now - self._last < self.interval and progress.get("percent", 0) < 100:
            return
        self._last = now
        body = progress_patch_body(progress)
        try:
            self.patcher.patch(self.namespace, self.pipeline, body)
        except Exception as exc:  # progress is best effort; training goes on
            log.warning("progress patch failed: %s", exc)
        else:
            log.debug("patched progress %s", json.dumps(body))
