"""kmock's internals that the local API server relies on are present, or fail loudly."""

from __future__ import annotations

from pathlib import Path

import kmock
import pytest

from kubeloop.local.cluster import kmockcompat
from kubeloop.local.cluster.emulator import KubeloopEmulator


def test_the_installed_kmock_has_every_internal_the_adapter_uses() -> None:
    kmockcompat.check()  # raises KmockIncompatibleError naming what is missing


def test_an_incompatible_kmock_fails_with_the_version_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(kmock.KubernetesEmulator, "_serve_watch")
    monkeypatch.setattr(kmock, "__version__", "9.9")
    with pytest.raises(kmockcompat.KmockIncompatibleError) as err:
        KubeloopEmulator()
    message = str(err.value)
    assert "kmock 9.9 is incompatible" in message
    assert "KubernetesEmulator._serve_watch" in message
    assert f"kmock {kmockcompat.TESTED_WITH}" in message


def test_only_the_adapter_imports_kmock_internals() -> None:
    local = Path(kmockcompat.__file__).parent
    private = ("kmock._internal", "._buses", "._lock", "super()._handle", "object.__setattr__")
    offenders = [
        f"{path.name}: {token}"
        for path in local.glob("*.py")
        if path.name != "kmockcompat.py"
        for token in private
        if token in path.read_text()
    ]
    assert offenders == []


def test_membership_answers_as_a_scan_of_the_request_log_would() -> None:
    """kmock routes a request by asking each reaction's view whether it sees the request;
    kmockcompat answers that for filter chains without re-reading the log. Over real traffic
    and views of every shape, each answer equals the one a scan of the view gives."""
    from kubeloop.local.cluster.emulator import EmulatorThread

    with EmulatorThread(keep_requests=None) as thread:
        em = thread.emulator
        client = ApiClient(thread.url)
        client.call("POST", "/api/v1/namespaces", {"metadata": {"name": "ml"}})
        client.call("GET", "/api/v1/namespaces/ml")
        client.call("GET", "/api/v1/namespaces?labelSelector=a%3Db")
        client.call("DELETE", "/api/v1/namespaces/ml")
        client.call("GET", "/apis")
        views = [
            em["get"],
            em["post"],
            em["get"]["/api/v1/namespaces/ml"],
            em.fallback["get"],
            em**5,
            (em**5)["delete"],
            em[lambda request: request.method == "GET"],
            em["get"][1:],
            em["get"] | em["post"],
            em["get"] - em["/apis"],
            *(payload._source for payload in em._payloads),
        ]
        requests = list(em.recorded_requests)
        assert len(requests) == 5
        for view in views:
            for request in requests:
                scanned = any(seen is request for seen in iter(view))
                assert (request in view) is scanned, (view, request)
        # at least one view of each answer, so the comparison is not vacuous
        assert any(request in em["get"] for request in requests)
        assert not all(request in em["get"] for request in requests)


class ApiClient:
    """Plain HTTP to the emulator (no Kubernetes client: what is sent is what is routed)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: object = None) -> int:
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
