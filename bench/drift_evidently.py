"""Evidently 0.7 side of the drift benchmark; runs in .venv-bench-evidently (pandas<3).

Usage: python drift_evidently.py ROOT NUM_METHOD CAT_METHOD
  NUM_METHOD / CAT_METHOD: an Evidently stattest name, optionally with its threshold
  ("psi@0.2", "chisquare@0.05"), or "default" for Evidently's own choice.
Prints one JSON line: the drifted-columns count/share and each column's method and score.
"""

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def _method(spec: str, prefix: str, kwargs: dict[str, Any]) -> None:
    if spec == "default":
        return
    name, _, threshold = spec.partition("@")
    kwargs[f"{prefix}_method"] = name
    if threshold:
        kwargs[f"{prefix}_threshold"] = float(threshold)


def main() -> None:
    root, num_method, cat_method = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    drift_share = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    reference = pd.read_parquet(root / "reference")
    features = list(reference.columns)
    current = pd.read_parquet(root / "logs", columns=features)
    numeric = [c for c in features if c.startswith("num_")]
    categorical = [c for c in features if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    kwargs: dict[str, Any] = {"drift_share": drift_share}
    _method(num_method, "num", kwargs)
    _method(cat_method, "cat", kwargs)
    report = Report([DataDriftPreset(**kwargs)])
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    columns = {}
    for metric in metrics[1:]:
        config = metric["config"]
        if "column" in config:
            columns[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": metric["value"],
            }
    out = {"driftedColumns": metrics[0]["value"], "columns": columns}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
