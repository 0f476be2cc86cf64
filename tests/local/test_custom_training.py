"""A team's own training code on `kubeloop local`: the real operator builds the run's pod
(prepare -> the user's code -> publish), the pod runner runs its three containers, and the
pipeline's status shows what happened — progress from the user's code while it runs, a
promoted version when it succeeds, the code's exit code and last words when it fails.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.polling import until

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.stack import LocalStack, apply_objects
from kubeloop.local.demo.datagen import churn_table

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

TP = "kubeloop.io/v1alpha1/trainingpipelines"
NAMESPACE = "ml"
TIMEOUT = 240

GOOD = """
import os, pathlib, time
import numpy as np
import xgboost as xgb
import kubeloop_sdk as kl

ctx = kl.context()
cols = ["tenure", "monthly_charges", "total_charges", "support_calls"]
table = kl.read_table("train")
x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
y = table.column(ctx.target).to_numpy(zero_copy_only=False)
kl.report(epoch=1, epochs=3, loss=0.61)
# The test lets the run go on once it has seen this progress in the pipeline's status.
gate = pathlib.Path(os.environ["GATE"])
while not gate.exists():
    time.sleep(0.05)
model = xgb.XGBClassifier(n_estimators=int(ctx.params["trees"]), max_depth=3).fit(x, y)
kl.report(epoch=3, epochs=3, loss=0.4)
kl.save_model(model, format="xgboost", inputs=cols)
"""

BAD = """
import sys
print("epoch 1: loss 0.52")
print("epoch 2: loss went NaN, giving up", file=sys.stderr)
sys.exit(1)
"""


def pipeline(name: str, root: Path, script: str, **trainer: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "data": {"train": (root / "data").as_uri() + "/", "target": "churned"},
            "model": {"framework": "custom", "task": "classification", "params": {"trees": 20}},
            "trainer": {
                "image": "registry.example.com/team/churn:1",
                "command": ["python", script],
                **trainer,
            },
            "artifacts": (root / "models" / name).as_uri() + "/",
            "promotion": {"metric": "accuracy", "minimum": 0.6},
            "runPolicy": {"backoffLimit": 0},
        },
    }


async def status(api: KubeApi, name: str) -> dict[str, Any]:
    found: dict[str, Any] = ((await api.get(TP, NAMESPACE, name)) or {}).get("status") or {}
    return found


async def test_custom_code_runs_reports_progress_and_is_published_or_fails_with_its_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(churn_table(1200, seed=5), tmp_path / "data" / "part-0.parquet")
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    # As with `kubeloop local` started in a project folder: the image is ignored and the
    # command runs in that folder, so relative paths name the team's files. (Absolute paths
    # under /tmp would not do: /tmp is the pod's own emptyDir.)
    monkeypatch.chdir(tmp_path)
    gate = tmp_path / "gate"
    objects = [
        pipeline("good", tmp_path, "good.py", env=[{"name": "GATE", "value": "gate"}]),
        pipeline("bad", tmp_path, "bad.py"),
    ]
    async with LocalStack(tmp_path / "state", operator_env={"KUBELOOP_RESYNC_SECONDS": "1"}) as (
        stack
    ):
        api = stack.api
        assert isinstance(api, KubeApi)
        await apply_objects(api, objects)

        async def progress() -> dict[str, Any] | None:
            run = (await status(api, "good")).get("currentRun") or {}
            seen = run.get("progress") or {}
            return seen if seen.get("epoch") == 1 else None

        seen = await until(progress, TIMEOUT, "the user code's progress in currentRun.progress")
        gate.touch()

        async def finished(name: str) -> dict[str, Any] | None:
            runs = (await status(api, name)).get("runs") or []
            return runs[0] if runs else None

        failed = await until(lambda: finished("bad"), TIMEOUT, "the failed run's record")
        promoted = await until(lambda: finished("good"), TIMEOUT, "the good run's record")
        champion = (await status(api, "good")).get("champion") or {}
        events = [
            e
            for e in await api.list("v1/events", NAMESPACE)
            if (e.get("involvedObject") or {}).get("name") == "bad"
        ]

    assert seen == {**seen, "epoch": 1, "epochs": 3, "percent": 33, "runId": "1"}, seen
    assert seen["loss"] == 0.61
    assert promoted["result"] == "Promoted", promoted
    assert champion["version"] == "1" and champion["metrics"]["accuracy"] >= 0.6
    manifest = json.loads(
        (Path(champion["uri"].removeprefix("file://")) / "manifest.json").read_text()
    )
    assert manifest["producedBy"] == "custom-trainer"
    assert manifest["trainer"]["image"] == "registry.example.com/team/churn:1"

    assert failed["result"] == "Failed", failed
    assert "your training code exited with code 1" in failed["message"], failed
    assert "loss went NaN" in failed["message"], failed
    assert not (tmp_path / "models" / "bad" / "versions").exists()
    assert any("exited with code 1" in e.get("message", "") for e in events), events
