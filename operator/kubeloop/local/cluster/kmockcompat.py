"""The one place that touches kmock's private internals (kubeloop is built against kmock 0.8).

kmock's public API serves canned answers; the emulator needs more of its machinery: the per-
request hook (`_handle`), the store's lock and watch buses (`_lock`, `_buses`), the default
list/watch/discovery answers (`_serve_*`), the request log (`_requests`, `_payloads`) and
rewriting a parsed request in place (kmock's `Request` is a frozen attrs class). `EmulatorBase`
gives those public names; the emulator subclasses it and never names a `_` attribute of kmock.

`check()` verifies every internal used here exists in the installed kmock and raises
`KmockIncompatibleError` naming the kmock version and what is missing; `EmulatorBase` runs it
when an emulator is built, and tests/local/test_kmockcompat.py runs it, so a kmock release that
moved any of them fails loudly in one place instead of as an AttributeError deep in a request.

`fast_membership()` answers kmock's "does this reaction see this request?" without re-reading
the request log (see its docstring): kmock asks it of every reaction for every request.
`fast_lookup()` finds a named object by its key instead of checking every stored object.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock

__all__ = [
    "TESTED_WITH",
    "EmulatorBase",
    "KmockIncompatibleError",
    "check",
    "fast_membership",
    "set_request_fields",
]

TESTED_WITH = "0.8"
T = TypeVar("T")

# Methods of kmock.KubernetesEmulator the adapter overrides or calls.
_METHODS = (
    "_handle",
    "_serve_list",
    "_serve_watch",
    "_serve_api",
    "_serve_apis",
    "_serve_group",
    "_serve_version",
    "_render_error",
    "_KubernetesEmulator__get_objs",  # fast_lookup: its per-request scan of every object
)
# attrs fields of kmock.KubernetesEmulator the adapter reads.
_FIELDS = ("_lock", "_buses", "_requests", "_payloads", "_objects")
# Methods of kmock's watch bus (kmock._internal.aiobus.Bus) a watch from a snapshot uses.
_BUS_METHODS = ("mark", "stream", "unmark", "put")
# Fields of kmock.Request the emulator rewrites in place.
_REQUEST_FIELDS = ("action", "data", "namespace", "name", "subresource", "params", "headers")


class KmockIncompatibleError(RuntimeError):
    """The installed kmock lacks an internal the local API server is built on."""


def check() -> None:
    """Raise KmockIncompatibleError unless every kmock internal used here is present."""
    missing = [
        f"KubernetesEmulator.{m}" for m in _METHODS if not hasattr(kmock.KubernetesEmulator, m)
    ]
    fields = {f.name for f in attrs.fields(kmock.KubernetesEmulator)}
    missing += [f"KubernetesEmulator.{f} (attrs field)" for f in _FIELDS if f not in fields]
    request_fields = {f.name for f in attrs.fields(kmock.Request)}
    missing += [f"Request.{f}" for f in _REQUEST_FIELDS if f not in request_fields]
    bus_class = _bus_class()
    if bus_class is None:
        missing.append("kmock._internal.aiobus.Bus")
    else:
        missing += [f"aiobus.Bus.{m}" for m in _BUS_METHODS if not hasattr(bus_class, m)]
    missing += _missing_view_fields()
    if not inspect.isasyncgenfunction(getattr(kmock.KubernetesEmulator, "_serve_watch", None)):
        missing.append("KubernetesEmulator._serve_watch as an async generator")
    if missing:
        raise KmockIncompatibleError(
            f"kmock {getattr(kmock, '__version__', '?')} is incompatible with kubeloop's local API "
            f"server (built against kmock {TESTED_WITH}): missing {', '.join(missing)}. "
            f'Install kmock {TESTED_WITH} (pip install "kmock>={TESTED_WITH},<0.9") or port '
            "kubeloop/local/cluster/kmockcompat.py to the new kmock."
        )


def _missing_view_fields() -> list[str]:
    """kmock's views that `fast_membership` answers for, with the fields it reads."""
    try:
        from kmock._internal import dsl
    except ImportError:
        return ["kmock._internal.dsl"]
    wanted = {"Filter": ("_source", "criteria"), "Priority": ("_source",)}
    missing = []
    for name, fields in wanted.items():
        cls = getattr(dsl, name, None)
        if cls is None or not attrs.has(cls):
            missing.append(f"dsl.{name}")
            continue
        have = {f.name for f in attrs.fields(cls)}
        missing += [f"dsl.{name}.{f} (attrs field)" for f in fields if f not in have]
    return missing


