"""Prediction drift: the model's outputs tested like features, apart from input drift.

The reference is what the served version predicted on its validation data
(`validation-predictions.parquet` beside profile.json, VALIDATION_PREDICTIONS): its
`_prediction` (a categorical feature for classifiers, numeric for regressors) and each
`_proba_<class>` (numeric; of a binary classifier the positive class's only, the other's being
its mirror) are profiled exactly as training features are (once, by the trainer:
kubeloop.workloads.monitor.validation), and the window's logged outputs are judged against
that profile with the DriftMonitor's own tests and thresholds. A version without that file
(trained before it existed, or a model given by URI without one) has no prediction-drift
verdict: the check says so instead of guessing.

The outputs ride on the drift check's own scan of the window (`OutputDrift`): their columns
are read and folded with the features', batch by batch, never in a second pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.dataset as ds

from kubeloop.workloads.monitor.accumulate import (
    CategoricalAccumulator,
    NumericAccumulator,
    accumulators_for,
)
from kubeloop.workloads.monitor.quality import SchemaTally, folds
from kubeloop.workloads.monitor.validation import Validation, tested_outputs

__all__ = ["OutputDrift"]


class OutputDrift:
    """The accumulators of the outputs of `validation` (the served version's validation
    predictions), fed from the drift check's scan. Their profile is loaded once (`prepare`,
    which the check starts off its main thread while it loads the reference)."""

    def __init__(self, validation: Validation) -> None:
        self.validation = validation
        self._accumulators: dict[str, NumericAccumulator | CategoricalAccumulator] | None = None
        self._building = threading.Lock()
        self.tally = SchemaTally()  # an output the server did not log: missing, as a feature

    @property
    def dictionary_columns(self) -> list[str]:
        """The outputs read as dictionaries (a classifier's `_prediction`), known before the
        profile is loaded."""
        return ["_prediction"] if self.validation.categorical_prediction else []

    @property
    def accumulators(self) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
        """One accumulator per output, against the validation predictions' profile."""
        return self._built()

    def _built(self) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
        with self._building:
            if self._accumulators is None:
                self._accumulators = accumulators_for(self.validation.profile())
            return self._accumulators

    def columns(self, window: ds.Dataset) -> list[str]:
        """The window columns it reads: the outputs the profile holds."""
        return tested_outputs(self.validation.columns)

    def prepare(self, window: ds.Dataset) -> None:
        """Load the profile and make the accumulators (once)."""
        self._built()

    def tasks(self, batch: pa.RecordBatch) -> list[Callable[[], None]]:
        """The work of folding one batch of the window."""
        return folds(self.accumulators, self.tally, batch)
