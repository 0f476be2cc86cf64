"""kubeloop_sdk.save_model: each format's files land under the names Kubeloop's format
classes read; every folder is loaded back through `kubeloop.formats` and predicts as the
native model does. The folder appears whole or not at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.storage.format_models import CUSTOM, ROWS, Y_CLASS, Y_VALUE, MeanPredictor, X, columns_of

import kubeloop_sdk as kl
from kubeloop.formats import LoadOptions, Signature, format_named
from kubeloop.modelformat import Feature

from .conftest import MakeContext

FEATURES = ["f0", "f1", "f2"]
CLASSES = [0, 1, 2]
ALLOW = LoadOptions(allow_pickle=True, custom_predictors=frozenset({CUSTOM}))


def _classifier_context(make_context: MakeContext) -> kl.Context:
    return make_context(target="y", features=FEATURES, classes=CLASSES)


def _load_and_predict(folder: Path, task: str = "classification") -> tuple[str, Any]:
    """What Kubeloop's publisher does with the folder: the format class named in
    kubeloop-model.json loads it and predicts ROWS."""
    manifest = json.loads((folder / kl.MODEL_MANIFEST).read_text())
    inputs = tuple(Feature(n, "float64", "numeric") for n in manifest["inputs"])
    signature = Signature(inputs, task, tuple(CLASSES) if task == "classification" else None)
    fmt = format_named(manifest["modelFormat"])
    model = fmt.load(folder, manifest, signature, ALLOW)
    return manifest["modelFormat"], fmt.predict(model, signature, columns_of(ROWS))


def _torch_net() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=1)
    ).eval()


def _torch_expected(net: Any) -> Any:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(ROWS.astype(np.float32))).double().numpy()


def torchscript_module() -> tuple[Any, Any]:
    net = _torch_net()
    return net, _torch_expected(net)  # an nn.Module: the SDK scripts it


def torchscript_traced() -> tuple[Any, Any]:
    import torch

    net = _torch_net()
    traced = torch.jit.trace(net, torch.zeros(2, 3))  # type: ignore[no-untyped-call]
    return traced, _torch_expected(net)


def _onnx_proto() -> tuple[Any, Any]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X, Y_CLASS)
    proto = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return proto, model.predict_proba(ROWS.astype(np.float32))


def onnx_proto() -> tuple[Any, Any]:
    return _onnx_proto()


def onnx_bytes() -> tuple[Any, Any]:
    proto, expected = _onnx_proto()
    return proto.SerializeToString(), expected


def xgboost_model() -> tuple[Any, Any]:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1, random_state=0)
    model.fit(X, Y_CLASS)
    return model, model.predict_proba(ROWS.astype(np.float32))


def xgboost_booster() -> tuple[Any, Any]:
    model, expected = xgboost_model()
    return model.get_booster(), expected


def lightgbm_model() -> tuple[Any, Any]:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=4, min_child_samples=5)
    model.set_params(n_jobs=1, verbose=-1)
    model.fit(X, Y_CLASS)
    return model, model.predict_proba(ROWS.astype(np.float32))


def skops_model() -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X, Y_CLASS)
    return model, model.predict_proba(ROWS)


CASES: dict[str, tuple[str, str, Callable[[], tuple[Any, Any]]]] = {
    "torchscript-module": ("torchscript", "model.torchscript.pt", torchscript_module),
    "torchscript-traced": ("torchscript", "model.torchscript.pt", torchscript_traced),
    "onnx-proto": ("onnx", "model.onnx", onnx_proto),
    "onnx-bytes": ("onnx", "model.onnx", onnx_bytes),
    "xgboost-model": ("xgboost", "model.ubj", xgboost_model),
    "xgboost-booster": ("xgboost", "model.ubj", xgboost_booster),
    "lightgbm": ("lightgbm", "model.txt", lightgbm_model),
    "skops": ("skops", "model.skops", skops_model),
    "sklearn": ("sklearn", "model.joblib", skops_model),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_format_loads_back_through_kubeloops_format_class(
    make_context: MakeContext, case: str
) -> None:
    name, file, build = CASES[case]
    ctx = _classifier_context(make_context)
    model, expected = build()
    assert kl.save_model(model, format=name) == ctx.model_dir
    assert sorted(p.name for p in ctx.model_dir.iterdir()) == sorted([file, kl.MODEL_MANIFEST])
    assert json.loads((ctx.model_dir / kl.MODEL_MANIFEST).read_text()) == {
        "modelFormat": name,
        "inputs": FEATURES,
        "sdkVersion": kl.__version__,
    }
    loaded_as, got = _load_and_predict(ctx.model_dir)
    assert loaded_as == name
    np.testing.assert_allclose(got.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert list(got.values) == list(np.argmax(expected, axis=1))


def test_an_onnx_file_is_copied(make_context: MakeContext, tmp_path: Path) -> None:
    ctx = _classifier_context(make_context)
    proto, expected = _onnx_proto()
    source = tmp_path / "exported.onnx"
    source.write_bytes(proto.SerializeToString())
    kl.save_model(source, format="onnx")
    _, got = _load_and_predict(ctx.model_dir)
    np.testing.assert_allclose(got.probabilities, expected, rtol=1e-5, atol=1e-6)


def test_a_custom_predictor_writes_its_files_and_names_its_class(
    make_context: MakeContext,
) -> None:
    ctx = make_context(task="regression", features=FEATURES)
    weights = np.array([0.5, -1.0, 2.0])
    kl.save_model(MeanPredictor(weights), format="custom")
    manifest = json.loads((ctx.model_dir / kl.MODEL_MANIFEST).read_text())
    assert manifest["predictor"] == CUSTOM
    assert sorted(p.name for p in ctx.model_dir.iterdir()) == [kl.MODEL_MANIFEST, "weights.txt"]
    _, got = _load_and_predict(ctx.model_dir, "regression")
    np.testing.assert_allclose(got.values, ROWS @ weights)
    assert Y_VALUE is not None


def test_inputs_name_a_subset_of_the_features(make_context: MakeContext) -> None:
    ctx = _classifier_context(make_context)
    kl.save_model(MeanPredictor(np.ones(3)), format="custom", inputs=["f2", "f0"])
    assert json.loads((ctx.model_dir / kl.MODEL_MANIFEST).read_text())["inputs"] == ["f2", "f0"]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Scripted:
    """A class of this test module: importable as tests.sdk.test_modelsave:Scripted."""


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (Scripted(), {"format": "pickle"}, "unknown model format; known: custom, lightgbm, onnx"),
        (Scripted(), {"format": "onnx", "predictor": "a:B"}, "only format 'custom' has one"),
        (Scripted(), {"format": "custom", "predictor": "no-colon"}, "'module:Class' of a class"),
        (Scripted(), {"format": "custom", "inputs": ["f9"]}, "f9 not among the pipeline's"),
        (Scripted(), {"format": "custom", "inputs": []}, "at least one input"),
        (Scripted(), {"format": "custom", "inputs": ["f0", "f0"]}, "f0 listed twice"),
        (Scripted(), {"format": "custom", "inputs": "f0"}, "a list of column names"),
        (b"\x00", {"format": "xgboost"}, "an xgboost.Booster or a fitted XGBClassifier"),
        (b"\x00", {"format": "lightgbm"}, "a lightgbm.Booster or a fitted LGBMClassifier"),
        (3, {"format": "onnx"}, "onnx.ModelProto, not int"),
        ("missing.onnx", {"format": "onnx"}, "missing.onnx is not a file"),
        (3, {"format": "torchscript"}, "a torch.nn.Module or a ScriptModule, not int"),
    ],
)
def test_wrong_arguments_are_named_and_nothing_is_written(
    make_context: MakeContext, model: Any, kwargs: dict[str, Any], message: str
) -> None:
    ctx = _classifier_context(make_context)
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(")):
        kl.save_model(model, **kwargs)
    assert _entries(ctx.model_dir.parent) == []  # no model, no staging folder left


def test_a_module_torchscript_cannot_compile_asks_for_a_trace(make_context: MakeContext) -> None:
    import torch

    class Varargs(torch.nn.Module):
        def forward(self, *xs: Any) -> Any:
            return xs[0]

    _classifier_context(make_context)
    with pytest.raises(ValueError, match=r"cannot compile Varargs .*torch\.jit\.trace"):
        kl.save_model(Varargs(), format="torchscript")


def test_a_class_of_the_script_itself_cannot_be_served(make_context: MakeContext) -> None:
    _classifier_context(make_context)
    main = type("Churn", (), {"__module__": "__main__"})
    with pytest.raises(ValueError, match=r"defined in your script .*KUBELOOP_CUSTOM_PREDICTORS"):
        kl.save_model(main(), format="custom")


def test_a_new_model_replaces_the_old_one_whole_and_a_failed_save_keeps_it(
    make_context: MakeContext,
) -> None:
    ctx = _classifier_context(make_context)
    kl.save_model(b"onnx bytes", format="onnx")
    kl.save_model(MeanPredictor(np.ones(3)), format="custom")
    assert sorted(p.name for p in ctx.model_dir.iterdir()) == [kl.MODEL_MANIFEST, "weights.txt"]

    class Failing(MeanPredictor):
        def save(self, folder: Path) -> None:
            (folder / "half.bin").write_bytes(b"\x00")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        kl.save_model(Failing(np.ones(3)), format="custom", predictor=CUSTOM)
    assert sorted(p.name for p in ctx.model_dir.iterdir()) == [kl.MODEL_MANIFEST, "weights.txt"]
    assert _entries(ctx.model_dir.parent) == [ctx.model_dir.name]


def test_only_rank_0_writes_the_model(
    make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _classifier_context(make_context)
    monkeypatch.setenv("RANK", "1")
    assert kl.save_model(b"x", format="onnx") is None
    assert not ctx.model_dir.exists()


def test_a_custom_predictor_can_ship_its_code(
    make_context: MakeContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The predictor's module in the version's code/ folder, loaded from there by a server
    that allows custom code (and by nobody else)."""
    source = tmp_path / "src" / "shipped_mean.py"
    source.parent.mkdir()
    source.write_text(
        "import numpy as np\n"
        "class Shipped:\n"
        "    def save(self, folder):\n"
        "        (folder / 'w.txt').write_text('2.0')\n"
        "    def load(self, folder):\n"
        "        self.w = float((folder / 'w.txt').read_text())\n"
        "    def predict(self, columns):\n"
        "        return np.asarray(columns['f0']) * self.w\n"
    )
    monkeypatch.syspath_prepend(str(source.parent))
    from shipped_mean import Shipped  # type: ignore[import-not-found]

    ctx = make_context(task="regression", features=FEATURES)
    (source.parent / "other.py").write_text("")
    with pytest.raises(ValueError, match=r"module 'shipped_mean' is not among other\.py"):
        kl.save_model(Shipped(), format="custom", code=[source.parent / "other.py"])
    with pytest.raises(ValueError, match="only format 'custom' ships"):
        kl.save_model(b"x", format="onnx", code=[source])
    kl.save_model(Shipped(), format="custom", code=[source])
    assert sorted(str(p.relative_to(ctx.model_dir)) for p in ctx.model_dir.rglob("*.*")) == [
        "code/shipped_mean.py",
        kl.MODEL_MANIFEST,
        "w.txt",
    ]
    manifest = json.loads((ctx.model_dir / kl.MODEL_MANIFEST).read_text())
    assert manifest["predictor"] == "shipped_mean:Shipped"
    signature = Signature(tuple(Feature(n, "float64", "numeric") for n in FEATURES), "regression")
    fmt = format_named("custom")
    with pytest.raises(Exception, match="allowCustomCode"):
        fmt.load(ctx.model_dir, manifest, signature, LoadOptions())
    model = fmt.load(ctx.model_dir, manifest, signature, LoadOptions(allow_custom_code=True))
    got = fmt.predict(model, signature, columns_of(ROWS))
    np.testing.assert_allclose(got.values, ROWS[:, 0] * 2.0)
