"""The benchmark models: each fitted once and written twice, as Kubeloop's version folder and
as its peer's model folder, with the very same model file bytes in both.

Kubeloop gets a version folder as the trainer (sklearn joblib, manifest without `modelFormat`)
or a user (`save_version`: xgboost, torchscript) writes it, with the sha256 of every file in
manifest.json; the peer's folder holds a copy of that model file. One V2 body is sent to both.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from kubeloop.formats import Signature
from kubeloop.modelformat import Feature, save_version, write_manifest

__all__ = [
    "DIGITS_FEATURES",
    "Folders",
    "body",
    "write_digits",
    "write_forest",
    "write_hgb",
    "write_linear",
    "write_xgboost",
]

DIGITS_FEATURES = 64  # scikit-learn's bundled digits: 8 x 8 pixels, 0..16


@dataclass(frozen=True)
class Folders:
    """One model written for both servers."""

    version: Path  # Kubeloop's version folder
    peer: Path  # the peer's model folder (its name is the model's name there)
    model_file: str  # the file both load, e.g. model.joblib
    notes: str  # one line for the summary: what the model is, how well it fits


def _tabular(features: int, rows: int, seed: int) -> tuple[np.ndarray[Any, Any], Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] + rng.normal(scale=0.3, size=rows) > 0
    return x, y.astype(int)


def _numeric(features: int, dtype: str = "float64") -> tuple[Feature, ...]:
    return tuple(Feature(f"f{i}", dtype, "numeric") for i in range(features))


def _fresh(root: Path, name: str) -> tuple[Path, Path]:
    version = root / name / "kubeloop" / "versions" / "1"
    if version.exists():
        shutil.rmtree(version)
    version.mkdir(parents=True)
    peer = root / name / "peer" / name
    peer.mkdir(parents=True, exist_ok=True)
    return version, peer


def _sklearn(root: Path, name: str, model: Any, features: int, notes: str) -> Folders:
    """What the trainer writes for a scikit-learn model: model.joblib, trusted manifest."""
    version, peer = _fresh(root, name)
    joblib.dump(model, version / "model.joblib")
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    write_manifest(
        version,
        {
            "version": "1",
            "framework": "sklearn",
            "task": "classification",
            "estimator": type(last).__name__,
            "features": [f.to_dict() for f in _numeric(features)],
            "target": {"name": "label", "classes": [0, 1]},
        },
    )
    shutil.copyfile(version / "model.joblib", peer / "model.joblib")
    return Folders(version, peer, "model.joblib", notes)


def write_hgb(root: Path, *, features: int = 20, seed: int = 0) -> Folders:
    """HistGradientBoostingClassifier(max_iter=100): Kubeloop's compiled tree path."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _tabular(features, 20_000, seed)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x, y)
    notes = f"`HistGradientBoostingClassifier(max_iter=100)`, 20,000 x {features} normal features"
    return _sklearn(root, "hgb", model, features, notes)


def write_forest(root: Path, *, features: int = 20, seed: int = 0) -> Folders:
    """RandomForestClassifier(100 trees, unbounded depth): no compiled path of its own."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = _tabular(features, 20_000, seed)
    model = RandomForestClassifier(n_estimators=100, random_state=seed).fit(x, y)
    depth = max(t.get_depth() for t in model.estimators_)
    notes = (
        f"`RandomForestClassifier(n_estimators=100)` (trees up to depth {depth}), "
        f"20,000 x {features} normal features"
    )
    return _sklearn(root, "forest", model, features, notes)


def write_linear(root: Path, *, features: int = 20, seed: int = 0) -> Folders:
    """Pipeline(StandardScaler, LogisticRegression): two sklearn steps per call."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _tabular(features, 20_000, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    notes = f"`make_pipeline(StandardScaler(), LogisticRegression())`, 20,000 x {features}"
    return _sklearn(root, "linear", model, features, notes)


def write_xgboost(root: Path, *, features: int = 20, seed: int = 0) -> Folders:
    """XGBClassifier(200 trees, depth 6) saved as model.ubj (modelFormat xgboost)."""
    import xgboost

    x, y = _tabular(features, 20_000, seed)
    model = xgboost.XGBClassifier(n_estimators=200, max_depth=6, n_jobs=1, random_state=seed)
    model.fit(x, y)
    version, peer = _fresh(root, "xgboost")
    signature = Signature(_numeric(features), "classification", (0, 1))
    manifest = save_version(version, model, "xgboost", signature, {"version": "1"})
    # Kubeloop saves the bare Booster; MLServer's runtime loads the file as an XGBRegressor
    # unless it carries the sklearn wrapper's attributes (then its `predict` answers P(1), not
    # labels). The classifier's own save_model keeps them: both servers load that one file.
    model.save_model(str(version / "model.ubj"))
    write_manifest(version, {k: v for k, v in manifest.items() if k not in ("format", "files")})
    shutil.copyfile(version / "model.ubj", peer / "model.ubj")
    notes = (
        f"`XGBClassifier(n_estimators=200, max_depth=6)` (binary), 20,000 x {features} normal "
        f"features, xgboost {xgboost.__version__}"
    )
    return Folders(version, peer, "model.ubj", notes)


def _digits_cnn() -> Any:
    """A small CNN over the 8 x 8 digit images; takes [n, 64] pixels, gives [n, 10] softmax."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(32 * 4 * 4, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(-1, 1, 8, 8) / 16.0
            x = torch.relu(self.conv1(x))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.relu(self.fc1(x.flatten(1)))
            return torch.softmax(self.fc2(x), dim=1)

    return DigitsCNN()


def write_digits(root: Path, *, seed: int = 0, epochs: int = 15) -> Folders:
    """The CNN trained briefly on scikit-learn's digits, TorchScript (modelFormat torchscript)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=0.25, random_state=seed
    )
    net = _digits_cnn()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for batch in torch.randperm(len(xs)).split(64):
            optimiser.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log(net(xs[batch]) + 1e-9), ys[batch])
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    version, peer = _fresh(root, "digits")
    signature = Signature(_numeric(DIGITS_FEATURES, "float32"), "classification", tuple(range(10)))
    save_version(version, torch.jit.script(net), "torchscript", signature, {"version": "1"})
    shutil.copyfile(version / "model.torchscript.pt", peer / "model.torchscript.pt")
    notes = (
        "a CNN (conv 16 -> conv 32 -> max-pool -> 64 -> 10, softmax; 8x8 input from [n, 64]) "
        f"trained {epochs} epochs on scikit-learn's digits, held-out accuracy {accuracy:.1%}; "
        f"TorchScript, torch {torch.__version__}"
    )
    return Folders(version, peer, "model.torchscript.pt", notes)


def body(*, features: int, rows: int = 1, seed: int = 1, datatype: str = "FP64") -> bytes:
    """One V2 infer body: a [rows, features] tensor, only the `predict` output asked.

    FP64 rows are standard normal (the tabular models' inputs); FP32 rows are digit images
    (whole pixel values 0..16) drawn from scikit-learn's digits.
    """
    rng = np.random.default_rng(seed)
    if datatype == "FP32":
        from sklearn.datasets import load_digits

        images = load_digits().data
        data = images[rng.choice(len(images), size=rows, replace=False)].ravel().tolist()
    else:
        data = np.round(rng.normal(size=rows * features), 4).tolist()
    doc = {
        "inputs": [
            {"name": "input-0", "shape": [rows, features], "datatype": datatype, "data": data}
        ],
        "outputs": [{"name": "predict"}],
    }
    return json.dumps(doc).encode()
