"""Shared test setup.

What is real and what is faked across the suite: the CRD schemas, CEL rules, pydantic models,
object storage (moto's S3 server on loopback), Prometheus and Pushgateway are real. The only
emulated piece is the Kubernetes API server (kmock's KubernetesEmulator), because no cluster
can run on the build machines; the kind suite under tests/e2e runs against a real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
