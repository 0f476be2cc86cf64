"""Prediction drift: the model's outputs tested like features, apart from input drift.

The reference is what the served version predicted on its validation data
(`validation-predictions.parquet` beside profile.json, VALIDATION_PREDICTIONS): its
`_prediction` (a categorical feature for classifiers, numeric for regressors) and each
`_proba_<class>` (numeric) are profiled exactly as training features are, and the window's
logged outputs are judged against that profile with the DriftMonitor's own tests and
thresholds. A version without that file (trained before it existed, or a model given by URI
without one) has no prediction-drift verdict: the check says so instead of guessing.

The outputs ride on the drift check's own scan of the window (`OutputDrift`): their columns
are read and folded with the features', batch by batch, never in a second pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from kubeloop.payload_schema import PROBA_PREFIX, VALIDATION_PREDICTIONS
from kubeloop.profile import Profile, build_profile, load_profile
from kubeloop.storage import NotFoundError, join, store_for
from kubeloop.workloads.monitor.accumulate import (
    CategoricalAccumulator,
    NumericAccumulator,
    accumulators_for,
)
from kubeloop.workloads.monitor.quality import SchemaTally, folds

__all__ = ["OutputDrift", "prediction_profile", "validation_predictions"]


def validation_predictions(reference_uri: str) -> pa.Table | None:
    """The served version's validation predictions, or None when it has none."""
    if reference_uri.endswith(".parquet") or reference_uri.endswith("profile.json"):
        folder = reference_uri.rsplit("/", 1)[0]
    else:
        folder = reference_uri
    uri = join(folder, VALIDATION_PREDICTIONS)
    try:
        raw = store_for(uri).read_bytes(uri)
    except NotFoundError:
        return None
    return pq.read_table(pa.BufferReader(raw))


def prediction_profile(table: pa.Table) -> Profile:
    """A drift profile of the outputs in `table` (`_prediction`, `_proba_<class>`)."""
    prediction = table.column("_prediction")
    numeric = [n for n in table.column_names if n.startswith(PROBA_PREFIX)]
    categorical: list[str] = []
    if pa.types.is_floating(prediction.type) or pa.types.is_integer(prediction.type):
        numeric.append("_prediction")
    else:
        categorical.append("_prediction")
        table = table.set_column(
            table.column_names.index("_prediction"),
            "_prediction",
            pc.cast(prediction, pa.string()),
        )
    return load_profile(build_profile(table, numeric, categorical))


class OutputDrift:
    """The accumulators of the outputs in `validation` (the served version's validation
    predictions), fed from the drift check's scan. Their profile is built once (`prepare`,
    which the check starts off its main thread while it loads the reference)."""

    def __init__(self, validation: pa.Table) -> None:
        self.validation = validation
        self._accumulators: dict[str, NumericAccumulator | CategoricalAccumulator] | None = None
        self._building = threading.Lock()
        self.tally = SchemaTally()  # an output the server did not log: missing, as a feature

    @property
    def dictionary_columns(self) -> list[str]:
        """The outputs read as dictionaries (a classifier's `_prediction`), known before the
        profile is built."""
        kind = self.validation.schema.field("_prediction").type
        return [] if pa.types.is_floating(kind) or pa.types.is_integer(kind) else ["_prediction"]

    @property
    def accumulators(self) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
        """One accumulator per output, against the validation predictions' profile."""
        return self._built()

    def _built(self) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
        with self._building:
            if self._accumulators is None:
                self._accumulators = accumulators_for(prediction_profile(self.validation))
            return self._accumulators

    def columns(self, window: ds.Dataset) -> list[str]:
        """The window columns it reads: the outputs the profile will hold."""
        names = self.validation.column_names
        return [*(n for n in names if n.startswith(PROBA_PREFIX)), "_prediction"]

    def prepare(self, window: ds.Dataset) -> None:
        """Build the profile and the accumulators (once)."""
        self._built()

    def tasks(self, batch: pa.RecordBatch) -> list[Callable[[], None]]:
        """The work of folding one batch of the window."""
        return folds(self.accumulators, self.tally, batch)
