"""bench/operator's pure helpers, table-tested: how the counting proxy names a request, which
Jobs are run Jobs, and the percentile the edit latency is reported by."""

from __future__ import annotations

from typing import Any

import pytest
from bench.apicount import classify
from bench.operator_bench import combine, percentile
from bench.operator_jobs import is_run_job

_TP = "/apis/kubeloop.io/v1alpha1/namespaces/ml/trainingpipelines"


@pytest.mark.parametrize(
    ("method", "path", "query", "want"),
    [
        ("GET", f"{_TP}/churn", {}, ("get", "trainingpipelines")),
        ("PATCH", f"{_TP}/churn/status", {}, ("patch", "trainingpipelines/status")),
        ("GET", _TP, {"watch": "true"}, ("watch", "trainingpipelines")),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs", {"labelSelector": "a=b"}, ("list", "jobs")),
        ("POST", "/apis/batch/v1/namespaces/ml/jobs", {}, ("create", "jobs")),
        ("POST", "/api/v1/namespaces/ml/events", {}, ("create", "events")),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ml/leases/op", {}, ("update", "leases")),
        ("DELETE", "/api/v1/namespaces/ml/pods/p", {}, ("delete", "pods")),
        ("GET", "/api/v1/namespaces", {}, ("list", "namespaces")),
        ("GET", "/api/v1/namespaces/ml", {}, ("get", "namespaces")),
        ("GET", "/apis", {}, ("get", "discovery")),
        ("GET", "/apis/kubeloop.io/v1alpha1", {}, ("get", "discovery")),
        ("GET", "/version", {}, ("get", "discovery")),
    ],
)  # fmt: skip
def test_classify(method: str, path: str, query: dict[str, str], want: tuple[str, str]) -> None:
    assert classify(method, path, query) == want


@pytest.mark.parametrize(
    ("name", "want"),
    [("tp-0001-run-1", True), ("a-run-12", True), ("tp-0001-registry-1", False),
     ("tp-run-x", False), ("-run-1", False)],
)  # fmt: skip
def test_is_run_job(name: str, want: bool) -> None:
    assert is_run_job(name) is want


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [([], 99, None), ([3.0], 50, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
     ([float(i) for i in range(1, 101)], 99, 99.0), ([float(i) for i in range(1, 51)], 99, 50.0)],
)  # fmt: skip
def test_percentile(values: list[float], q: float, want: float | None) -> None:
    assert percentile(values, q) == want


def _burst(seconds: float, complete: bool = True, rss: float = 100.0) -> dict[str, Any]:
    return {"count": 1000, "seconds": seconds, "complete": complete, "rss_mib": rss}


@pytest.mark.parametrize(
    ("seconds", "median"),
    [([5.0], 5.0), ([6.0, 4.0, 5.0], 5.0), ([4.0, 6.0], 4.0), ([3.0, 9.0, 4.0, 5.0], 4.0)],
)
def test_combine_takes_the_median_time_and_the_last_rounds_other_figures(
    seconds: list[float], median: float
) -> None:
    rounds = [_burst(s, rss=100.0 + k) for k, s in enumerate(seconds)]
    combined = combine(rounds)
    assert combined["seconds"] == median
    assert combined["rounds"] == seconds
    assert combined["jobs_per_second"] == round(1000 / median, 1)
    assert combined["rss_mib"] == rounds[-1]["rss_mib"]
    assert combined["complete"]


def test_combine_is_incomplete_when_any_round_is() -> None:
    assert not combine([_burst(4.0), _burst(5.0, complete=False), _burst(6.0)])["complete"]
