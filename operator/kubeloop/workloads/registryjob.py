"""`kubeloop registry promote` and `kubeloop registry inspect`: what a registry Job runs. The
operator holds no object-store credentials, so every alias write it decides (a gate's promotion,
an approval, a rollback) and every read of the registry (what a re-created pipeline adopts) runs
here, in the trainer image, with the storage env a training Job gets.

    kubeloop registry promote --artifacts URI --version N --alias champion \\
        --by WHO --reason TEXT --pipeline NS/NAME [--result-path P]
    kubeloop registry inspect --artifacts URI --pipeline NS/NAME [--result-path P]
        [--require-empty --run-id N]

It checks the version first (complete: its manifest exists; every file's sha256 equals the
manifest's; the manifest names this pipeline), then points the alias at it
(`Registry.set_alias`, which also keeps the promotion history) and leaves a RegistryResult in
the termination message:

    {"kind": "RegistryResult", "ok": true, "alias", "version", "uri", "metrics", "previous",
     "runId"}
    {"kind": "RegistryResult", "ok": false, "reason", "message"}

| exit | reason | when |
| ---: | --- | --- |
| 0 | - | the alias points at the version |
| 1 | InternalError | a bug or an unexpected failure (the message has the exception) |
| 2 | - | bad arguments (argparse) |
| 30 | StorageUnreachable | the endpoint cannot be reached or the bucket does not exist |
| 31 | StorageAccessDenied | reading the version was refused (credentials) |
| 32 | ArtifactsNotWritable | writing the alias was refused |
| 33 | StorageError | any other object-store failure |
| 50 | VersionNotFound | no complete version N (no manifest) under the artifacts |
| 51 | ChecksumMismatch | a file of the version is missing or differs from the manifest |
| 52 | WrongPipeline | the version was trained by another pipeline |
| 53 | InvalidAlias | the alias is not a valid alias name |

Refusals (50-53) are final: the Job's podFailurePolicy fails it at once instead of retrying.

`inspect` reads what the registry holds for a pipeline whose status starts empty (created, or
deleted and created again): every alias's version, the champion's manifest (uri, metrics, run)
and the highest run id, so run numbering and the champion survive the object. It writes nothing:

    {"kind": "RegistryResult", "ok": true, "operation": "inspect", "lastRunId": 5,
     "aliases": {"champion": "2", "production": "2"}, "versions": [1, 2, 3, 4, 5],
     "champion": {"version": "2", "uri", "runId", "promotedAt"}, "metrics": {...}}

An empty registry (a new pipeline) answers lastRunId 0, no aliases, no champion. Only storage
failures (30-33) and InternalError fail it; the champion's manifest naming another pipeline is
WrongPipeline (52): adopting it would serve another pipeline's model.

`inspect --require-empty --run-id N` is the first init container of a new pipeline's first run
(the read folded into that run's Job): the result adds `"empty"`, whether nothing but run N of
this pipeline object (KUBELOOP_PIPELINE_UID; a retried pod's own marker and claim) is in the
registry. Empty: exit 0 and the pod goes on to train. Not empty: exit 60 (the operator adopts
what the registry holds and withdraws the run); a failed read: exit 61 (its result says why).
The run Job's podFailurePolicy fails the Job at once on both.
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from kubeloop.registry import Registry, RegistryError
from kubeloop.storage import StorageError
from kubeloop.workloads.logsetup import configure_logging
from kubeloop.workloads.result import write_result

__all__ = [
    "EXIT_CODES",
    "NOT_EMPTY_EXIT_CODE",
    "READ_FAILED_EXIT_CODE",
    "REFUSALS",
    "RegistryJobError",
    "empty_registry_result",
    "inspect",
    "main",
    "promote",
    "read_exit_code",
]

log = logging.getLogger("kubeloop.registry")

RESULT_KIND = "RegistryResult"
# Aliases a result lists at most: it must fit the 4 KiB termination message.
MAX_ALIASES = 32
EXIT_CODES: dict[str, int] = {
    "InternalError": 1,
    "StorageUnreachable": 30,
    "StorageAccessDenied": 31,
    "ArtifactsNotWritable": 32,
    "StorageError": 33,
    "VersionNotFound": 50,
    "ChecksumMismatch": 51,
    "WrongPipeline": 52,
    "InvalidAlias": 53,
}
# `inspect --require-empty`: the registry holds more than this run; the read failed.
NOT_EMPTY_EXIT_CODE = 60
READ_FAILED_EXIT_CODE = 61
# The verdicts about the version itself: retrying gives the same answer.
REFUSALS = ("VersionNotFound", "ChecksumMismatch", "WrongPipeline", "InvalidAlias")


class RegistryJobError(Exception):
    """A failure with a reason from EXIT_CODES and a sentence naming the version and cause."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in EXIT_CODES:
            raise ValueError(f"unknown registry failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


def _storage_error(exc: StorageError, *, writing: bool) -> RegistryJobError:
    # The trainer's classification of the same store failures (credentials, endpoint, ...).
    from kubeloop.workloads.trainer.errors import classify_storage_error

    classified = classify_storage_error(exc, writing=writing)
    return RegistryJobError(classified.reason, classified.message)


def _verify(registry: Registry, version: str, namespace: str, pipeline: str, work_dir: Path) -> Any:
    """The manifest of `version` once it is complete, intact and this pipeline's."""
    from kubeloop.modelformat import ModelFormatError, verify_folder
    from kubeloop.workloads.server.loading import fetch_version

    where = f"version {version} under {registry.artifacts}"
    try:
        manifest = registry.read_manifest(version)
    except RegistryError as exc:
        raise RegistryJobError(
            "VersionNotFound", f"{where} does not exist or is incomplete (no manifest.json)"
        ) from exc
    owner = (manifest.get("namespace"), manifest.get("pipeline"))
    if owner != (namespace, pipeline):
        trained_by = f"{owner[0]}/{owner[1]}" if all(owner) else "no pipeline it names"
        raise RegistryJobError(
            "WrongPipeline",
            f"{where} was trained by {trained_by}, not by TrainingPipeline {namespace}/{pipeline}",
        )
    # The server's own path: s3:// is downloaded, file:// verified in place.
    local = fetch_version(registry.version_uri(version), work_dir)
    try:
        verify_folder(local, manifest)
    except ModelFormatError as exc:
        raise RegistryJobError("ChecksumMismatch", f"{where} is corrupt: {exc}") from exc
    return manifest


def promote(  # noqa: PLR0917 (one per flag of the command)
    artifacts: str,
    version: str,
    alias: str,
    by: str,
    reason: str,
    pipeline: str,
    work_dir: Path,
) -> dict[str, Any]:
    """Verify `version` and point `alias` at it; returns the RegistryResult (ok). Raises
    RegistryJobError."""
    namespace, _, name = pipeline.partition("/")
    registry = Registry(artifacts)
    try:
        manifest = _verify(registry, version, namespace, name, work_dir)
        before = registry.get_alias(alias)
    except StorageError as exc:
        raise _storage_error(exc, writing=False) from exc
    try:
        pointer = registry.set_alias(alias, version, by=by, reason=reason)
    except RegistryError as exc:
        message = f"alias {alias!r} for version {version}: {exc}"
        raise RegistryJobError("InvalidAlias", message) from exc
    except StorageError as exc:
        raise _storage_error(exc, writing=True) from exc
    log.info("alias %s -> version %s (%s: %s)", alias, version, by, reason)
    return {
        "kind": RESULT_KIND,
        "ok": True,
        "alias": alias,
        "version": str(version),
        "uri": str(pointer["uri"]),
        "metrics": {k: v for k, v in (manifest.get("metrics") or {}).items()},
        "runId": manifest.get("runId"),
        "previous": (before or {}).get("version"),
    }


def inspect(artifacts: str, pipeline: str) -> dict[str, Any]:
    """What the registry holds for `pipeline` (NAMESPACE/NAME): its aliases, its champion and
    its highest run id; returns the RegistryResult (ok). Raises RegistryJobError."""
    namespace, _, name = pipeline.partition("/")
    registry = Registry(artifacts)
    try:
        pointers = registry.aliases()
        last_run_id = registry.last_run_id()
        versions = registry.versions()
        champion = pointers.get("champion")
        manifest = registry.read_manifest(champion["version"]) if champion else None
    except RegistryError as exc:
        # The champion alias points at a version without a manifest: nothing safe to adopt.
        raise RegistryJobError(
            "VersionNotFound", f"alias champion under {artifacts}: {exc}"
        ) from exc
    except StorageError as exc:
        raise _storage_error(exc, writing=False) from exc
    result: dict[str, Any] = {
        "kind": RESULT_KIND,
        "ok": True,
        "operation": "inspect",
        "lastRunId": last_run_id,
        "aliases": {
            alias: str(pointer["version"])
            for alias, pointer in sorted(pointers.items())[:MAX_ALIASES]
        },
        # The newest ones: status knows which versions exist beyond its own runs.
        "versions": versions[-MAX_ALIASES:],
    }
    if champion is not None and manifest is not None:
        owner = (manifest.get("namespace"), manifest.get("pipeline"))
        if owner != (namespace, name):
            trained_by = f"{owner[0]}/{owner[1]}" if all(owner) else "no pipeline it names"
            raise RegistryJobError(
                "WrongPipeline",
                f"alias champion under {artifacts} points at version {champion['version']}, "
                f"trained by {trained_by}, not by TrainingPipeline {namespace}/{name}",
            )
        run_id = manifest.get("runId")
        result["champion"] = {
            "version": str(champion["version"]),
            "uri": str(champion.get("uri") or registry.version_uri(champion["version"])),
            "runId": str(run_id) if run_id is not None else None,
            "promotedAt": champion.get("promotedAt"),
        }
        result["metrics"] = dict(manifest.get("metrics") or {})
    log.info("inspected %s: aliases %s, last run %s", artifacts, result["aliases"], last_run_id)
    return result


def empty_registry_result(args: list[str] | None = None) -> dict[str, Any]:
    """What `inspect` answers for a registry nothing was written to (a new pipeline): computed
    by `inspect` itself on an empty folder, for stand-ins of the registry Job; with the Job's
    `args`, as they ask (`--require-empty`: empty)."""
    result = copy.deepcopy(_empty_registry_result())
    if args is not None and "--require-empty" in args:
        result["empty"] = True
    return result


def read_exit_code(result: dict[str, Any]) -> int:
    """The exit code of `inspect --require-empty` that left `result`."""
    if not result.get("ok"):
        return READ_FAILED_EXIT_CODE
    return 0 if result.get("empty") else NOT_EMPTY_EXIT_CODE


@functools.cache
def _empty_registry_result() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as empty:
        return inspect(Path(empty).as_uri() + "/", "new")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeloop registry", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("promote", help="verify a version and point an alias at it")
    p.add_argument("--artifacts", required=True, help="the pipeline's spec.artifacts URI")
    p.add_argument("--version", required=True, help="the model version number")
    p.add_argument("--alias", default="champion", help="the alias to write (default champion)")
    p.add_argument("--by", required=True, help="who or what promotes (kept in the history)")
    p.add_argument("--reason", default="", help="why, in a sentence (kept in the history)")
    p.add_argument("--pipeline", required=True, help="NAMESPACE/NAME the version must belong to")
    p.add_argument("--work-dir", default=os.environ.get("KUBELOOP_WORK_DIR"))
    p.add_argument("--result-path", default=None, help="default KUBELOOP_RESULT_PATH")
    i = verbs.add_parser("inspect", help="read a pipeline's aliases, champion and run numbering")
    i.add_argument("--artifacts", required=True, help="the pipeline's spec.artifacts URI")
    i.add_argument("--pipeline", required=True, help="NAMESPACE/NAME the registry belongs to")
    i.add_argument("--result-path", default=None, help="default KUBELOOP_RESULT_PATH")
    i.add_argument(
        "--require-empty",
        action="store_true",
        help=f"exit {NOT_EMPTY_EXIT_CODE} unless the registry holds nothing but run --run-id "
        f"of this pipeline object; {READ_FAILED_EXIT_CODE} when the read fails",
    )
    i.add_argument("--run-id", default=None, help="the run whose own traces do not count")
    i.add_argument("--pipeline-uid", default=os.environ.get("KUBELOOP_PIPELINE_UID"))
    return parser


def main(argv: list[str]) -> int:
    """Run one registry operation; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    configure_logging()
    if "/" not in args.pipeline:
        _parser().error("--pipeline is NAMESPACE/NAME")
    if args.verb == "promote" and not args.version.isdigit():
        _parser().error("--version is a number")
    if args.verb == "inspect" and args.require_empty and not str(args.run_id).isdigit():
        _parser().error("--require-empty needs --run-id N")
    code = 0
    result: dict[str, Any]
    try:
        result = _run(args)
    except RegistryJobError as exc:
        log.error("%s: %s", exc.reason, exc.message)
        result = {"kind": RESULT_KIND, "ok": False, "reason": exc.reason, "message": exc.message}
        code = EXIT_CODES[exc.reason]
    except Exception as exc:
        log.error("registry operation failed:\n%s", traceback.format_exc())
        what = f"version {args.version}" if args.verb == "promote" else args.artifacts
        message = f"{what}: {type(exc).__name__}: {exc}"
        result = {"kind": RESULT_KIND, "ok": False, "reason": "InternalError", "message": message}
        code = 1
    if args.verb == "promote":
        result.setdefault("version", str(args.version))
        result.setdefault("alias", args.alias)
    else:
        result.setdefault("operation", "inspect")
        if args.require_empty:
            code = read_exit_code(result)
    write_result(result, args.result_path)
    return code


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.verb == "inspect":
        result = inspect(args.artifacts, args.pipeline)
        if args.require_empty:
            result["empty"] = _holds_only(args.artifacts, str(args.run_id), args.pipeline_uid)
        return result
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.gettempdir())
    work_dir.mkdir(parents=True, exist_ok=True)
    return promote(
        args.artifacts,
        args.version,
        args.alias,
        args.by,
        args.reason,
        args.pipeline,
        Path(tempfile.mkdtemp(prefix="registry-", dir=work_dir)),
    )


def _holds_only(artifacts: str, run_id: str, pipeline_uid: str | None) -> bool:
    try:
        return Registry(artifacts).holds_only(run_id, pipeline_uid)
    except StorageError as exc:
        raise _storage_error(exc, writing=False) from exc
