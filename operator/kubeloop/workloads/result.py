"""The small JSON result a workload leaves for the operator in its termination message.

The operator reads it from the Pod (`status.containerStatuses[].state.terminated.message`), so
it never needs object-store credentials. Kubernetes keeps at most 4 KiB: larger results are
trimmed (per-feature detail first) and marked `truncated`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_BYTES", "RESULT_PATH_ENV", "encode_result", "write_result"]

MAX_BYTES = 4096
RESULT_PATH_ENV = "KUBELOOP_RESULT_PATH"
_TRIMMABLE = ("features", "metrics", "message")


def encode_result(result: dict[str, Any]) -> str:
    """Compact JSON of at most MAX_BYTES; drops bulky keys, then shortens `message`."""
    data = dict(result)
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    for key in _TRIMMABLE:
        if len(text.encode()) <= MAX_BYTES:
            break
        if key == "message":
            data["message"] = str(data.get("message", ""))[:512]
        elif key in data:
            data.pop(key)
        data["truncated"] = True
        text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text.encode()[:MAX_BYTES].decode(errors="ignore")


def write_result(result: dict[str, Any], path: str | None = None) -> str:
    """Write the result where Kubernetes picks it up (default /dev/termination-log)."""
    text = encode_result(result)
    target = path or os.environ.get(RESULT_PATH_ENV, "/dev/termination-log")
    # Outside a pod there may be no termination log; stdout still carries the result.
    with contextlib.suppress(OSError):
        Path(target).write_text(text)
    print(f"kubeloop-result {text}", flush=True)
    return text
