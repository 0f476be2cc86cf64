"""The names of the files a model folder holds: one place for the SDK that writes them and
for Kubeloop's format classes (`kubeloop.formats`) that read them.

Kept in the SDK because it imports nothing of Kubeloop; Kubeloop imports the names from here.
"""

from __future__ import annotations

__all__ = [
    "CODE_DIR",
    "JOBLIB_FILE",
    "LIGHTGBM_FILE",
    "MODEL_FORMATS",
    "MODEL_MANIFEST",
    "ONNX_FILE",
    "SKOPS_FILE",
    "TORCHSCRIPT_FILE",
    "XGBOOST_FILE",
]

# What user code writes next to the model files: {"modelFormat", "inputs", "predictor",
# "sdkVersion"}; Kubeloop's publisher reads it and writes the version's manifest.json.
MODEL_MANIFEST = "kubeloop-model.json"

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
XGBOOST_FILE = "model.ubj"
LIGHTGBM_FILE = "model.txt"
SKOPS_FILE = "model.skops"
JOBLIB_FILE = "model.joblib"
# format `custom`: the predictor's own source, shipped with the version (the server runs it only
# where the ModelDeployment allows custom code)
CODE_DIR = "code"

# The formats user code can save (Kubeloop's own `torch` MLP format is the trainer's only).
MODEL_FORMATS = ("custom", "lightgbm", "onnx", "sklearn", "skops", "torchscript", "xgboost")
