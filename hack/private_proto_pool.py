#!/usr/bin/env python3
"""Move the generated V2 gRPC messages into a descriptor pool of their own.

protoc's Python output registers its messages in protobuf's process-wide default pool, where
tritonclient's `grpc_service.proto` already defines the same `inference.*` names: a process
importing both (a test, a benchmark client) fails with "duplicate symbol". The wire format
does not depend on the pool, so the server's copy lives in a private one.

    python hack/private_proto_pool.py   (after grpc_tools.protoc; see grpc_predict_v2.proto)
"""

from __future__ import annotations

from pathlib import Path

GENERATED = (
    Path(__file__).resolve().parents[1]
    / "operator/kubeloop/workloads/server/v2grpc/grpc_predict_v2_pb2.py"
)
DEFAULT = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE = (
    "# kubeloop: a private pool (hack/private_proto_pool.py)\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def main() -> None:
    text = GENERATED.read_text()
    if PRIVATE not in text:
        if DEFAULT not in text:
            raise SystemExit(f"{GENERATED}: protoc's output changed; update this script")
        GENERATED.write_text(text.replace(DEFAULT, PRIVATE))


if __name__ == "__main__":
    main()
