"""Watch events reach the controllers' listeners (controller/watch_events.py) from the
informers (controller/observe.py): the cache filled first, one object's events in order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import kmock
import kopf
import pytest
from tests.polling import until

import kubeloop.controller.main  # noqa: F401 (registers every handler with kopf)
from kubeloop.controller import kube, observe, watch_events
from kubeloop.controller.observe import SLICES
from kubeloop.controller.runtime import runtime
from kubeloop.controller.training import PIPELINE_LABEL
from kubeloop.controller.watch_events import listeners, notify, on_event
from kubeloop.local.cluster.emulator import EmulatorThread


@pytest.fixture
def kind() -> Iterator[str]:
    """A kind of this test's own, its listeners removed afterwards."""
    yield "Probe"
    for key in [key for key in watch_events._LISTENERS if key[0] == "Probe"]:
        del watch_events._LISTENERS[key]


def _kwargs(labels: dict[str, str], type: str = "ADDED") -> dict[str, Any]:
    return {"type": type, "namespace": "ml", "name": "a", "labels": labels, "body": {}}


def test_each_listener_of_the_slice_is_called_in_order(kind: str) -> None:
    calls: list[tuple[str, str]] = []

    @on_event(kind, "x")
    async def first(*, name: str, **_: Any) -> None:
        calls.append(("first", name))

    @on_event(kind, "y")
    async def of_another_slice(*, name: str, **_: Any) -> None:
        calls.append(("y", name))

    @on_event(kind, "x")
    def second(*, name: str, **_: Any) -> None:  # a plain function: in a thread
        assert threading.current_thread() is not threading.main_thread()
        calls.append(("second", name))

    asyncio.run(notify(kind, "x", _kwargs({"x": "1", "y": "2"})))
    assert calls == [("first", "a"), ("second", "a")]
    assert watch_events.has_listeners(kind, "y") and not watch_events.has_listeners(kind, None)


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
        asyncio.run(notify(kind, None, _kwargs({}, type="MODIFIED")))
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
        asyncio.run(notify(kind, None, _kwargs({})))
    (record,) = caplog.records
    assert record.exc_info is None
    assert "unlucky listener failed on a ADDED event" in record.getMessage()
    assert "503 Service Unavailable" in record.getMessage()


def test_the_controllers_listen_on_watched_slices() -> None:
    watched = set(SLICES)
    for (kind, label), entries in watch_events._LISTENERS.items():
        assert (kind, label) in watched, (kind, label, [e.fn for e in entries])
    assert ("kubeloop.io/trainingpipeline", "on_job_event") in [
        (label, fn.__name__) for label, fn in listeners("Job")
    ]


def test_kopf_handles_no_kind_the_informers_feed_but_its_change_handlers_kinds() -> None:
    """kopf watches a kind only for its handlers: the informers feed the cache and the
    listeners, and kopf keeps only the ModelDeployments' and DriftMonitors' change handlers
    and timers (and the serving Deployments' events). A kopf handler on a pipeline, Job, Pod or
    CronJob would bring back kopf's machinery per watch event for thousands of objects."""
    registry = kopf.get_default_registry()
    handlers = [
        *registry._indexing.get_all_handlers(),
        *registry._watching.get_all_handlers(),
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]
    plurals = {h.selector.plural or h.selector.any_name for h in handlers}
    assert plurals == {"modeldeployments", "driftmonitors", "deployments"}
    assert [h.id for h in registry._indexing.get_all_handlers()] == []


def _event(uid: str, n: int) -> dict[str, Any]:
    meta = {
        "name": uid,
        "namespace": "ml",
        "uid": uid,
        "labels": {"x": "1"},
        "resourceVersion": str(n),
    }
    return {"kind": "Probe", "metadata": meta, "spec": {"n": n}}


