"""Progress and metrics leave the trainer: log lines, the status patch of its own
TrainingPipeline (against the emulated API server, through the real kubernetes client and a
kubeconfig), and `kubeloop_training_*` on a real Pushgateway."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.workloads.trainer.progress import KubernetesStatusPatcher, ProgressReporter
from kubeloop_sdk.progress import progress_patch_body

from .conftest import Runner, Spec, mlp_spec

RESOURCE = "kubeloop.io/v1alpha1/trainingpipelines"


def test_the_patch_body_holds_only_the_progress_fields_and_tests_the_run() -> None:
    body = progress_patch_body(
        {"epoch": 3, "epochs": 10, "loss": 0.25, "valLoss": 0.3, "percent": 130, "etaSeconds": 7},
        "4",
        now=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )
    assert body == [
        {"op": "test", "path": "/status/currentRun/id", "value": "4"},
        {
            "op": "add",
            "path": "/status/currentRun/progress",
            "value": {
                "epoch": 3,
                "epochs": 10,
                "loss": 0.25,
                "percent": 100,
                "etaSeconds": 7,
                "updatedAt": "2026-11-23T10:00:00Z",
                "runId": "4",
            },
        },
    ]


class _Recorder:
    """A StatusPatcher that keeps what it was sent (and can be told to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail

    def patch(self, namespace: str, name: str, body: list[dict[str, Any]]) -> None:
        self.sent.append((namespace, name, body))
        if self.fail:
            raise ConnectionError("API server down")


def test_patches_are_throttled_but_the_last_one_always_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = _Recorder()
    reporter = ProgressReporter("ml", "churn", recorder, interval=60)
    for epoch in range(1, 5):
        reporter.report({"epoch": epoch, "epochs": 4, "percent": epoch * 25, "loss": 0.5})
    percents = [body[-1]["value"]["percent"] for _, _, body in recorder.sent]
    assert percents == [25, 100]
    assert recorder.sent[0][:2] == ("ml", "churn")
    lines = [line for line in capsys.readouterr().out.splitlines() if "kubeloop-progress" in line]
    assert len(lines) == 4 and lines[1] == "kubeloop-progress epoch=2 epochs=4 percent=50 loss=0.5"


def test_a_failing_patch_never_fails_training() -> None:
    reporter = ProgressReporter("ml", "churn", _Recorder(fail=True), interval=0)
    reporter.report({"percent": 50})  # logged, not raised


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """The emulated API server and a kubeconfig pointing at it."""
    from kubeloop.local.cluster.emulator import EmulatorThread

    with EmulatorThread() as thread:
        kubeconfig = tmp_path_factory.mktemp("kube") / "config"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "e", "cluster": {"server": thread.url}}],
                    "users": [{"name": "trainer", "user": {"token": "unused"}}],
                    "contexts": [{"name": "e", "context": {"cluster": "e", "user": "trainer"}}],
                    "current-context": "e",
                }
            )
        )
        yield thread, kubeconfig


def test_the_trainer_patches_its_pipelines_status_through_the_api(
    api_server: tuple[Any, Path],
    spec_for: Callable[..., Spec],
    train: Runner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread, kubeconfig = api_server
    spec = mlp_spec(spec_for, epochs=2)
    pipeline = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {**spec, "artifacts": "s3://models/churn/"},
    }
    thread.call(thread.emulator.create_object(pipeline))
    thread.call(
        thread.emulator.patch_object(
            RESOURCE,
            "ml",
            "churn",
            # The fields the CRD requires, as the operator writes them.
            {
                "status": {
                    "currentRun": {
                        "id": "4",
                        "job": "churn-run-4",
                        "trigger": "Manual",
                        "startedAt": "2026-11-30T00:00:00Z",
                    }
                }
            },
            subresource="status",
        )
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod: use KUBECONFIG
    code, result = train(
        spec,
        env={
            "KUBECONFIG": str(kubeconfig),
            "KUBELOOP_PROGRESS_PATCH": "true",
            "KUBELOOP_NAMESPACE": "ml",
            "KUBELOOP_PIPELINE": "churn",
            "KUBELOOP_RUN_ID": "4",
        },
    )
    assert code == 0, result
    stored = thread.call(lambda: thread.emulator.get_object(RESOURCE, "ml", "churn"))
    current = stored["status"]["currentRun"]
    assert current["id"] == "4"  # only the progress is written: the operator's fields stay
    assert current["progress"]["percent"] == 100 and current["progress"]["epoch"] == 2
    assert current["progress"]["runId"] == "4"
    assert stored["spec"]["artifacts"] == "s3://models/churn/"  # the spec is never written


def test_the_kubernetes_patcher_reads_kubeconfig_outside_a_pod(
    api_server: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, kubeconfig = api_server
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    patcher = KubernetesStatusPatcher()
    assert patcher.api.api_client.configuration.host == thread.url


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
