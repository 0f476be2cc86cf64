"""The operator's garbage-collector settings (controller/main.py `tune_gc`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kubeloop.controller.main import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_what_is_loaded_is_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 10_000  # the modules loaded, kopf's and the client's
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, older, oldest)
    assert GC_GEN0_THRESHOLD > 700  # CPython's default
