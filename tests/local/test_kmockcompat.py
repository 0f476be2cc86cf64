"""kmock's internals that the local API server relies on are present, or fail loudly."""

from __future__ import annotations

from pathlib import Path

import kmock
import pytest

from kubeloop.local.cluster import kmockcompat
from kubeloop.local.cluster.emulator import KubeloopEmulator


def test_the_installed_kmock_has_every_internal_the_adapter_uses() -> None:
    kmockcompat.check()  # raises KmockIncompatibleError naming what is missing


def test_an_incompatible_kmock_fails_with_the_version_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(kmock.KubernetesEmulator, "_serve_watch")
    monkeypatch.setattr(kmock, "__version__", "9.9")
    with pytest.raises(kmockcompat.KmockIncompatibleError) as err:
        KubeloopEmulator()
    message = str(err.value)
    assert "kmock 9.9 is incompatible" in message
    assert "KubernetesEmulator._serve_watch" in message
    assert f"kmock {kmockcompat.TESTED_WITH}" in message


def test_only_the_adapter_imports_kmock_internals() -> None:
    local = Path(kmockcompat.__file__).parent
    private = ("kmock._internal", "._buses", "._lock", "super()._handle", "object.__setattr__")
    offenders = [
        f"{path.name}: {token}"
        for path in local.glob("*.py")
        if path.name != "kmockcompat.py"
        for token in private
        if token in path.read_text()
    ]
    assert offenders == []
