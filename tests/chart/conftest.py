"""Fixtures of the chart tests: the real helm 4 from .tools/bin (`make tools`); no cluster."""

from __future__ import annotations

import pytest

from .helmlib import helm_path


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_path()
