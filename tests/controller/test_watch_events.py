"""Watch events reach the controllers' listeners through one kopf handler per kind
(controller/watch_events.py, controller/observe.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

import kubeloop.controller.main  # noqa: F401 (registers every handler with kopf)
from kubeloop.controller import watch_events
from kubeloop.controller.monitor import MONITOR_LABEL
from kubeloop.controller.observe import SLICES
from kubeloop.controller.training import PIPELINE_LABEL
from kubeloop.controller.watch_events import listeners, notify, on_event


@pytest.fixture
def kind() -> Iterator[str]:
    """A kind of this test's own, its listeners removed afterwards."""
    yield "Probe"
    watch_events._LISTENERS.pop("Probe", None)


def _kwargs(labels: dict[str, str], type: str = "ADDED") -> dict[str, Any]:
    return {"type": type, "namespace": "ml", "name": "a", "labels": labels, "body": {}}


def test_each_listener_of_the_objects_labels_is_called_in_order(kind: str) -> None:
    calls: list[tuple[str, str]] = []

    @on_event(kind)
    async def every(*, name: str, **_: Any) -> None:
        calls.append(("every", name))

    @on_event(kind, "x")
    async def with_x(*, name: str, **_: Any) -> None:
        calls.append(("x", name))

    @on_event(kind, "y")
    def with_y(*, name: str, **_: Any) -> None:  # a plain function: in a thread
        assert threading.current_thread() is not threading.main_thread()
        calls.append(("y", name))

    asyncio.run(notify(kind, {"x": "1"}, _kwargs({"x": "1"})))
    assert calls == [("every", "a"), ("x", "a")]
    calls.clear()
    asyncio.run(notify(kind, {"x": "1", "y": "2"}, _kwargs({"x": "1", "y": "2"})))
    assert calls == [("every", "a"), ("x", "a"), ("y", "a")]


def test_a_failing_listener_is_logged_and_the_others_still_run(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @on_event(kind)
    async def broken(**_: Any) -> None:
        raise RuntimeError("boom")

    @on_event(kind)
    async def fine(**_: Any) -> None:
        calls.append("fine")

    with caplog.at_level(logging.ERROR, logger="kubeloop.events"):
        asyncio.run(notify(kind, {}, _kwargs({}, type="MODIFIED")))
    assert calls == ["fine"]
    assert "Probe ml/a: the " in caplog.text
    assert "broken listener failed on a MODIFIED event" in caplog.text
    assert "boom" in caplog.text


def test_a_temporary_error_is_one_line_without_a_traceback(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An API server's 5xx under a reconcile is logged as kopf logs it: no traceback (a flood
    of them under API faults hides the real ones: tests/reliability/test_api_faults.py)."""

    @on_event(kind)
    async def unlucky(**_: Any) -> None:
        raise kopf.TemporaryError("PATCH /apis/...: 503 Service Unavailable", delay=2)

    with caplog.at_level(logging.ERROR, logger="kubeloop.events"):
        asyncio.run(notify(kind, {}, _kwargs({})))
    (record,) = caplog.records
    assert record.exc_info is None
    assert "unlucky listener failed on a ADDED event" in record.getMessage()
    assert "503 Service Unavailable" in record.getMessage()


def test_the_controllers_listen_on_watched_kinds_and_slices() -> None:
    watched = {(kind, label) for kind, *_, label in SLICES}
    kinds = {kind for kind, *_ in SLICES}
    for kind in watch_events._LISTENERS:
        for label, fn in listeners(kind):
            assert kind in kinds, fn
            assert label is None or (kind, label) in watched, (kind, label, fn)
    assert ("kubeloop.io/trainingpipeline", "on_job_event") in [
        (label, fn.__name__) for label, fn in listeners("Job")
    ]


def test_kopf_calls_one_index_and_one_event_handler_per_kind() -> None:
    """Fewer kopf handler calls per event: one index and one event handler for each kind the
    cache watches, whatever its slices and listeners."""
    registry = kopf.get_default_registry()
    kinds = {kind.lower() for kind, *_ in SLICES}
    cache_indexes = [
        h.id for h in registry._indexing.get_all_handlers() if h.id.startswith("cache-")
    ]
    events = [h.id for h in registry._watching.get_all_handlers() if h.id.startswith("cache-")]
    assert sorted(cache_indexes) == sorted(f"cache-{kind}" for kind in kinds)
    assert sorted(events) == sorted(f"cache-{kind}-events" for kind in kinds)
    # No controller registers its own kopf event handler for a watched kind.
    plurals = {plural for _, _, _, plural, _ in SLICES}
    others = [
        h.id
        for h in registry._watching.get_all_handlers()
        if not h.id.startswith("cache-") and (h.selector.plural or h.selector.any_name) in plurals
    ]
    assert others == []


@pytest.mark.parametrize(
    ("kind", "labels", "passes"),
    [
        ("Job", {PIPELINE_LABEL: "churn"}, True),
        ("Job", {MONITOR_LABEL: "m"}, True),
        ("Job", {"app": "other"}, False),  # somebody else's Job
        ("Job", {}, False),
        ("Pod", {PIPELINE_LABEL: "churn"}, True),
        ("Pod", {"app": "other"}, False),
    ],
)
def test_a_sliced_kinds_handlers_see_only_objects_in_a_slice(
    kind: str, labels: dict[str, str], passes: bool
) -> None:
    registry = kopf.get_default_registry()
    handler = next(
        h for h in registry._watching.get_all_handlers() if h.id == f"cache-{kind.lower()}-events"
    )
    assert handler.when is not None
    assert handler.when(labels=labels, body={}, name="a") is passes


def test_index_handlers_are_called_only_until_kopf_runs_its_first_event_handler() -> None:
    """kopf runs no event handler before every listed object is indexed: until then the index
    handlers fill the cache; from the first event handler on, the event handlers keep it."""
    from kubeloop.controller import observe
    from kubeloop.resources.datawatch import DATAWATCH_LABEL

    registry = kopf.get_default_registry()
    index = next(h for h in registry._indexing.get_all_handlers() if h.id == "cache-cronjob")
    events = next(
        h for h in registry._watching.get_all_handlers() if h.id == "cache-cronjob-events"
    )
    ours, foreign = {DATAWATCH_LABEL: "churn"}, {"app": "other"}
    observe._Start.listing = True
    try:
        assert index.when is not None
        assert index.when(labels=ours, body={}) is True
        assert index.when(labels=foreign, body={}) is False
        body = {"kind": "CronJob", "metadata": {"name": "a", "namespace": "ml", "labels": ours}}
        asyncio.run(events.fn(type=None, namespace="ml", name="a", labels=ours, body=body))
        assert index.when(labels=ours, body={}) is False
    finally:
        observe._Start.listing = True
