"""Feed the watch cache (controller/cache.py) from kopf's watches: the operator's own kinds, and
the Jobs and Pods it owns, each slice by the label that names its owner; and pass each event on
to the controllers' listeners (controller/watch_events.py).

Each watched kind has one kopf index and one event handler, for all its slices. At the start
kopf lists every indexed kind and runs the index handlers on every object listed before it runs
any other handler: the index handlers fill the cache then, so no reconcile of a resume sees a
half-filled cache. From the first event handler on, the event handlers keep the cache: each
keeps its event's object (or drops a deleted one: kopf calls no index handler for a deletion)
before it calls the kind's listeners, so a reconcile an event started sees at least that
object; the index handlers' filter then says no (kopf still checks it, but calls no handler).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from kubeloop.controller.monitor import MONITOR_LABEL
from kubeloop.controller.runtime import runtime
from kubeloop.controller.training import PIPELINE_LABEL
from kubeloop.controller.watch_events import notify
from kubeloop.resources.datawatch import DATAWATCH_LABEL
from kubeloop.resources.registry import REGISTRY_LABEL

__all__ = ["HANDLER_PREFIX", "SLICES", "relist_slices", "watch_slices"]

log = logging.getLogger("kubeloop.cache")

_OWN = ("kubeloop.io", "v1alpha1")
# The ids of the kopf handlers here start with it: `cache-job` (index), `cache-job-events`.
HANDLER_PREFIX = "cache-"
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
    _Start.listing = True  # kopf lists every kind anew for this client
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


def _where(kind: str) -> tuple[str, ...]:
    group, version, plural = next((g, v, p) for k, g, v, p, _ in SLICES if k == kind)
    return (group, version, plural) if group else (version, plural)


def _labels(kind: str) -> frozenset[str] | None:
    """The labels of `kind`'s slices; None when one slice is the whole kind."""
    labels = [label for k, *_, label in SLICES if k == kind]
    return None if None in labels else frozenset(label for label in labels if label)


def _in_a_slice(kind: str) -> Callable[..., bool] | None:
    """kopf's `when` filter for `kind`'s event handler: its object is in one of the slices
    (carries one of their labels); None for a kind watched whole."""
    labels = _labels(kind)
    if labels is None:
        return None
    wanted: frozenset[str] = labels

    def carries_one(*, labels: Mapping[str, str], **_: Any) -> bool:
        return not wanted.isdisjoint(labels)

    return carries_one


class _Start:
    """Whether kopf still holds its handlers back at the start: it runs no event handler
    before every indexed kind is listed and each listed object indexed. Until then the index
    handlers feed the cache; from the first event handler on, the event handlers do (each
    keeps its event's object before the listeners run), and kopf checks an index handler's
    filter but calls it no more: with an index handler called for every event as well, kopf's
    work per event was a tenth more of the operator's CPU (bench/operator_bench.py at 2000)."""

    listing = True


def _while_listing(kind: str) -> Callable[..., bool]:
    """kopf's `when` filter for `kind`'s index handler: at the start only, and for an object
    in one of the slices."""
    in_a_slice = _in_a_slice(kind)

    def listing(**kwargs: Any) -> bool:
        return _Start.listing and (in_a_slice is None or in_a_slice(**kwargs))

    return listing


def _keep(kind: str, body: Mapping[str, Any]) -> None:
    if runtime.kube is not None:
        runtime.kube.cache.observed({"kind": kind, **body})


def _feed(kind: str) -> Callable[..., Any]:
    async def keep(*, body: kopf.Body, **_: Any) -> None:
        _keep(kind, body)

    return keep


def _dispatch(kind: str) -> Callable[..., Any]:
    async def dispatch(**kwargs: Any) -> None:
        _Start.listing = False
        if kwargs["type"] == "DELETED":
            if runtime.kube is not None:
                runtime.kube.cache.forget(kind, kwargs["namespace"] or "", kwargs["name"])
        else:
            _keep(kind, kwargs["body"])
        await notify(kind, kwargs["labels"], kwargs)

    return dispatch


# One index and one event handler per kind, for all its slices (a handler per slice, and one
# per controller's listener, made kopf call eleven for a new pipeline's three events; now three:
# the event handler of each, the index handlers only at the start).
for _kind in dict.fromkeys(kind for kind, *_ in SLICES):
    _id = f"{HANDLER_PREFIX}{_kind.lower()}"
    kopf.index(*_where(_kind), when=_while_listing(_kind), id=_id)(_feed(_kind))
    kopf.on.event(*_where(_kind), when=_in_a_slice(_kind), id=f"{_id}-events")(_dispatch(_kind))
