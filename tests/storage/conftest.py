"""Fixtures of the storage tests: an artifacts URI on file:// and on moto's S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeloop.modelformat import write_manifest


@pytest.fixture(params=["file", "s3"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty artifacts location, once on file:// and once in a fresh moto bucket."""
    if request.param == "file":
        return f"file://{tmp_path}/models/churn/"
    bucket: str = request.getfixturevalue("bucket")
    return f"{bucket}/models/churn/"


def local_version(tmp_path: Path, tag: str, **manifest: object) -> Path:
    """A tiny local version folder (one file and a manifest with `tag`), ready to publish."""
    folder = tmp_path / f"local-{tag}"
    folder.mkdir()
    (folder / "model.bin").write_bytes(tag.encode())
    write_manifest(folder, {"tag": tag, **manifest})
    return folder
