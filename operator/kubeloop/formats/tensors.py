"""Tensor formats: the trainer's torch MLP (`torch`), `torchscript` and `onnx`.

TorchScript and ONNX models take one float32 matrix [n, inputs] (columns in signature order)
and give [n] or [n, 1] values (regression) or [n, k] class probabilities (classification).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.formats.base import LoadOptions, MatrixFormat, ModelFormat, Signature, SignatureError
from kubeloop.formats.sklearn import refuse_pickle
from kubeloop.modelformat import Prediction, build_mlp, feature_matrix
from kubeloop_sdk.modelfiles import ONNX_FILE, TORCHSCRIPT_FILE

__all__ = [
    "DEVICE_ENV",
    "OnnxFormat",
    "TorchMLP",
    "TorchMLPFormat",
    "TorchScriptFormat",
    "onnx_providers",
    "torch_device",
]

log = logging.getLogger("kubeloop.formats")

DEVICE_ENV = "KUBELOOP_DEVICE"  # "cuda" on GPU serving pods (ModelDeployment resources.gpus)
TORCH_PREPROCESS = "preprocess.joblib"
TORCH_WEIGHTS = "model.pt"


def torch_device() -> str:
    """`cuda` when the pod asks for it (KUBELOOP_DEVICE) and torch sees a GPU, else `cpu`: a
    GPU pod without a usable GPU still serves, on CPU, and says so in its log."""
    if os.environ.get(DEVICE_ENV, "cpu") != "cuda":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    log.warning("%s=cuda but torch sees no GPU: serving on CPU", DEVICE_ENV)
    return "cpu"


def onnx_providers(available: list[str]) -> list[str]:
    """onnxruntime's execution providers: CUDA first on GPU pods where it is offered."""
    wanted = os.environ.get(DEVICE_ENV, "cpu") == "cuda"
    if wanted and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if wanted:
        log.warning("%s=cuda but onnxruntime offers no CUDA provider: ONNX on CPU", DEVICE_ENV)
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class TorchMLP:
    """The trainer's network with the preprocessing and target scale it was trained with."""

    net: Any
    preprocess: Any
    target_scale: tuple[float, float] = (0.0, 1.0)


class TorchMLPFormat(ModelFormat):
    """`preprocess.joblib` + `model.pt` (a state_dict, loaded weights_only) + `architecture`."""

    name = "torch"
    pickled = True  # preprocess.joblib

    def save(self, model: TorchMLP, folder: Path, signature: Signature) -> dict[str, Any]:
        import joblib
        import torch

        torch.save(model.net.state_dict(), folder / TORCH_WEIGHTS)
        joblib.dump(model.preprocess, folder / TORCH_PREPROCESS)
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> TorchMLP:
        refuse_pickle(folder, self.name, options, manifest)
        import joblib
        import torch

        arch = manifest["architecture"]
        # Same dropout as in training: Dropout layers shift the Sequential's indices, and the
        # state_dict keys name those indices.
        net = build_mlp(
            int(arch["inputs"]),
            [int(h) for h in arch["hiddenSizes"]],
            float(arch["dropout"]),
            int(arch["outputs"]),
        )
        state = torch.load(folder / TORCH_WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        preprocess = joblib.load(folder / TORCH_PREPROCESS)
        scale = (float(arch.get("targetMean", 0.0)), float(arch.get("targetStd", 1.0)))
        return TorchMLP(net, preprocess, scale)

    def predict(
        self, model: TorchMLP, signature: Signature, columns: Mapping[str, Any]
    ) -> Prediction:
        import torch

        matrix = feature_matrix(columns, signature.inputs)
        x = torch.from_numpy(np.asarray(model.preprocess.transform(matrix), dtype=np.float32))
        with torch.no_grad():
            out = model.net(x).double()
        if signature.task == "classification":
            proba = torch.softmax(out, dim=1).numpy()
            labels = np.asarray(signature.classes)
            return Prediction(labels[np.argmax(proba, axis=1)], proba)
        mean, std = model.target_scale
        return Prediction(out[:, 0].numpy() * std + mean, None)


class TorchScriptFormat(MatrixFormat):
    """`model.torchscript.pt`: a scripted or traced module (no pickle of user classes)."""

    name = "torchscript"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        import torch

        signature.numeric_only(self.name)
        scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
        torch.jit.save(scripted, str(folder / TORCHSCRIPT_FILE))
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        import torch

        signature.numeric_only(self.name)
        module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(folder / TORCHSCRIPT_FILE), map_location=torch_device()
        )
        module.eval()
        return module

    def scores(self, model: Any, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        import torch

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.inference_mode():
            try:
                out = model(torch.from_numpy(matrix).to(device, non_blocking=True))
            except RuntimeError as exc:  # wrong width: the scripted graph says so
                raise SignatureError(
                    f"the TorchScript module refused a [n, {matrix.shape[1]}] float32 input "
                    f"(one column per signature input): {str(exc).splitlines()[0]}"
                ) from exc
        return np.asarray(out.double().cpu().numpy())


class OnnxFormat(MatrixFormat):
    """`model.onnx`, run by onnxruntime on CPU: input 0 takes the matrix; for a classifier,
    the first [n, k] float output is the probabilities (skl2onnx: `zipmap=False`)."""

    name = "onnx"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        signature.numeric_only(self.name)
        data = model if isinstance(model, bytes) else model.SerializeToString()
        (folder / ONNX_FILE).write_bytes(data)
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        import onnxruntime

        signature.numeric_only(self.name)
        opts = onnxruntime.SessionOptions()
        # onnxruntime ignores OMP_NUM_THREADS, which `kubeloop serve` sets per worker
        threads = os.environ.get("OMP_NUM_THREADS", "")
        opts.intra_op_num_threads = int(threads) if threads.isdigit() else 0  # 0: all cores
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE),
            opts,
            providers=onnx_providers(onnxruntime.get_available_providers()),
        )
        width = session.get_inputs()[0].shape[-1]
        if isinstance(width, int) and width != len(signature.inputs):
            raise SignatureError(
                f"{folder / ONNX_FILE}: input {session.get_inputs()[0].name!r} takes {width} "
                f"columns, but the signature lists {len(signature.inputs)} inputs "
                f"({', '.join(f.name for f in signature.inputs)})"
            )
        return session

    def scores(self, model: Any, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        outputs = model.run(None, {model.get_inputs()[0].name: matrix})
        floats = [np.asarray(o) for o in outputs if np.asarray(o).dtype.kind == "f"]
        two_d = [o for o in floats if o.ndim == 2 and o.shape[1] > 1]
        if two_d:
            return two_d[0]
        if not floats:
            raise SignatureError("the ONNX model gives no float output to predict with")
        return floats[0]
