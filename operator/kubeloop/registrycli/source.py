"""Where `kubeloop versions` and `kubeloop compare` read from.

The artifacts URI is `--artifacts`, else the TrainingPipeline's `spec.artifacts`, read through
the user's kubeconfig (the cluster is asked for nothing else). The registry itself is read
directly with the user's own storage credentials (AWS_* environment, or file://): it is the
source of truth, and stays readable when the pipeline object is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubeloop.registry import Registry, RegistryError
from kubeloop.storage import StorageError

__all__ = [
    "CliError",
    "Source",
    "dump",
    "locate",
    "parser",
    "read_manifests",
    "resolve_version",
    "run",
]

_CREDENTIALS = (
    "the command reads object storage with your own credentials: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL for a non-AWS endpoint"
)


class CliError(Exception):
    """A failure the user can fix; the message names the fix."""


@dataclass(frozen=True)
class Source:
    """The registry of one pipeline, and the metric its gate reads (None when unknown)."""

    pipeline: str
    registry: Registry
    gate_metric: str | None = None


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every registry command takes (the caller adds its own positionals)."""
    out = argparse.ArgumentParser(prog=prog, description=description)
    out.add_argument("pipeline", help="TrainingPipeline name")
    out.add_argument(
        "-n", "--namespace", help="its namespace (default: the kubeconfig context's, or default)"
    )
    out.add_argument(
        "--artifacts",
        help="the artifacts URI (s3://... or file://...); skips the cluster lookup",
    )
    out.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return out


def _context_namespace() -> str:
    import kubernetes

    try:
        _, active = kubernetes.config.list_kube_config_contexts(
            config_file=os.environ.get("KUBECONFIG") or None
        )
    except (kubernetes.config.ConfigException, OSError, TypeError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def _pipeline_spec(name: str, namespace: str | None) -> dict[str, Any]:
    import kopf
    import kubernetes

    from kubeloop.controller.kube import connect

    namespace = namespace or _context_namespace()
    hint = "pass --artifacts URI to read the registry without the cluster"
    try:
        found = connect().get("TrainingPipeline", namespace, name)
    except kubernetes.config.ConfigException as exc:
        raise CliError(f"no Kubernetes cluster configured ({exc}): {hint}") from exc
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        raise CliError(f"cannot read TrainingPipeline {namespace}/{name} ({exc}): {hint}") from exc
    if found is None:
        raise CliError(
            f"TrainingPipeline {namespace}/{name} not found: check the name and -n NAMESPACE, "
            f"or {hint}"
        )
    spec: dict[str, Any] = found.get("spec") or {}
    return spec


def locate(args: argparse.Namespace) -> Source:
    """The registry named by `--artifacts`, else by the pipeline's `spec.artifacts`."""
    if args.artifacts:
        return Source(args.pipeline, Registry(args.artifacts))
    spec = _pipeline_spec(args.pipeline, args.namespace)
    if not spec.get("artifacts"):
        raise CliError(f"TrainingPipeline {args.pipeline} has no spec.artifacts")
    metric = (spec.get("promotion") or {}).get("metric")
    return Source(args.pipeline, Registry(spec["artifacts"]), metric)


def _versions(source: Source) -> list[int]:
    found = source.registry.versions()
    if not found:
        raise CliError(
            f"no model versions under {source.registry.artifacts} yet: a run of "
            f"{source.pipeline} publishes one when it succeeds (kubectl get tp {source.pipeline} "
            "shows its runs); check the URI if runs did succeed"
        )
    return found


def read_manifests(source: Source, versions: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """version -> manifest, for `versions` (default: all), read in parallel."""
    wanted = _versions(source) if versions is None else versions
    with ThreadPoolExecutor(8) as pool:
        manifests = list(pool.map(source.registry.read_manifest, wanted))
    return dict(zip(wanted, manifests, strict=True))


def resolve_version(source: Source, ref: str) -> int:
    """A version number, `latest` or an alias (`champion`, `production`...) -> the version."""
    versions = _versions(source)
    registry = source.registry
    listed = ", ".join(map(str, versions))
    if ref.isdigit():
        if int(ref) not in versions:
            raise CliError(
                f"version {ref} does not exist under {registry.artifacts}: versions are {listed}"
            )
        return int(ref)
    if ref == "latest":
        return versions[-1]
    aliases = registry.aliases()
    pointer = aliases.get(ref)
    if pointer is None:
        known = ", ".join(sorted(aliases)) or "none"
        raise CliError(
            f"{ref!r} is neither a version nor an alias under {registry.artifacts}: "
            f"use a version ({listed}), 'latest' or a set alias ({known})"
        )
    return int(pointer["version"])


def run(command: Callable[[argparse.Namespace], str], args: argparse.Namespace) -> int:
    """Print what `command` returns; a fixable failure prints `error: ...` and returns 1."""
    try:
        text = command(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (StorageError, RegistryError) as exc:
        print(f"error: cannot read the registry: {exc}; {_CREDENTIALS}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def dump(data: Any) -> str:
    """JSON output: stable keys, one trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
