"""Object storage behind one small API: `s3://` (boto3, S3-compatible endpoints) and `file://`.

Everything the workloads read or write goes through here. S3 endpoint and credentials come from
the standard AWS environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), which the operator
fills from a Secret by `secretKeyRef`; this module never logs them.
"""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

__all__ = [
    "AlreadyExistsError",
    "NotFoundError",
    "ObjectInfo",
    "ObjectStore",
    "StorageError",
    "arrow_filesystem",
    "join",
    "store_for",
]


class StorageError(RuntimeError):
    """Object storage failed in a way that names the URI and what to check."""


class NotFoundError(StorageError):
    """The object does not exist."""


class AlreadyExistsError(StorageError):
    """A create-if-absent write found the object already there."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its URI, size and a change marker (ETag or mtime)."""

    uri: str
    size: int
    marker: str


def join(base: str, *parts: str) -> str:
    """Join URI path segments with single slashes: join('s3://b/m/', 'versions', '3')."""
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


class ObjectStore(Protocol):
    """What every backend offers."""

    def read_bytes(self, uri: str) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def list(self, prefix: str) -> list[ObjectInfo]: ...
    def children(self, prefix: str) -> builtins.list[str]: ...
    def delete(self, uri: str) -> None: ...


class FileStore:
    """`file:///abs/path` (or `file://rel/path`, relative to the working directory)."""

    @staticmethod
    def path(uri: str) -> Path:
        """The local path of a file:// URI."""
        parsed = urlparse(uri)
        return Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self.path(uri).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            # As in an object store: under a file, or a folder itself, there is no object.
            raise NotFoundError(f"{uri} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc

    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> None:
        path = self.path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write aside, then publish atomically: readers never see half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if if_absent:
                try:
                    os.link(tmp, path)  # fails if the name exists: exclusive create
                except FileExistsError as exc:
                    raise AlreadyExistsError(f"{uri} already exists") from exc
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except PermissionError as exc:
            raise StorageError(
                f"no permission to write {uri}: check the folder's owner and mode"
            ) from exc

    def exists(self, uri: str) -> bool:
        return self.path(uri).exists()

    def list(self, prefix: str) -> list[ObjectInfo]:
        root = self.path(prefix)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and ".tmp-" not in p.name)
        else:
            return []
        scheme_root = prefix if root.is_file() else prefix.rstrip("/")
        out = []
        for file in files:
            stat = file.stat()
            rel = "" if root.is_file() else "/" + str(file.relative_to(root))
            out.append(ObjectInfo(scheme_root + rel, stat.st_size, str(stat.st_mtime_ns)))
        return out

    def children(self, prefix: str) -> builtins.list[str]:
        """Names one level below `prefix` (folders and objects), sorted."""
        root = self.path(prefix)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if not p.name.startswith(".tmp-"))

    def delete(self, uri: str) -> None:
        path = self.path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


