"""Events sent the way client-go's EventRecorder sends them: a reconcile never waits on one.

- `Recorder.record` only queues the Event (a bounded queue, `QUEUE_LIMIT`) and returns; when
  the queue is full the oldest queued Event is dropped and counted
  (`kubeloop_events_dropped_total{namespace,why="queue_full"}`): a slow or unreachable API
  server never holds a reconcile.
- `SENDERS` daemon threads (`kubeloop-events-<i>`) send them through `Kube`, each for a share
  of the objects, so one object's Events are posted in the order recorded; through `Kube`,
  the leader's fence holds (a deposed leader posts nothing: `why="not_leader"`).
- Correlation (client-go's EventCorrelator, its dedupe part; `decide.events.correlation`): an
  Event the same as one posted within `DEDUPE_SECONDS` (same object, type, reason, message)
  is not posted again: the earlier one's `count` and `lastTimestamp` are PATCHed; one still
  queued just counts one more, with no request at all.
- A POST that fails (5xx, network) is tried again after 0.5 s and 2 s, then dropped
  (`why="failed"`); one the API server refuses is dropped at once (`why="refused"`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from prometheus_client import Counter

from kubeloop.controller import clock
from kubeloop.controller.kube import Kube, Refused
from kubeloop.controller.runtime import runtime
from kubeloop.decide.events import correlation

__all__ = ["DROPPED", "QUEUE_LIMIT", "SENDERS", "Recorder", "recorder"]

log = logging.getLogger("kubeloop.events")
# Events waiting to be sent. client-go's broadcaster holds 1000; 1000 new pipelines queue
# 2000 faster than they go out (bench/operator): at 1000 about half of them were dropped.
QUEUE_LIMIT = 4096
SENDERS = 2  # threads posting, each for a share of the objects (one object: one thread)
_SEEN_LIMIT = 4096  # Events remembered for dedupe (client-go's LRU cache size)
_RETRY_SECONDS = (0.5, 2.0)
COMPONENT = "kubeloop"
DROPPED = Counter(
    "kubeloop_events_dropped_total",
    "Events not posted, by namespace and why: queue_full (the oldest queued one made room), "
    "not_leader (this replica no longer holds the lease), failed, refused.",
    ["namespace", "why"],
)

# (uid or namespace/kind/name of the object, type, reason, message)
_Key = tuple[str, str, str, str]


@dataclass
class _Queued:
    namespace: str
    body: dict[str, Any]
    count: int = 1


@dataclass
class _Posted:
    namespace: str
    name: str
    count: int
    at: float  # monotonic time of its last POST or PATCH


def _timestamp() -> str:
    return clock.now().isoformat()  # the operator's one clock (tests move it)


def _reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    ref = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "namespace": meta.get("namespace"),
    }
    return {k: v for k, v in ref.items() if v is not None}


class _Sender:
    """One queue and the thread that drains it: the Events of one object always go to the same
    sender, so they are posted in the order recorded."""

    def __init__(self, recorder: Recorder, index: int) -> None:
        self.recorder = recorder
        self.name = f"kubeloop-events-{index}"
        self.queue: OrderedDict[_Key, _Queued] = OrderedDict()
        self.sending = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again, in a forked child) when it is not running."""
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
            self.thread.start()

    def run(self) -> None:
        cond = self.recorder.cond
        while True:
            with cond:
                while not self.queue:
                    cond.wait()
                key, queued = self.queue.popitem(last=False)
                self.sending = True
            try:
                self.recorder.send(key, queued)
            except Exception:  # the sender must outlive any one Event
                log.exception("Event %s not posted", queued.body["reason"])
            finally:
                with cond:
                    self.sending = False
                    cond.notify_all()


class Recorder:
    """Bounded queues of Events and the threads that send them through `client()`."""

    def __init__(
        self,
        client: Callable[[], Kube | None],
        *,
        limit: int = QUEUE_LIMIT,
        senders: int = SENDERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._limit = max(1, limit // senders)  # per sender
        self._clock = clock
        self.cond = threading.Condition()
        self._senders = [_Sender(self, i) for i in range(senders)]
        self._posted: OrderedDict[_Key, _Posted] = OrderedDict()
        self.instance = os.environ.get("KUBELOOP_POD_NAME") or socket.gethostname()

    def record(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event on the object `body` (never blocks, never sends)."""
        ref = _reference(body)
        namespace = str(ref.get("namespace") or "default")
        who = str(ref.get("uid") or f"{namespace}/{ref.get('kind')}/{ref.get('name')}")
        key = (who, type_, reason, message)
        sender = self._senders[zlib.crc32(who.encode()) % len(self._senders)]
        with self.cond:
            queued = sender.queue.get(key)
            if queued is not None:  # the same Event still waits: one more of it
                queued.count += 1
                queued.body["lastTimestamp"] = _timestamp()
                return
            if len(sender.queue) >= self._limit:
                _, oldest = sender.queue.popitem(last=False)
                DROPPED.labels(namespace=oldest.namespace, why="queue_full").inc()
            now = _timestamp()
            sender.queue[key] = _Queued(
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"namespace": namespace, "generateName": f"{ref.get('name')}."},
                    "involvedObject": ref,
                    "type": type_,
                    "reason": reason,
                    "message": message,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": COMPONENT},
                    "reportingComponent": COMPONENT,
                    "reportingInstance": self.instance,
                },
            )
            sender.start()
            self.cond.notify_all()

    def pending(self) -> int:
        """Events queued or being sent."""
        with self.cond:
            return sum(len(s.queue) + s.sending for s in self._senders)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event has been sent (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while any(s.queue or s.sending for s in self._senders):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def send(self, key: _Key, queued: _Queued) -> None:
        """Post (or count) one Event, trying a failed request again; drop it when it cannot go."""
        for delay in (*_RETRY_SECONDS, None):
            kube = self._client()
            if kube is None or (kube.fence is not None and not kube.fence()):
                DROPPED.labels(namespace=queued.namespace, why="not_leader").inc()
                return
            try:
                self._post_or_patch(kube, key, queued)
                return
            except Refused:
                DROPPED.labels(namespace=queued.namespace, why="refused").inc()
                return
            except kopf.TemporaryError:  # Kube logged the failure
                if delay is None:
                    DROPPED.labels(namespace=queued.namespace, why="failed").inc()
                    return
                time.sleep(delay)

    def _post_or_patch(self, kube: Kube, key: _Key, queued: _Queued) -> None:
        # One object's Events all go through one sender: no other thread has this key now.
        body, now = queued.body, self._clock()
        with self.cond:
            last = self._posted.get(key)
        if last is not None and correlation(last.at, now) == "patch":
            count = last.count + queued.count
            patch = {"count": count, "lastTimestamp": body["lastTimestamp"]}
            if kube.patch("Event", last.namespace, last.name, patch) is not None:
                self._remember(key, _Posted(last.namespace, last.name, count, now))
                return
        posted = kube.create({**body, "count": queued.count})
        name = str(posted["metadata"]["name"])
        self._remember(key, _Posted(queued.namespace, name, queued.count, now))

    def _remember(self, key: _Key, posted: _Posted) -> None:
        with self.cond:
            self._posted[key] = posted
            self._posted.move_to_end(key)
            while len(self._posted) > _SEEN_LIMIT:
                self._posted.popitem(last=False)


# The operator's one recorder: Events go through whichever API client the operator runs with.
recorder = Recorder(lambda: runtime.kube)
