"""Progress and metrics leave the trainer: log lines, its latest progress served on the pod's
progress endpoint (read over HTTP, as the operator reads it), and `kubeloop_training_*` on a
real Pushgateway."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from kubeloop.workloads.trainer.progress import ProgressReporter

from .conftest import Runner, Spec, mlp_spec


class _Recorder:
    """A Publish that keeps what it was given (and can be told to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.served: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, value: dict[str, Any]) -> bool:
        if self.fail:
            raise OSError("endpoint gone")
        self.served.append(value)
        return True


def test_every_report_is_logged_and_served_tagged_with_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = _Recorder()
    reporter = ProgressReporter(recorder, run_id="4")
    for epoch in range(1, 5):
        reporter.report({"epoch": epoch, "epochs": 4, "percent": epoch * 25, "loss": 0.5})
    assert [v["percent"] for v in recorder.served] == [25, 50, 75, 100]
    assert {v["runId"] for v in recorder.served} == {"4"}
    lines = [line for line in capsys.readouterr().out.splitlines() if "kubeloop-progress" in line]
    assert len(lines) == 4 and lines[1] == "kubeloop-progress epoch=2 epochs=4 percent=50 loss=0.5"


def test_progress_that_cannot_be_served_never_fails_training() -> None:
    ProgressReporter(_Recorder(fail=True), run_id="1").report({"percent": 50})  # logged


def test_the_trainer_serves_its_progress_on_the_pods_endpoint(
    spec_for: Callable[..., Spec], train: Runner, progress_port: int
) -> None:
    """The real trainer, given a progress port as the Job gives it one, serves its last report
    (what the operator reads into status.currentRun.progress); it needs no Kubernetes API."""
    spec = mlp_spec(spec_for, epochs=2)
    code, result = train(
        spec, env={"KUBELOOP_PROGRESS_PORT": str(progress_port), "KUBELOOP_RUN_ID": "4"}
    )
    assert code == 0, result
    url = f"http://127.0.0.1:{progress_port}/progress"
    with urllib.request.urlopen(url, timeout=5) as response:
        served = json.loads(response.read())
    assert served["runId"] == "4"
    assert served["percent"] == 100 and served["epoch"] == 2 and served["epochs"] == 2


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(name, labels): value} of the kubeloop_training_* samples the Pushgateway exposes."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(LABEL.findall(match["labels"]))
            out[(match["name"], labels)] = float(match["value"])
    return out


SAMPLE = re.compile(r"^(?P<name>kubeloop_training_\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
GROUP = {"job": "kubeloop-trainer", "namespace": "ml", "pipeline": "churn", "instance": ""}


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({**GROUP, **labels}.items())


def test_training_metrics_reach_the_pushgateway(
    pushgateway: str, spec_for: Callable[..., Spec], train: Runner
) -> None:
    env = {
        "KUBELOOP_PUSHGATEWAY_URL": pushgateway,
        "KUBELOOP_NAMESPACE": "ml",
        "KUBELOOP_PIPELINE": "churn",
    }
    code, result = train(spec_for(), env=env)
    assert code == 0
    samples = _samples(pushgateway)
    auc = _key("kubeloop_training_metric", metric="roc_auc")
    assert samples[auc] == pytest.approx(result["metrics"]["roc_auc"])
    assert samples[_key("kubeloop_training_success")] == 1
    assert samples[_key("kubeloop_training_model_version")] == 1
    assert samples[_key("kubeloop_training_rows", split="train")] == 1200
    assert samples[_key("kubeloop_training_duration_seconds")] > 0

    # A failed run replaces the group: success drops to 0 and the old metrics go.
    bad = spec_for()
    bad["data"]["target"] = "cancelled"
    code, _ = train(bad, env=env)
    assert code != 0
    samples = _samples(pushgateway)
    assert samples[_key("kubeloop_training_success")] == 0
    assert auc not in samples
