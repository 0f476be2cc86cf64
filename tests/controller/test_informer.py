"""The informers (controller/informer.py) against the emulated API server over HTTP: list, then
watch from the list's version; a watch whose version is gone (410, injected by the API fault
proxy, as kube-apiserver answers) lists again and reports what was deleted meanwhile; a
failing server is asked again after a growing backoff, each failure one log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from tests.polling import until
from tests.reliability.apiproxy import ApiFaultProxy, ApiFaults

from kubeloop.controller import informer, kube
from kubeloop.controller.cache import Cache
from kubeloop.controller.informer import Informer
from kubeloop.local.cluster.emulator import EmulatorThread

OWNER = "kubeloop.io/trainingpipeline"
Seen = list[tuple[str | None, str]]


def _job(name: str, labels: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    container = {"name": "c", "image": "trainer:1"}
    meta = {
        "name": name,
        "namespace": "ml",
        "labels": {OWNER: "churn"} if labels is None else labels,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**meta, "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def _recorder(cache: Cache) -> tuple[Seen, Callable[..., None]]:
    """What an informer delivered, (type, name) in order; kept in `cache` as observe.py does."""
    seen: Seen = []

    def deliver(kind: str, label: str | None, event: str | None, body: dict[str, Any]) -> None:
        assert (kind, label) == ("Job", OWNER) and body["kind"] == "Job"
        if event == "DELETED":
            cache.forget(kind, "ml", body["metadata"]["name"])
        else:
            cache.observed(body)
        seen.append((event, body["metadata"]["name"]))

    return seen, deliver


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def test_a_slice_is_listed_then_watched_from_the_lists_version() -> None:
    async def scenario(url: str) -> None:
        writer = kube.connect(url)
        writer.create(_job("churn-run-1"))
        writer.create(_job("other", labels={"app": "other"}))  # outside the slice
        cache = Cache()
        cache.watch("Job", OWNER)
        seen, deliver = _recorder(cache)
        async with aiohttp.ClientSession() as session:
            job_informer = Informer(session, writer.endpoint(), "Job", OWNER, None, deliver, cache)
            listed = await job_informer.list()
            assert [j["metadata"]["name"] for j in listed] == ["churn-run-1"]
            assert all(j["kind"] == "Job" for j in listed)
            assert job_informer.version is not None
            task = asyncio.create_task(job_informer.run())
            try:
                await _in_thread(writer.create, _job("churn-run-2"))
                await _in_thread(writer.create, _job("another", labels={"app": "other"}))
                await _in_thread(
                    writer.patch,
                    "Job",
                    "ml",
                    "churn-run-1",
                    {"metadata": {"annotations": {"a": "1"}}},
                )
                await _in_thread(writer.delete, "Job", "ml", "churn-run-2")

                async def all_seen() -> bool:
                    return len(seen) >= 3

                await until(all_seen, timeout=10, what="three watch events")
            finally:
                task.cancel()
        # The listed object is not delivered again; the other slice's Jobs never are.
        assert seen == [
            ("ADDED", "churn-run-2"),
            ("MODIFIED", "churn-run-1"),
            ("DELETED", "churn-run-2"),
        ]
        assert [j["metadata"]["name"] for j in cache.list("Job", "ml", {OWNER: "churn"})] == [
            "churn-run-1"
        ]

    with EmulatorThread() as thread:
        asyncio.run(scenario(thread.url))


def test_a_watch_whose_version_is_gone_lists_again_and_reports_what_was_deleted() -> None:
    faults = ApiFaults({"ok": 1.0, "gone": 0.0}, seed=1)
    with EmulatorThread() as thread, ApiFaultProxy(thread.url, faults) as proxy:

        async def scenario() -> None:
            writer = kube.connect(thread.url)
            for name in ("churn-run-1", "churn-run-2"):
                writer.create(_job(name))
            cache = Cache()
            cache.watch("Job", OWNER)
            seen, deliver = _recorder(cache)
            async with aiohttp.ClientSession() as session:
                endpoint = kube.connect(proxy.url).endpoint()
                job_informer = Informer(session, endpoint, "Job", OWNER, "ml", deliver, cache)
                for item in await job_informer.list():
                    cache.observed(item)
                # Deleted while this informer watches nothing, and from now on every watch is
                # answered 410 Gone (the version is too old), as kube-apiserver does.
                writer.delete("Job", "ml", "churn-run-2")
                faults.weights = {"ok": 1e-9, "gone": 1.0}
                task = asyncio.create_task(job_informer.run())
                try:

                    async def relisted() -> bool:
                        return ("DELETED", "churn-run-2") in seen and faults.counts["gone"] >= 1

                    await until(relisted, timeout=10, what="a relist after 410 Gone")
                finally:
                    task.cancel()
            assert seen[:2] == [("DELETED", "churn-run-2"), (None, "churn-run-1")]
            assert cache.get("Job", "ml", "churn-run-2") is None
            assert cache.get("Job", "ml", "churn-run-1") is not None

        asyncio.run(scenario())


def test_a_failing_server_is_asked_again_after_a_growing_backoff(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(informer, "FIRST_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(informer, "MAX_RETRY_SECONDS", 0.2)
    faults = ApiFaults({"unavailable": 1.0}, seed=1)
    with EmulatorThread() as thread, ApiFaultProxy(thread.url, faults) as proxy:

        async def scenario() -> None:
            cache = Cache()
            cache.watch("Job", OWNER)
            _, deliver = _recorder(cache)
            async with aiohttp.ClientSession() as session:
                endpoint = kube.connect(proxy.url).endpoint()
                job_informer = Informer(session, endpoint, "Job", OWNER, None, deliver, cache)
                task = asyncio.create_task(job_informer.run())
                try:

                    async def five_failures() -> bool:
                        return len(faults.times) >= 5

                    await until(five_failures, timeout=10, interval=0.02, what="5 requests")
                finally:
                    task.cancel()

        with caplog.at_level(logging.WARNING, logger="kubeloop.informer"):
            asyncio.run(scenario())
    gaps = [b - a for a, b in zip(faults.times, faults.times[1:], strict=False)][:4]
    # 0.05, 0.1, 0.2, 0.2 s (then 0.2 s on): never a hot loop.
    assert all(g >= w * 0.9 for g, w in zip(gaps, (0.05, 0.1, 0.2, 0.2), strict=True)), gaps
    lines = [r.getMessage() for r in caplog.records if r.name == "kubeloop.informer"]
    assert len(lines) >= 4
    assert all(r.exc_info is None for r in caplog.records)  # one line each, no traceback
    assert lines[0].startswith("watch Job (kubeloop.io/trainingpipeline) in every namespace: 503")
    assert [line.rsplit("again in ", 1)[1] for line in lines[:4]] == [
        "0.05 s",
        "0.1 s",
        "0.2 s",
        "0.2 s",
    ]


def test_an_event_longer_than_aiohttps_line_buffer_arrives_whole() -> None:
    big = "x" * 200_000  # aiohttp's readline refuses a line over 128 KiB

    async def scenario(url: str) -> None:
        writer = kube.connect(url)
        cache = Cache()
        cache.watch("Job", OWNER)
        seen, deliver = _recorder(cache)
        async with aiohttp.ClientSession() as session:
            job_informer = Informer(session, writer.endpoint(), "Job", OWNER, None, deliver, cache)
            await job_informer.list()
            task = asyncio.create_task(job_informer.run())
            try:
                await _in_thread(writer.create, _job("churn-run-1", note=big))
                await _in_thread(writer.create, _job("churn-run-2"))

                async def both() -> bool:
                    return len(seen) >= 2

                await until(both, timeout=10, what="two watch events")
            finally:
                task.cancel()
        assert seen == [("ADDED", "churn-run-1"), ("ADDED", "churn-run-2")]
        kept = cache.get("Job", "ml", "churn-run-1")
        assert kept is not None and kept["metadata"]["annotations"]["note"] == big

    with EmulatorThread() as thread:
        asyncio.run(scenario(thread.url))


def test_a_first_list_that_fails_is_tried_again_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's start waits for every slice's first list; one that fails goes again on
    its own (with 13 slices listed at once, failing the whole start for any one of them
    restarted it again and again under API faults)."""
    monkeypatch.setattr(informer, "FIRST_RETRY_SECONDS", 0.05)
    faults = ApiFaults({"unavailable": 1.0}, seed=1)
    with EmulatorThread() as thread, ApiFaultProxy(thread.url, faults) as proxy:
        kube.connect(thread.url).create(_job("churn-run-1"))

        async def scenario() -> list[dict[str, Any]]:
            cache = Cache()
            _, deliver = _recorder(cache)
            async with aiohttp.ClientSession() as session:
                endpoint = kube.connect(proxy.url).endpoint()
                job_informer = Informer(session, endpoint, "Job", OWNER, None, deliver, cache)
                listing = asyncio.create_task(job_informer.first_list())

                async def failed_twice() -> bool:
                    return len(faults.times) >= 2

                await until(failed_twice, timeout=10, interval=0.01, what="two failed lists")
                faults.enabled = False  # the server recovers
                return await asyncio.wait_for(listing, 10)

        with caplog.at_level(logging.WARNING, logger="kubeloop.informer"):
            listed = asyncio.run(scenario())
    assert [j["metadata"]["name"] for j in listed] == ["churn-run-1"]
    lines = [r.getMessage() for r in caplog.records if r.name == "kubeloop.informer"]
    assert len(lines) >= 2
    assert lines[0] == (
        "list Job (kubeloop.io/trainingpipeline) in every namespace: 503 Service Unavailable: "
        "the server is currently unable to respond; again in 0.05 s"
    )
