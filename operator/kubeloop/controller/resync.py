"""The level-triggered safety net of TrainingPipelines: one loop that reconciles every cached
pipeline each resync interval, in place of a kopf timer per pipeline.

A kopf timer is an asyncio task per object, and makes kopf put its finalizer on the object (a
PATCH when it is created, another when it is deleted, and a delete held until the timer's task
exits). One thread over the watch cache does the same job for 1000 pipelines: each pass reads
only the cache, and writes only what changed, so a pass over idle pipelines sends nothing.

Every `sweep_seconds` (10 minutes by default) a pass first runs `sweep`: the cache checked
against fresh lists (controller/observe.py relist_slices), so that an object deleted while no
watch was open leaves the cache too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Resync"]

log = logging.getLogger("kubeloop.resync")


class Resync:
    """Every `interval` seconds, `reconcile(namespace, name)` for each of `objects()`; one that
    fails is logged, and the next pass tries it again. Before a pass, `sweep()` when
    `sweep_seconds` have gone by since the last one (or since the start)."""

    def __init__(  # noqa: PLR0917 (a loop's parts)
        self,
        interval: float,
        objects: Callable[[], list[tuple[str, str]]],
        reconcile: Callable[[str, str], None],
        sweep: Callable[[], object] | None = None,
        sweep_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._objects = objects
        self._reconcile = reconcile
        self._sweep = sweep
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._swept = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeloop-resync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(60)  # a reconcile in flight finishes first

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.pass_once()

    def pass_once(self) -> None:
        """One pass: the sweep when it is due, then every object's reconcile."""
        if self._sweep is not None and self._clock() - self._swept >= self._sweep_seconds:
            self._swept = self._clock()
            try:
                self._sweep()
            except Exception as error:
                log.warning("cache sweep failed: %s", error)
        for namespace, name in self._objects():
            if self._stop.is_set():
                return
            try:
                self._reconcile(namespace, name)
            except Exception as error:
                log.warning("resync of %s/%s failed: %s", namespace, name, error)
