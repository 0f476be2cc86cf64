"""`kubeloop versions <pipeline>`: every model version, newest first, with its run, trigger,
metrics, data fingerprint, the aliases pointing at it and its latest promotion."""

from __future__ import annotations

import argparse

from kubeloop.registrycli.source import dump, locate, parser, read_manifests, run
from kubeloop.registrycli.views import render_versions, version_rows

__all__ = ["main"]


def _versions(args: argparse.Namespace) -> str:
    source = locate(args)
    manifests = read_manifests(source)
    registry = source.registry
    rows = version_rows(manifests, registry.aliases(), registry.history())
    if args.output == "json":
        return dump(rows)
    return render_versions(rows, args.metric or source.gate_metric)


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop versions`."""
    cli = parser("kubeloop versions", "List a pipeline's model versions from its registry.")
    cli.add_argument(
        "--metric", help="the metric column (default: the gate's metric, else every metric)"
    )
    return run(_versions, cli.parse_args(argv))
