"""The controllers' watch-event listeners of the kinds the cache watches, called by
controller/observe.py for each event of the slice they listen on.

A listener takes kopf's keyword arguments of an event handler (type, namespace, name, labels,
body, spec, status, meta, uid, annotations). A coroutine function is awaited; a plain one runs
in the operator's thread pool, as kopf runs a sync handler. One that raises is logged and the
others still run, as kopf does with event handlers (an event is not retried): a
kopf.TemporaryError or PermanentError (an API server's 5xx, a refusal) as one line, anything
else with its traceback.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kubeloop.controller.runtime import runtime

__all__ = ["Listener", "has_listeners", "listeners", "notify", "on_event"]

log = logging.getLogger("kubeloop.events")

Listener = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Registered:
    fn: Listener
    is_async: bool


# (kind, the slice's label or None for the whole kind) -> its listeners, in registration order
_LISTENERS: dict[tuple[str, str | None], list[_Registered]] = defaultdict(list)


def on_event(kind: str, label: str | None = None) -> Callable[[Listener], Listener]:
    """Register the decorated function for the watch events of the slice of `kind` whose
    objects carry `label` (None: the kind watched whole). The slice must be one the cache
    watches (observe.SLICES)."""

    def register(fn: Listener) -> Listener:
        _LISTENERS[(kind, label)].append(_Registered(fn, inspect.iscoroutinefunction(fn)))
        return fn

    return register


def listeners(kind: str) -> list[tuple[str | None, Listener]]:
    """(label, function) of each listener of `kind`, in the order registered."""
    return [
        (label, entry.fn)
        for (of, label), entries in _LISTENERS.items()
        if of == kind
        for entry in entries
    ]


def has_listeners(kind: str, label: str | None) -> bool:
    """Whether any listener listens on this slice (its events need no listener task else)."""
    return bool(_LISTENERS.get((kind, label)))


async def notify(kind: str, label: str | None, kwargs: dict[str, Any]) -> None:
    """Call each listener of the slice (`kind`, `label`) with kopf's `kwargs`."""
    for entry in _LISTENERS.get((kind, label), ()):
        try:
            if entry.is_async:
                await entry.fn(**kwargs)
            else:
                call = functools.partial(entry.fn, **kwargs)
                await asyncio.get_running_loop().run_in_executor(runtime.executor, call)
        except (kopf.TemporaryError, kopf.PermanentError) as error:
            # What the operator raises on purpose (an API server's 5xx, a refusal) says what
            # failed: one line, no traceback, as kopf logs these from its own handlers.
            log.error("%s: %s", _what(kind, entry, kwargs), error or repr(error))
        except Exception:
            log.exception("%s", _what(kind, entry, kwargs))


def _what(kind: str, entry: _Registered, kwargs: Mapping[str, Any]) -> str:
    return (
        f"{kind} {kwargs.get('namespace')}/{kwargs.get('name')}: the "
        f"{getattr(entry.fn, '__qualname__', entry.fn)} listener failed on a "
        f"{kwargs.get('type') or 'listed'} event; it is not retried (the next event or the "
        "resync reconciles)"
    )
