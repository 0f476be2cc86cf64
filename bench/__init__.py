"""Benchmarks against the anchors: `python -m bench [topic ...]` (see bench/__main__.py).

Each topic is a module `bench/<topic>_bench.py` with `main(argv: list[str] | None = None) -> int`
that runs the peer and Kubeloop side by side in one run, prints a table, writes raw results to
`bench/results/<topic>.json` (git-ignored) and its summary to `docs/benchmarks/<topic>.md`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# Run from a checkout: when kubeloop is not installed into this Python, use the source root
# (the same `operator/` that pytest puts on the path).
if importlib.util.find_spec("kubeloop") is None:  # pragma: no cover - depends on the install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))
