"""`kubeloop trials <pipeline>`: the search behind a version (spec.search): every trial's
estimator, params, budget, score and state, the winner marked, then the score of each trial
and the effect of each parameter, read from the version's manifest (`search`)."""

from __future__ import annotations

import argparse

from kubeloop.api.search import SearchRecord
from kubeloop.registrycli.source import (
    CliError,
    dump,
    locate,
    parser,
    read_manifests,
    resolve_version,
    run,
)
from kubeloop.registrycli.trialviews import render_search_report, render_trials, trial_rows

__all__ = ["main"]


def _trials(args: argparse.Namespace) -> str:
    source = locate(args)
    if args.version:
        number = resolve_version(source, args.version)
        manifests = read_manifests(source, [number])
    else:  # the newest version a search produced
        manifests = {n: m for n, m in read_manifests(source).items() if m.get("search")}
        if not manifests:
            raise CliError(
                f"no version of {source.pipeline} under {source.registry.artifacts} comes from a "
                "search: a run of a pipeline with spec.search records its trials in the version"
            )
        number = max(manifests)
    manifest = manifests[number]
    if not manifest.get("search"):
        raise CliError(
            f"version {number} was not trained by a search (its manifest has no `search`): "
            "`kubeloop trials` without --version shows the newest one that was"
        )
    record = SearchRecord.model_validate(manifest["search"])
    rows = trial_rows(record)
    if args.output == "json":
        return dump(
            {
                "version": number,
                "strategy": record.strategy,
                "metric": record.metric,
                "winner": record.winner,
                "refit": record.refit,
                "trials": rows,
            }
        )
    head = (
        f"version {number}: {record.strategy} search, seed {record.seed}, winner trial "
        f"{record.winner}{' (refit)' if record.refit else ''}\n"
    )
    # A trial with no estimator of its own trained the spec's: the manifest's, unless the
    # winner brought its own.
    default = str(manifest.get("estimator") or "-")
    if record.winning().assignment.estimator is not None:
        default = "spec.model.estimator"
    report = render_search_report(rows, record.metric, default)
    return head + render_trials(rows, record.metric) + "\n" + report


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop trials`."""
    cli = parser("kubeloop trials", "List the search trials behind a model version.")
    cli.add_argument(
        "--version", help="a version, 'latest' or an alias (default: the newest from a search)"
    )
    return run(_trials, cli.parse_args(argv))