class S3Store:
    """`s3://bucket/key` through boto3; honours AWS_ENDPOINT_URL for S3-compatible stores."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                config=Config(
                    retries={"total_max_attempts": _max_attempts(), "mode": _retry_mode()},
                    connect_timeout=_timeout_seconds(),
                    read_timeout=_timeout_seconds(),
                ),
            )
        self.client = client

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        """(bucket, key) of an s3:// URI."""
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _error(self, uri: str, exc: Exception) -> StorageError:
        response = getattr(exc, "response", {}) or {}
        code = response.get("Error", {}).get("Code", type(exc).__name__)
        attempts = response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        if code in ("NoSuchKey", "404", "NotFoundError"):
            return NotFoundError(f"{uri} does not exist")
        if code == "NoSuchBucket":
            return StorageError(f"bucket of {uri} does not exist: create it or fix the URI")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"access to {uri} denied ({code}): check the storageSecretRef credentials"
            )
        if "Timeout" in code:
            return StorageError(
                f"object storage timed out on {uri} ({code}) after retries: check the endpoint "
                f"and network, or raise KUBELOOP_S3_TIMEOUT_SECONDS ({_timeout_seconds():g}s)"
            )
        if "Connection" in code or "Endpoint" in code:
            return StorageError(
                f"object storage unreachable for {uri} ({code}) after retries: check the "
                "endpoint (AWS_ENDPOINT_URL) and network"
            )
        return StorageError(
            f"object storage error on {uri}: {code} after {attempts} attempt(s) "
            "(the store is throttling or failing; the operation is safe to retry)"
        )

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = self.split(uri)
        try:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise self._error(uri, exc) from exc
        return body

    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> None:
        bucket, key = self.split(uri)
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            response = getattr(exc, "response", {}) or {}
            code = response.get("Error", {}).get("Code")
            if if_absent and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                retried = response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
                if retried and self._holds(uri, data):
                    return  # our own first attempt landed; only its answer was lost
                raise AlreadyExistsError(f"{uri} already exists") from exc
            raise self._error(uri, exc) from exc

    def _holds(self, uri: str, data: bytes) -> bool:
        # A failed read-back is a storage error (raised as such), never "already exists".
        return self.read_bytes(uri) == data

    def exists(self, uri: str) -> bool:
        bucket, key = self.split(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            error = self._error(uri, exc)
            if isinstance(error, NotFoundError):
                return False
            raise error from exc
        return True

    def list(self, prefix: str) -> list[ObjectInfo]:
        bucket, key = self.split(prefix)
        out = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key
            ):
                for item in page.get("Contents", []):
                    out.append(
                        ObjectInfo(
                            f"s3://{bucket}/{item['Key']}", item["Size"], item["ETag"].strip('"')
                        )
                    )
        except Exception as exc:
            raise self._error(prefix, exc) from exc
        return out

    def children(self, prefix: str) -> builtins.list[str]:
        """Names one level below `prefix` (folders and objects), sorted: one delimited listing,
        so a folder of many objects (checkpoints) costs one entry, not one per object."""
        bucket, key = self.split(prefix)
        key = key.rstrip("/") + "/" if key else ""
        names: set[str] = set()
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key, Delimiter="/"
            ):
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"][len(key) :].rstrip("/"))
                for item in page.get("Contents", []):
                    names.add(item["Key"][len(key) :])
        except Exception as exc:
            raise self._error(prefix, exc) from exc
        return sorted(name for name in names if name)

    def delete(self, uri: str) -> None:
        bucket, key = self.split(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise self._error(uri, exc) from exc


def _max_attempts() -> int:
    """Attempts per S3 call, retries included (AWS_MAX_ATTEMPTS, boto's own name; default 8)."""
    return int(os.environ.get("AWS_MAX_ATTEMPTS") or 8)


def _retry_mode() -> str:
    """botocore retry mode (AWS_RETRY_MODE; default adaptive: backoff plus client-side
    rate limiting after throttling answers)."""
    return os.environ.get("AWS_RETRY_MODE") or "adaptive"


def _timeout_seconds() -> float:
    """Connect and read timeout of one S3 request (KUBELOOP_S3_TIMEOUT_SECONDS; default 60)."""
    return float(os.environ.get("KUBELOOP_S3_TIMEOUT_SECONDS") or 60)


def store_for(uri: str) -> ObjectStore:
    """The backend for a URI's scheme."""
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return FileStore()
    if scheme == "s3":
        return S3Store()
    raise StorageError(f"{uri}: unsupported scheme {scheme!r}; use s3:// or file://")


def arrow_filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path) for reading Parquet datasets with pyarrow."""
    from pyarrow import fs

    scheme = urlparse(uri).scheme
    if scheme == "file":
        return fs.LocalFileSystem(), str(FileStore.path(uri))
    if scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {}
        if endpoint:
            parsed = urlparse(endpoint)
            kwargs = {"endpoint_override": parsed.netloc, "scheme": parsed.scheme or "https"}
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            kwargs["region"] = region
        bucket, key = S3Store.split(uri)
        filesystem = fs.S3FileSystem(
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=_max_attempts()),
            connect_timeout=_timeout_seconds(),
            request_timeout=_timeout_seconds(),
            **kwargs,
        )
        return filesystem, f"{bucket}/{key}"
    raise StorageError(f"{uri}: unsupported scheme {scheme!r}; use s3:// or file://")
