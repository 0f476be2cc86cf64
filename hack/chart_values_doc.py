#!/usr/bin/env python3
"""The chart's values reference in docs/operations.md, generated from values.yaml.

values.yaml documents each knob in the helm-docs style: a `# -- ` comment (continued by the
`# ` lines after it) right above the key. This writes one table row per knob (its path, its
default, that comment) between the markers of docs/operations.md; a knob without a comment of
its own takes its section's (the `# -- ` or plain comment above the section). `--check` fails
when the table is stale (tests/chart/test_values_doc.py runs it), so a new knob cannot land
undocumented.

    python3 hack/chart_values_doc.py            # rewrite the table
    python3 hack/chart_values_doc.py --check    # exit 1 when it differs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "charts" / "kubeloop" / "values.yaml"
SCHEMA = ROOT / "charts" / "kubeloop" / "values.schema.json"
DOC = ROOT / "docs" / "operations.md"
BEGIN = "<!-- chart-values:begin (hack/chart_values_doc.py writes this table) -->"
END = "<!-- chart-values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Knob:
    """One documented value: its dotted path, default and description."""

    path: str
    default: Any
    description: str


def _lookup(values: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        values = values[part]
    return values


def _structured(schema: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the schema gives the map at `path` named fields (a section of knobs), rather
    than free keys (labels, a node selector: one knob)."""
    node: Any = schema
    for part in path:
        node = (node.get("properties") or {}).get(part, {})
    return bool(node.get("properties"))


def knobs(text: str, schema: dict[str, Any]) -> list[Knob]:
    """Every knob of values.yaml in file order: a scalar, a list, or a map of free keys."""
    values = yaml.safe_load(text)
    out: list[Knob] = []
    stack: list[tuple[int, str, str]] = []  # (indent, key, description) of open sections
    comment: list[str] = []
    documented = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.startswith("-- "):
                comment, documented = [body[3:]], True
            elif comment or not documented:
                comment.append(body)
            continue
        if not stripped:
            comment, documented = [], False
            continue
        match = _KEY.match(line)
        if match is None or stripped.startswith("-"):
            comment, documented = [], False
            continue  # a list item or a continuation: part of the value above
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key, _ in stack), match.group("key"))
        try:
            value = _lookup(values, path)
        except (KeyError, TypeError):
            comment, documented = [], False
            continue  # a key inside a list item's map
        text_of = " ".join(c for c in comment if c).strip()
        inherited = next((d for _, _, d in reversed(stack) if d), "")
        if isinstance(value, dict) and value and _structured(schema, path):
            stack.append((indent, match.group("key"), text_of))
        else:
            out.append(Knob(".".join(path), value, text_of or inherited))
        comment, documented = [], False
    return out


def table(items: list[Knob]) -> str:
    rows = ["| value | default | what it does |", "| --- | --- | --- |"]
    for knob in items:
        default = json.dumps(knob.default, separators=(", ", ": "))
        description = knob.description.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{knob.path}` | `{default}` | {description} |")
    return "\n".join(rows)


def render(doc: str, values_text: str, schema: dict[str, Any]) -> str:
    """`doc` with the table between the markers replaced by the one `values_text` gives."""
    head, begin, rest = doc.partition(BEGIN)
    _old, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC.name} lacks the markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{table(knobs(values_text, schema))}\n{END}{tail}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the table is stale")
    args = parser.parse_args(argv)
    doc = DOC.read_text()
    fresh = render(doc, VALUES.read_text(), json.loads(SCHEMA.read_text()))
    if args.check:
        if fresh != doc:
            print(f"{DOC} is stale: run python3 hack/chart_values_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
