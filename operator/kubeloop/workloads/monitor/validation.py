"""The served version's validation outputs, as the monitor uses them.

The trainer keeps the validation rows' predictions beside the model (VALIDATION_PREDICTIONS:
`_prediction`, `_proba_<class>`, `_label`). The monitor needs two things derived from them: the
outputs' drift profile (prediction drift's reference) and, for a binary classifier, the isotonic
calibrator of its performance estimate (CBPE). Both depend on the version only, so the trainer
derives them once (`derive`) and writes them beside the predictions (VALIDATION_OUTPUTS, a
small JSON file); a check then reads that file instead of the Parquet and neither profiles nor
calibrates. A version without it (trained before it existed, custom training code) gets both
computed from the Parquet, as before: the same profile (`prediction_profile`) and calibrator
(`fit_calibrator`), so the verdicts are identical either way.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubeloop.payload_schema import PROBA_PREFIX, VALIDATION_OUTPUTS, VALIDATION_PREDICTIONS
from kubeloop.profile import Profile, build_profile, load_profile
from kubeloop.storage import NotFoundError, join, store_for
from kubeloop.workloads.monitor import cbpe

__all__ = [
    "Validation",
    "derive",
    "fit_calibrator",
    "open_validation",
    "prediction_profile",
    "tested_outputs",
    "validation_predictions",
]

DERIVED_FORMAT = "kubeloop.validation-outputs/v1"


def _folder(reference_uri: str) -> str:
    if reference_uri.endswith(".parquet") or reference_uri.endswith("profile.json"):
        return reference_uri.rsplit("/", 1)[0]
    return reference_uri


def _read(uri: str) -> bytes | None:
    try:
        return store_for(uri).read_bytes(uri)
    except NotFoundError:
        return None


def validation_predictions(reference_uri: str) -> pa.Table | None:
    """The served version's validation predictions, or None when it has none."""
    raw = _read(join(_folder(reference_uri), VALIDATION_PREDICTIONS))
    return pq.read_table(pa.BufferReader(raw)) if raw is not None else None


def tested_outputs(columns: list[str]) -> list[str]:
    """The outputs prediction drift tests, of a model whose outputs are `columns`: every
    class's probability, then `_prediction`. A binary classifier's first class's probability
    is left out: it is 1 - the positive class's, the same distribution mirrored, so its test
    would repeat the other's."""
    proba = [n for n in columns if n.startswith(PROBA_PREFIX)]
    if len(proba) == 2:
        proba = proba[1:]
    return [*proba, *(n for n in columns if n == "_prediction")]


def _profile_dict(table: pa.Table) -> dict[str, Any]:
    prediction = table.column("_prediction")
    numeric = [n for n in tested_outputs(table.column_names) if n != "_prediction"]
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
    return build_profile(table, numeric, categorical)


def prediction_profile(table: pa.Table) -> Profile:
    """A drift profile of the outputs in `table` (`_prediction`, `_proba_<class>`)."""
    return load_profile(_profile_dict(table))


def fit_calibrator(table: pa.Table, positive: str) -> cbpe.Calibrator | None:
    """Isotonic calibration of class `positive`'s probability on the validation rows' labels;
    None when `table` lacks that probability or the labels."""
    column = PROBA_PREFIX + positive
    if column not in table.column_names or "_label" not in table.column_names:
        return None
    truth = pc.fill_null(pc.equal(pc.cast(table.column("_label"), pa.string()), positive), False)
    return cbpe.fit_isotonic(
        table.column(column).to_numpy(zero_copy_only=False).astype(np.float64),
        np.asarray(truth.to_numpy(zero_copy_only=False), bool),
    )


def _binary_positive(table: pa.Table) -> str | None:
    """The positive class of a binary classifier's outputs (its second probability column, as
    the check takes it), else None."""
    proba = [n[len(PROBA_PREFIX) :] for n in table.column_names if n.startswith(PROBA_PREFIX)]
    return proba[1] if len(proba) == 2 else None


def derive(table: pa.Table) -> dict[str, Any]:
    """What the monitor derives from the validation predictions `table`, as JSON-ready data
    (the trainer writes it as VALIDATION_OUTPUTS): the outputs' profile and, for a binary
    classifier with labels, the calibrator of its positive class. Floats are written as
    Python's repr, which reads back to the same float64."""
    out: dict[str, Any] = {"format": DERIVED_FORMAT, "outputs": table.column_names}
    if "_prediction" in table.column_names:
        out["profile"] = _profile_dict(table)
    positive = _binary_positive(table)
    calibrator = fit_calibrator(table, positive) if positive is not None else None
    if positive is not None and calibrator is not None:
        out["calibrators"] = {
            positive: {"x": calibrator.x.tolist(), "y": calibrator.y.tolist()},
        }
    return out


class Validation:
    """One version's validation outputs: read from what the trainer derived when it is there,
    else computed from the predictions (read only then, once). Thread-safe."""

    def __init__(self, folder: str, derived: dict[str, Any] | None, table: pa.Table | None) -> None:
        self.folder = folder
        self._derived = derived
        self._table = table
        self._reading = threading.Lock()
        self._building = threading.Lock()
        self._profile: Profile | None = None
        names = derived["outputs"] if derived else table.column_names if table else []
        self.columns: list[str] = list(names)

    def table(self) -> pa.Table | None:
        """The validation predictions themselves (read when first asked for)."""
        with self._reading:
            if self._table is None:
                self._table = validation_predictions(self.folder)
            return self._table

    @property
    def has_prediction(self) -> bool:
        """Whether the outputs include `_prediction` (prediction drift needs it)."""
        return "_prediction" in self.columns

    @property
    def categorical_prediction(self) -> bool:
        """Whether `_prediction` is a class label (profiled as a category), not a number."""
        if self._derived and "profile" in self._derived:
            return "_prediction" in self._derived["profile"].get("categorical", {})
        table = self.table()
        kind = table.schema.field("_prediction").type if table is not None else pa.float64()
        return not (pa.types.is_floating(kind) or pa.types.is_integer(kind))

    def profile(self) -> Profile:
        """The outputs' drift profile (built once)."""
        with self._building:
            if self._profile is None:
                derived = self._derived.get("profile") if self._derived else None
                if derived is not None:
                    self._profile = load_profile(derived)
                else:
                    table = self.table()
                    assert table is not None
                    self._profile = prediction_profile(table)
            return self._profile

    def calibrator(self, positive: str) -> cbpe.Calibrator | None:
        """The estimate's calibrator of class `positive`, or None without labels."""
        stored = (self._derived or {}).get("calibrators", {}).get(positive)
        if stored is not None:
            return cbpe.Calibrator(
                np.asarray(stored["x"], np.float64), np.asarray(stored["y"], np.float64)
            )
        table = self.table()
        return fit_calibrator(table, positive) if table is not None else None


def open_validation(reference_uri: str) -> Validation | None:
    """The served version's validation outputs, or None when it kept none."""
    folder = _folder(reference_uri)
    raw = _read(join(folder, VALIDATION_OUTPUTS))
    if raw is not None:
        derived = json.loads(raw)
        if derived.get("format") == DERIVED_FORMAT:
            return Validation(folder, derived, None)
    table = validation_predictions(folder)
    return Validation(folder, None, table) if table is not None else None
