"""The pods/log subresource's decisions (which container, which options, which lines) and its
answer from a pod folder laid out by the pod runner (`podspec.container_files`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.cluster.podlogs import LogError, PodLogs, pick_container, read_options, tail
from kubeloop.local.cluster.podspec import container_files

POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "ml"},
    "spec": {"initContainers": [{"name": "fetch"}], "containers": [{"name": "server"}]},
}
TWO = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}


@pytest.mark.parametrize(
    ("pod", "container", "picked"),
    [
        (POD, None, ("server", False)),
        (POD, "server", ("server", False)),
        (POD, "fetch", ("fetch", True)),
        (TWO, "b", ("b", False)),
    ],
)
def test_pick_container(pod: dict[str, Any], container: str | None, picked: Any) -> None:
    assert pick_container(pod, container) == picked


@pytest.mark.parametrize(
    ("pod", "container", "message"),
    [
        (POD, "nope", "container nope is not valid for pod web-1"),
        (TWO, None, "a container name must be specified for pod p, choose one of: ['a', 'b']"),
    ],
)
def test_pick_container_refuses(pod: dict[str, Any], container: str | None, message: str) -> None:
    with pytest.raises(LogError, match=message.replace("[", r"\[")) as err:
        pick_container(pod, container)
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("params", "options"),
    [
        ({}, (None, None, False)),
        ({"tailLines": "3", "follow": "true"}, (3, None, True)),
        ({"limitBytes": "10", "previous": "false"}, (None, 10, False)),
    ],
)
def test_read_options(params: dict[str, str], options: Any) -> None:
    assert read_options(params) == options


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tailLines": "-1"}, "tailLines='-1'"),
        ({"limitBytes": "x"}, "limitBytes='x'"),
        ({"previous": "true"}, "previous is not served"),
        ({"sinceSeconds": "10"}, "sinceSeconds is not served"),
    ],
)
def test_read_options_refuses(params: dict[str, str], message: str) -> None:
    with pytest.raises(LogError, match=message):
        read_options(params)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [(None, b"a\nb\nc\n"), (0, b""), (2, b"b\nc\n"), (9, b"a\nb\nc\n")],
)
def test_tail(lines: int | None, expected: bytes) -> None:
    assert tail(b"a\nb\nc\n", lines) == expected


def test_answers_from_the_pod_runners_files(tmp_path: Path) -> None:
    pod_dir = tmp_path / "pods/ml/web-1"
    pod_dir.mkdir(parents=True)
    container_files(pod_dir, "server").log.write_bytes(b"one\ntwo\nthree\n")
    container_files(pod_dir, "fetch", init=True).log.write_bytes(b"fetched\n")
    logs = PodLogs(tmp_path)

    def body(params: dict[str, str]) -> bytes:
        response = asyncio.run(logs.respond(POD, params, None, lambda: POD))
        return bytes(response.body)  # type: ignore[attr-defined]

    assert body({}) == b"one\ntwo\nthree\n"
    assert body({"container": "server", "tailLines": "1"}) == b"three\n"
    assert body({"container": "fetch"}) == b"fetched\n"
    assert body({"limitBytes": "3"}) == b"one"
    other = {**POD, "metadata": {"name": "web-2", "namespace": "ml"}}
    with pytest.raises(LogError, match='container "server" in pod "web-2" is waiting to start'):
        logs.path(other, "server", init=False)
