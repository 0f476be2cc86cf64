"""Informers of our own: a list, then a watch from the list's resourceVersion, of one slice of
one kind (all its objects, or those that carry a label) in one namespace or all, on the
operator's event loop (aiohttp, the client's server and credentials: `Kube.endpoint`).

What every object event goes to is the caller's (`Deliver`: controller/observe.py keeps it in
the cache and calls the listeners). kopf watches only the kinds it has handlers for (the
ModelDeployments' and DriftMonitors' change handlers and timers): its machinery per watch
event (a worker task per object, the handler registry, a logger, keyword arguments with every
index, its diff base) cost as much of the operator's CPU as reconciling did, for the thousands
of pipelines, Jobs and Pods that only need to reach the cache and a listener.

Like client-go's reflector:
- `list` pages through the slice (`limit`/`continue`) and remembers the list's version;
- `watch` asks for the changes after that version (`allowWatchBookmarks`, ended by the server
  after `WATCH_SECONDS`), and remembers each event's version: the next watch goes on from it;
- a watch the server answers 410 Gone (the version is too old: an HTTP 410, or an ERROR event
  with code 410) lists again: objects the cache holds that the list does not were deleted
  meanwhile and are delivered as DELETED, the others as listed (type None, as kopf delivers a
  list);
- any other failure (a refused, dropped or stalled connection, a 5xx, a 429) is one WARNING
  line, and the same request goes again after a backoff (1 s, doubling up to 30 s, reset by a
  watch that delivered something): never a hot loop, never a traceback.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from kubeloop.controller.cache import Cache
from kubeloop.controller.kube import PLURALS, Endpoint

__all__ = [
    "FIRST_RETRY_SECONDS",
    "MAX_RETRY_SECONDS",
    "WATCH_SECONDS",
    "Deliver",
    "Informer",
    "WatchError",
]

log = logging.getLogger("kubeloop.informer")

# How long the server keeps one watch open (`timeoutSeconds`); a connection silent for a minute
# longer than that is taken for dead.
WATCH_SECONDS = 300
PAGE_SIZE = 500
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
# A watch that ends sooner than this having delivered nothing counts as a failure (backoff):
# a server or proxy that closes every watch at once must not be asked again and again.
SHORT_WATCH_SECONDS = 1.0

# (kind, slice label, event type: ADDED/MODIFIED/DELETED, or None for a listed object, object)
Deliver = Callable[[str, str | None, str | None, dict[str, Any]], None]


class _GoneError(Exception):
    """The watch's resourceVersion is too old: list again."""


class WatchError(Exception):
    """A list or watch the server answered with an error (its status and message)."""


# What a list or watch fails with when the server or the network does: a WARNING line each.
_FAILURES = (TimeoutError, aiohttp.ClientError, WatchError, ValueError)


