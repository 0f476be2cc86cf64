"""Where checkpoints are copied out of the pod: a folder (`file://`) or an S3 prefix (`s3://`,
through boto3 when your image has it). A retry pod's `prepare` restores them from there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from kubeloop_sdk.files import copy_atomic

__all__ = ["FolderRemote", "Remote", "S3Remote", "remote_for"]

log = logging.getLogger("kubeloop_sdk")
_warned: set[str] = set()


class Remote(Protocol):
    """A flat folder of files somewhere else."""

    uri: str

    def put(self, name: str, source: Path) -> None:
        """Copy a local file in as `name` (whole or not at all)."""

    def names(self) -> list[str]:
        """The file names it holds."""

    def delete(self, name: str) -> None:
        """Remove one file (a missing one is fine)."""


class FolderRemote:
    """`file:///abs/path` (or `file://rel/path`, relative to the working directory)."""

    def __init__(self, uri: str) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self.path = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)

    def put(self, name: str, source: Path) -> None:
        copy_atomic(source, self.path / name)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return [p.name for p in self.path.iterdir() if p.is_file()]

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)


class S3Remote:
    """`s3://bucket/prefix`: endpoint from AWS_ENDPOINT_URL, credentials from AWS_* env."""

    def __init__(self, uri: str, client: Any) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.client = client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, source: Path) -> None:
        # one PUT: S3 shows an object whole or not at all
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=source.read_bytes())

    def names(self) -> list[str]:
        prefix = self._key("")
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents") or []:
                rest = str(item["Key"])[len(prefix) :]
                if rest and "/" not in rest:
                    found.append(rest)
        return found

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("kubeloop_sdk: %s", message)


def remote_for(uri: str | None) -> Remote | None:
    """The remote of a checkpoint URI; None (with one warning) when it cannot be reached."""
    if not uri:
        return None
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return FolderRemote(uri)
    if scheme == "s3":
        try:
            import boto3
        except ImportError:
            _warn_once(
                f"checkpoints stay in the pod: copying them to {uri} needs boto3 in your image "
                "(pip install boto3); a retried pod cannot resume from them"
            )
            return None
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        return S3Remote(uri, client)
    _warn_once(f"checkpoints stay in the pod: {uri}: scheme {scheme!r} is not s3:// or file://")
    return None
