"""docs/operations.md lists every chart value with its default and its values.yaml comment
(hack/chart_values_doc.py writes the table)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.hack.scripts import load

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeloop"
values_doc = load("chart_values_doc")

SCHEMA = {
    "properties": {
        "image": {"properties": {"tag": {}, "pullPolicy": {}}},
        "labels": {"additionalProperties": {"type": "string"}},
        "probe": {"properties": {"port": {}, "path": {}}},
    }
}
VALUES = """\
# -- Image of the operator.
image:
  # -- Tag; empty: appVersion.
  tag: ""
  pullPolicy: IfNotPresent

# -- Labels of every object: one value, a map of free keys.
labels:
  team: ml

# A plain comment above a section describes its keys that have none.
probe:
  port: 8080
  # -- Path of the probe.
  path: /healthz
peers:
  - namespaceSelector:
      matchLabels: {a: b}
"""


def test_knobs_are_the_leaves_with_their_comment_or_their_sections() -> None:
    got = [(k.path, k.default, k.description) for k in values_doc.knobs(VALUES, SCHEMA)]
    assert got == [
        ("image.tag", "", "Tag; empty: appVersion."),
        ("image.pullPolicy", "IfNotPresent", "Image of the operator."),
        ("labels", {"team": "ml"}, "Labels of every object: one value, a map of free keys."),
        ("probe.port", 8080, "A plain comment above a section describes its keys that have none."),
        ("probe.path", "/healthz", "Path of the probe."),
        ("peers", [{"namespaceSelector": {"matchLabels": {"a": "b"}}}], ""),
    ]


def test_the_operations_guide_lists_every_chart_value_as_values_yaml_says() -> None:
    text, schema = (
        (CHART / "values.yaml").read_text(),
        json.loads((CHART / "values.schema.json").read_text()),
    )
    undocumented = [k.path for k in values_doc.knobs(text, schema) if not k.description]
    assert undocumented == [], "give each a `# -- ` comment in values.yaml"
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert values_doc.render(doc, text, schema) == doc, "run python3 hack/chart_values_doc.py"
