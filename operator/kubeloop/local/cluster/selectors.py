"""Label and field selectors as the API server reads them from `?labelSelector=&fieldSelector=`.

kubectl sends them where a real server filters: `kubectl wait` and `rollout status` watch one
object with `fieldSelector=metadata.name=<name>`, `describe` lists the Events of an object with
`involvedObject.name=...,involvedObject.namespace=...,involvedObject.uid=...`, and `kubectl
logs deployment/<name>` finds the pods with the Deployment's `labelSelector`. kmock ignores
both, so the emulator filters lists and watch events with `Selector.matches`.

Field selectors: `path=value`, `path==value`, `path!=value`, comma-separated (all must hold);
a path is any dotted path into the object (`metadata.name`, `involvedObject.uid`,
`status.phase`, `spec.nodeName`), a missing field reads as "" (so `spec.nodeName=` matches an
unscheduled pod, as on a real server). Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
`k notin (a,b)`, `k` (exists), `!k` (does not exist). A selector that cannot be parsed raises
`SelectorError`, which the emulator answers with 400 naming the selector.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Requirement", "Selector", "SelectorError", "field_value", "parse_field", "parse_label"]


class SelectorError(ValueError):
    """A label or field selector that cannot be parsed."""


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path as a field selector compares it ("" when absent)."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _split(text: str) -> list[str]:
    """Comma-separated terms, commas inside `(...)` kept (`k in (a,b)`)."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


@dataclass(frozen=True)
class Requirement:
    """One term: a label or a field, an operator and the values it compares with."""

    on: str  # "label" or "field"
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def holds(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object satisfies this term."""
        labels = obj.get("metadata", {}).get("labels") or {}
        if self.op in ("exists", "!exists"):
            return (self.key in labels) == (self.op == "exists")
        value = field_value(obj, self.key) if self.on == "field" else labels.get(self.key)
        return (value in self.values) == (self.op in ("=", "in"))


def parse_field(text: str) -> list[Requirement]:
    """The requirements of a field selector (all must hold)."""
    out: list[Requirement] = []
    for term in _split(text):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|!=|=)\s*(.*)", term)
        if match is None:
            raise SelectorError(
                f"fieldSelector {text!r}: {term!r} is not `field=value` or `field!=value`"
            )
        path, op, wanted = match.groups()
        out.append(Requirement("field", path, "!=" if op == "!=" else "=", frozenset([wanted])))
    return out


def parse_label(text: str) -> list[Requirement]:
    """The requirements of a label selector (all must hold)."""
    out: list[Requirement] = []
    key = r"[A-Za-z0-9_.\-/]+"
    for term in _split(text):
        if m := re.fullmatch(rf"({key})\s+(in|notin)\s+\((.*)\)", term):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            out.append(Requirement("label", m.group(1), m.group(2), values))
        elif m := re.fullmatch(rf"({key})\s*(==|!=|=)\s*([A-Za-z0-9_.\-]*)", term):
            op = "!=" if m.group(2) == "!=" else "="
            out.append(Requirement("label", m.group(1), op, frozenset([m.group(3)])))
        elif m := re.fullmatch(rf"(!?)\s*({key})", term):
            op = "!exists" if m.group(1) else "exists"
            out.append(Requirement("label", m.group(2), op))
        else:
            raise SelectorError(f"labelSelector {text!r}: {term!r} is not a label requirement")
    return out


@dataclass(frozen=True)
class Selector:
    """A request's label and field selectors; matches every object when both are empty."""

    requirements: tuple[Requirement, ...] = field(default=())

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Selector:
        """From a request's query (`labelSelector`, `fieldSelector`)."""
        return cls(
            tuple(parse_label(params.get("labelSelector") or ""))
            + tuple(parse_field(params.get("fieldSelector") or ""))
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object satisfies every requirement."""
        return all(requirement.holds(obj) for requirement in self.requirements)
