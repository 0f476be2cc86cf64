"""Process-wide operator state, set once at startup: the API client, config, per-object locks.

kopf runs a resource's change handlers, timers and the child-event handlers concurrently; every
reconcile of one object takes that object's lock, so two of them never allocate the same run
or record the same result twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kubeloop.controller.config import OperatorConfig
from kubeloop.controller.kube import Kube

__all__ = ["Runtime", "runtime"]


@dataclass
class Runtime:
    """What the handlers share."""

    kube: Kube | None = None
    config: OperatorConfig = field(default_factory=OperatorConfig)
    _locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        """The lock serialising reconciles of one object."""
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())

    @property
    def api(self) -> Kube:
        """The API client (connected in the startup handler)."""
        if self.kube is None:
            raise RuntimeError("the operator has not started: no API client")
        return self.kube


runtime = Runtime()
