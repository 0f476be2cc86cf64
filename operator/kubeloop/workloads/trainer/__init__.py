"""`kubeloop train`: Parquet in, an immutable model version out (see docs/contracts.md)."""
