"""kube.Kube against the emulated API server: a refused write becomes `Refused` naming the
field, and the same body is not sent again while its backoff lasts (a changed one is); every
refused or failed write is one WARNING line with the object and the server's message."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import kmock
import kopf
import pytest

from kubeloop.controller import kube
from kubeloop.local.cluster.emulator import EmulatorThread

FIELD = "spec.template.spec.containers[0].image"


def _job(name: str, image: str = "") -> dict[str, Any]:
    container = {"name": "c", "image": image}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


@pytest.fixture
def api() -> Iterator[tuple[kube.Kube, list[dict[str, Any]]]]:
    """A client of a fresh emulator whose admission refuses Jobs without an image (422)."""
    seen: list[dict[str, Any]] = []

    def require_image(obj: dict[str, Any]) -> None:
        if obj.get("kind") != "Job":
            return
        seen.append(obj)
        if obj["metadata"]["name"] == "overloaded":
            raise kmock.KubernetesError(
                status=503, reason="ServiceUnavailable", message="etcd busy"
            )
        if not obj["spec"]["template"]["spec"]["containers"][0]["image"]:
            name = obj["metadata"]["name"]
            raise kmock.KubernetesError(
                status=422,
                reason="Invalid",
                message=f'Job.batch "{name}" is invalid: {FIELD}: Required value',
                details={"name": name, "kind": "Job", "causes": [{"field": FIELD}]},
            )

    with EmulatorThread() as thread:
        thread.emulator.admission_hooks.append(require_image)
        yield kube.connect(thread.url), seen


def test_a_refusal_names_the_field_and_is_not_sent_again_during_its_backoff(
    api: tuple[kube.Kube, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, seen = api
    with pytest.raises(kube.Refused) as refused:
        client.create(_job("a"))
    error = refused.value
    assert (error.verb, error.kind, error.name, error.status) == ("create", "Job", "a", 422)
    assert error.fields == [FIELD] and FIELD in error.message
    assert error.summary.startswith("the API server refused to create Job a (422 Invalid): ")

    with pytest.raises(kube.Refused):  # the same body again: answered from memory
        client.create(_job("a"))
    assert len(seen) == 1

    assert client.create(_job("b", image="trainer:1"))["metadata"]["name"] == "b"  # others go
    created = client.create(_job("a", image="trainer:1"))  # a fixed body goes at once
    assert created["metadata"]["name"] == "a" and len(seen) == 3


def test_after_the_backoff_the_same_body_is_tried_once_more_and_backs_off_longer(
    api: tuple[kube.Kube, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, seen = api
    clock = [1000.0]
    monkeypatch.setattr(kube.time, "monotonic", lambda: clock[0])
    with pytest.raises(kube.Refused):
        client.create(_job("a"))
    clock[0] += kube.FIRST_BACKOFF_SECONDS - 1
    with pytest.raises(kube.Refused):
        client.create(_job("a"))
    assert len(seen) == 1
    clock[0] += 2  # past the first backoff: sent, refused again, the backoff doubles
    with pytest.raises(kube.Refused):
        client.create(_job("a"))
    assert len(seen) == 2
    clock[0] += kube.FIRST_BACKOFF_SECONDS + 1
    with pytest.raises(kube.Refused):
        client.create(_job("a"))
    assert len(seen) == 2


def _write_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, dict[str, str]]]:
    return [
        (r.levelno, r.getMessage(), getattr(r, "object", {}))
        for r in caplog.records
        if r.name == "kubeloop.kube"
    ]


def test_a_refused_or_failed_write_is_logged_once_with_the_object_and_message(
    api: tuple[kube.Kube, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    client, _seen = api
    caplog.set_level(logging.INFO, logger="kubeloop.kube")
    for _ in range(2):  # the second is held back, not sent: nothing new to log
        with pytest.raises(kube.Refused):
            client.create(_job("a"))
    with pytest.raises(kopf.TemporaryError):
        client.create(_job("overloaded", image="trainer:1"))
    client.create(_job("b", image="trainer:1"))  # accepted: not logged
    job = {"kind": "Job", "namespace": "ml"}
    assert _write_lines(caplog) == [
        (
            logging.WARNING,
            f'create Job ml/a refused (422 Invalid): Job.batch "a" is invalid: {FIELD}: '
            "Required value; the same request waits 30 s before it is sent again",
            {**job, "name": "a"},
        ),
        (
            logging.WARNING,
            "create Job ml/overloaded failed (503 Service Unavailable): etcd busy",
            {**job, "name": "overloaded"},
        ),
    ]


def test_a_write_that_cannot_reach_the_server_is_logged_with_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with EmulatorThread() as thread:
        url = thread.url
    client = kube.connect(url)  # the emulator is gone: connection refused
    with pytest.raises(kopf.TemporaryError):  # kopf retries it with its backoff
        client.patch("Job", "ml", "a", {"metadata": {"labels": {"x": "y"}}})
    ((level, message, obj),) = _write_lines(caplog)
    assert level == logging.WARNING and message.startswith("patch Job ml/a failed: ")
    assert obj == {"kind": "Job", "namespace": "ml", "name": "a"}


def test_a_request_the_server_never_answers_times_out_as_a_temporary_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that takes the connection (the kernel completes the handshake on the listening
    # socket) and never answers: without a default timeout the reconcile thread waited for
    # good, and every later reconcile of its object coalesced into that one.
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT", (2.0, 0.5))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = kube.connect(f"http://127.0.0.1:{silent.getsockname()[1]}")
        raised: list[BaseException] = []

        def read() -> None:
            try:
                client.get("Job", "ml", "a")
            except BaseException as exc:
                raised.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=20)
    assert not reader.is_alive(), "the GET still waits on a server that never answers"
    (error,) = raised
    assert isinstance(error, kopf.TemporaryError) and "timed out" in str(error).lower()
