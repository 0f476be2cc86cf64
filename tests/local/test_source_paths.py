"""The source-checkout paths `kubeloop local` derives from where its modules lie.

Both come from `__file__`, so moving a module to another package level breaks them quietly:
pods then import another kubeloop (an installed one, or none), and the demo finds no example.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kubeloop
from kubeloop.local.cluster.processes import host_env
from kubeloop.local.demo.scenario import EXAMPLE

PACKAGE = Path(kubeloop.__file__).resolve().parent


def test_pods_import_kubeloop_from_this_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert host_env()["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE.parent)]


def test_the_demo_applies_the_example_of_this_checkout() -> None:
    assert EXAMPLE.is_file()
    assert PACKAGE.parents[1] / "examples" / "local" / "churn.yaml" == EXAMPLE
