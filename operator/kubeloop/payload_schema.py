"""The payload log's column names, shared by its writer (the server) and its reader (the
monitor), and the name of the validation predictions a version keeps; docs/contracts.md
describes both."""

__all__ = [
    "PROBA_PREFIX",
    "SCHEMA_METADATA_KEY",
    "SCHEMA_VERSION",
    "VALIDATION_OUTPUTS",
    "VALIDATION_PREDICTIONS",
]

# Version 2 added `_row` and the `_proba_<class>` columns.
SCHEMA_VERSION = "2"
SCHEMA_METADATA_KEY = "kubeloop.payload_log_schema"
PROBA_PREFIX = "_proba_"
# Beside profile.json in a version folder: the validation rows' `_prediction`, `_proba_<class>`
# and true `_label` (written by the trainer; the monitor's prediction-drift reference and
# calibration set).
VALIDATION_PREDICTIONS = "validation-predictions.parquet"
# Beside it, also written by the trainer: what the monitor derives from those predictions (the
# outputs' drift profile, the estimate's calibrator), so no check derives them again.
VALIDATION_OUTPUTS = "validation-outputs.json"
