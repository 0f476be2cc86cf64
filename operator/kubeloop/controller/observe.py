"""Feed the watch cache (controller/cache.py) from kopf's watches: the operator's own kinds, and
the Jobs and Pods it owns, each slice by the label that names its owner.

Each slice is a kopf index: kopf lists every indexed resource before any other handler runs
(at start and after a restart), and runs an event's index handlers before its other handlers,
so the cache is filled before a reconcile reads it. The handlers keep the body in the cache and
return None (kopf's own index keeps nothing); kopf calls no index handler for a deletion, so a
DELETED event's handler here drops the object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from kubeloop.controller.monitor import MONITOR_LABEL
from kubeloop.controller.runtime import runtime
from kubeloop.controller.training import PIPELINE_LABEL
from kubeloop.resources.datawatch import DATAWATCH_LABEL
from kubeloop.resources.registry import REGISTRY_LABEL

__all__ = ["SLICES", "relist_slices", "watch_slices"]

log = logging.getLogger("kubeloop.cache")

_OWN = ("kubeloop.io", "v1alpha1")
# (kind, group, version, plural, label: None for every object of the kind)
SLICES: list[tuple[str, str, str, str, str | None]] = [
    ("TrainingPipeline", *_OWN, "trainingpipelines", None),
    ("ModelDeployment", *_OWN, "modeldeployments", None),
    ("DriftMonitor", *_OWN, "driftmonitors", None),
    *(
        (kind, group, "v1", plural, label)
        for kind, group, plural in (("Job", "batch", "jobs"), ("Pod", "", "pods"))
        for label in (PIPELINE_LABEL, REGISTRY_LABEL, DATAWATCH_LABEL, MONITOR_LABEL)
    ),
    # The data-watch and drift-check CronJobs, re-applied on every resync.
    *(("CronJob", "batch", "v1", "cronjobs", label) for label in (DATAWATCH_LABEL, MONITOR_LABEL)),
]


def watch_slices() -> None:
    """Make the cache of the API client just connected answer for every slice fed here."""
    for kind, *_, label in SLICES:
        runtime.api.cache.watch(kind, label)


def relist_slices() -> int:
    """Check the cache against a fresh list of every slice, in each namespace where it holds
    objects of it (a namespaced list: the operator may watch only some namespaces): what was
    deleted while no watch was open is dropped. How many objects were dropped."""
    kube = runtime.kube
    if kube is None:
        return 0
    dropped = 0
    for kind, *_, label in SLICES:
        for namespace in kube.cache.slice_namespaces(kind, label):
            gone = kube.relist(kind, namespace, label)
            if gone:
                log.info(
                    "%s %s/%s: deleted while unwatched, dropped from the cache",
                    kind,
                    namespace,
                    ", ".join(gone),
                )
            dropped += len(gone)
    return dropped


def _feed(kind: str) -> Callable[..., Any]:
    async def keep(*, body: kopf.Body, **_: Any) -> None:
        if runtime.kube is not None:
            runtime.kube.cache.observed({"kind": kind, **body})

    return keep


def _drop(kind: str) -> Callable[..., Any]:
    async def forget(*, type: str, namespace: str | None, name: str, **_: Any) -> None:
        if type == "DELETED" and runtime.kube is not None:
            runtime.kube.cache.forget(kind, namespace or "", name)

    return forget


for _kind, _group, _version, _plural, _label in SLICES:
    _labels = {_label: kopf.PRESENT} if _label else None
    _id = f"cache-{_kind.lower()}-{_label or 'all'}"
    _where: tuple[str, ...] = (_group, _version, _plural) if _group else (_version, _plural)
    kopf.index(*_where, labels=_labels, id=_id)(_feed(_kind))
    kopf.on.event(*_where, labels=_labels, id=_id + "-deleted")(_drop(_kind))
