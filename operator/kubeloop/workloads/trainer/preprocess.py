"""The preprocessing saved with every model: what serving applies before predicting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [i for i, f in enumerate(features) if f.kind == "numeric"]
    categorical = [i for i, f in enumerate(features) if f.kind == "categorical"]
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        parts.append(
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)
        )
    if categorical:
        parts.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=float),
                categorical,
            )
        )
    return ColumnTransformer(parts, sparse_threshold=0.0)
