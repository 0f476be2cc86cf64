"""Model versions and aliases under an artifacts URI: allocate, publish, list, resolve.

Layout (docs/contracts.md): `<artifacts>/versions/<n>/` holds a version, complete once its
`manifest.json` exists; `<artifacts>/aliases/<alias>.json` is a small pointer
`{"version": "3", "uri": "...", "promotedAt", "by", "reason", "runId"}`, and every promotion is
also an immutable entry `<artifacts>/aliases/history/<alias>/<sequence>.json` (8 digits).
The registry is the source of truth: a re-created pipeline finds its aliases, their history
and its run numbering here (`aliases`, `history`, `last_run_id`).

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

__all__ = ["CLAIM", "HISTORY", "MANIFEST", "Registry", "RegistryError", "VersionClaim"]

CLAIM = ".claim"
MANIFEST = "manifest.json"
_VERSION_KEY = re.compile(r"/versions/([1-9][0-9]*)/")
_ALIAS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_TRIES = 1000
HISTORY = "history"
# The key is the sequence number alone: two promoters taking the same number collide on the
# exclusive create whatever versions they promote (a version in the key would let both in).
_HISTORY_NAME = re.compile(r"^([0-9]{8,})\.json$")
# last_run_id reads this many of the newest manifests besides listing runs/.
_NEWEST_MANIFESTS = 20


class RegistryError(ValueError):
    """A version or alias reference that cannot be resolved or written."""


def _check_alias(alias: str) -> None:
    if not _ALIAS.match(alias) or alias == "latest" or alias.isdigit():
        raise RegistryError(
            f"alias {alias!r} must be lowercase letters, digits and '-', not 'latest' or a number"
        )


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

    def set_alias(
        self,
        alias: str,
        version: int | str,
        *,
        by: str,
        reason: str,
        run_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Point `alias` at a complete version and record the promotion; returns the pointer
        the alias holds afterwards (a newer promoter's, when one overtook this one).

        `by` names who or what promoted (`operator`, `kubectl-annotate:alice`), `reason` why.
        The history entry is the commit point: it is created exclusively at the next sequence
        number (a writer that loses a number retries on the one after), so two promoters
        racing are both recorded, in order. The pointer is then written and settled on the
        newest entry (see `_settle`), so it never ends on a promotion the history overtook.
        """
        _check_alias(alias)
        if int(version) not in self.versions():
            raise RegistryError(f"version {version} under {self.artifacts} is not complete")
        entry: dict[str, Any] = {
            **extra,  # first: an extra field never replaces one of the entry's own
            "alias": alias,
            "version": str(version),
            # Microseconds: the history of all aliases is ordered by this time, and two
            # promotions by one writer within a millisecond did tie (then sorted by alias name).
            "promotedAt": datetime.now(UTC).isoformat(timespec="microseconds"),
            "by": by,
            "reason": reason,
            "runId": run_id,
        }
        sequence = max(self._history_keys(alias), default=0) + 1
        for _ in range(_MAX_TRIES):
            entry["previous"] = self._version_before(alias, sequence)
            key = self._history_uri(alias, sequence)
            body = json.dumps(entry, sort_keys=True).encode()
            try:
                self.store.write_bytes(key, body, if_absent=True)
            except AlreadyExistsError:
                sequence += 1
                continue
            break
        else:
            raise RegistryError(f"could not record a promotion of {alias!r} after many tries")
        pointer = self._pointer(entry)
        self._write_pointer(alias, pointer)
        return self._settle(alias, sequence) or pointer

    def _settle(self, alias: str, sequence: int) -> dict[str, Any] | None:
        """Re-point `alias` at its newest history entry while one newer than the pointer last
        written here (`sequence`'s, first) exists.

        Two promoters may write their pointers in the other order than their history entries,
        and any write may land late. So every pointer write, the settling ones included, is
        followed by a look at the history: the last pointer write of all is always of the
        newest entry (a newer entry's writer writes its pointer after committing it, and so
        after any look that missed it). Checking only once after the writer's own pointer
        left a settling write that landed late standing (a pointer on an older promotion).
        Returns the last pointer written, or None when `sequence` is newest.
        """
        written: dict[str, Any] | None = None
        while True:
            keys = self._history_keys(alias)
            newest = max(keys, default=0)
            if newest <= sequence:
                return written
            entry = self._read_entry(alias, newest, keys[newest])
            if entry is None:
                return written
            written, sequence = self._pointer(entry), newest
            self._write_pointer(alias, written)

    def _pointer(self, entry: dict[str, Any]) -> dict[str, Any]:
        skip = {"alias", "previous", "sequence"}
        pointer = {k: v for k, v in entry.items() if k not in skip and v is not None}
        pointer["uri"] = self.version_uri(entry["version"])
        return pointer

    def _write_pointer(self, alias: str, pointer: dict[str, Any]) -> None:
        self.store.write_bytes(self._alias_uri(alias), json.dumps(pointer, sort_keys=True).encode())

    def _version_before(self, alias: str, sequence: int) -> str | None:
        """The version `alias` held before promotion `sequence`: that of the entry before it,
        or, for the first entry, the pointer written before histories were kept."""
        if sequence > 1:
            keys = self._history_keys(alias)
            entry = self._read_entry(alias, sequence - 1, keys.get(sequence - 1, ""))
            return None if entry is None else str(entry["version"])
        pointer = self.get_alias(alias)
        return None if pointer is None else str(pointer["version"])

    def _history_prefix(self, alias: str | None = None) -> str:
        base = join(self.artifacts, "aliases", HISTORY)
        return base if alias is None else join(base, alias)

    def _history_uri(self, alias: str, sequence: int) -> str:
        return join(self._history_prefix(alias), f"{sequence:08d}.json")

    def _history_keys(self, alias: str) -> dict[int, str]:
        """sequence -> file name of the history entries of `alias` (one delimited listing)."""
        out: dict[int, str] = {}
        for name in self.store.children(self._history_prefix(alias)):
            match = _HISTORY_NAME.match(name)
            if match:
                out[int(match.group(1))] = name
        return out

    def _read_entry(self, alias: str, sequence: int, name: str) -> dict[str, Any] | None:
        if not name:
            return None
        try:
            data = json.loads(self.store.read_bytes(join(self._history_prefix(alias), name)))
        except (NotFoundError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        data["sequence"] = sequence
        return data

    def get_alias(self, alias: str) -> dict[str, Any] | None:
        """The pointer an alias holds, or None when it was never set."""
        try:
            data: dict[str, Any] = json.loads(self.store.read_bytes(self._alias_uri(alias)))
        except NotFoundError:
            return None
        return data

    def aliases(self) -> dict[str, dict[str, Any]]:
        """Every alias set under this artifacts location -> its pointer."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.store.children(join(self.artifacts, "aliases")):
            alias = name.removesuffix(".json")
            if name.endswith(".json") and _ALIAS.match(alias):
                pointer = self.get_alias(alias)
                if pointer is not None:
                    out[alias] = pointer
        return out

    def history(self, alias: str | None = None) -> list[dict[str, Any]]:
        """Promotions, oldest first: of `alias`, or of every alias (by time, then alias).

        Each entry: alias, version, previous (the version it replaced, or None), promotedAt,
        by, reason, runId, sequence (its place in the alias's history) and any extra fields.
        """
        if alias is not None:
            _check_alias(alias)
        names = [alias] if alias is not None else self.store.children(self._history_prefix())
        entries: list[dict[str, Any]] = []
        for name in names:
            for sequence, key in sorted(self._history_keys(name).items()):
                entry = self._read_entry(name, sequence, key)
                if entry is not None:
                    entries.append(entry)
        if alias is None:
            entries.sort(key=lambda e: (str(e.get("promotedAt")), e["alias"], e["sequence"]))
        return entries

    def last_run_id(self) -> int:
        """The highest numbered run this artifacts location has seen; 0 when none.

        Every run writes `runs/<id>/run.json` before it trains, so one delimited listing of
        `runs/` answers; the manifests of the newest versions (numbered in the order runs
        publish) cover a `runs/` prefix a lifecycle rule has removed. Run ids that are not
        numbers (`kubeloop train` on a laptop) do not count.
        """
        ids = {
            int(name)
            for name in self.store.children(join(self.artifacts, "runs"))
            if name.isdigit()
        }
        for version in self.versions()[-_NEWEST_MANIFESTS:]:
            try:
                run_id = str(self.read_manifest(version).get("runId", ""))
            except (RegistryError, json.JSONDecodeError):
                continue
            if run_id.isdigit():
                ids.add(int(run_id))
        return max(ids, default=0)

    def holds_only(self, run_id: str, pipeline_uid: str | None) -> bool:
        """Whether nothing but run `run_id` of pipeline object `pipeline_uid` left anything
        here: no alias, no other run's `runs/<id>/` (numbered ones, as `last_run_id` counts
        them), no version claimed by another run. A new pipeline's first run reads this before
        it trains; its own marker and claim (a retried pod) do not count."""
        if self.aliases():
            return False
        for name in self.store.children(join(self.artifacts, "runs")):
            if name.isdigit() and (name != run_id or not self._marker_of(run_id, pipeline_uid)):
                return False
        seen, _ = self._numbers()
        own = (pipeline_uid, run_id) if pipeline_uid else None  # no uid: nothing is its own
        return all(self._claim_owner(n) == own for n in sorted(seen))

    def _marker_of(self, run_id: str, pipeline_uid: str | None) -> bool:
        """Whether `runs/<run_id>/run.json` names pipeline object `pipeline_uid` (not None)."""
        if not pipeline_uid:
            return False
        try:
            body = json.loads(
                self.store.read_bytes(join(self.artifacts, "runs", run_id, "run.json"))
            )
        except (NotFoundError, json.JSONDecodeError):
            return False
        return isinstance(body, dict) and body.get("pipelineUid") == pipeline_uid

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
