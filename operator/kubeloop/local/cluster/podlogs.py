"""`GET /api/v1/namespaces/{ns}/pods/{name}/log`: what `kubectl logs` reads, served from the
files the pod runner writes.

The pod runner captures each container's output in the pod's folder (`<workdir>/pods/<ns>/<pod>/
log` for the main container, `log.<name>` for an init container: `podspec.container_files`).
This module answers the log subresource from them as a kubelet would:

- `container=` picks the container (main or init); without it a pod with one container answers
  that one's log, a pod with more answers 400 naming the choices (kubectl always sends the
  container it picked: the `kubectl.kubernetes.io/default-container` annotation or the first);
- `tailLines=N` the last N lines, `limitBytes=N` at most N bytes (from the start);
- `follow=true` streams what the container writes until it has terminated (its status says
  so) or the pod is gone;
- a container that has not started yet answers 400 "... is waiting to start", as on a cluster.

Not served: `previous=true` (a restarted container's earlier output is in the same file),
`sinceSeconds`/`sinceTime` and `timestamps` (the files carry no timestamps): answered 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web

from kubeloop.local.cluster.podspec import container_files

__all__ = ["LogError", "PodLogs", "pick_container", "read_options", "tail"]

_UNSUPPORTED = ("previous", "sinceSeconds", "sinceTime", "timestamps")
_FOLLOW_POLL_SECONDS = 0.2


class LogError(Exception):
    """A log request the server refuses: `status` and a message naming the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _names(pod: Mapping[str, Any], key: str) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get(key) or []]


def pick_container(pod: Mapping[str, Any], container: str | None) -> tuple[str, bool]:
    """The container a log request names and whether it is an init container."""
    name = pod.get("metadata", {}).get("name")
    main, init = _names(pod, "containers"), _names(pod, "initContainers")
    if not container:
        if len(main) == 1:
            return main[0], False
        raise LogError(
            400,
            f"a container name must be specified for pod {name}, choose one of: {main}"
            + (f" or one of the init containers: {init}" if init else ""),
        )
    if container in main:
        return container, False
    if container in init:
        return container, True
    raise LogError(400, f"container {container} is not valid for pod {name}: one of {main + init}")


def read_options(params: Mapping[str, str]) -> tuple[int | None, int | None, bool]:
    """(tailLines, limitBytes, follow) of a log request; 400 for what is not served."""
    for key in _UNSUPPORTED:
        if params.get(key) not in (None, "", "false"):
            raise LogError(400, f"{key} is not served by the local API (the logs are plain files)")

    def number(key: str) -> int | None:
        value = params.get(key)
        if value in (None, ""):
            return None
        try:
            parsed = int(str(value))
        except ValueError:
            parsed = -1
        if parsed < 0:
            raise LogError(400, f"{key}={value!r}: a non-negative integer")
        return parsed

    return number("tailLines"), number("limitBytes"), params.get("follow") == "true"


def tail(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of `data` (all when None)."""
    if lines is None:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def _terminated(pod: Mapping[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    for key in ("containerStatuses", "initContainerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") == container and "terminated" in (entry.get("state") or {}):
                return True
    return False


class PodLogs:
    """The log subresource over a pod runner's work folder (`PodRunner(workdir=...)`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def path(self, pod: Mapping[str, Any], container: str, *, init: bool) -> Path:
        """Where the container's output is; 400 when it has not started."""
        meta = pod.get("metadata", {})
        pod_dir = self.workdir / "pods" / str(meta.get("namespace")) / str(meta.get("name"))
        found = container_files(pod_dir, container, init=init).log
        if not found.exists():
            raise LogError(
                400, f'container "{container}" in pod "{meta.get("name")}" is waiting to start'
            )
        return found

    async def respond(
        self,
        pod: Mapping[str, Any],
        params: Mapping[str, str],
        raw_request: aiohttp.web.BaseRequest | None,
        current: Callable[[], Mapping[str, Any] | None],
    ) -> aiohttp.web.StreamResponse:
        """The answer to a log request for `pod`; `current()` re-reads the pod while following."""
        container, init = pick_container(pod, params.get("container"))
        lines, limit, follow = read_options(params)
        path = self.path(pod, container, init=init)
        raw = path.read_bytes()
        data = tail(raw, lines)
        if limit is not None:
            data = data[:limit]
        if not follow or raw_request is None:
            return aiohttp.web.Response(body=data, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw_request)
        await response.write(data)
        offset = len(raw)
        while True:
            latest = current()
            ended = latest is None or _terminated(latest, container)
            size = path.stat().st_size if path.exists() else offset
            if size > offset:
                with path.open("rb") as file:
                    file.seek(offset)
                    await response.write(file.read(size - offset))
                offset = size
            if ended:  # read once more after the end: the last lines are flushed by then
                break
            await asyncio.sleep(_FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response
