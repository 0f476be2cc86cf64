"""Fixtures of the SDK tests: a run context written with the SDK's own `write_context`, as a
user running their script outside Kubeloop would write it. Nothing is faked: files are real,
the status patch goes to the emulated API server over HTTP, checkpoints to real folders and
to moto's S3 server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kubeloop_sdk as kl

MakeContext = Callable[..., kl.Context]


@pytest.fixture
def make_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeContext:
    """`make_context(**fields)`: writes run/context.json, points KUBELOOP_CONTEXT at it."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)

    def make(**fields: Any) -> kl.Context:
        path = kl.write_context(tmp_path / "run" / "context.json", **fields)
        monkeypatch.setenv(kl.CONTEXT_ENV, str(path))
        return kl.context()

    return make
