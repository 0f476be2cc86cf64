"""kopf's diff base (its "last handled configuration"), built only for the kinds whose change
handlers read it.

On every watch event of every resource it watches, kopf builds the object's essence (a deep
copy of the whole body, status included, then stripped of status and most metadata) and diffs
it against the stored one, whether or not any change handler (`on.create`, `on.update`,
`on.resume`, `on.delete`) is registered for that resource. Kubeloop has change handlers for
ModelDeployments and DriftMonitors only; TrainingPipelines, Jobs, Pods, Deployments and
CronJobs are watched through event handlers and indexes, which read no diff. For them the copy
was pure cost: a third of the operator's CPU while 1000 new pipelines got their Jobs
(bench/operator_bench.py: 9.4 s to all Jobs with it, 6.3 s without).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

__all__ = ["CHANGE_HANDLED_KINDS", "ChangeHandledDiffBase"]

# The kinds with kopf change handlers (controller/deployment.py, controller/monitor.py);
# tests/controller/test_diffbase.py checks this against kopf's registry.
CHANGE_HANDLED_KINDS = frozenset({"ModelDeployment", "DriftMonitor"})


class ChangeHandledDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base; the essence of an object of another kind is empty, so kopf
    copies and diffs nothing for it (no change handler would read the diff)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if _skipped(body):
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        # Nothing is stored for another kind: no need to look through its annotations.
        return None if _skipped(body) else super().fetch(body=body)


def _skipped(body: kopf.Body) -> bool:
    """Whether `body` is of a known kind without change handlers."""
    kind = body.get("kind")
    return bool(kind) and kind not in CHANGE_HANDLED_KINDS
