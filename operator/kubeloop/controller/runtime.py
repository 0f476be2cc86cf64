"""Process-wide operator state, set once at startup: the API client, config, per-object locks.

kopf runs a resource's change handlers, timers and the child-event handlers concurrently; every
reconcile of one object takes that object's lock, so two of them never allocate the same run
or record the same result twice. `coalesce` does better than waiting for the lock: a request
that arrives while a reconcile of the same object runs only marks it dirty, and the running one
goes once more, so a burst of events costs at most two reconciles and holds one worker thread.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from kubeloop.controller.config import OperatorConfig
from kubeloop.controller.kube import Kube
from kubeloop.controller.leader import Elector, FollowerProbe
from kubeloop.controller.resync import Resync

__all__ = ["Runtime", "runtime"]


@dataclass
class Runtime:
    """What the handlers share."""

    kube: Kube | None = None
    config: OperatorConfig = field(default_factory=OperatorConfig)
    _locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _dirty: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    metrics_server: WSGIServer | None = None  # serving /metrics, when on
    # The probe URL answered while kopf starts (it serves it only once its startup handlers
    # are done, and the informers' first lists may take a while): closed for kopf to bind it.
    start_probe: FollowerProbe | None = None
    leader: Elector | None = None  # leader election, when on (KUBELOOP_LEASE_NAME)
    resync: Resync | None = None  # the TrainingPipelines' resync loop, while kopf runs
    # kopf's pool for sync handlers: async handlers hand their blocking reconciles to it.
    executor: concurrent.futures.Executor | None = None
    # Per (kind, namespace, name): what of the object's last event was reconciled (reset when
    # the operator starts: every object is reconciled once, fully, as on resume).
    seen: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    # The namespaces the operator watches (`--namespace`); empty: every one.
    namespaces: tuple[str, ...] = ()
    # Finished reconcile passes per (kind, namespace, name): reads come from the watch cache,
    # so the API server no longer sees a pass; tests count passes here.
    passes: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        """The lock serialising reconciles of one object."""
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())

    def coalesce(self, kind: str, namespace: str, name: str, fn: Callable[[], None]) -> None:
        """Run `fn` under the object's lock, or leave it to the reconcile already running.

        The running reconcile re-reads everything when it goes again, so the request is served;
        an error propagates to the caller whose run raised (kopf retries it).
        """
        key = (kind, namespace, name)
        lock = self.lock(kind, namespace, name)
        with self._guard:
            if key in self._dirty:  # running: ask it to go once more
                self._dirty[key] = True
                return
            self._dirty[key] = False
        try:
            with lock:
                while True:
                    fn()
                    with self._guard:
                        if not self._dirty[key]:
                            break
                        self._dirty[key] = False
        finally:
            with self._guard:
                self._dirty.pop(key, None)

    @property
    def api(self) -> Kube:
        """The API client (connected in the startup handler)."""
        if self.kube is None:
            raise RuntimeError("the operator has not started: no API client")
        return self.kube


runtime = Runtime()
