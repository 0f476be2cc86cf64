"""examples/byo: each train.py runs as Kubeloop runs it (staged data, a context, a copy of the
SDK alone on PYTHONPATH, a separate process), and what it saved loads through Kubeloop's own
format classes and predicts well. The digits example's kill and resume through Kubeloop's
prepare and publish steps is tests/workloads/trainer/test_custom.py's; its way around the whole
loop, tests/local/test_byo_e2e.py's."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.progress import epochs_reported

import kubeloop_sdk as kl
from kubeloop.formats import LoadOptions, Signature, format_named
from kubeloop.local.demo.datagen import CATEGORICAL, FEATURES, churn_table
from kubeloop.modelformat import Feature

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "byo"
PIXELS = [f"px{i}" for i in range(64)]


def _sdk_copy(tmp_path: Path) -> Path:
    """What Kubeloop's prepare container does: the SDK package, alone, under /kubeloop/sdk."""
    target = tmp_path / "sdk"
    if not target.exists():
        source = Path(kl.__file__).parent
        shutil.copytree(
            source, target / "kubeloop_sdk", ignore=shutil.ignore_patterns("__pycache__")
        )
    return target


def _train(example: Path, context: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(_sdk_copy(tmp_path)),
        "KUBELOOP_CONTEXT": str(context),
        "OMP_NUM_THREADS": "2",
    }
    return subprocess.run(
        [sys.executable, "train.py"],
        cwd=example,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _columns(path: Path, names: list[str]) -> dict[str, Any]:
    table = pq.read_table(path)
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in names}


def _load(folder: Path, signature: Signature, options: LoadOptions) -> tuple[Any, Any]:
    manifest = json_load(folder / kl.MODEL_MANIFEST)
    fmt = format_named(manifest["modelFormat"])
    return fmt, fmt.load(folder, manifest, signature, options)


def json_load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_xgboost_with_its_own_features_serves_through_its_predictor_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import roc_auc_score

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    pq.write_table(churn_table(3200, seed=1), run / "data" / "train.parquet")
    pq.write_table(churn_table(800, seed=2), run / "data" / "validation.parquet")
    features = [
        Feature(n, "string", "categorical")
        if n in CATEGORICAL
        else Feature(n, "float64", "numeric")
        for n in FEATURES
    ]
    context = kl.write_context(
        run / "context.json",
        target="churned",
        features=[f.to_dict() for f in features],
        classes=[0, 1],
        seed=42,
    )
    done = _train(EXAMPLES / "xgboost", context, tmp_path)
    assert done.returncode == 0, done.stderr
    assert epochs_reported(done.stdout)[-1] == 200

    folder = run / "output" / "model"
    assert json_load(folder / kl.MODEL_MANIFEST)["predictor"] == "churn_features:ChurnPredictor"
    signature = Signature(tuple(features), "classification", (0, 1))
    with pytest.raises(Exception, match="not allowed on this server"):
        _load(folder, signature, LoadOptions())  # a server image that does not ship it
    monkeypatch.syspath_prepend(str(EXAMPLES / "xgboost"))  # one that does
    options = LoadOptions(custom_predictors=frozenset({"churn_features:ChurnPredictor"}))
    fmt, model = _load(folder, signature, options)
    validation = run / "data" / "validation.parquet"
    got = fmt.predict(model, signature, _columns(validation, FEATURES))
    labels = pq.read_table(validation).column("churned").to_numpy()
    assert got.probabilities is not None
    assert roc_auc_score(labels, got.probabilities[:, 1]) >= 0.75  # the pipeline's gate
    assert float(np.mean(got.values == labels)) >= 0.75


@pytest.mark.slow
def test_digits_trains_with_ddp_under_torchrun(tmp_path: Path) -> None:
    """Two CPU workers (gloo), as `spec.distributed.workers: 2` runs it: rank 0 alone reports,
    checkpoints and saves the model."""
    run = tmp_path / "run"
    runpy.run_path(str(EXAMPLES / "digits" / "make_data.py"))["main"](
        [str(run / "data"), "--staged"]
    )
    context = kl.write_context(
        run / "context.json", target="label", features=PIXELS, params={"epochs": 2}
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(_sdk_copy(tmp_path)),
        "KUBELOOP_CONTEXT": str(context),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc_per_node", "2", "--no-python", sys.executable, "train.py"),
        ],
        cwd=EXAMPLES / "digits",
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert epochs_reported(done.stdout) == [1, 2]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000001.ckpt",
        "step-00000002.ckpt",
    ]
    assert (run / "output" / "model" / "model.torchscript.pt").is_file()
