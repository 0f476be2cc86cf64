"""The run's live progress, served by the training pod itself for the operator to read.

Training pods hold no Kubernetes credentials (no service-account token): instead of patching
their pipeline's status, the reporting process (rank 0) keeps its latest progress in memory and
answers `GET /progress` with it as JSON (204 before the first report), on the container port
named `progress`. The operator reads it from the pod's IP on its resync and writes
`status.currentRun.progress` (docs/contracts.md), as the canary analysis reads the model
server's `/metrics`. Standard library only: this runs inside user images too.

The port comes from `KUBELOOP_PROGRESS_PORT`, which Kubeloop sets on the one container that
reports (the trainer, or the user's code); without it nothing is served. It listens on every
address (`KUBELOOP_PROGRESS_HOST`, default `0.0.0.0`, as the model server does): the pod IP is
what the operator connects to. At exit the process does not wait for a last read by default:
the run's result reaches the operator in the termination message, and the operator replaces
the run's progress with its record, so holding the pod (and its GPU) for a final progress read
would only delay the run's end. `KUBELOOP_PROGRESS_LINGER_SECONDS` (default 0) makes it wait up
to that many seconds until its last report has been read once.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import AF_INET6
from typing import Any

__all__ = [
    "DEFAULT_LINGER_SECONDS",
    "DEFAULT_PORT",
    "HOST_ENV",
    "LINGER_ENV",
    "PATH",
    "PORT_ENV",
    "PORT_NAME",
    "ProgressEndpoint",
    "endpoint_from_env",
]

log = logging.getLogger("kubeloop_sdk")

PORT_ENV = "KUBELOOP_PROGRESS_PORT"
HOST_ENV = "KUBELOOP_PROGRESS_HOST"
PORT_NAME = "progress"  # the container port's name, which the operator looks for
DEFAULT_PORT = 8090
PATH = "/progress"
LINGER_ENV = "KUBELOOP_PROGRESS_LINGER_SECONDS"
# Set in a search trial's pod (kubeloop.api.search.TRIAL_ENV): the operator follows trials by
# their outcomes and reads no trial's progress, so serving it would only hold the pod at exit.
TRIAL_ENV = "KUBELOOP_TRIAL"
# No wait by default: a lingering pod held the run's end ~1.5 s on `kubeloop local` (until the
# operator's next read) and up to 10 s in a cluster, for a progress value the run's record
# replaces at once.
DEFAULT_LINGER_SECONDS = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow reader never keeps the training process alive
    latest: bytes | None = None
    published = 0  # how many values were published
    served = 0  # how many of them had been published when the latest was read
    changed: threading.Condition


class _Server6(_Server):
    address_family = AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # seconds a client may take to send its request line and headers

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != PATH:
            self._answer(404, b'{"message": "not found: the progress is at /progress"}')
            return
        server = self.server
        with server.changed:
            body, published = server.latest, server.published
        if body is None:
            self._answer(204, b"")
            return
        self._answer(200, body)
        with server.changed:
            server.served = max(server.served, published)
            server.changed.notify_all()

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Every operator read would be a line in the training log otherwise.
        log.debug("progress endpoint: " + format, *args)


class ProgressEndpoint:
    """An HTTP server in a daemon thread answering `GET /progress` with the latest value."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        # IPv6 when the host is an IPv6 address, as the model server decides it
        self._server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self._server.changed = threading.Condition()
        self.closed = False
        # A short poll: close() (at exit, after the last read) waits for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="kubeloop-progress", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one picked for port 0)."""
        return int(self._server.server_address[1])

    def publish(self, value: Mapping[str, Any]) -> None:
        """Serve `value` (RunProgress's fields) from now on."""
        body = json.dumps(dict(value), sort_keys=True).encode("utf-8")
        with self._server.changed:
            self._server.latest = body
            self._server.published += 1

    def wait_read(self, timeout: float) -> bool:
        """Wait until the latest value was read at least once (True), or `timeout` seconds."""
        server = self._server
        with server.changed:
            return server.changed.wait_for(lambda: server.served >= server.published, timeout)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.closed = True
        self._server.shutdown()
        self._server.server_close()


def _linger(endpoint: ProgressEndpoint, env: Mapping[str, str]) -> None:
    """At exit: keep serving until the operator has read the last report, within a bound
    (`KUBELOOP_PROGRESS_LINGER_SECONDS`, default 0: no wait)."""
    if endpoint.closed:
        return
    try:
        bound = float(env.get(LINGER_ENV) or DEFAULT_LINGER_SECONDS)
    except ValueError:
        bound = DEFAULT_LINGER_SECONDS
    if bound > 0 and not endpoint.wait_read(bound):
        log.info("kubeloop_sdk: the last progress report was not read within %g s", bound)
    endpoint.close()


class _Slot:
    """The process's one endpoint, and whether starting it was tried (once is enough)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoint: ProgressEndpoint | None = None
        self.tried = False


_SLOT = _Slot()


def endpoint_from_env(env: Mapping[str, str] | None = None) -> ProgressEndpoint | None:
    """The process's one endpoint, started on first use when `KUBELOOP_PROGRESS_PORT` is set;
    None without it, in a search trial (`KUBELOOP_TRIAL`), or when the port cannot be opened
    (a warning: progress is best effort and training goes on)."""
    env = os.environ if env is None else env
    slot = _SLOT
    with slot.lock:
        if slot.tried:
            return slot.endpoint
        raw = env.get(PORT_ENV, "")
        if not raw or env.get(TRIAL_ENV):
            return None
        slot.tried = True
        try:
            slot.endpoint = ProgressEndpoint(env.get(HOST_ENV) or "0.0.0.0", int(raw))
            atexit.register(_linger, slot.endpoint, env)
        except (ValueError, OverflowError, OSError) as exc:
            log.warning("kubeloop_sdk: progress is not served (%s=%r): %s", PORT_ENV, raw, exc)
        return slot.endpoint
