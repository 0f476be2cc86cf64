"""The operator's HTTP (controller/transport.py) against real HTTP servers: a connection kept
per thread, a kept-alive connection the server closed is replaced (the request goes once more),
errors keep the `kubernetes` client's shape, and the endpoint follows the client configuration
(TLS verification, client certificates, the token hook)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest

from kubeloop.controller.transport import Endpoint, Transport, endpoint_of


class _Server(ThreadingHTTPServer):
    requests: list[tuple[str, str, int]]  # (method, path, client port: one per connection)
    close_after: bool  # close each connection after its answer, without saying so
    release: threading.Event  # lets a request to .../hang be answered


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, self.client_address[1]))
        if self.path.endswith("/hang"):
            self.server.release.wait(10)  # an answer that does not come in time
        status = 404 if self.path.endswith("/gone") else 200
        data = json.dumps({"n": len(self.server.requests), "sent": sent}).encode()
        self.send_response(status, "Not Found" if status == 404 else "OK")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = self.server.close_after

    do_GET = do_POST = _serve  # noqa: N815 (http.server names them)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.close_after, httpd.release = [], False, threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _transport(server: _Server) -> Transport:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return Transport(Endpoint(url, False, lambda: "Bearer t"))


def test_a_thread_keeps_its_connection(server: _Server) -> None:
    transport = _transport(server)
    answers = [transport.send("GET", "/api/v1/pods", query=[("a", "b c")]) for _ in range(3)]
    assert [a["n"] for a in answers] == [1, 2, 3]
    assert [path for _, path, _ in server.requests] == ["/api/v1/pods?a=b+c"] * 3
    assert len({port for *_, port in server.requests}) == 1  # one connection for all three


def test_a_kept_alive_connection_the_server_closed_is_replaced(server: _Server) -> None:
    """The server closes each connection after its answer (as one closes idle connections):
    the next request fails on the old connection before any answer and goes once more on a
    new one; the server sees each request once."""
    server.close_after = True
    transport = _transport(server)
    first = transport.send("POST", "/api/v1/namespaces/ml/events", body={"x": 1})
    second = transport.send("POST", "/api/v1/namespaces/ml/events", body={"x": 2})
    assert (first["sent"], second["sent"]) == ({"x": 1}, {"x": 2})
    assert [method for method, *_ in server.requests] == ["POST", "POST"]
    assert len({port for *_, port in server.requests}) == 2


def test_a_timed_out_request_is_not_sent_again(server: _Server) -> None:
    """A read timeout on a kept-alive connection is not a connection the server closed: the
    server may be working on the request, so it is not sent a second time."""
    transport = _transport(server)
    transport.send("GET", "/api/v1/pods")  # the connection is now a kept-alive one
    with pytest.raises(TimeoutError):
        transport.send("POST", "/api/v1/namespaces/ml/pods/hang", body={}, timeout=(5.0, 0.3))
    assert [path for _, path, _ in server.requests] == [
        "/api/v1/pods",
        "/api/v1/namespaces/ml/pods/hang",
    ]


def test_an_error_answer_is_the_kubernetes_clients_api_exception(server: _Server) -> None:
    transport = _transport(server)
    with pytest.raises(kubernetes.client.ApiException) as raised:
        transport.send("GET", "/api/v1/namespaces/ml/pods/gone")
    assert (raised.value.status, raised.value.reason) == (404, "Not Found")
    assert json.loads(raised.value.body)["n"] == 1
    assert transport.send("GET", "/api/v1/pods")["n"] == 2  # the connection is still good


def test_nothing_listening_is_an_os_error() -> None:
    with pytest.raises(OSError):
        Transport(Endpoint("http://127.0.0.1:9", False, lambda: None)).send("GET", "/api")


@pytest.mark.parametrize(
    ("host", "verify", "tls", "check_hostname"),
    [
        ("http://10.0.0.1:8080", True, False, None),
        ("https://10.0.0.1:6443", True, True, True),
        ("https://10.0.0.1:6443", False, True, False),  # insecure-skip-tls-verify
    ],
)
def test_the_endpoint_follows_the_client_configuration(
    host: str, verify: bool, tls: bool, check_hostname: bool | None
) -> None:
    config = kubernetes.client.Configuration()
    config.host, config.verify_ssl = host, verify
    tokens = iter(["Bearer one", "Bearer two"])
    config.api_key = {"authorization": "Bearer zero"}
    config.refresh_api_key_hook = lambda c: c.api_key.update(authorization=next(tokens))
    endpoint = endpoint_of(config)
    assert endpoint.server == host
    if tls:
        assert isinstance(endpoint.ssl, ssl.SSLContext)
        assert endpoint.ssl.check_hostname is check_hostname
        want = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
        assert endpoint.ssl.verify_mode == want
    else:
        assert endpoint.ssl is False
    # The hook runs per request: a rotated token is sent from the next one on.
    assert endpoint.headers()["Authorization"] == "Bearer one"
    assert endpoint.headers()["Authorization"] == "Bearer two"