def _why(error: BaseException) -> str:
    return str(error) or type(error).__name__


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The newline-separated JSON documents of a watch stream, however the chunks split them
    (aiohttp's own readline refuses a line longer than its buffer: a big object's event)."""
    tail = b""
    async for chunk in stream.iter_any():
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if tail.strip():
        yield tail


async def _failure(response: aiohttp.ClientResponse) -> WatchError:
    text = (await response.text())[:300]
    try:
        message = str(json.loads(text).get("message") or text)
    except (ValueError, AttributeError):
        message = text
    return WatchError(f"{response.status} {response.reason}: {message}".strip())


class Informer:
    """One slice (`kind`, the objects with `label`, or all) in `namespace` (None: every one)."""

    def __init__(  # noqa: PLR0917 (what names the slice, and where its events go)
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        kind: str,
        label: str | None,
        namespace: str | None,
        deliver: Deliver,
        cache: Cache,
    ) -> None:
        prefix, plural = PLURALS[kind]
        where = f"/namespaces/{namespace}" if namespace else ""
        self.url = f"{endpoint.server}{prefix}{where}/{plural}"
        self.kind, self.label, self.namespace = kind, label, namespace
        self._session, self._endpoint, self._deliver = session, endpoint, deliver
        self._cache = cache  # what a relist checks for objects deleted meanwhile
        self.version: str | None = None  # where the next watch starts (None: list first)

    def __repr__(self) -> str:
        what = f"{self.kind}" + (f" ({self.label})" if self.label else "")
        return f"{what} in {self.namespace or 'every namespace'}"

    def _params(self, **extra: str) -> dict[str, str]:
        return {**({"labelSelector": self.label} if self.label else {}), **extra}

    async def list(self) -> list[dict[str, Any]]:
        """Every object of the slice (each with its kind), and remember the list's version."""
        items: list[dict[str, Any]] = []
        after = ""
        while True:
            params = self._params(limit=str(PAGE_SIZE), **({"continue": after} if after else {}))
            timeout = aiohttp.ClientTimeout(total=60)
            async with self._session.get(
                self.url, params=params, headers=self._endpoint.headers(), timeout=timeout
            ) as response:
                if response.status != 200:
                    raise await _failure(response)
                page = await response.json(content_type=None)
            items.extend({"kind": self.kind, **item} for item in page.get("items") or [])
            meta = page.get("metadata") or {}
            after = str(meta.get("continue") or "")
            if not after:
                self.version = str(meta.get("resourceVersion") or "") or None
                return items

    async def first_list(self) -> builtins.list[dict[str, Any]]:
        """`list` until it succeeds: again after each failure (one WARNING line), after the
        same backoff as a watch's. The operator's start waits for every slice's first list."""
        retry = FIRST_RETRY_SECONDS
        while True:
            try:
                return await self.list()
            except _FAILURES as error:
                log.warning("list %s: %s; again in %g s", self, _why(error), retry)
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY_SECONDS)

    async def relist(self) -> None:
        """List again after a watch lost its place: what the cache holds that the list does
        not was deleted meanwhile (delivered as DELETED), the rest is delivered as listed."""
        items = await self.list()
        listed_at = int(self.version) if self.version and self.version.isdigit() else None
        names: dict[str, list[str]] = {}
        for item in items:
            meta = item.get("metadata") or {}
            names.setdefault(str(meta.get("namespace") or ""), []).append(str(meta.get("name")))
        cached = self._cache.slice_namespaces(self.kind, self.label)
        scope = [self.namespace] if self.namespace else sorted({*cached, *names})
        for namespace in scope:
            present = names.get(namespace, [])
            for gone in self._cache.prune(self.kind, namespace, self.label, present, listed_at):
                self._deliver(self.kind, self.label, "DELETED", {"kind": self.kind, **gone})
        for item in items:
            self._deliver(self.kind, self.label, None, item)

    async def watch(self) -> int:
        """One watch from `version` until the server ends it; how many events it delivered.
        Raises _GoneError when the version is too old."""
        params = self._params(
            watch="true",
            allowWatchBookmarks="true",
            timeoutSeconds=str(WATCH_SECONDS),
            **({"resourceVersion": self.version} if self.version else {}),
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 60)
        delivered = 0
        async with self._session.get(
            self.url, params=params, headers=self._endpoint.headers(), timeout=timeout
        ) as response:
            if response.status == 410:
                raise _GoneError
            if response.status != 200:
                raise await _failure(response)
            async for line in _lines(response.content):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _GoneError
                    raise WatchError(f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.version = str(version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(self.kind, self.label, kind, {"kind": self.kind, **obj})
                    delivered += 1
        return delivered

    async def run(self) -> None:
        """Watch on for good (until cancelled): list again when the version is gone, back off
        after a failure."""
        retry = FIRST_RETRY_SECONDS
        while True:
            started = time.monotonic()
            try:
                if self.version is None:
                    await self.relist()
                delivered = await self.watch()
                if delivered or time.monotonic() - started >= SHORT_WATCH_SECONDS:
                    retry = FIRST_RETRY_SECONDS
                    continue
                failure = "the server ended the watch at once"
            except _GoneError:
                self.version = None
                if time.monotonic() - started >= SHORT_WATCH_SECONDS:
                    continue  # list again at once; a watch gone at once waits like a failure
                failure = "410 Gone: listing again"
            except _FAILURES as error:
                failure = _why(error)
            except Exception:  # a defect here must not end this slice's watch for good
                log.exception("watch %s: failed; again in %g s", self, retry)
                failure = ""
            if failure:
                log.warning("watch %s: %s; again in %g s", self, failure, retry)
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY_SECONDS)
