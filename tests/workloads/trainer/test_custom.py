"""Custom training code between Kubeloop's prepare and publish steps (docs/byo.md).

The steps of the run's pod, sharing one folder as its /kubeloop: `kubeloop train --prepare`,
then the user's script as its own process with only the staged SDK on its PYTHONPATH (no
Kubeloop package: the SDK must stand alone), then `kubeloop train --publish`. Kubeloop's two
steps run in the test's process with the pod's environment (`train_in_process`: the same entry
point, without a Python start per step); tests/local/test_custom_training.py and
tests/local/test_byo_e2e.py run all three as the containers of real pods. The models are real
(XGBoost, scikit-learn, PyTorch) and the published versions are loaded back the way the server
loads them.
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
from tests.progress import epochs_reported

from kubeloop.formats import LoadOptions
from kubeloop.modelformat import load_predictor

from .conftest import Spec, subprocess_env, train_in_process, write_spec

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

ROOT = Path(__file__).resolve().parents[3]
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
        code = train_in_process(
            ["--spec", str(self.spec_path), step, "--result-path", str(self.result)],
            {k: v for k, v in self.env.items() if k.startswith("KUBELOOP_")},
        )
        text = self.result.read_text()
        assert code == 0 or text, f"exit {code} without a result"
        return code, json.loads(text) if text else None

    def user_env(self) -> dict[str, str]:
        """What the operator gives the user's container (resources/training.py): the SDK
        alone on PYTHONPATH, the context, the run's id."""
        env = {
            k: v for k, v in self.env.items() if not k.startswith("KUBELOOP_") and k != "PYTHONPATH"
        }
        env.update(
            PYTHONPATH=str(self.root / "sdk"),
            KUBELOOP_CONTEXT=str(self.root / "context.json"),
            KUBELOOP_RUN_ID=self.env["KUBELOOP_RUN_ID"],
        )
        return env

    def user_code(self, script: str) -> subprocess.CompletedProcess[str]:
        path = self.root / "train.py"
        path.write_text(textwrap.dedent(script))
        return self.run_script(path)

    def run_script(self, path: Path) -> subprocess.CompletedProcess[str]:
        """The user's container: `python <path>` with the user's environment."""
        return subprocess.run(
            [sys.executable, str(path)],
            env=self.user_env(),
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


# The prepare step as its own process, with scikit-learn and torch unimportable.
_WITHOUT_THE_TRAINER_STACK = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("sklearn", "torch"):
            raise ImportError(f"the prepare step imported {name}")

sys.meta_path.insert(0, Refuse())
from kubeloop.workloads.trainer.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_prepare_starts_without_scikit_learn_or_torch(tmp_path: Path, churn_dir: Path) -> None:
    """Every custom run's pod starts with the prepare step: the built-in trainer's stack is
    seconds of CPU it does not use."""
    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir, trees=5))
    pod.root.mkdir(parents=True)
    argv = ["--spec", str(pod.spec_path), "--prepare", "--result-path", str(pod.result)]
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_TRAINER_STACK, *argv],
        env=pod.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (pod.root / "data" / "train.parquet").is_file()


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
    script = f"""
    import json, kubeloop_sdk as kl
    ctx = kl.context()
    ctx.model_dir.mkdir(parents=True, exist_ok=True)
    (ctx.model_dir / "model.ubj").write_bytes(b"not a booster")
    descriptor = {{"modelFormat": "xgboost", "inputs": {NUMERIC!r}}}
    (ctx.model_dir / kl.MODEL_MANIFEST).write_text(json.dumps(descriptor))
    """
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


