"""`kubeloop compare <pipeline> <a> <b>`: two versions' metrics, params, data and lineage side
by side; `*` marks what differs, DELTA is b - a for metrics."""

from __future__ import annotations

import argparse
from typing import Any

from kubeloop.registrycli.source import dump, locate, parser, read_manifests, resolve_version, run
from kubeloop.registrycli.views import compare_rows, render_compare

__all__ = ["main"]


def _registry_lineage(
    version: int, aliases: dict[str, dict[str, Any]], history: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the registry, not the manifest, knows of a version: its aliases and the champion
    it replaced when it was promoted."""
    replaced = [
        e.get("previous")
        for e in history
        if e.get("alias") == "champion" and str(e.get("version")) == str(version)
    ]
    pointing = sorted(a for a, p in aliases.items() if str(p.get("version")) == str(version))
    return {
        "aliases": ",".join(pointing) or None,
        "previousChampion": replaced[-1] if replaced else None,
    }


def _label(ref: str, version: int) -> str:
    return str(version) if ref == str(version) else f"{version} ({ref})"


def _compare(args: argparse.Namespace) -> str:
    source = locate(args)
    a, b = resolve_version(source, args.a), resolve_version(source, args.b)
    manifests = read_manifests(source, sorted({a, b}))
    aliases, history = source.registry.aliases(), source.registry.history("champion")
    rows = compare_rows(
        manifests[a],
        manifests[b],
        _registry_lineage(a, aliases, history),
        _registry_lineage(b, aliases, history),
    )
    if args.output == "json":
        return dump(
            {
                "a": {"ref": args.a, "version": a},
                "b": {"ref": args.b, "version": b},
                "rows": [row.to_dict() for row in rows],
            }
        )
    return render_compare(rows, _label(args.a, a), _label(args.b, b))


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop compare`."""
    cli = parser("kubeloop compare", "Compare two model versions of a pipeline side by side.")
    cli.add_argument("a", help="a version number, 'latest' or an alias (champion, production...)")
    cli.add_argument("b", help="the other one; deltas are b - a")
    return run(_compare, cli.parse_args(argv))
