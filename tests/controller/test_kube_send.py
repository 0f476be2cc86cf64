"""kube.Kube on the wire, against a real HTTP server: the credentials (the bearer token as
in-cluster config sets it), the query and the JSON body a request carries, and a refusal's
status, reason and message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf
import kubernetes
import pytest

from kubeloop.controller import kube, transport


class _Server(ThreadingHTTPServer):
    seen: list[dict[str, Any]]
    answer: tuple[int, dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},  # any case
                "body": json.loads(raw) if raw else None,
            }
        )
        status, answer = self.server.answer
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 (http.server names them)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.answer = [], (200, {})
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _client(server: _Server) -> kube.Kube:
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    config.api_key = {"authorization": "Bearer token-1"}  # as load_incluster_config sets it
    return kube.client_of(config)


def test_a_request_carries_the_token_the_query_and_the_json_body(server: _Server) -> None:
    client = _client(server)
    server.answer = (201, {"kind": "Service", "metadata": {"name": "a", "uid": "u"}})
    svc = {"kind": "Service", "metadata": {"name": "a", "namespace": "ml"}, "spec": {"note": "é"}}
    created = client.create(svc)
    assert created == server.answer[1]
    (seen,) = server.seen
    assert seen["method"] == "POST"
    assert seen["path"] == "/api/v1/namespaces/ml/services?fieldManager=kubeloop"
    assert seen["headers"]["authorization"] == "Bearer token-1"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["accept"] == "application/json"
    assert seen["headers"]["user-agent"] == transport.USER_AGENT
    assert seen["body"] == svc


def test_a_refused_write_says_the_servers_reason_and_message(server: _Server) -> None:
    client = _client(server)
    status = {"kind": "Status", "reason": "Invalid", "message": "spec.x: Invalid value"}
    server.answer = (422, status)
    with pytest.raises(kube.Refused) as refused:
        client.patch("Service", "ml", "a", {"data": {"k": "v"}})
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert refused.value.message == "spec.x: Invalid value"
    assert server.seen[0]["headers"]["content-type"] == "application/merge-patch+json"


def test_a_missing_object_reads_as_none(server: _Server) -> None:
    client = _client(server)
    server.answer = (404, {"kind": "Status", "reason": "NotFound"})
    assert client.get("Service", "ml", "gone") is None
    assert server.seen[0]["method"] == "GET"


def test_a_conflict_on_a_server_named_object_is_tried_again_not_read_back(
    server: _Server,
) -> None:
    """A 409 for an Event (generateName) names nothing to read back: a TemporaryError, so the
    Event's sender posts it again (it was a KeyError and a traceback under API faults)."""
    client = _client(server)
    server.answer = (409, {"kind": "Status", "reason": "AlreadyExists"})
    event = {"kind": "Event", "metadata": {"generateName": "churn.", "namespace": "ml"}}
    with pytest.raises(kopf.TemporaryError, match=r"create churn\.\*: 409"):
        client.create(event)
    assert [seen["method"] for seen in server.seen] == ["POST"]
