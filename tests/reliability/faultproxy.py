"""A loopback HTTP proxy that injects S3-style faults in front of a real S3 server (moto).

Each request draws one outcome from a seeded RNG, so a run is reproducible:

- `ok`: forwarded, answer relayed;
- `throttle`: answered 503 `SlowDown` without forwarding (what S3 says when it throttles);
- `error`: answered 500 `InternalError` without forwarding;
- `lost`: forwarded (the side effect happens upstream) and then the connection is closed
  without an answer — the client cannot know whether its write landed;
- `slow`: forwarded after `delay` seconds (longer than a client's read timeout → timeout).

`counts` records what was injected, so a test can say how many faults it survived.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

OUTCOMES = ("ok", "throttle", "error", "lost", "slow")

_S3_ERRORS = {
    "throttle": (503, "SlowDown", "Please reduce your request rate."),
    "error": (500, "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class FaultPlan:
    """Which fault each request gets: weights per outcome, drawn from a seeded RNG."""

    def __init__(self, weights: Mapping[str, float], seed: int = 0, delay: float = 2.0) -> None:
        unknown = set(weights) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; choose from {OUTCOMES}")
        self.weights = {k: float(weights.get(k, 0.0)) for k in OUTCOMES}
        self.delay = delay
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def draw(self) -> str:
        with self._lock:
            outcome = self._rng.choices(OUTCOMES, weights=list(self.weights.values()))[0]
            self.counts[outcome] += 1
            return outcome

    @property
    def faults(self) -> int:
        """Requests that got anything but `ok`."""
        return sum(n for k, n in self.counts.items() if k != "ok")


def _handler(upstream: str, plan: FaultPlan) -> type[BaseHTTPRequestHandler]:
    target = urlparse(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _relay(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            return answer.status, answer.getheaders(), data

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            outcome = plan.draw()
            if outcome in _S3_ERRORS:
                status, code, message = _S3_ERRORS[outcome]
                xml = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only
                    self.wfile.write(xml)
                return
            if outcome == "slow":
                time.sleep(plan.delay)  # real time on purpose: a stalled peer
            status, headers, data = self._relay(body)
            if outcome == "lost":
                self.close_connection = True
                return  # the write happened upstream; the client never hears about it
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            if self.command == "HEAD":  # the size of what a GET would return
                length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                self.send_header("Content-Length", length)
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve  # noqa: N815 (http.server names)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that timed out and hung up on a stalled answer: expected here


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan) -> Iterator[str]:
    """Run the proxy on a free loopback port; yields its URL."""
    server = _QuietServer(("127.0.0.1", 0), _handler(upstream, plan))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
