"""The watch cache (controller/cache.py): which reads it may answer, newest version wins,
what it keeps of Jobs and Pods."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.controller.cache import Cache, trimmed

OWNER = "kubeloop.io/trainingpipeline"


def _obj(kind: str, name: str, rv: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ml", "resourceVersion": rv, "labels": labels or {}}
    return {"kind": kind, "metadata": meta, "status": {"rv": rv}}


def _cache() -> Cache:
    cache = Cache()
    cache.watch("TrainingPipeline")
    cache.watch("Job", OWNER)
    return cache


@pytest.mark.parametrize(
    ("kind", "labels", "covered"),
    [
        ("TrainingPipeline", None, True),
        ("Job", None, False),  # Jobs without our label are not watched
        ("Job", {"job-name": "x"}, False),
        ("Job", {OWNER: "p", "job-name": "x"}, True),
        ("Pod", {OWNER: "p"}, False),
    ],
)
def test_a_read_is_answered_only_inside_a_watched_slice(
    kind: str, labels: dict[str, str] | None, covered: bool
) -> None:
    assert _cache().covers(kind, labels) is covered


@pytest.mark.parametrize(
    ("versions", "kept"),
    [(["5", "7"], "7"), (["7", "5"], "7"), (["7", "7"], "7"), (["x", "5"], "5")],
)
def test_the_newest_version_wins(versions: list[str], kept: str) -> None:
    cache = _cache()
    for rv in versions:
        cache.observed(_obj("TrainingPipeline", "p", rv))
    found = cache.get("TrainingPipeline", "ml", "p")
    assert found is not None and found["status"]["rv"] == kept


def test_a_version_kept_already_is_not_taken_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch event that echoes the operator's own write (its answer kept first) costs no
    second encoding: the body is not even trimmed."""
    cache = _cache()
    cache.observed(_obj("TrainingPipeline", "p", "7"))
    trims: list[str] = []
    monkeypatch.setattr("kubeloop.controller.cache.trimmed", lambda kind, body: trims.append(kind))
    cache.observed(_obj("TrainingPipeline", "p", "7"))
    cache.observed(_obj("TrainingPipeline", "p", "6"))
    assert trims == []
    found = cache.get("TrainingPipeline", "ml", "p")
    assert found is not None and found["status"]["rv"] == "7"


def test_list_by_owner_label_and_forget() -> None:
    cache = _cache()
    cache.observed(_obj("Job", "p-run-1", "1", {OWNER: "p"}))
    cache.observed(_obj("Job", "q-run-1", "2", {OWNER: "q"}))
    cache.observed(_obj("Job", "other", "3", {"app": "x"}))  # outside every slice
    assert [j["metadata"]["name"] for j in cache.list("Job", "ml", {OWNER: "p"})] == ["p-run-1"]
    assert cache.get("Job", "ml", "other") is None
    cache.observed(_obj("Job", "q-run-1", "4", {"app": "x"}))  # its owner label removed
    assert cache.list("Job", "ml", {OWNER: "q"}) == []
    cache.forget("Job", "ml", "p-run-1")
    assert cache.list("Job", "ml", {OWNER: "p"}) == [] and len(cache) == 0


def test_reads_are_copies() -> None:
    cache = _cache()
    cache.observed(_obj("TrainingPipeline", "p", "1"))
    found = cache.get("TrainingPipeline", "ml", "p")
    assert found is not None
    found["status"]["rv"] = "changed"
    assert cache.get("TrainingPipeline", "ml", "p")["status"]["rv"] == "1"  # type: ignore[index]


def test_jobs_and_pods_are_kept_without_what_no_reader_needs() -> None:
    job = {
        "kind": "Job",
        "metadata": {"name": "j", "managedFields": [{}]},
        "spec": {"suspend": True, "template": {"spec": {}}},
    }
    assert trimmed("Job", job) == {
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"suspend": True},
    }
    container = {"name": "c", "image": "i", "env": [], "ports": [{"name": "progress"}]}
    pod = {"kind": "Pod", "metadata": {}, "spec": {"containers": [container], "volumes": []}}
    assert trimmed("Pod", pod)["spec"] == {
        "initContainers": [],
        "containers": [{"name": "c", "ports": [{"name": "progress"}]}],
    }


@pytest.mark.parametrize(
    ("cached", "listed", "listed_at", "dropped"),
    [
        # a deleted Job the watch never reported: gone from the list, older than it
        ({"a": "5", "b": "6"}, ["a"], 10, ["b"]),
        # created after the list was taken (the watch brought it): newer than the list, kept
        ({"a": "5", "b": "12"}, ["a"], 10, []),
        # a version that is not a number cannot be compared: kept
        ({"a": "5", "b": "x"}, ["a"], 10, []),
        # a list without a resourceVersion drops nothing
        ({"a": "5", "b": "6"}, ["a"], None, []),
        ({"a": "5"}, ["a"], 10, []),
    ],
)
def test_prune_drops_what_a_fresh_list_no_longer_holds(
    cached: dict[str, str], listed: list[str], listed_at: int | None, dropped: list[str]
) -> None:
    cache = _cache()
    for name, rv in cached.items():
        cache.observed(_obj("Job", name, rv, {OWNER: "p"}))
    cache.observed(_obj("TrainingPipeline", "p", "1"))  # another slice: untouched
    assert cache.slice_namespaces("Job", OWNER) == ["ml"]
    gone = cache.prune("Job", "ml", OWNER, listed, listed_at)
    assert [(j["metadata"]["name"], j["metadata"]["labels"]) for j in gone] == [
        (name, {OWNER: "p"}) for name in dropped
    ]
    kept = sorted(set(cached) - set(dropped))
    assert [j["metadata"]["name"] for j in cache.list("Job", "ml", {OWNER: "p"})] == kept
    assert cache.get("TrainingPipeline", "ml", "p") is not None


@pytest.mark.parametrize(
    ("kept_rv", "deleted_rv", "stays"),
    [
        ("7", 5, True),  # re-created under the name and seen already: a late DELETED of the old
        ("5", 5, False),  # this very object deleted
        ("4", 5, False),  # an older version kept: it is gone too
        ("7", None, False),  # our own delete names no version
    ],
)
def test_a_deletion_drops_only_the_version_it_names_or_older(
    kept_rv: str, deleted_rv: int | None, stays: bool
) -> None:
    cache = _cache()
    cache.observed(_obj("Job", "churn-run-1", kept_rv, {OWNER: "p"}))
    cache.forget("Job", "ml", "churn-run-1", deleted_rv)
    assert (cache.get("Job", "ml", "churn-run-1") is not None) is stays
    assert len(cache.list("Job", "ml", {OWNER: "p"})) == (1 if stays else 0)
