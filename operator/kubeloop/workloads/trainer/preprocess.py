"""The preprocessing saved with every model: what serving applies before predicting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kubeloop.modelformat import Feature

__all__ = ["build_preprocess"]


def build_preprocess(features: Sequence[Feature]) -> Any:
    """A ColumnTransformer over the `feature_matrix` layout (columns by position).

    Numeric: median imputation then standard scaling. Categorical: missing becomes its own
    category and categories unseen in training encode as all zeros (handle_unknown="ignore").
    Dense output, because HistGradientBoosting and the MLP take dense input.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [i for i, f in enumerate(features) if f.kind == "numeric"]
    categorical = [i for i, f in enumerate(features) if f.kind == "categorical"]
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        # The matrix is an object array when categoricals are present: cast the numeric block
        # to float64 first, or the imputer takes numpy's slow masked-array median path.
        to_float = FunctionTransformer(
            np.asarray, kw_args={"dtype": np.float64}, feature_names_out="one-to-one"
        )
        steps = make_pipeline(to_float, SimpleImputer(strategy="median"), StandardScaler())
        parts.append(("numeric", steps, numeric))
    if categorical:
        parts.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=float),
                categorical,
            )
        )
    return ColumnTransformer(parts, sparse_threshold=0.0)
