"""Custom training code between Kubeloop's prepare and publish steps (docs/byo.md).

Each step runs as its own process, as each container of the run's pod does: `kubeloop train
--prepare`, then the user's script with only the staged SDK on its PYTHONPATH (no Kubeloop
package: the SDK must stand alone), then `kubeloop train --publish`. The models are real
(XGBoost, scikit-learn) and the published versions are loaded back the way the server loads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from kubeloop.formats import LoadOptions
from kubeloop.modelformat import load_predictor

from .conftest import Spec, run_cli, subprocess_env, write_spec

NUMERIC = ["tenure", "monthly_charges", "total_charges", "support_calls"]
UID = "5f0c1c9e-0000-4000-8000-00000000c0de"

XGBOOST_SCRIPT = """
import kubeloop_sdk as kl
import numpy as np
import xgboost as xgb

ctx = kl.context()
table = kl.read_table("train")
cols = {NUMERIC!r}
x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
y = table.column(ctx.target).to_numpy(zero_copy_only=False)
model = xgb.XGBClassifier(n_estimators=int(ctx.params.get("trees", 20)), max_depth=3,
                          random_state=ctx.seed)
model.fit(x, y)
kl.report(percent=90)
kl.log_metrics({{"train_accuracy": float((model.predict(x) == y).mean())}})
kl.save_model(model, format="xgboost", inputs=cols)
"""


def custom_spec(tmp_path: Path, churn_dir: Path, **params: Any) -> Spec:
    return {
        "data": {"train": churn_dir.as_uri() + "/", "target": "churned"},
        "model": {"framework": "custom", "task": "classification", "params": params},
        "trainer": {"image": "team/churn-xgb:1", "command": ["python", "train.py"]},
        "artifacts": (tmp_path / "models").as_uri() + "/",
        "seed": 7,
    }


class Pod:
    """The three containers of one run's pod, sharing `root` as their /kubeloop."""

    def __init__(
        self, tmp_path: Path, spec: Spec, run_id: str = "1", uid: str = UID, name: str = ""
    ) -> None:
        self.root = tmp_path / f"pod-{run_id}-{uid[-4:]}{name}"
        self.spec_path = write_spec(spec, tmp_path / "spec.yaml")
        self.result = self.root / "termination-log"
        self.env = subprocess_env(
            KUBELOOP_DIR=str(self.root),
            KUBELOOP_RUN_ID=run_id,
            KUBELOOP_PIPELINE="churn",
            KUBELOOP_PIPELINE_UID=uid,
            KUBELOOP_NAMESPACE="ml",
            KUBELOOP_IMAGE="team/churn-xgb:1",
            KUBELOOP_WORK_DIR=str(self.root / "scratch"),
        )

    def kubeloop(self, step: str) -> tuple[int, dict[str, Any] | None]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.result.write_text("")
        done = run_cli(
            ["train", "--spec", str(self.spec_path), step, "--result-path", str(self.result)],
            self.env,
        )
        text = self.result.read_text()
        assert done.returncode == 0 or text, done.stderr[-2000:]
        return done.returncode, json.loads(text) if text else None

    def user_code(self, script: str) -> subprocess.CompletedProcess[str]:
        path = self.root / "train.py"
        path.write_text(textwrap.dedent(script))
        env = {
            k: v for k, v in self.env.items() if not k.startswith("KUBELOOP_") and k != "PYTHONPATH"
        }
        # What the operator gives the user's container (resources/training.py): the SDK alone.
        env.update(
            PYTHONPATH=str(self.root / "sdk"),
            KUBELOOP_CONTEXT=str(self.root / "context.json"),
            KUBELOOP_RUN_ID=self.env["KUBELOOP_RUN_ID"],
        )
        return subprocess.run(
            [sys.executable, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def run(self, script: str) -> tuple[int, dict[str, Any] | None]:
        code, result = self.kubeloop("--prepare")
        assert (code, result) == (0, None)
        user = self.user_code(script)
        assert user.returncode == 0, user.stderr[-3000:]
        return self.kubeloop("--publish")


def versions(tmp_path: Path) -> list[str]:
    folder = tmp_path / "models" / "versions"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_prepare_stages_the_split_the_sdk_and_the_context(tmp_path: Path, churn_dir: Path) -> None:
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir, trees=5))
    assert pod.kubeloop("--prepare") == (0, None)
    context = json.loads((pod.root / "context.json").read_text())
    assert context["params"] == {"trees": 5} and context["seed"] == 7
    assert context["task"] == "classification" and context["classes"] == [0, 1]
    assert [f["name"] for f in context["features"]][:4] == NUMERIC
    train = pq.read_table(pod.root / "data" / "train.parquet")
    validation = pq.read_table(pod.root / "data" / "validation.parquet")
    assert train.num_rows + validation.num_rows == 1500
    assert context["rows"] == {"train": train.num_rows, "validation": validation.num_rows}
    assert (pod.root / "sdk" / "kubeloop_sdk" / "__init__.py").is_file()


