"""The controllers' watch-event listeners of the kinds the cache watches (controller/observe.py),
called from one kopf event handler per kind.

kopf calls each of its handlers through its own machinery (keyword arguments with every index,
a logging context, an asyncio task for an async handler, a thread hop for a sync one), and that
cost is per handler and event: with a cache handler per label slice and each controller's own
handlers, a new pipeline's three events (created, its status written, its Job created) made
eleven handler calls. Here a listener is a plain function: observe.py's handler of its kind
calls those whose label the object carries, in the order they were registered.

A listener takes kopf's keyword arguments of an event handler (type, namespace, name, labels,
body, spec, status, the indexes, ...). A coroutine function is awaited; a plain one runs in the
operator's thread pool, as kopf runs a sync handler. One that raises is logged and the others
still run, as kopf does with event handlers (an event is not retried): a kopf.TemporaryError
or PermanentError (an API server's 5xx, a refusal) as one line, anything else with its
traceback.
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

__all__ = ["Listener", "listeners", "notify", "on_event"]

log = logging.getLogger("kubeloop.events")

Listener = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Registered:
    label: str | None  # called only for objects that carry it (None: every object)
    fn: Listener
    is_async: bool


_LISTENERS: dict[str, list[_Registered]] = defaultdict(list)


def on_event(kind: str, label: str | None = None) -> Callable[[Listener], Listener]:
    """Register the decorated function for the watch events of `kind` (only the objects that
    carry `label`, when given). The kind must be one the cache watches (observe.SLICES), with
    `label` one of its slices' labels."""

    def register(fn: Listener) -> Listener:
        _LISTENERS[kind].append(_Registered(label, fn, inspect.iscoroutinefunction(fn)))
        return fn

    return register


def listeners(kind: str) -> list[tuple[str | None, Listener]]:
    """(label, function) of each listener of `kind`, in the order registered."""
    return [(entry.label, entry.fn) for entry in _LISTENERS.get(kind, [])]


async def notify(kind: str, labels: Mapping[str, str], kwargs: dict[str, Any]) -> None:
    """Call each listener of `kind` whose label the object carries with kopf's `kwargs`."""
    for entry in _LISTENERS.get(kind, ()):
        if entry.label is not None and entry.label not in labels:
            continue
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
