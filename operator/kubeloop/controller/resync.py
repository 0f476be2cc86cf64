"""The level-triggered safety net of TrainingPipelines: one loop that reconciles every cached
pipeline each resync interval, in place of a kopf timer per pipeline.

A kopf timer is an asyncio task per object, and makes kopf put its finalizer on the object (a
PATCH when it is created, another when it is deleted, and a delete held until the timer's task
exits). One thread over the watch cache does the same job for 1000 pipelines: each pass reads
only the cache, and writes only what changed, so a pass over idle pipelines sends nothing.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable

__all__ = ["Resync"]

log = logging.getLogger("kubeloop.resync")


class Resync:
    """Every `interval` seconds, `reconcile(namespace, name)` for each of `objects()`; one that
    fails is logged, and the next pass tries it again."""

    def __init__(
        self,
        interval: float,
        objects: Callable[[], list[tuple[str, str]]],
        reconcile: Callable[[str, str], None],
    ) -> None:
        self.interval = interval
        self._objects = objects
        self._reconcile = reconcile
        self._stop = threading.Event()
        self._context: contextvars.Context | None = None
        self._thread = threading.Thread(target=self._run, name="kubeloop-resync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def enter_handlers(self) -> None:
        """Called from a kopf handler of the kind: reconciles post Events through kopf, which
        finds its event queue and settings in the context of a resource handler; the loop runs
        its reconciles in a copy of the first such context (there are none to run before)."""
        if self._context is None:
            self._context = contextvars.copy_context()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(60)  # a reconcile in flight finishes first

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            context = self._context
            if context is None:
                continue
            for namespace, name in self._objects():
                if self._stop.is_set():
                    return
                try:
                    context.run(self._reconcile, namespace, name)
                except Exception as error:
                    log.warning("resync of %s/%s failed: %s", namespace, name, error)