# One user script per format: each trains on the numeric columns, saves through the SDK, and
# writes its own offline P(churn) on the validation rows (`offline.npy`) to compare with.
_PRELUDE = f"""
import numpy as np
import kubeloop_sdk as kl

ctx = kl.context()
cols = {NUMERIC!r}
def matrix(split):
    table = kl.read_table(split)
    x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
    return x.astype(np.float32), table.column(ctx.target).to_numpy(zero_copy_only=False)
x, y = matrix("train")
xv, _ = matrix("validation")
"""
_TORCH_NET = """
import torch
torch.manual_seed(ctx.seed)
mean, std = torch.tensor(x.mean(0)), torch.tensor(x.std(0) + 1e-6)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
    def forward(self, rows):
        return torch.softmax(self.body((rows - self.mean) / self.std), dim=1)
net = Net()
opt = torch.optim.Adam(net.parameters(), lr=0.05)
xt, yt = torch.tensor(x), torch.tensor(y.astype(np.int64))
for epoch in range(60):
    opt.zero_grad()
    loss = torch.nn.functional.nll_loss(torch.log(net(xt) + 1e-9), yt)
    loss.backward()
    opt.step()
net.eval()
with torch.no_grad():
    offline = net(torch.tensor(xv))[:, 1].numpy()
"""
FORMAT_SCRIPTS = {
    "xgboost": """
import xgboost as xgb
model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
offline = model.predict_proba(xv)[:, 1]
kl.save_model(model, format="xgboost", inputs=cols)
""",
    "lightgbm": """
import lightgbm as lgb
model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(x, y)
offline = model.predict_proba(xv)[:, 1]
kl.save_model(model, format="lightgbm", inputs=cols)
""",
    "skops": """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
offline = model.predict_proba(xv)[:, 1]
kl.save_model(model, format="skops", inputs=cols)
""",
    "torchscript": _TORCH_NET
    + """
kl.save_model(torch.jit.script(net), format="torchscript", inputs=cols)
""",
    "onnx": """
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
offline = model.predict_proba(xv)[:, 1]
kl.save_model(to_onnx(model, x[:1], options={id(model): {"zipmap": False}}), format="onnx",
              inputs=cols)
""",
    "custom": """
import json, pathlib, sys
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from churn_rules import TenureRule
model = TenureRule.fit(x, y)
offline = model.predict({c: xv[:, i] for i, c in enumerate(cols)})[:, 1]
rules = pathlib.Path(__file__).parent / "churn_rules.py"
kl.save_model(model, format="custom", inputs=cols, code=[rules])
""",
}
# The custom predictor: the team's own code, shipped in the version's code/ folder.
CHURN_RULES = '''
import json
import numpy as np

class TenureRule:
    """P(churn) from a logistic curve over tenure and support calls, fitted by least squares."""

    @classmethod
    def fit(cls, x, y):
        rule = cls()
        design = np.column_stack([np.ones(len(x)), x[:, 0], x[:, 3]])
        rule.coef = np.linalg.lstsq(design, y.astype(float), rcond=None)[0].tolist()
        return rule

    def save(self, folder):
        (folder / "rule.json").write_text(json.dumps(self.coef))

    def load(self, folder):
        self.coef = json.loads((folder / "rule.json").read_text())

    def predict(self, columns):
        a, b, c = self.coef
        tenure = np.asarray(columns["tenure"], float)
        z = a + b * tenure + c * np.asarray(columns["support_calls"], float)
        p = np.clip(z, 0.01, 0.99)
        return np.column_stack([1 - p, p])
'''