def test_one_objects_events_reach_its_listeners_in_order_the_newest_of_those_waiting(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an object's listener runs (waiting on a reconcile), its next events wait, and only
    the newest of them follows; another object's events do not wait for it."""
    monkeypatch.setattr(runtime, "kube", None)
    calls: list[tuple[str, str | None, int]] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        @on_event(kind, "x")
        async def slow(*, type: str | None, uid: str, spec: dict[str, Any], **_: Any) -> None:
            calls.append((uid, type, spec["n"]))
            if uid == "a":
                await gate.wait()

        observe.deliver(kind, "x", "ADDED", _event("a", 1))
        observe.deliver(kind, "x", "MODIFIED", _event("a", 2))
        observe.deliver(kind, "x", "MODIFIED", _event("a", 3))
        observe.deliver(kind, "x", "ADDED", _event("b", 1))

        async def b_ran() -> bool:
            return ("b", "ADDED", 1) in calls

        await until(b_ran, timeout=5, interval=0.01, what="b's listener while a's waits")
        assert calls == [("a", "ADDED", 1), ("b", "ADDED", 1)]
        gate.set()

        async def a_done() -> bool:
            return not observe._watching.running

        await until(a_done, timeout=5, interval=0.01, what="a's listener to finish")

    asyncio.run(scenario())
    assert calls == [("a", "ADDED", 1), ("b", "ADDED", 1), ("a", "MODIFIED", 3)]


def test_every_slice_is_listed_into_the_cache_before_a_listener_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's startup: each listed object reaches the listeners (type None) only once
    every slice is in the cache, so a resume's reconcile sees all of it; then the watches."""
    seen: list[tuple[str | None, str, int]] = []

    async def pipeline(*, type: str | None, name: str, **_: Any) -> None:
        jobs = runtime.api.cache.list("Job", "ml", {PIPELINE_LABEL: "churn"})
        seen.append((type, name, len(jobs)))

    monkeypatch.setattr(watch_events, "_LISTENERS", defaultdict(list))
    on_event("TrainingPipeline")(pipeline)
    container = {"name": "c", "image": "trainer:1"}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "churn-run-1", "namespace": "ml", "labels": {PIPELINE_LABEL: "churn"}},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }
    pipeline_doc = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {},
    }
    with EmulatorThread(admission=False) as thread:
        writer = kube.connect(thread.url)
        writer.create(pipeline_doc)
        writer.create(job)
        monkeypatch.setattr(runtime, "kube", kube.connect(thread.url))

        async def scenario() -> None:
            await observe.start_watching()
            try:

                async def listed() -> bool:
                    return bool(seen)

                await until(listed, timeout=5, interval=0.01, what="the listed pipeline")
                await asyncio.get_running_loop().run_in_executor(
                    None, writer.patch, "TrainingPipeline", "ml", "churn", {"spec": {"x": 1}}
                )

                async def modified() -> bool:
                    return len(seen) >= 2

                await until(modified, timeout=5, interval=0.01, what="the pipeline's change")
            finally:
                await observe.stop_watching()
            assert observe._watching.informers == [] and observe._watching.session is None

        asyncio.run(scenario())
    assert seen == [(None, "churn", 1), ("MODIFIED", "churn", 1)]


def test_an_operator_of_some_namespaces_lists_and_watches_only_those(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kubeloop operator --namespace ml` (the chart's watchNamespaces): one informer per slice
    and namespace, each listing and watching there only (a namespaced Role allows no more)."""
    monkeypatch.setattr(watch_events, "_LISTENERS", defaultdict(list))

    def pipeline(namespace: str, name: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace}
        return {"apiVersion": "kubeloop.io/v1alpha1", "kind": "TrainingPipeline", "metadata": meta}

    with EmulatorThread(admission=False) as thread:
        writer = kube.connect(thread.url)
        writer.create(pipeline("ml", "a"))
        writer.create(pipeline("other", "b"))
        monkeypatch.setattr(runtime, "kube", kube.connect(thread.url))

        async def scenario() -> None:
            await observe.start_watching(("ml",))
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, writer.create, pipeline("ml", "c")
                )
                await asyncio.get_running_loop().run_in_executor(
                    None, writer.create, pipeline("other", "d")
                )

                async def c_seen() -> bool:
                    return runtime.api.cache.get("TrainingPipeline", "ml", "c") is not None

                await until(c_seen, timeout=5, interval=0.01, what="ml/c from the watch")
            finally:
                await observe.stop_watching()

        asyncio.run(scenario())
        assert runtime.api.cache.names("TrainingPipeline") == [("ml", "a"), ("ml", "c")]
        reads = [r for r in thread.emulator.recorded_requests if r.method == kmock.method.GET]
        assert reads and {r.namespace for r in reads} == {"ml"}  # lists and watches
