"""The validation rows' predictions, kept beside the model (VALIDATION_PREDICTIONS).

The DriftMonitor compares the served outputs with them (prediction drift) and calibrates its
label-free performance estimate on them (CBPE). Columns as the payload log writes them
(kubeloop.payload_schema): `_prediction` (string labels, or float64 for regression), one
`_proba_<class>` per class, and the true `_label`. At most MAX_ROWS rows, evenly spaced, so a
large validation set does not make every server download a large file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from kubeloop.payload_schema import PROBA_PREFIX

__all__ = ["MAX_ROWS", "validation_predictions"]

MAX_ROWS = 100_000


def validation_predictions(
    task: str,
    labels: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    probabilities: np.ndarray[Any, Any] | None,
    classes: Sequence[Any] | None,
) -> pa.Table:
    """The table to write, from the validation `labels` and the model's outputs on them."""
    keep = np.arange(len(values))
    if keep.size > MAX_ROWS:
        keep = np.linspace(0, keep.size - 1, MAX_ROWS).astype(np.int64)
    columns: dict[str, Any] = {}
    if task == "classification":
        columns["_prediction"] = pa.array([str(v) for v in np.asarray(values)[keep].tolist()])
        columns["_label"] = pa.array([str(v) for v in np.asarray(labels)[keep].tolist()])
        if probabilities is not None and classes is not None:
            proba = np.asarray(probabilities, dtype=np.float64)[keep]
            for k, label in enumerate(classes):
                columns[f"{PROBA_PREFIX}{label}"] = pa.array(proba[:, k])
    else:
        columns["_prediction"] = pa.array(np.asarray(values, dtype=np.float64)[keep])
        columns["_label"] = pa.array(np.asarray(labels, dtype=np.float64)[keep])
    return pa.table(columns)
