"""`kubeloop serve`: one immutable model version over the Open Inference Protocol (V2) REST.

Modules, by what they do: `settings` (env and flags), `loading` (download, verify, load),
`protocol` (V2 request validation and response encoding), `batching` (adaptive batching off the
event loop), `payload_log` (Parquet traffic logs), `metrics` (Prometheus), `openapi` (the
description schemathesis fuzzes), `app` (the ASGI routes), `main` (processes and signals).
"""
