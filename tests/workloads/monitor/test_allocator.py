"""The check's allocator settings (monitor/allocator.py) apply where the C library is glibc,
and are a no-op elsewhere."""

from __future__ import annotations

import platform

from kubeloop.cli import VERB_ENV
from kubeloop.workloads.monitor.allocator import tune_allocator


def test_the_allocator_settings_apply_on_glibc() -> None:
    assert tune_allocator() is (platform.libc_ver()[0] == "glibc")


def test_the_monitor_keeps_arrows_freed_pages() -> None:
    """Arrow's mimalloc must not hand each batch's pages back at once (cli.VERB_ENV, set
    before pyarrow loads): the next batches reuse them."""
    assert int(VERB_ENV["monitor"]["MIMALLOC_PURGE_DELAY"]) >= 250
