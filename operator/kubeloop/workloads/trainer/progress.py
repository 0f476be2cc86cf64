"""Progress reporting: a log line per step and the latest step served for the operator.

The training pod has no Kubernetes API access: the trainer (rank 0) serves its latest progress
on the pod's progress endpoint (`kubeloop_sdk.progressendpoint`, port `KUBELOOP_PROGRESS_PORT`),
which the operator reads into `status.currentRun.progress` (docs/contracts.md). The value and
the log line are `kubeloop_sdk.progress`'s, which user training code reports through too; the
value carries the run's id, so the operator never shows a late report as the next run's.
Serving sits behind `Publish`, a one-argument callable, so what is served is tested without a
server, and progress that cannot be served never fails training.
"""

from __future__ import annotations

import logging
from typing import Any

from kubeloop_sdk.progress import Publish, progress_line, progress_value, publish_on_endpoint

__all__ = ["ProgressReporter"]

log = logging.getLogger("kubeloop.train")


class ProgressReporter:
    """Logs every report; hands each one, tagged with the run, to `publish` (None: log only)."""

    def __init__(self, publish: Publish | None = None, run_id: str | None = None) -> None:
        self.publish = publish
        self.run_id = run_id

    @classmethod
    def from_env(cls, run_id: str | None = None) -> ProgressReporter:
        """Served when Kubeloop gave the container a progress port (KUBELOOP_PROGRESS_PORT)."""
        return cls(publish_on_endpoint, run_id)

    def report(self, progress: dict[str, Any]) -> None:
        """One progress line in the log, and the value the endpoint serves from now on."""
        print(progress_line(progress), flush=True)
        if self.publish is None:
            return
        try:
            self.publish(progress_value(progress, self.run_id))
        except Exception as exc:  # progress is best effort; training goes on
            log.warning("progress not served: %s", exc)
