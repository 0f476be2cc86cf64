"""The payload log's column names, shared by its writer (the server) and its reader (the
monitor); docs/contracts.md describes the layout."""

__all__ = ["PROBA_PREFIX", "SCHEMA_METADATA_KEY", "SCHEMA_VERSION"]

# Version 2 added `_row` and the `_proba_<class>` columns.
SCHEMA_VERSION = "2"
SCHEMA_METADATA_KEY = "kubeloop.payload_log_schema"
PROBA_PREFIX = "_proba_"
