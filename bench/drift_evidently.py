"""Evidently 0.7 side of the drift benchmark; runs in .venv-bench-evidently (pandas<3).

Usage: python drift_evidently.py ROOT NUM_METHOD CAT_METHOD  (methods "default" = Evidently's)
Prints one JSON line: drifted columns, columns.
"""

import json
import sys
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    root, num_method, cat_method = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    reference = pd.read_parquet(root / "reference")
    features = list(reference.columns)
    current = pd.read_parquet(root / "logs", columns=features)
    numeric = [c for c in features if c.startswith("num_")]
    categorical = [c for c in features if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    kwargs = {}
    if num_method != "default":
        kwargs["num_method"] = num_method
    if cat_method != "default":
        kwargs["cat_method"] = cat_method
    report = Report([DataDriftPreset(**kwargs)])
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    value = snapshot.dict()["metrics"][0]["value"]
    print(json.dumps({"driftedColumns": value, "columns": len(features)}, default=str))


if __name__ == "__main__":
    main()
