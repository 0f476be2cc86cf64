"""Shared test setup.

What is real and what is faked across the suite: the CRD schemas, CEL rules, pydantic models,
object storage (moto's S3 server on loopback), Prometheus and Pushgateway are real. The only
emulated piece is the Kubernetes API server (kmock's KubernetesEmulator), because no cluster
can run on the build machines; the kind suite under tests/e2e runs against a real one.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.pushgateway import PUSHGATEWAY, start_pushgateway

ROOT = Path(__file__).resolve().parent.parent

# The in-process operator of tests/integration resyncs every 0.5 s and serves no metrics port.
# Set here, before any test module imports `kubeloop.controller`: kopf takes a timer's interval
# when the handler module is imported, so a unit test under tests/controller that imported the
# controller first used to leave the integration tests with the default 30 s resync.
os.environ.setdefault("KUBELOOP_RESYNC_SECONDS", "0.5")
os.environ["KUBELOOP_METRICS_PORT"] = "0"
# A trainer run straight from a test (no operator) has nobody to read its progress endpoint:
# it must never wait for a read at exit (kubeloop_sdk.progressendpoint._linger; 0 is also the
# default, this pins it against a developer's own environment).
os.environ["KUBELOOP_PROGRESS_LINGER_SECONDS"] = "0"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def progress_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A free loopback port in KUBELOOP_PROGRESS_PORT, as Kubeloop gives the reporting
    container one, and no progress endpoint yet in this process (kubeloop_sdk serves one per
    process, from the first report on); it is closed after the test."""
    import socket

    from kubeloop_sdk import progressendpoint

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    monkeypatch.setenv(progressendpoint.PORT_ENV, str(port))
    monkeypatch.setenv(progressendpoint.HOST_ENV, "127.0.0.1")
    slot = progressendpoint._Slot()
    monkeypatch.setattr(progressendpoint, "_SLOT", slot)
    yield port
    if slot.endpoint is not None:
        slot.endpoint.close()


class AtomicPreconditions:
    """WSGI middleware: requests with a precondition (`If-None-Match`, `If-Match`) one at a time.

    moto checks a conditional write's precondition and then writes, in two steps, on a threaded
    server: two racing `If-None-Match: *` creates of one key could both succeed, which S3 never
    allows (the registry's version claims rely on it; 8 racing threads claimed version 1 twice
    on a loaded machine). Serialising the conditional requests makes moto as atomic as S3.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if "HTTP_IF_NONE_MATCH" not in environ and "HTTP_IF_MATCH" not in environ:
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the whole answer, under the lock


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = AtomicPreconditions(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV, AWS_ENDPOINT_URL=url)
    yield url
    server.shutdown()
    thread.join()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "",
}


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh bucket; returns s3://<name>."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a `slow` test first, each module's tests in their order.

    `make test` hands whole modules to parallel workers (pytest-xdist `--dist loadfile
    --no-loadscope-reorder`) in this order: the long ones start at once instead of being handed
    out last and leaving the run waiting on one worker.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway of this module's own (tests/pushgateway.py); its URL."""
    if PUSHGATEWAY is None:
        pytest.skip("needs the Debian package prometheus-pushgateway (make system-deps)")
    url, process = start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
