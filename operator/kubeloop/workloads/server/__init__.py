"""`kubeloop serve`: one immutable model version over the Open Inference Protocol (V2), REST
and gRPC.

Modules, by what they do: `settings` (env and flags), `loading` (download, verify, load),
`protocol` (V2 request validation and response encoding), `binary` (tensors as raw bytes: the
REST binary extension and gRPC raw contents), `batching` (adaptive batching off the event loop),
`payload_log` (Parquet traffic logs), `metrics` (Prometheus), `openapi` (the description
schemathesis fuzzes), `app` (the ASGI routes and the infer path both protocols share),
`grpc_service` (`inference.GRPCInferenceService`; stubs generated into `v2grpc`), `main`
(processes and signals).
"""