def test_xgboost_code_is_scored_and_published_by_kubeloop(tmp_path: Path, churn_dir: Path) -> None:
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir, trees=20))
    code, result = pod.run(XGBOOST_SCRIPT.format(NUMERIC=NUMERIC))
    assert code == 0 and result is not None, result
    assert result["ok"] and result["version"] == "1"
    folder = Path(result["uri"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["modelFormat"] == "xgboost"
    assert manifest["producedBy"] == "custom-trainer"
    assert [f["name"] for f in manifest["signature"]["inputs"]] == NUMERIC
    assert manifest["trainer"]["image"] == "team/churn-xgb:1"
    assert set(manifest["reportedMetrics"]) == {"train_accuracy"}
    assert 0.6 < manifest["metrics"]["accuracy"] <= 1.0
    assert (folder / "profile.json").is_file() and "kubeloop-model.json" not in manifest["files"]

    # Served the way the server loads it: checksums verified, then the format class.
    predictor = load_predictor(folder, LoadOptions())
    validation = pq.read_table(pod.root / "data" / "validation.parquet")
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(folder / "model.ubj"))
    x = np.column_stack([validation.column(c).to_numpy() for c in NUMERIC]).astype(np.float32)
    offline = booster.predict(xgb.DMatrix(x))
    served = predictor.predict({c: validation.column(c).to_numpy() for c in NUMERIC})
    assert served.probabilities is not None
    np.testing.assert_allclose(served.probabilities[:, 1], offline, rtol=1e-6)
    labels = validation.column("churned").to_numpy()
    assert manifest["metrics"]["accuracy"] == pytest.approx(
        float((served.values == labels).mean()), abs=1e-9
    )


def test_code_that_saves_no_model_fails_the_run_without_a_version(
    tmp_path: Path, churn_dir: Path
) -> None:
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir))
    code, result = pod.run("import kubeloop_sdk as kl\nkl.report(percent=100)\n")
    assert code == 40 and result is not None
    assert result["reason"] == "NoModelWritten" and "save_model" in result["message"]
    assert versions(tmp_path) == []


def test_a_model_file_that_does_not_load_fails_the_run_naming_the_format(
    tmp_path: Path, churn_dir: Path
) -> None:
    script = """
    import json, kubeloop_sdk as kl
    ctx = kl.context()
    ctx.model_dir.mkdir(parents=True, exist_ok=True)
    (ctx.model_dir / "model.ubj").write_bytes(b"not a booster")
    (ctx.model_dir / kl.MODEL_MANIFEST).write_text(json.dumps({{"modelFormat": "xgboost", "inputs": {NUMERIC!r}}}))
    """.format(NUMERIC=NUMERIC)
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir))
    code, result = pod.run(script)
    assert code == 41 and result is not None
    assert result["reason"] == "ModelDoesNotLoad" and "'xgboost'" in result["message"]
    assert versions(tmp_path) == []


def test_a_model_that_does_not_fit_its_signature_is_refused(
    tmp_path: Path, churn_dir: Path
) -> None:
    # Trained on two columns, declared on four: the publish step finds out before publishing.
    script = XGBOOST_SCRIPT.format(NUMERIC=NUMERIC[:2]).replace(
        "inputs=cols", f"inputs={NUMERIC!r}"
    )
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir))
    code, result = pod.run(script)
    assert code == 42 and result is not None, result
    assert result["reason"] == "SignatureMismatch"
    assert "tenure" in result["message"]
    assert versions(tmp_path) == []


def test_checkpoints_come_back_to_the_same_run_only(tmp_path: Path, churn_dir: Path) -> None:
    spec = custom_spec(tmp_path, churn_dir)
    save = """
    import kubeloop_sdk as kl
    kl.save_checkpoint(b"epoch-3-state", step=3)
    """
    first = Pod(tmp_path, spec)
    assert first.kubeloop("--prepare") == (0, None)
    assert first.user_code(save).returncode == 0
    load = """
    import sys, kubeloop_sdk as kl
    found = kl.load_checkpoint()
    print("resumed", found.step if found else None)
    sys.exit(0 if found is None or found.data == b"epoch-3-state" else 3)
    """
    retry = Pod(tmp_path, spec, name="-retry")  # the run's next pod: its emptyDir is new
    assert retry.kubeloop("--prepare") == (0, None)
    assert "resumed 3" in retry.user_code(load).stdout
    other = Pod(tmp_path, spec, uid="5f0c1c9e-0000-4000-8000-00000000beef")  # re-created pipeline
    assert other.kubeloop("--prepare") == (0, None)
    assert "resumed None" in other.user_code(load).stdout
