"""The probe URL while kopf starts: kopf serves `--liveness` only once its startup handlers are
done, and the operator's startup waits for the informers' first lists (retried while the API
server fails them). Meanwhile `kubeloop operator` answers it itself, so a slow start is not
taken for a dead operator; the startup handler frees the port for kopf's server."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from typing import Any

import kopf
import pytest

from kubeloop.controller import main as operator_main
from kubeloop.controller.runtime import runtime

pytestmark = pytest.mark.usefixtures("restore_logging")  # tests/controller/conftest.py


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        body: dict[str, Any] = json.load(answer)
        return body


def test_the_probe_answers_while_kopf_starts_and_is_freed_for_kopf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{_free_port()}/healthz"
    seen: dict[str, Any] = {}

    def run(**kwargs: Any) -> None:  # kopf, up to the end of the startup handler
        seen["starting"] = _get(url)
        asyncio.run(asyncio.to_thread(operator_main._close_start_probe))
        with socket.socket() as sock:  # what kopf's probe server does next: bind the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers
            sock.bind(("127.0.0.1", int(url.split(":")[2].split("/", maxsplit=1)[0])))
        seen["liveness"] = kwargs["liveness_endpoint"]

    monkeypatch.setattr(kopf, "run", run)
    monkeypatch.setattr(runtime, "start_probe", None)
    monkeypatch.setattr(runtime, "namespaces", ())
    assert operator_main.main(["--liveness", url]) == 0
    assert seen == {"starting": {"role": "standalone", "starting": True}, "liveness": url}
    assert runtime.start_probe is None


def test_the_probe_is_freed_when_kopf_stops_during_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/healthz"

    def run(**_: Any) -> None:
        assert _get(url)["starting"] is True
        raise KeyboardInterrupt  # stopped before its startup handler finished

    monkeypatch.setattr(kopf, "run", run)
    monkeypatch.setattr(runtime, "start_probe", None)
    monkeypatch.setattr(runtime, "namespaces", ())
    with pytest.raises(KeyboardInterrupt):
        operator_main.main(["--liveness", url])
    with socket.socket() as sock:  # free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_probe_port_in_use_is_a_warning_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []
    monkeypatch.setattr(kopf, "run", lambda **_: ran.append(True))
    monkeypatch.setattr(runtime, "start_probe", None)
    monkeypatch.setattr(runtime, "namespaces", ())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        url = f"http://127.0.0.1:{taken.getsockname()[1]}/healthz"
        assert operator_main.main(["--liveness", url]) == 0
    assert ran == [True]
    (line,) = [r.getMessage() for r in caplog.records if "not served while" in r.getMessage()]
    assert line.startswith(f"the probe URL {url} is not served while the operator starts: ")
