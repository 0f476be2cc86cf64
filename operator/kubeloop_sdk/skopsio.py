"""`skops.io` without torch: for the SDK that saves skops models and Kubeloop that loads them.

skops lists its trusted types when it is imported, from scikit-learn's `all_estimators()`,
which walks and imports every scikit-learn module, `externals.array_api_compat.torch` among
them, and with it torch wherever torch is installed (training images and the server image
have it): 2-3 s of CPU and hundreds of MB in every process that saves or serves a skops model,
for nothing a skops model uses. The walk skips a module that fails to import, and no estimator
lives there, so the trusted list is the same (pinned by tests/storage/test_modelformats.py).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["skops_io"]


class _RefuseTorch:
    """A meta path finder under which `import torch` fails."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == "torch":
            raise ImportError("torch is not imported for skops")


def skops_io() -> ModuleType:
    """`skops.io`, imported with torch refused where torch is not loaded yet (a process that
    already has torch loses nothing by letting skops see it)."""
    if "skops.io" in sys.modules or "torch" in sys.modules:
        return importlib.import_module("skops.io")
    refuse = _RefuseTorch()
    sys.meta_path.insert(0, refuse)
    try:
        return importlib.import_module("skops.io")
    finally:
        sys.meta_path.remove(refuse)
