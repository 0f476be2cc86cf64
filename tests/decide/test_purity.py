"""The decisions load without kopf or a Kubernetes client (lint-imports checks the imports
statically; this checks what a fresh interpreter really loads, lazy imports included)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import kubeloop.decide

_FORBIDDEN = ("kopf", "kubernetes", "kubeloop.controller")


def test_the_decide_package_loads_no_operator_framework_nor_client() -> None:
    modules = [f"kubeloop.decide.{m.name}" for m in pkgutil.iter_modules(kubeloop.decide.__path__)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {_FORBIDDEN[:2]!r} "
        f"or m.startswith({_FORBIDDEN[2]!r})))\n"
    )
    source_root = str(Path(kubeloop.decide.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": source_root}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
    assert len(modules) >= 8, modules  # every decision module was loaded
