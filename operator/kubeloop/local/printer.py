"""`kubeloop local get`: the CRDs' additionalPrinterColumns, printed the way kubectl prints them.

Columns come from `kubeloop.api.crd.KINDS` (the same list the CRDs are rendered from), so the
output cannot drift from what `kubectl get tp,md,dm` shows on a cluster. The subset of JSONPath
that printer columns use is evaluated here: `.a.b`, `.a[0]`, `.a[*]` and the filter
`.a[?(@.k=="v")].b`. Like kubectl: NAME first (NAMESPACE before it with -A), `priority > 0`
columns only with `-o wide`, `<none>` for missing values, dates shown as an age (`5m`),
several matches joined by commas, and one table per kind separated by a blank line.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubeloop.api.crd import KINDS, CrdKind

__all__ = ["ALIASES", "columns_for", "evaluate", "format_age", "render_table", "resolve_kind"]

ALIASES: dict[str, CrdKind] = {}
for _kind in KINDS:
    for _alias in (
        _kind.short_name,
        _kind.plural,
        _kind.kind.lower(),
        _kind.name,
    ):
        ALIASES[_alias] = _kind

_TOKEN = re.compile(
    r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)==\"([^\"]*)\"\)\]"
)


def resolve_kind(name: str) -> CrdKind:
    """The kind for `tp`, `trainingpipelines`, `trainingpipeline` or the CRD name."""
    try:
        return ALIASES[name.lower()]
    except KeyError:
        known = ", ".join(sorted({k.short_name for k in KINDS}))
        raise KeyError(f'the server doesn\'t have a resource type "{name}" (try {known})') from None


def evaluate(obj: Any, path: str) -> list[Any]:
    """All values a printer-column JSONPath selects in `obj` (empty when none)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    nodes = [obj]
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[pos:]!r}")
        pos = match.end()
        key, index, filter_key, filter_value = match.groups()
        out: list[Any] = []
        for node in nodes:
            if key is not None:
                if isinstance(node, Mapping) and key in node:
                    out.append(node[key])
            elif index is not None:
                if isinstance(node, list):
                    if index == "*":
                        out.extend(node)
                    elif int(index) < len(node):
                        out.append(node[int(index)])
            elif isinstance(node, list):
                for item in node:
                    found = evaluate(item, "." + filter_key)
                    if found and _text(found[0]) == filter_value:
                        out.append(item)
        nodes = out
    return nodes


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def format_age(timestamp: str, now: datetime.datetime | None = None) -> str:
    """kubectl's short human duration: 45s, 5m10s (under 10m), 3h, 2d5h, 400d."""
    now = now or datetime.datetime.now(tz=datetime.UTC)
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _cell(column: Mapping[str, Any], obj: Mapping[str, Any], now: datetime.datetime) -> str:
    values = evaluate(obj, column["jsonPath"])
    if not values or all(v is None for v in values):
        return "<none>"
    if column.get("type") == "date":
        return ",".join(format_age(str(v), now) for v in values if v is not None)
    return ",".join(_text(v) for v in values if v is not None)


def columns_for(kind: CrdKind, *, wide: bool = False) -> list[dict[str, Any]]:
    """The printer columns kubectl shows for a kind (priority 0 only unless `wide`)."""
    return [c for c in kind.columns if wide or int(c.get("priority", 0)) == 0]


def render_table(
    kind: CrdKind,
    objects: Sequence[Mapping[str, Any]],
    *,
    wide: bool = False,
    all_namespaces: bool = False,
    now: datetime.datetime | None = None,
) -> str:
    """One kubectl table (header + rows, columns padded 3 apart), or kubectl's empty notice."""
    now = now or datetime.datetime.now(tz=datetime.UTC)
    columns = columns_for(kind, wide=wide)
    header = [c["name"].upper() for c in columns]
    rows: list[list[str]] = []
    for obj in sorted(
        objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
    ):
        cells = [obj["metadata"]["name"]] + [_cell(c, obj, now) for c in columns]
        if all_namespaces:
            cells.insert(0, obj["metadata"].get("namespace", ""))
        rows.append(cells)
    head = ["NAME", *header]
    if all_namespaces:
        head.insert(0, "NAMESPACE")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [head, *rows]
    ]
    return "\n".join(lines)
