"""Feed the watch cache (controller/cache.py) from informers of our own (controller/informer.py):
the operator's own kinds, and the Jobs, Pods and CronJobs it owns, each slice by the label
that names its owner; and pass each event on to the controllers' listeners
(controller/watch_events.py).

At the start (`start_watching`, from the operator's startup handler, before kopf runs any
other handler) every slice is listed and the whole cache filled before any listener runs, so
no reconcile of a resume sees a half-filled cache; then each listed object goes to the
listeners (type None, as kopf delivers a listed object) and the watches start.

An event is kept in the cache (or a deleted object dropped) as it arrives, then its listeners
run as a task of their own. One object's events reach its listeners one at a time, in order
(a listener that waits on a reconcile holds back only that object's next event, as kopf's
worker per object did), and of the events that arrived meanwhile only the newest (kopf's
batching): a listener reads the cache, which is newer still.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kubeloop.controller.cache import version_of
from kubeloop.controller.informer import Informer
from kubeloop.controller.monitor import MONITOR_LABEL
from kubeloop.controller.runtime import runtime
from kubeloop.controller.training import PIPELINE_LABEL
from kubeloop.controller.watch_events import has_listeners, notify
from kubeloop.resources.datawatch import DATAWATCH_LABEL
from kubeloop.resources.registry import REGISTRY_LABEL

__all__ = ["SLICES", "deliver", "relist_slices", "start_watching", "stop_watching"]

log = logging.getLogger("kubeloop.cache")

# (kind, label: None for every object of the kind); each kind's API path: kube.PLURALS.
SLICES: list[tuple[str, str | None]] = [
    ("TrainingPipeline", None),
    ("ModelDeployment", None),
    ("DriftMonitor", None),
    *(
        (kind, label)
        for kind in ("Job", "Pod")
        for label in (PIPELINE_LABEL, REGISTRY_LABEL, DATAWATCH_LABEL, MONITOR_LABEL)
    ),
    # The data-watch and drift-check CronJobs, re-applied on every resync.
    *(("CronJob", label) for label in (DATAWATCH_LABEL, MONITOR_LABEL)),
]


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


def _kwargs(event: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """What a listener is called with: kopf's names for an event handler's arguments."""
    meta: dict[str, Any] = body.get("metadata") or {}
    return {
        "type": event,
        "body": body,
        "meta": meta,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


_Event = tuple[str, str | None, str | None, dict[str, Any]]


@dataclass
class _Watching:
    """The informers running, and the listener task of each object whose events are being
    passed on (with the newest event that arrived meanwhile)."""

    session: aiohttp.ClientSession | None = None
    loop: asyncio.AbstractEventLoop | None = None  # where the session and the tasks live
    informers: list[asyncio.Task[None]] = field(default_factory=list)
    running: dict[tuple[Any, ...], asyncio.Task[None]] = field(default_factory=dict)
    waiting: dict[tuple[Any, ...], _Event] = field(default_factory=dict)


_watching = _Watching()


def deliver(kind: str, label: str | None, event: str | None, body: dict[str, Any]) -> None:
    """An informer's event: into the cache now, to the slice's listeners in order."""
    meta: Mapping[str, Any] = body.get("metadata") or {}
    kube = runtime.kube
    if kube is not None:
        if event == "DELETED":
            namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
            kube.cache.forget(kind, namespace, name, version_of(body))
        else:
            kube.cache.observed(body)
    if not has_listeners(kind, label):
        return
    key = (kind, label, meta.get("uid") or (meta.get("namespace"), meta.get("name")))
    if key in _watching.running:
        _watching.waiting[key] = (kind, label, event, body)  # the newest replaces any older
        return
    task = asyncio.get_running_loop().create_task(_listen(key, (kind, label, event, body)))
    _watching.running[key] = task


async def _listen(key: tuple[Any, ...], item: _Event | None) -> None:
    try:
        while item is not None:
            kind, label, event, body = item
            await notify(kind, label, _kwargs(event, body))
            item = _watching.waiting.pop(key, None)
    finally:
        _watching.running.pop(key, None)


async def start_watching(namespaces: tuple[str, ...] = ()) -> None:
    """List every slice (in `namespaces`, or in all) into the cache, then pass each listed
    object to the listeners and start the watches. A list that fails goes again after a
    backoff (controller/informer.py): the start waits until every slice is listed."""
    await stop_watching()
    loop = asyncio.get_running_loop()
    kube = runtime.api
    endpoint = kube.endpoint()
    for kind, label in SLICES:
        kube.cache.watch(kind, label)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=endpoint.ssl))
    informers = [
        Informer(session, endpoint, kind, label, namespace, deliver, kube.cache)
        for kind, label in SLICES
        for namespace in namespaces or (None,)
    ]
    try:  # each slice listed again until it is (one failed list must not restart all)
        listed = await asyncio.gather(*(informer.first_list() for informer in informers))
    except BaseException:  # cancelled: the operator stops while it starts
        await session.close()
        raise
    for items in listed:  # the whole cache first
        for item in items:
            kube.cache.observed(item)
    _watching.session, _watching.loop = session, loop
    for informer, items in zip(informers, listed, strict=True):
        for item in items:
            deliver(informer.kind, informer.label, None, item)
    _watching.informers = [loop.create_task(informer.run()) for informer in informers]
    log.info("watching %d slices in %s", len(informers), ", ".join(namespaces) or "every namespace")


async def stop_watching() -> None:
    """Stop the watches and the listener tasks still running (the operator stops). What a
    previous operator's event loop left (it ended without its cleanup) is only forgotten: that
    loop cancelled its tasks as it closed."""
    loop = asyncio.get_running_loop()
    tasks = [*_watching.informers, *_watching.running.values()]
    ours = [task for task in tasks if task.get_loop() is loop]
    for task in ours:
        task.cancel()
    await asyncio.gather(*ours, return_exceptions=True)
    session, _watching.session = _watching.session, None
    if session is not None and _watching.loop is loop:
        await session.close()
    _watching.informers = []
    _watching.running.clear()
    _watching.waiting.clear()
