"""Progress reporting: a log line per step and, when asked, a status patch.

`KUBELOOP_PROGRESS_PATCH=true` makes the trainer write `status.currentRun.progress` of its
TrainingPipeline through the status subresource (docs/contracts.md). The write is a JSON patch
that first tests `status.currentRun.id` is this run's id, and the progress carries its `runId`:
a report that arrives after the run was recorded (the next run may be current by then) is
refused by the API server instead of showing up as the next run's progress. The API call sits
behind `StatusPatcher`, a one-method protocol, so the patch body is tested without a cluster
and a failed patch never fails training.
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
    """Sends one JSON patch to the TrainingPipeline's status subresource."""

    def patch(self, namespace: str, name: str, body: list[dict[str, Any]]) -> None: ...


def progress_patch_body(
    progress: dict[str, Any], run_id: str | None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The JSON patch: status.currentRun.progress in RunProgress's fields, tagged with the run,
    written only while `run_id` is the current run (a failed `test` writes nothing)."""
    out: dict[str, Any] = {k: progress[k] for k in _FIELDS if progress.get(k) is not None}
    out["percent"] = max(0, min(100, int(out.get("percent", 0))))
    if "loss" in out:
        out["loss"] = float(out["loss"])
    out["updatedAt"] = (
        (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    ops: list[dict[str, Any]] = []
    if run_id is not None:
        out["runId"] = run_id
        ops.append({"op": "test", "path": "/status/currentRun/id", "value": run_id})
    ops.append({"op": "add", "path": "/status/currentRun/progress", "value": out})
    return ops


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

    def patch(self, namespace: str, name: str, body: list[dict[str, Any]]) -> None:
        """JSON-patch the status subresource (the trainer's Role allows only this)."""
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            _content_type="application/json-patch+json",
        )


class ProgressReporter:
    """Logs every report; patches status at most every `interval` seconds (and at 100%)."""

    def __init__(
        self,
        namespace: str | None,
        pipeline: str | None,
        patcher: StatusPatcher | None = None,
        interval: float = 5.0,
        run_id: str | None = None,
    ) -> None:
        self.namespace, self.pipeline = namespace, pipeline
        self.patcher = patcher
        self.run_id = run_id
        self.interval = interval
        self._last = -float("inf")

    @classmethod
    def from_env(cls, run_id: str | None = None) -> ProgressReporter:
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
        return cls(namespace, pipeline, patcher, run_id=run_id)

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
        body = progress_patch_body(progress, self.run_id)
        try:
            self.patcher.patch(self.namespace, self.pipeline, body)
        except Exception as exc:  # progress is best effort; training goes on
            log.warning("progress patch failed: %s", exc)
        else:
            log.debug("patched progress %s", json.dumps(body))
