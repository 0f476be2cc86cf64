"""Model versions and aliases under an artifacts URI: allocate, publish, list, resolve.

Layout (docs/contracts.md): `<artifacts>/versions/<n>/` holds a version, complete once its
`manifest.json` exists; `<artifacts>/aliases/<alias>.json` is a small pointer
`{"version": "3", "uri": "..."}`.

Allocation is safe when runs finish together: a run claims `versions/<n>/.claim` with an
exclusive create (`If-None-Match: *` on S3, `link()` on a file system) and moves on to n+1 when
someone else holds n. Nothing is ever overwritten: files of a version are written only by the
run holding its claim, and the manifest itself is written create-if-absent, last.

A claim names its run by the pipeline object's uid and the run id: run ids restart at 1 when a
pipeline is deleted and created again under the same name, so a run id alone would hand the new
pipeline's run 1 the old pipeline's version 1 without training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeloop.storage import AlreadyExistsError, NotFoundError, ObjectStore, join, store_for

__all__ = ["CLAIM", "MANIFEST", "Registry", "RegistryError", "VersionClaim"]

CLAIM = ".claim"
MANIFEST = "manifest.json"
_VERSION_KEY = re.compile(r"/versions/([1-9][0-9]*)/")
_ALIAS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_TRIES = 1000


class RegistryError(ValueError):
    """A version or alias reference that cannot be resolved or written."""


@dataclass(frozen=True)
class VersionClaim:
    """A version number this run holds; `complete` when a manifest already exists for it."""

    version: int
    uri: str
    complete: bool = False


class Registry:
    """The versions and aliases below one artifacts URI (s3:// or file://)."""

    def __init__(self, artifacts: str, store: ObjectStore | None = None) -> None:
        self.artifacts = artifacts.rstrip("/")
        self.store = store if store is not None else store_for(artifacts)

    def version_uri(self, version: int | str) -> str:
        """URI of a version folder (no trailing slash)."""
        return join(self.artifacts, "versions", str(version))

    def _numbers(self) -> tuple[set[int], set[int]]:
        """(claimed or partly written version numbers, complete version numbers)."""
        seen: set[int] = set()
        complete: set[int] = set()
        for obj in self.store.list(join(self.artifacts, "versions") + "/"):
            match = _VERSION_KEY.search(obj.uri[len(self.artifacts) :])
            if not match:
                continue
            number = int(match.group(1))
            seen.add(number)
            if obj.uri.endswith("/" + MANIFEST):
                complete.add(number)
        return seen, complete

    def versions(self) -> list[int]:
        """Complete versions (with a manifest), ascending; incomplete ones are never listed."""
        return sorted(self._numbers()[1])

    def latest(self) -> int | None:
        """The highest complete version, or None."""
        found = self.versions()
        return found[-1] if found else None

    def allocate(self, run_id: str, pipeline_uid: str | None = None) -> VersionClaim:
        """Claim the next free version for run `run_id` of pipeline object `pipeline_uid`.

        Idempotent per run: a restarted run gets back the version it claimed before (marked
        `complete` when that version was already published), so a retried pod never makes a
        second version of the same run. Only the same run of the same pipeline object gets a
        claim back; any other run (a re-created pipeline's run 1 included) claims a new number.
        """
        owner = (pipeline_uid, run_id)
        seen, complete = self._numbers()
        for number in sorted(seen, reverse=True)[:50]:
            if self._claim_owner(number) == owner:
                return VersionClaim(number, self.version_uri(number), number in complete)
        candidate = max(seen, default=0) + 1
        claim: dict[str, str] = {"runId": run_id}
        if pipeline_uid is not None:
            claim["pipelineUid"] = pipeline_uid
        claim["claimedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
        body = json.dumps(claim).encode()
        for _ in range(_MAX_TRIES):
            try:
                self.store.write_bytes(
                    join(self.version_uri(candidate), CLAIM), body, if_absent=True
                )
            except AlreadyExistsError:
                # Another run won this number, or our own create succeeded and only its answer
                # was lost (the retry then sees 412): read the claim before moving on, so a
                # lost answer never leaves an orphan claim behind.
                if self._claim_owner(candidate) == owner:
                    return VersionClaim(candidate, self.version_uri(candidate))
                candidate += 1
                continue
            return VersionClaim(candidate, self.version_uri(candidate))
        raise RegistryError(f"could not claim a version under {self.artifacts} after many tries")

    def _claim_owner(self, number: int) -> tuple[str | None, str] | None:
        """(pipeline uid, run id) of the claim on `number`; None when unclaimed or unreadable."""
        try:
            data = json.loads(self.store.read_bytes(join(self.version_uri(number), CLAIM)))
        except (NotFoundError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("runId") is None:
            return None
        uid = data.get("pipelineUid")
        return (str(uid) if uid is not None else None), str(data["runId"])

    def publish(self, local_dir: Path, claim: VersionClaim) -> str:
        """Upload a local version folder; manifest.json goes last and create-if-absent."""
        if not (local_dir / MANIFEST).is_file():
            raise RegistryError(f"{local_dir} has no {MANIFEST}: write it before publishing")
        files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
        for path in files:
            rel = path.relative_to(local_dir).as_posix()
            self.store.write_bytes(join(claim.uri, rel), path.read_bytes())
        manifest = (local_dir / MANIFEST).read_bytes()
        uri = join(claim.uri, MANIFEST)
        try:
            self.store.write_bytes(uri, manifest, if_absent=True)
        except AlreadyExistsError:
            # Published before: by this run (a retried pod, or a create whose answer was
            # lost) when the bytes are ours, else never overwritten.
            if self.store.read_bytes(uri) != manifest:
                raise AlreadyExistsError(
                    f"{uri} already exists with other content: version {claim.version} "
                    "was published by another run and is never overwritten"
                ) from None
        return claim.uri

    def read_manifest(self, version: int | str) -> dict[str, Any]:
        """The manifest of a complete version."""
        try:
            data: dict[str, Any] = json.loads(
                self.store.read_bytes(join(self.version_uri(version), MANIFEST))
            )
        except NotFoundError as exc:
            raise RegistryError(
                f"version {version} under {self.artifacts} is not complete"
            ) from exc
        return data

    def set_alias(self, alias: str, version: int | str, **extra: Any) -> dict[str, Any]:
        """Point `alias` at a complete version (the promoter calls this); returns the pointer."""
        if not _ALIAS.match(alias) or alias == "latest" or alias.isdigit():
            raise RegistryError(
                f"alias {alias!r} must be lowercase letters, digits and '-', "
                "not 'latest' or a number"
            )
        if int(version) not in self.versions():
            raise RegistryError(f"version {version} under {self.artifacts} is not complete")
        pointer = {"version": str(version), "uri": self.version_uri(version), **extra}
        self.store.write_bytes(self._alias_uri(alias), json.dumps(pointer, sort_keys=True).encode())
        return pointer

    def get_alias(self, alias: str) -> dict[str, Any] | None:
        """The pointer an alias holds, or None when it was never set."""
        try:
            data: dict[str, Any] = json.loads(self.store.read_bytes(self._alias_uri(alias)))
        except NotFoundError:
            return None
        return data

    def _alias_uri(self, alias: str) -> str:
        return join(self.artifacts, "aliases", f"{alias}.json")

    def resolve(self, ref: str) -> str:
        """URI of `champion` (any alias), `latest` or a version number."""
        if ref.isdigit():
            if int(ref) not in self.versions():
                raise RegistryError(f"version {ref} under {self.artifacts} is not complete")
            return self.version_uri(ref)
        if ref == "latest":
            latest = self.latest()
            if latest is None:
                raise RegistryError(f"no complete version under {self.artifacts} yet")
            return self.version_uri(latest)
        pointer = self.get_alias(ref)
        if pointer is None:
            raise RegistryError(f"alias {ref!r} is not set under {self.artifacts}")
        return str(pointer["uri"])
