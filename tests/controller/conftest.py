"""Fixtures shared by the controller tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`kubeloop operator`'s main() configures the root logger (kopf's handler, a level): put
    it back after the test, so that no later test logs through it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
