"""KServe side of the serving benchmark; runs in .venv-bench-kserve (`make bench-venvs`).

Usage: python kserve_server.py MODEL_DIR MODEL_NAME HTTP_PORT

A `kserve.Model` that loads MODEL_DIR/model.torchscript.pt (the same file `kubeloop serve`
loads), takes the first V2 input as a float32 [n, 64] matrix and answers `predict`: the
argmax of the module's [n, 10] softmax, as INT64. Served by `kserve.ModelServer` on
127.0.0.1:HTTP_PORT, one process, at its fastest settings: no gRPC server, no per-request
latency or timing log, no access log.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import torch
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest import server as rest_server

__all__ = ["TorchScriptModel", "main"]

_UVICORN_CONFIG = uvicorn.Config


class TorchScriptModel(kserve.Model):  # type: ignore[misc]
    """One TorchScript module: [n, F] float32 in, class index of the largest output out."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.module: Any = None

    def load(self) -> bool:
        """Load the module once; KServe reports the model ready after this."""
        self.module = torch.jit.load(str(self.path), map_location="cpu")
        self.module.eval()
        self.ready = True
        return True

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        """`predict`: [n] INT64 labels for the first input's rows."""
        matrix = np.ascontiguousarray(payload.inputs[0].as_numpy(), dtype=np.float32)
        with torch.no_grad():
            proba = self.module(torch.from_numpy(matrix))
        labels = proba.argmax(dim=1).numpy().astype(np.int64)
        out = InferOutput(name="predict", shape=list(labels.shape), datatype="INT64")
        out.set_data_from_numpy(labels, binary_data=False)
        # KServe's REST layer requires a response id; V2 makes the request's optional
        response_id = payload.id or str(uuid.uuid4())
        return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=[out])


def _loopback_config(*args: Any, **kwargs: Any) -> Any:
    # KServe's REST server hard-codes host 0.0.0.0; the benchmark listens on loopback only.
    kwargs["host"] = "127.0.0.1"
    return _UVICORN_CONFIG(*args, **kwargs)


def main() -> None:
    """Serve MODEL_DIR's TorchScript module as MODEL_NAME on 127.0.0.1:HTTP_PORT."""
    model_dir, name, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)  # what `kubeloop serve` gives its model thread
    rest_server.uvicorn.Config = _loopback_config
    model = TorchScriptModel(name, model_dir / "model.torchscript.pt")
    model.load()
    server = kserve.ModelServer(
        http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False
    )
    # per-request log lines: the access log and the timing middleware's trace
    for logger in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(logger).disabled = True
    server.start([model])


if __name__ == "__main__":
    main()
