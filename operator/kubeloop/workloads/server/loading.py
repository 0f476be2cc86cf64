"""Bring a model version to this pod and load it, verified, or say exactly why not.

`kubeloop.modelformat.load_predictor` checks every file's sha256 against manifest.json before
it unpickles anything, so a tampered or truncated file is never served.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeloop.formats import LoadOptions
from kubeloop.storage import FileStore, join, store_for
from kubeloop.workloads.server.predictor import PredictorLike
from kubeloop.workloads.server.tree_ensemble import accelerate

__all__ = ["LoadedModel", "fetch_version", "load_model"]

log = logging.getLogger("kubeloop.serve")


@dataclass(frozen=True)
class LoadedModel:
    """A verified predictor with the manifest facts the server reports."""

    predictor: PredictorLike
    version: str
    framework: str  # the model format's name (kubeloop.formats)
    manifest: dict[str, Any]
    load_seconds: float


def fetch_version(uri: str, work_dir: Path) -> Path:
    """A local folder holding the version: file:// is used in place, s3:// is downloaded."""
    if uri.startswith("file://"):
        return FileStore.path(uri)
    store = store_for(uri)
    local = work_dir / f"model-{uuid.uuid4().hex[:8]}"
    prefix = join(uri, "")
    objects = store.list(prefix)
    if not objects:
        raise FileNotFoundError(f"{uri} holds no files (is it a version folder?)")
    for obj in objects:
        rel = obj.uri[len(prefix) :].lstrip("/")
        if not rel or ".." in rel.split("/"):
            continue
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(obj.uri))
    return local


def load_model(uri: str, work_dir: Path, options: LoadOptions | None = None) -> LoadedModel:
    """Fetch, verify (inside `load_predictor`) and load; raises with a readable reason."""
    from kubeloop.modelformat import load_predictor

    started = time.perf_counter()
    local = fetch_version(uri, work_dir)
    manifest_path = local / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{uri}: no manifest.json (incomplete or not a version folder)")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    loaded = load_predictor(local, options)
    predictor: PredictorLike = accelerate(loaded)
    return LoadedModel(
        predictor=predictor,
        version=str(manifest.get("version", "")) or local.name,
        framework=loaded.framework,
        manifest=manifest,
        load_seconds=time.perf_counter() - started,
    )