def fast_membership() -> None:
    """Make `request in view` cost one criteria check for kmock's filter chains.

    To route a request, kmock asks `request in reaction_source` of every reaction, and a
    filter answers that by filtering the whole request log again (every kept request through
    every criterion, `typing.Protocol` isinstance checks included): a third of a local
    cluster's CPU went there. For a Filter the answer is "the criteria hold for it and its
    source sees it", for a Priority "its source sees it", and the log is scanned once, by
    identity, at the Root: the same answer, as kmock's own docs define these views. Other
    views (slices, unions, exclusions) keep kmock's answer. Installed once, idempotent.
    """
    from kmock._internal import dsl

    if getattr(dsl.Filter.__contains__, "_kubeloop_fast", False):
        return
    generic = dsl.View.__contains__

    def filter_contains(self: Any, item: Any) -> bool:
        if isinstance(item, kmock.Request):
            return bool(self.criteria(item)) and item in self._source
        return generic(self, item)

    def priority_contains(self: Any, item: Any) -> bool:
        if isinstance(item, kmock.Request):
            return item in self._source
        return generic(self, item)

    for cls, contains in ((dsl.Filter, filter_contains), (dsl.Priority, priority_contains)):
        contains._kubeloop_fast = True  # type: ignore[attr-defined]
        cls.__contains__ = contains  # type: ignore[method-assign]


def fast_lookup() -> None:
    """Make kmock find a named object by its key instead of scanning every object stored.

    kmock answers each GET, PATCH, PUT, DELETE and create (its answer) of one object by checking
    every stored object against the request: O(objects) per request, so a cluster of 1000
    pipelines (their Jobs, pods, Events: ~6000 objects) paid ~6000 checks for each request. When
    the request names the object and its namespace exactly (the strict lookups, or a namespaced
    request), the object's key (resource, namespace, name) finds it directly: kmock's check is
    equality of those three, and a resource hashes as it compares. Other requests (lists,
    cluster-wide watches) keep kmock's scan. Installed once, idempotent.
    """
    emulator = kmock.KubernetesEmulator
    scan = emulator._KubernetesEmulator__get_objs  # type: ignore[attr-defined]
    if getattr(scan, "_kubeloop_fast", False):
        return

    def get_objs(self: Any, request: Any, strict: bool) -> list[Any]:
        if request.name is not None and (strict or request.namespace is not None):
            key = (request.resource, request.namespace, request.name)
            found = self._objects._objects.get(key)
            return [found] if found is not None else []
        return list(scan(self, request, strict))

    get_objs._kubeloop_fast = True  # type: ignore[attr-defined]
    emulator._KubernetesEmulator__get_objs = get_objs  # type: ignore[attr-defined]


def _bus_class() -> Any:
    try:
        from kmock._internal import aiobus
    except ImportError:
        return None
    return getattr(aiobus, "Bus", None)


def set_request_fields(request: kmock.Request, **fields: Any) -> None:
    """Rewrite a parsed (frozen) request in place: kmock routes and records this very object."""
    for name, value in fields.items():
        object.__setattr__(request, name, value)


