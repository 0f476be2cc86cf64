"""Both bring-your-own examples around the whole loop on `kubeloop local`, through the same
scenario `make demo` runs: the team's own training code (examples/byo/*/train.py, run as the
`trainer` init container between Kubeloop's prepare and publish) -> gate -> served -> drift
check -> retrain on drift -> canary -> promoted, with a real V2 client and 0 failed requests;
the progress the user's code reports shows in `status.currentRun.progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.demo.scenario import CHURN, DIGITS, DemoData, DemoResult, run_scenario

ROOT = Path(__file__).resolve().parents[2]
TP = "kubeloop.io/v1alpha1/trainingpipelines"
TIMEOUT = 1500
EXAMPLES = {
    "xgboost": (ROOT / "examples/byo/xgboost/local.yaml", CHURN, "roc_auc", "custom"),
    "digits": (ROOT / "examples/byo/digits/local.yaml", DIGITS, "accuracy", "torchscript"),
}

# The user's code waits at exit (up to 10 s) until its last progress report was read, as an
# image with `ENV KUBELOOP_PROGRESS_LINGER_SECONDS=10` would: these runs last a second or two,
# less than the operator's time between two reads, and this test checks that what the user's
# code reports reaches the status. By default a finished run does not wait (its record
# replaces its progress at once).
LINGER = {"KUBELOOP_PROGRESS_LINGER_SECONDS": "10"}

pytestmark = [
    pytest.mark.timeout(TIMEOUT + 60),
    pytest.mark.slow,
]  # slow: `make test` starts it first


class ProgressSeen:
    """An observer that records every distinct `currentRun.progress` of the pipeline.

    It watches the pipelines: each status write is an event, so a progress that the run's
    record replaces a moment later is seen too (polling every 0.2 s missed run 1's progress
    when the record followed it within the poll). A watch the server ends is watched again,
    after one read for what happened in between."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def step(self, text: str) -> None:
        print(text, flush=True)

    def _saw(self, body: dict[str, Any] | None) -> None:
        run = ((body or {}).get("status") or {}).get("currentRun") or {}
        progress = run.get("progress")
        if progress and progress not in self.seen:
            self.seen.append(progress)

    async def attach(self, api: KubeApi) -> None:
        async def watch() -> None:
            while True:
                try:
                    self._saw(await api.get(TP, "ml", self.name))
                    async for event in api.watch(TP):
                        body = event.get("object") or {}
                        if (body.get("metadata") or {}).get("name") == self.name:
                            self._saw(body)
                except (ApiError, aiohttp.ClientError) as exc:
                    print(f"progress watch: {exc!r}; watching again", flush=True)
                    await asyncio.sleep(0.2)

        self._task = asyncio.create_task(watch())

    async def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def one_replica(example: Path, folder: Path) -> Path:
    """The example with one serving pod instead of two: the canary (1 stable + 1 canary pod at
    the 50 % step) and the rollout go the same way, with three server processes to start
    instead of six (seconds of CPU each). Two replicas are what test_demo_e2e.py serves."""
    docs = list(yaml.safe_load_all(example.read_text()))
    for doc in docs:
        if doc["kind"] == "ModelDeployment":
            assert doc["spec"]["replicas"] == 2 and doc["spec"]["rollout"]["canary"]["steps"] == [
                50,
                100,
            ]
            doc["spec"]["replicas"] = 1
    out = folder / example.name
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def run_loop(
    example: Path, data: DemoData, name: str
) -> tuple[DemoResult, ProgressSeen, dict[str, Any]]:
    """The scenario's result, the progress seen, and the champion's manifest."""
    root = Path(tempfile.mkdtemp(prefix=f"kubeloop-byo-{name}-"))
    observer = ProgressSeen(name)
    try:
        scenario = run_scenario(
            root / "state",
            observer,
            example=one_replica(example, root),
            data=data,
            workload_env=LINGER,
        )
        result = asyncio.run(asyncio.wait_for(scenario, TIMEOUT))
        champion = Path(result.pipeline["champion"]["uri"].removeprefix("file://"))
        manifest = json.loads((champion / "manifest.json").read_text())
    except BaseException:
        print(f"state, operator and pod logs kept under {root}")
        raise
    shutil.rmtree(root, ignore_errors=True)
    return result, observer, manifest


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_example_goes_around_the_whole_loop(example: str) -> None:
    path, data, metric, model_format = EXAMPLES[example]
    name = next(
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(path.read_text())
        if doc["kind"] == "TrainingPipeline"
    )
    result, progress, manifest = run_loop(path, data, name)

    runs = list(reversed(result.pipeline["runs"]))
    assert [(r["id"], r["trigger"], r["result"], r["modelVersion"]) for r in runs] == [
        ("1", "Create", "Promoted", "1"),
        ("2", "Drift", "Promoted", "2"),
    ]
    assert all(r["metrics"][metric] > 0 for r in runs)
    assert manifest["producedBy"] == "custom-trainer"
    assert manifest["modelFormat"] == model_format

    # The canary moved v1 -> v2 and no request failed in any phase.
    assert result.deployment["modelVersion"] == "2" and result.deployment.get("canary") is None
    assert any(m.startswith("CanaryStep: version 2") for m in result.canary_messages)
    for stats in result.traffic:
        assert stats.failed == 0, (stats.phase, stats.errors[:3])
    assert result.phase("rollout").by_version.get("2", 0) > 0
    assert [c.verdict for c in result.checks] == ["NoDrift", "Drift"]

    # The user's own code reported progress, per run, into the pipeline's status.
    assert {p.get("runId") for p in progress.seen} >= {"1", "2"}, progress.seen
    assert all(p.get("epochs") for p in progress.seen), progress.seen
