"""What `kubeloop versions` and `kubeloop compare` show, as pure functions of manifests, alias
pointers and promotion history (read by `kubeloop.registrycli.source`); no I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CompareRow",
    "compare_rows",
    "render_compare",
    "render_versions",
    "short_fingerprint",
    "version_rows",
]

# Manifest parts that say how to load a version, not what it is: too long to compare usefully.
_NOT_COMPARED = {"signature", "features", "target", "files", "profile", "format", "version"}
_NOT_COMPARED_DATA = {"files"}
# Sections shown first, in this order; top-level scalars form "lineage", other dicts follow.
_SECTIONS = ("metrics", "params", "data", "lineage")


def short_fingerprint(fingerprint: str | None) -> str:
    """`sha256:b4d5f12fba97...` -> `b4d5f12fba97` (12 hex digits are enough to tell apart)."""
    if not fingerprint:
        return "-"
    return fingerprint.split(":", 1)[-1][:12]


def _promotions(version: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: entry.get(k) for k in ("alias", "promotedAt", "by", "reason", "previous")}
        for entry in history
        if str(entry.get("version")) == version
    ]


def version_rows(
    manifests: dict[int, dict[str, Any]],
    aliases: dict[str, dict[str, Any]],
    history: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per version, newest first: what `kubeloop versions -o json` prints.

    `promoted` is the version's latest promotion to any alias (history, oldest first, else
    the alias pointer when the registry predates histories); `promotions` lists them all.
    """
    rows = []
    for number in sorted(manifests, reverse=True):
        manifest = manifests[number]
        version = str(number)
        pointing = sorted(a for a, p in aliases.items() if str(p.get("version")) == version)
        promotions = _promotions(version, history)
        if not promotions:
            # A registry written before histories were kept: the pointers say when.
            promotions = sorted(
                (
                    {"alias": a, **{k: aliases[a].get(k) for k in ("promotedAt", "by", "reason")}}
                    for a in pointing
                    if aliases[a].get("promotedAt")
                ),
                key=lambda p: str(p["promotedAt"]),
            )
        latest = promotions[-1] if promotions else None  # history is oldest first
        data = manifest.get("data") or {}
        rows.append(
            {
                "version": number,
                "runId": manifest.get("runId"),
                "trigger": manifest.get("trigger") or "-",
                "created": manifest.get("created"),
                "metrics": manifest.get("metrics") or {},
                "dataFingerprint": data.get("fingerprint"),
                "rows": data.get("rows"),
                "aliases": pointing,
                "promoted": None
                if latest is None
                else {k: latest.get(k) for k in ("alias", "promotedAt", "by", "reason")},
                "promotions": promotions,
            }
        )
    return rows


def _when(stamp: Any) -> str:
    """`2026-11-30T14:09:23.512+00:00` -> `2026-11-30 14:09:23Z` (seconds are enough here)."""
    text = str(stamp or "-")
    return text[:19].replace("T", " ") + "Z" if len(text) >= 19 else text


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_versions(rows: list[dict[str, Any]], metric: str | None = None) -> str:
    """The `kubeloop versions` table; `metric` (the gate's) alone, else every metric."""
    metrics = [metric] if metric else sorted({name for row in rows for name in row["metrics"]})
    header = ["VERSION", "RUN", "TRIGGER", *(m.upper() for m in metrics), "DATA"]
    header += ["ALIASES", "PROMOTED"]
    body = []
    for row in rows:
        promoted = row["promoted"]
        when = "-"
        if promoted:
            when = f"{_when(promoted['promotedAt'])} by {promoted['by']}"
        body.append(
            [
                str(row["version"]),
                _number(row["runId"]),
                str(row["trigger"]),
                *(_number(row["metrics"].get(m)) for m in metrics),
                short_fingerprint(row["dataFingerprint"]),
                ",".join(row["aliases"]) or "-",
                when,
            ]
        )
    return _table(header, body)


@dataclass(frozen=True)
class CompareRow:
    """One field of two versions side by side; `delta` is b - a for metrics, else None."""

    section: str
    field: str
    a: Any
    b: Any
    delta: float | None

    @property
    def differs(self) -> bool:
        return bool(self.a != self.b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "field": self.field,
            "a": self.a,
            "b": self.b,
            "differs": self.differs,
            "delta": self.delta,
        }


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and (value or not prefix):  # an empty section has no rows
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _fields(manifest: dict[str, Any], lineage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """section -> flattened field -> value."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in manifest.items():
        if key in _NOT_COMPARED:
            continue
        if isinstance(value, dict):
            shown = value
            if key == "data":
                shown = {k: v for k, v in value.items() if k not in _NOT_COMPARED_DATA}
            _flatten(shown, "", sections.setdefault(key, {}))
        else:
            sections["lineage"][key] = value
    sections["lineage"].update(lineage)
    return sections


def _delta(a: Any, b: Any) -> float | None:
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (a, b)):
        return None
    return float(b) - float(a)


def compare_rows(
    a: dict[str, Any],
    b: dict[str, Any],
    lineage_a: dict[str, Any] | None = None,
    lineage_b: dict[str, Any] | None = None,
) -> list[CompareRow]:
    """Every field of two manifests, by section (metrics, params, data, lineage, others);
    `lineage_*` adds what the registry knows beyond the manifest (aliases, the champion a
    version replaced). A field one side lacks shows as None there."""
    fields_a, fields_b = _fields(a, lineage_a or {}), _fields(b, lineage_b or {})
    order = list(_SECTIONS) + sorted((set(fields_a) | set(fields_b)) - set(_SECTIONS))
    rows = []
    for section in order:
        left, right = fields_a.get(section, {}), fields_b.get(section, {})
        for field in sorted(set(left) | set(right)):
            va, vb = left.get(field), right.get(field)
            delta = _delta(va, vb) if section == "metrics" else None
            rows.append(CompareRow(section, field, va, vb, delta))
    return rows


def _cell(value: Any, section: str) -> str:
    if isinstance(value, float) and section == "metrics":
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith("sha256:"):
        return short_fingerprint(value)  # as `kubeloop versions` shows it; JSON has it whole
    return "-" if value is None else str(value)


def render_compare(rows: list[CompareRow], label_a: str, label_b: str) -> str:
    """The `kubeloop compare` table: `*` marks a row that differs; DELTA is b - a."""
    header = [" ", "FIELD", label_a, label_b, "DELTA"]
    body = [
        [
            "*" if row.differs else " ",
            f"{row.section}.{row.field}",
            _cell(row.a, row.section),
            _cell(row.b, row.section),
            "" if row.delta is None or not row.differs else f"{row.delta:+.4f}",
        ]
        for row in rows
    ]
    return _table(header, body)
