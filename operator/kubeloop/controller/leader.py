"""Leader election: of the operator's replicas, only the holder of one Lease reconciles.

The Lease is `coordination.k8s.io/v1`, named by KUBELOOP_LEASE_NAME in the operator's namespace
(the chart: `<release fullname>-leader`); each replica writes its pod name into it. The
decisions (create, take, renew, wait, stop acting) are pure (`kubeloop.decide.lease`); this
module reads and writes the Lease on a thread of its own and tells the rest of the process:

- a follower does not run kopf at all: no watch, no handler, no write. It waits here, serving
  the probe URL itself (`{"role": "follower", ...}`), and starts kopf once it holds the Lease;
  its takeover costs kopf's start (one LIST per watched kind), not a warm cache;
- the leader renews every `renew` seconds; every write the operator sends (`Kube.fence`) is
  held back once its last successful renew is `renew_deadline` old, and then the process exits
  (`on_lost`; the kubelet restarts it, as a follower): it has stopped before any follower may
  take the Lease over (fencing). The same happens when it sees another holder;
- on SIGTERM (a rollout, a drain) kopf stops first, then the Lease is released, so the other
  replica takes over at its next look (≤ `retry` seconds) instead of waiting the lease out;
- `kubeloop_leader{namespace,identity}` is 1 on the leader and 0 on a follower.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import Gauge

from kubeloop.controller import clock
from kubeloop.controller.config import LeaderElection
from kubeloop.controller.kube import Kube
from kubeloop.decide.lease import (
    Action,
    LeaseRecord,
    Observation,
    may_act,
    next_step,
    read_lease,
    released,
    retry_in,
)

__all__ = ["LEADER", "LEASE", "Elector", "FollowerProbe"]

log = logging.getLogger("kubeloop.leader")
LEASE = "Lease"
LEADER = Gauge(
    "kubeloop_leader",
    "1 while this operator replica holds the leader Lease (and reconciles), 0 while it follows.",
    ["namespace", "identity"],
)


class Elector:
    """Acquires and renews the Lease on a daemon thread (`start`); `leading` is set once held."""

    def __init__(
        self,
        api: Kube,
        election: LeaderElection,
        on_lost: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.election = election
        self.on_lost = on_lost
        self.leading = threading.Event()
        self.holder = ""  # as last read: who leads now
        self._monotonic = monotonic
        self._observation: Observation | None = None
        self._written: LeaseRecord | None = None  # the Lease as this replica last wrote it
        self._renewed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeloop-leader", daemon=True)
        LEADER.labels(election.namespace, election.identity).set(0)

    # -- what the rest of the process asks --------------------------------------------------

    def may_act(self) -> bool:
        """Whether this replica may write now (it holds the Lease, renewed in time)."""
        return may_act(self._renewed_at, self._monotonic(), self.election.timing)

    def describe(self) -> dict[str, Any]:
        """What the probe endpoints say about leadership."""
        role = "leader" if self.leading.is_set() else "follower"
        return {
            "role": role,
            "identity": self.election.identity,
            "leader": self.holder,
            "lease": f"{self.election.namespace}/{self.election.lease}",
        }

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the Lease stays as it is: `release` gives it up)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as error:
                log.warning("leader lease %s: %s", self._name, error)
                wait = retry_in(self._renewed_at, self._monotonic(), self.election.timing)
            if self.leading.is_set() and not self.may_act():
                self._lose(
                    f"could not renew the leader lease {self._name} for "
                    f"{self.election.timing.renew_deadline:g} s"
                )
                return
            self._stop.wait(wait)

    @property
    def _name(self) -> str:
        return f"{self.election.namespace}/{self.election.lease}"

    def step(self) -> float:
        """Read the Lease, act on `next_step`; returns the seconds until the next look.

        The leader renews from the record it last wrote, without reading it first (one PUT per
        renewal): a PUT of a stale resourceVersion is refused (409), and it reads again then.
        """
        timing = self.election.timing
        lease = self._written
        if lease is None:
            found = self.api.get(LEASE, self.election.namespace, self.election.lease, timing.retry)
            lease = read_lease(found)
        now = self._monotonic()
        step = next_step(lease, self._observation, self.election.identity, timing, now, clock.now())
        self._observation = step.observation
        if lease is not None:
            self.holder = lease.holder
        if step.action is Action.WAIT:
            if self.leading.is_set():
                self._lose(f"the leader lease {self._name} is held by {lease and lease.holder}")
            return step.wait
        assert step.write is not None
        sent_at = self._monotonic()
        written = read_lease(self._write(step.action, step.write))
        if written is None or written.identity != step.write.identity:
            self._written = None
            return 0.0  # another replica wrote first (409): read it again at once
        self._written = written
        self._renewed(sent_at, step.action)
        return step.wait

    def _write(self, action: Action, record: LeaseRecord) -> dict[str, Any] | None:
        """Create or update the Lease; None when another replica wrote it first."""
        timeout = self.election.timing.retry
        manifest = self._manifest(record)
        if action is Action.CREATE:
            return self.api.create(manifest, timeout)
        return self.api.replace(manifest, timeout)

    def _manifest(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.election.lease,
            "namespace": self.election.namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubeloop"},
        }
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": LEASE,
            "metadata": metadata,
            "spec": record.spec(),
        }

    def _renewed(self, sent_at: float, action: Action) -> None:
        self._renewed_at = sent_at
        self.holder = self.election.identity
        if not self.leading.is_set():
            how = "created" if action is Action.CREATE else "took over"
            log.info("%s the leader lease %s as %s", how, self._name, self.election.identity)
            LEADER.labels(self.election.namespace, self.election.identity).set(1)
            self.leading.set()

    def _lose(self, why: str) -> None:
        self.leading.clear()
        self._renewed_at = None
        self._written = None
        LEADER.labels(self.election.namespace, self.election.identity).set(0)
        log.error("%s: this replica stops acting now", why)
        self.on_lost(why)

    def release(self) -> None:
        """Give the Lease up if this replica holds it (after kopf has stopped)."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        self._written = None
        LEADER.labels(self.election.namespace, self.election.identity).set(0)
        try:
            lease = read_lease(
                self.api.get(LEASE, self.election.namespace, self.election.lease, 2.0)
            )
            if lease is not None and lease.holder == self.election.identity:
                self.api.replace(self._manifest(released(lease, clock.now())), 2.0)
                log.info("released the leader lease %s", self._name)
        except Exception as error:
            log.warning("could not release the leader lease %s: %s", self._name, error)


class FollowerProbe:
    """The probe URL (`--liveness`) served while following, before kopf serves it: 200 with
    the elector's `describe()`. A follower is healthy and ready (it is ready to take over)."""

    def __init__(self, url: str, describe: Callable[[], dict[str, Any]]) -> None:
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path or "/"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.split("?", 1)[0] == path
                body = json.dumps(describe() if found else {"error": "not found"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds: not worth a log line each

        self.server = ThreadingHTTPServer(
            (parsed.hostname or "0.0.0.0", parsed.port or 80), Handler
        )
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (kopf binds it next)."""
        self.server.shutdown()
        self.server.server_close()
