#!/usr/bin/env python3
"""Write the bytecode of the heavy libraries once, right after an install.

uv installs no bytecode, so the first import of torch or scikit-learn compiles them; when the
test suite starts, several processes would do that at once, each compiling the same modules.
Importing them here once, in this one process, writes it for all of them (only for what is
imported, not the thousands of modules of torch no process loads). A library the environment
does not have is skipped. Run with the environment's own Python:

    .venv-image-trainer/bin/python hack/warm_bytecode.py
"""

from __future__ import annotations

import importlib
import os
import sys

# What the trainer, server, monitor and tests import, heaviest first.
MODULES = (
    "torch",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "skops.io",
    "xgboost",
    "lightgbm",
    "onnxruntime",
    "scipy.stats",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "kopf",
    "kubernetes",
    "kubeloop.cli",
)


def main() -> int:
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        sys.dont_write_bytecode = False  # the point of this script
    warmed = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        warmed.append(name)
    print(f"bytecode written for {', '.join(warmed) or 'nothing'} ({sys.prefix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
