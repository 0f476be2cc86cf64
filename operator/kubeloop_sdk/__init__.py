"""Kubeloop's SDK for training code you bring (docs/byo.md): standard library only.

    import kubeloop_sdk as kl

    ctx = kl.context()                      # params, seed, task, features, paths, rank
    ctx.trial                               # Trial(number, budget...) in a search, else None
    table = kl.read_table("train")          # pyarrow.Table (pyarrow in your image)
    start = kl.load_checkpoint()            # Checkpoint(step, data, path) or None
    kl.report(epoch=3, epochs=8, loss=0.4)  # log line + status.currentRun.progress
    kl.save_checkpoint(state_bytes, step=3) # resume point, copied to the checkpoint URI
    kl.log_metrics({"train_loss": 0.4})     # recorded next to Kubeloop's own metrics
    kl.save_model(module, format="torchscript")

Kubeloop copies this package into the run's pod (PYTHONPATH=/kubeloop/sdk): your image needs
Python 3.9+ and your own libraries. Only rank 0 writes (metrics, checkpoints, the model).
"""

from __future__ import annotations

from kubeloop_sdk.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from kubeloop_sdk.context import (
    CONTEXT_ENV,
    Context,
    ContextError,
    Feature,
    Trial,
    context,
    write_context,
)
from kubeloop_sdk.metrics import METRICS_FILE, log_metrics
from kubeloop_sdk.modelfiles import MODEL_FORMATS, MODEL_MANIFEST
from kubeloop_sdk.modelsave import save_model
from kubeloop_sdk.progress import report
from kubeloop_sdk.tables import read_table
from kubeloop_sdk.version import __version__

__all__ = [
    "CONTEXT_ENV",
    "METRICS_FILE",
    "MODEL_FORMATS",
    "MODEL_MANIFEST",
    "Checkpoint",
    "Context",
    "ContextError",
    "Feature",
    "Trial",
    "__version__",
    "context",
    "load_checkpoint",
    "log_metrics",
    "read_table",
    "report",
    "save_checkpoint",
    "save_model",
    "write_context",
]
