"""kubeloop_sdk.progressendpoint, in-process: what the pod serves the operator, over real HTTP
on loopback, and the wait at exit until the last report was read."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kubeloop_sdk.progressendpoint import ProgressEndpoint, _linger


@pytest.fixture
def endpoint() -> Iterator[ProgressEndpoint]:
    served = ProgressEndpoint("127.0.0.1", 0)
    yield served
    if not served.closed:
        served.close()


def _get(endpoint: ProgressEndpoint, path: str = "/progress") -> tuple[int, Any]:
    url = f"http://127.0.0.1:{endpoint.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_nothing_before_the_first_report_then_the_latest(endpoint: ProgressEndpoint) -> None:
    assert _get(endpoint) == (204, None)
    endpoint.publish({"percent": 10, "runId": "3"})
    endpoint.publish({"percent": 20, "runId": "3"})
    assert _get(endpoint) == (200, {"percent": 20, "runId": "3"})
    assert _get(endpoint, "/progress?x=1")[1] == {"percent": 20, "runId": "3"}


def test_any_other_path_is_not_found(endpoint: ProgressEndpoint) -> None:
    code, body = _get(endpoint, "/metrics")
    assert code == 404 and "/progress" in body["message"]


def test_wait_read_returns_once_the_latest_report_was_read(endpoint: ProgressEndpoint) -> None:
    assert endpoint.wait_read(0)  # nothing published: nothing to wait for
    endpoint.publish({"percent": 100, "runId": "3"})
    assert not endpoint.wait_read(0.1)
    _get(endpoint)
    # the handler marks the value read after the answer is written: the client may be first
    assert endpoint.wait_read(5)
    endpoint.publish({"percent": 100, "epoch": 2, "runId": "3"})  # a newer one: not read yet
    assert not endpoint.wait_read(0)


def test_at_exit_it_waits_for_the_last_read_within_the_bound(endpoint: ProgressEndpoint) -> None:
    endpoint.publish({"percent": 100, "runId": "3"})
    started = time.monotonic()
    _linger(endpoint, {"KUBELOOP_PROGRESS_LINGER_SECONDS": "0.3"})  # nobody reads it
    assert 0.3 <= time.monotonic() - started < 3
    assert endpoint.closed
