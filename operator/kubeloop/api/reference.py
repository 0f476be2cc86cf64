"""Render the API reference (docs/api.md) from the same schemas the CRDs carry."""

from __future__ import annotations

from typing import Any

from kubeloop.api.crd import KINDS, build_crd

__all__ = ["render_reference"]


def _type_of(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    return kind


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        default = f"`{sub['default']}`" if "default" in sub else ""
        mark = " (required)" if name in required else ""
        text = str(sub.get("description", "")).replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{field}`{mark} | {_type_of(sub)} | {default} | {text} |")
        child = sub.get("items", sub) if sub.get("type") == "array" else sub
        if isinstance(child.get("additionalProperties"), dict):
            child = child["additionalProperties"]
        rows += _rows(child, field + ("[]" if sub.get("type") == "array" else ""))
    return rows


def render_reference() -> str:
    """Markdown: one table per kind for spec and status, plus the cross-field rules."""
    out = [
        "# API reference: kubeloop.io/v1alpha1",
        "",
        "Generated from `kubeloop.api` by `make crds`; "
        "`kubectl explain <kind>.spec` shows the same.",
    ]
    for kind in KINDS:
        version = build_crd(kind)["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        out += ["", f"## {kind.kind} (`{kind.short_name}`)", "", schema["description"]]
        for part in ("spec", "status"):
            out += ["", f"### {part}", "", "| field | type | default | description |"]
            out += ["| --- | --- | --- | --- |", *_rows(schema["properties"][part], part)]
        rules = _collect_rules(schema["properties"]["spec"])
        if rules:
            out += ["", "### Rules checked at admission (CEL)", ""]
            out += [f"- {rule}" for rule in rules]
    return "\n".join(out) + "\n"


def _collect_rules(node: dict[str, Any], path: str = "spec") -> list[str]:
    rules = []
    for rule in node.get("x-kubernetes-validations", []):
        message = str(rule["message"])
        where = path + str(rule.get("fieldPath", ""))
        # Rules on a field or a list item leave the field's name to the API server's error.
        rules.append(message if message.startswith("spec.") else f"`{where}`: {message}")
    for name, sub in node.get("properties", {}).items():
        rules += _collect_rules(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        rules += _collect_rules(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        rules += _collect_rules(node["additionalProperties"], f"{path}.*")
    return rules