@pytest.mark.parametrize("model_format", sorted(FORMAT_SCRIPTS))
def test_each_format_from_user_code_is_published_and_served_like_offline(
    tmp_path: Path, churn_dir: Path, model_format: str
) -> None:
    import tritonclient.http as triton
    from tests.workloads.server.conftest import start_server

    pod = Pod(tmp_path, custom_spec(tmp_path, churn_dir))
    (pod.root).mkdir(parents=True, exist_ok=True)
    (pod.root / "churn_rules.py").write_text(CHURN_RULES)
    script = (
        _PRELUDE
        + FORMAT_SCRIPTS[model_format]
        + "\nnp.save(str(ctx.output_dir / 'offline.npy'), offline)\n"
    )
    code, result = pod.run(script)
    assert code == 0 and result is not None and result["ok"], result
    folder = Path(result["uri"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["modelFormat"] == model_format
    offline = np.load(pod.root / "output" / "offline.npy")

    env = {"KUBELOOP_ALLOW_CUSTOM_CODE": "true"} if model_format == "custom" else {}
    server = start_server(tmp_path, folder, **env)
    try:
        validation = pq.read_table(pod.root / "data" / "validation.parquet")
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        inputs = []
        for column in NUMERIC:
            values = validation.column(column).to_numpy().astype(np.float64)
            tensor = triton.InferInput(column, [len(values)], "FP64")
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        wanted = [triton.InferRequestedOutput("predict_proba", binary_data=False)]
        served = client.infer("churn", inputs, outputs=wanted).as_numpy("predict_proba")
    finally:
        server.stop()
    assert served is not None
    # float32 models see the same float32 rows offline and served.
    np.testing.assert_allclose(served[:, 1], offline, rtol=1e-5, atol=1e-6)


def test_digits_killed_after_epoch_k_resumes_at_k_plus_1_through_prepare(tmp_path: Path) -> None:
    """The example's own train.py dies like a lost node (exit 137) right after epoch 3's
    checkpoint (`stopAfterEpoch`, as its README suggests for trying a resume); the Job's next
    pod's prepare restores the checkpoints from the artifacts, the code goes on at epoch 4, and
    publish scores the TorchScript model it saved."""
    from kubeloop.local.demo.datagen import digits_table

    data = tmp_path / "digits"
    data.mkdir()
    pq.write_table(digits_table(seed=0), data / "part-0.parquet")
    spec = {
        "data": {"train": data.as_uri() + "/", "target": "label"},
        "model": {
            "framework": "custom",
            "task": "classification",
            "params": {"epochs": 6, "stopAfterEpoch": 3},
        },
        "trainer": {"image": "team/digits:1", "command": ["python", "train.py"]},
        "artifacts": (tmp_path / "models").as_uri() + "/",
        "seed": 7,
    }
    script = ROOT / "examples" / "byo" / "digits" / "train.py"
    remote = tmp_path / "models" / "runs" / "1" / "checkpoints"

    first = Pod(tmp_path, spec)
    assert first.kubeloop("--prepare") == (0, None)
    died = first.run_script(script)
    assert died.returncode == 137, died.stderr[-3000:]
    assert epochs_reported(died.stdout) == [1, 2, 3]
    # Only the newest checkpoints are kept in the artifacts.
    assert sorted(p.name for p in remote.iterdir()) == ["step-00000002.ckpt", "step-00000003.ckpt"]
    assert not (first.root / "output" / "model" / "kubeloop-model.json").exists()

    retry = Pod(tmp_path, spec, name="-retry")  # the Job's next pod: a new, empty /kubeloop
    assert retry.kubeloop("--prepare") == (0, None)
    done = retry.run_script(script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming after epoch 3" in done.stdout
    assert epochs_reported(done.stdout) == [4, 5, 6]
    code, result = retry.kubeloop("--publish")
    assert code == 0 and result is not None and result["version"] == "1", result
    assert result["metrics"]["accuracy"] >= 0.9
    folder = Path(result["uri"].removeprefix("file://"))
    assert json.loads((folder / "manifest.json").read_text())["modelFormat"] == "torchscript"


def test_kubeloop_train_alone_refuses_a_custom_spec_instead_of_training_a_default_model(
    tmp_path: Path, churn_dir: Path
) -> None:
    spec_path = write_spec(custom_spec(tmp_path, churn_dir), tmp_path / "spec.yaml")
    result = tmp_path / "result.json"
    code = train_in_process(["--spec", str(spec_path), "--result-path", str(result)], {})
    assert code == 10
    refused = json.loads(result.read_text())
    assert refused["reason"] == "InvalidSpec" and "--prepare" in refused["message"]
    assert versions(tmp_path) == []


def test_the_publish_step_scores_the_champion_on_the_same_rows(
    tmp_path: Path, churn_dir: Path
) -> None:
    code, v1 = Pod(tmp_path, custom_spec(tmp_path, churn_dir, trees=20)).run(
        XGBOOST_SCRIPT.format(NUMERIC=NUMERIC)
    )
    assert code == 0 and v1 is not None
    spec = {
        **custom_spec(tmp_path, churn_dir, trees=2),
        "promotion": {"metric": "roc_auc", "mustBeatChampion": True},
    }
    pod = Pod(tmp_path, spec, run_id="2")
    pod.env.update(KUBELOOP_CHAMPION_VERSION="1", KUBELOOP_CHAMPION_URI=v1["uri"])
    code, v2 = pod.run(XGBOOST_SCRIPT.format(NUMERIC=NUMERIC))
    assert code == 0 and v2 is not None and v2["version"] == "2"
    # Same data and seed, so the same validation rows: the champion scores what it scored
    # when it was published, computed again by the publish step, not by the user's code.
    assert v2["championVersion"] == "1"
    assert v2["championMetrics"] == pytest.approx(v1["metrics"], abs=1e-12)
    assert v2["metrics"] != v1["metrics"]
