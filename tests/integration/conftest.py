"""Fixtures: a module-scoped emulator and the operator running against it (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.harness import Cluster, Operator

from kubeloop.local.cluster.emulator import EmulatorThread


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with EmulatorThread() as thread:
        yield Cluster(thread)


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    op = Operator(cluster.thread.url)
    op.start()
    yield op
    op.stop()