@attrs.define(kw_only=True)
class EmulatorBase(kmock.KubernetesEmulator):
    """kmock's emulator with its internals under public names (see the module docstring)."""

    def __attrs_post_init__(self) -> None:
        check()
        fast_membership()
        fast_lookup()
        super().__attrs_post_init__()

    # -- hooks a subclass overrides (kmock calls the `_` names) ---------------------------------

    async def handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Serve one parsed request; the default stores and answers as kmock does."""
        return await self.store_and_answer(request)

    async def serve_api(self, request: kmock.Request) -> Any:
        return await super()._serve_api(request)

    async def serve_apis(self, request: kmock.Request) -> Any:
        return await super()._serve_apis(request)

    async def serve_group(self, request: kmock.Request) -> Any:
        return await super()._serve_group(request)

    async def serve_version(self, request: kmock.Request) -> Any:
        return await super()._serve_version(request)

    async def serve_list(self, request: kmock.Request) -> Any:
        return await self.stored_list(request)

    async def serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        async for item in self.stored_watch(request):
            yield item

    # -- kmock's own behaviour, for the hooks to call -------------------------------------------

    async def store_and_answer(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock's handling: store the change, send the watch event, answer the request."""
        return await super()._handle(request)

    async def stored_list(self, request: kmock.Request) -> Any:
        """kmock's list answer: `{"metadata": ..., "items": [...]}`."""
        return await super()._serve_list(request)

    def stored_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        """kmock's watch stream: b'' first, then the current objects as ADDED, then changes."""
        return super()._serve_watch(request)

    @property
    def lock(self) -> Any:
        """The lock kmock holds while it changes the store."""
        return self._lock

    def bus(self, resource: Any) -> Any:
        """The watch bus of a resource: `await bus.put(event)` reaches every open watch."""
        return self._buses[resource]

    async def render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """kmock's answer for an error (a Kubernetes Status for a KubernetesError)."""
        return await super()._render_error(exc)

    @contextlib.asynccontextmanager
    async def changes_after(
        self, resource: Any, snapshot: Callable[[], T]
    ) -> AsyncIterator[tuple[T, AsyncIterator[Any]]]:
        """`snapshot()` taken under the store's lock, and the stream of the resource's watch
        events after it: every change the snapshot does not show, none that it does."""
        bus = self._buses[resource]
        async with self._lock:  # changes reach the bus under this lock: none falls between
            mark = await bus.mark()
            taken = snapshot()
        try:
            yield taken, bus.stream(since=mark)
        finally:
            await bus.unmark(mark)

    @property
    def recorded_requests(self) -> list[kmock.Request]:
        """Every request kmock has recorded (and matches reactions against)."""
        return self._requests

    def trim_requests(self, keep: int, pinned: Collection[kmock.Request] = ()) -> None:
        """Forget all but the `keep` most recent requests and the `pinned` ones, here and in
        every reaction's log. A request must stay recorded until kmock has matched it to a
        reaction (it looks for the very object in its log), so those still being handled are
        pinned wherever they are in the log."""
        keeping = {id(request) for request in pinned}

        def trim(recorded: list[kmock.Request]) -> None:
            old = recorded[:-keep] if keep else recorded[:]
            recorded[: len(old)] = [r for r in old if id(r) in keeping]

        trim(self._requests)
        for payload in self._payloads:
            recorded = getattr(payload, "_requests", None)
            if isinstance(recorded, list):
                trim(recorded)

    # -- kmock's names, routed to the hooks above ----------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        return await self.handle(request)

    async def _serve_api(self, request: kmock.Request) -> Any:
        return await self.serve_api(request)

    async def _serve_apis(self, request: kmock.Request) -> Any:
        return await self.serve_apis(request)

    async def _serve_group(self, request: kmock.Request) -> Any:
        return await self.serve_group(request)

    async def _serve_version(self, request: kmock.Request) -> Any:
        return await self.serve_version(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        return await self.serve_list(request)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        async for item in self.serve_watch(request):
            yield item
