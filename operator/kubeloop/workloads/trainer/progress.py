"""Progress reporting: a log line per step and, when asked, a status patch.

`KUBELOOP_PROGRESS_PATCH=true` makes the trainer write `status.currentRun.progress` of its
TrainingPipeline through the status subresource (docs/contracts.md). The patch body and the log
line are `kubeloop_sdk.progress`'s, which user training code reports through too: the patch
first tests `status.currentRun.id` is this run's id, so a late report of a finished run is
refused instead of showing up as the next run's progress. The API call sits
behind `StatusPatcher`, a one-method protocol, so the patch body is tested without a cluster
and a failed patch never fails training.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Protocol

from kubeloop_sdk.progress import progress_line, progress_patch_body

__all__ = ["KubernetesStatusPatcher", "ProgressReporter", "StatusPatcher"]

log = logging.getLogger("kubeloop.train")
GROUP, VERSION, PLURAL = "kubeloop.io", "v1alpha1", "trainingpipelines"


class StatusPatcher(Protocol):
    """Sends one JSON patch to the TrainingPipeline's status subresource."""

    def patch(self, namespace: str, name: str, body: list[dict[str, Any]]) -> None: ...


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
        print(progress_line(progress), flush=True)
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
