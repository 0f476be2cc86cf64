"""What the API server does to a custom resource before storing it, done offline.

`admit()` prunes what a structural schema drops (null values of fields that are not
`nullable`; unknown fields unless the field validation is `Strict`, kubectl's default, which
refuses them), applies the CRD's structural defaults, validates the OpenAPI schema, refuses
duplicates in
`x-kubernetes-list-type` set and map lists, and evaluates every
`x-kubernetes-validations` CEL rule with a real CEL implementation (cel-python), plus the
Kubernetes CEL list extension `isSorted()` the rules use. It serves `kubeloop validate`, the
local API of `kubeloop local`, and the tests. Needs the `[local]` extra (jsonschema, cel-python).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kubeloop.api.crd import KINDS, build_crd

__all__ = [
    "FIELD_VALIDATION",
    "AdmissionResult",
    "admit",
    "admit_status",
    "crd_schema",
    "unknown_fields",
]

# The API server's `fieldValidation` modes: unknown fields are dropped silently, dropped with a
# warning (its default) or refused.
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


@dataclass
class AdmissionResult:
    """The object as it would be stored, and why it would be refused (empty when admitted)."""

    obj: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    # What the server would answer with `Warning` headers: the unknown fields it dropped.
    warnings: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """True when the API server would store the object."""
        return not self.errors


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of a kubeloop kind, or None for a kind kubeloop does not define."""
    for crd_kind in KINDS:
        if kind != crd_kind.kind:
            continue  # not built: a schema takes pydantic ~0.1 s, asked for every built-in kind
        crd = build_crd(crd_kind)
        version = crd["spec"]["versions"][0]
        if api_version == f"{crd['spec']['group']}/{version['name']}":
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _apply_defaults(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _apply_defaults(schema["items"], item)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for item in value.values():
            _apply_defaults(schema["additionalProperties"], item)


def _nodes(
    schema: dict[str, Any], value: Any, path: str
) -> Iterator[tuple[dict[str, Any], Any, str]]:
    """Every value in the object with the schema that describes it and its path, depth first."""
    yield schema, value, path
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in value:
                yield from _nodes(sub, value[name], _join(path, name))
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for name, item in value.items():
            yield from _nodes(schema["additionalProperties"], item, _join(path, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _nodes(schema["items"], item, _join(path, index))


def _unknown_fields(schema: dict[str, Any], obj: dict[str, Any]) -> Iterator[str]:
    for node, value, path in _nodes(schema, obj, ""):
        if (
            isinstance(value, dict)
            and "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            for name in value:
                if name not in node["properties"]:
                    yield f'{_join(path, name)}: unknown field "{name}"'


def unknown_fields(obj: dict[str, Any], schema: dict[str, Any] | None = None) -> list[str]:
    """The paths (`spec.foo`) of fields the schema (by default the kubeloop kind's) does not
    know; [] for a kind kubeloop does not define."""
    schema = schema or crd_schema(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if schema is None:
        return []
    return [message.split(":", 1)[0] for message in _unknown_fields(schema, obj)]


def _prune(schema: dict[str, Any], value: Any) -> None:
    """Drop what a structural schema does not keep, in place: unknown fields (unless the node
    preserves them) and null values of fields that are not `nullable`, as the API server does
    before defaulting (so a null field gets its default)."""
    if isinstance(value, dict) and "properties" in schema:
        known = schema["properties"]
        for name in list(value):
            sub = known.get(name)
            if sub is None:
                if not schema.get("x-kubernetes-preserve-unknown-fields"):
                    del value[name]
            elif value[name] is None and not sub.get("nullable"):
                del value[name]
            else:
                _prune(sub, value[name])
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        sub = schema["additionalProperties"]
        for name in list(value):
            if value[name] is None and not sub.get("nullable"):
                del value[name]
            else:
                _prune(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _prune(schema["items"], item)


def _duplicates(schema: dict[str, Any], obj: dict[str, Any]) -> Iterator[str]:
    """Items repeated in a list of `x-kubernetes-list-type` set (the whole item) or map (its
    key fields), refused as the API server does before any CEL rule runs."""
    for node, value, path in _nodes(schema, obj, ""):
        list_type = node.get("x-kubernetes-list-type")
        if not isinstance(value, list) or list_type not in ("set", "map"):
            continue
        seen: set[str] = set()
        for index, item in enumerate(value):
            key = item
            if list_type == "map" and isinstance(item, dict):
                key = {k: item[k] for k in node.get("x-kubernetes-list-map-keys", []) if k in item}
            text = json.dumps(key, sort_keys=True)
            if text in seen:
                yield f"{_join(path, index)}: Duplicate value: {text}"
            seen.add(text)


def _describe(error: Any) -> str:
    path = ""
    for key in error.absolute_path:
        path = _join(path, key)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"{_join(path, missing)}: Required value"
    if error.validator == "enum":
        allowed = ", ".join(f'"{v}"' for v in error.validator_value)
        return f'{path}: Unsupported value: "{error.instance}": supported values: {allowed}'
    if error.validator == "anyOf" and all("type" in option for option in error.validator_value):
        types = " or ".join(option["type"] for option in error.validator_value)
        return f"{path}: Invalid value: {error.instance!r}: must be of type {types}"
    if error.validator == "type":
        return f"{path}: Invalid value: {error.instance!r}: must be of type {error.validator_value}"
    return f"{path}: Invalid value: {error.instance!r}: {error.message}"


def _schema_errors(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    from jsonschema import Draft4Validator

    validator = Draft4Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error) for error in errors]


@cache
def _cel_program(rule: str) -> Any:
    import celpy
    from celpy import celtypes

    def is_sorted(items: Any) -> Any:
        return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))

    # celpy's DEBUG logging dumps each rule's AST, and its dumper fails (IndexError) on a
    # long `||` chain such as the halving budget rule: with the root logger at DEBUG, every
    # admission failed. Its INFO and above say nothing per evaluation.
    logging.getLogger("celpy").setLevel(max(logging.INFO, logging.getLogger("celpy").level))
    env = celpy.Environment()
    return env.program(env.compile(rule), functions={"isSorted": is_sorted})


def _cel_message(rule: dict[str, Any], value: Any) -> str:
    """The rule's messageExpression when it gives a string, else its message (as the API
    server does)."""
    from celpy.adapter import json_to_cel
    from celpy.evaluation import CELEvalError

    message = str(rule.get("message", ""))
    if "messageExpression" in rule:
        try:
            built = _cel_program(rule["messageExpression"]).evaluate({"self": json_to_cel(value)})
        except CELEvalError:
            return message
        if isinstance(built, str) and built:
            return str(built)
    return message


def _cel_errors(schema: dict[str, Any], obj: dict[str, Any]) -> Iterator[str]:
    from celpy.adapter import json_to_cel
    from celpy.evaluation import CELEvalError

    for node, value, path in _nodes(schema, obj, ""):
        for rule in node.get("x-kubernetes-validations", []):
            try:
                result = _cel_program(rule["rule"]).evaluate({"self": json_to_cel(value)})
                passed = bool(result) and not isinstance(result, Exception)
            except CELEvalError:
                passed = False
            if not passed:
                where = path + rule.get("fieldPath", "")
                message = _cel_message(rule, value)
                yield f"{where}: Invalid value: {message}" if where else message


MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations together
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _metadata_errors(meta: dict[str, Any]) -> Iterator[str]:
    """What the API server checks on every object's metadata (ValidateObjectMeta), in short."""
    name = meta.get("name")
    if isinstance(name, str) and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        yield (
            f"metadata.name: Invalid value: {name[:80]!r}: a lowercase RFC 1123 subdomain must "
            "consist of lower case alphanumeric characters, '-' or '.' (at most 253)"
        )
    annotations = meta.get("annotations") or {}
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        yield (
            f"metadata.annotations: Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes "
            f"(has {size}); keep large data in object storage and reference it"
        )
    for key, value in (meta.get("labels") or {}).items():
        if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
            yield (
                f"metadata.labels: Invalid value: {str(value)[:80]!r}: a label value must be at "
                "most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with "
                f"an alphanumeric (label {key!r})"
            )


def _schema_for(obj: dict[str, Any], field_validation: str) -> dict[str, Any] | AdmissionResult:
    """The CRD schema that judges `obj`, or the refusal of an object of no kubeloop kind;
    ValueError for a `fieldValidation` the API server does not know."""
    if field_validation not in FIELD_VALIDATION:
        raise ValueError(
            f"fieldValidation: {field_validation!r} is not one of {', '.join(FIELD_VALIDATION)}"
        )
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    schema = crd_schema(str(api_version), str(kind))
    if schema is None:
        return AdmissionResult(obj, [f'kind "{kind}" in "{api_version}" is not a kubeloop kind'])
    return schema


def admit_status(obj: dict[str, Any], field_validation: str = "Warn") -> AdmissionResult:
    """What the API server does to a write of the status subresource: the status is pruned and
    validated against its schema as `admit` does the whole object; the spec and metadata are not
    judged again (a status write cannot change them). Unlike a real server, the status is not
    defaulted: the operator reads it through models with the same defaults."""
    schema = _schema_for(obj, field_validation)
    if isinstance(schema, AdmissionResult):
        return schema
    stored = copy.deepcopy(obj)
    if not isinstance(stored.get("status"), dict):
        return AdmissionResult(stored)
    only_status = {"type": "object", "properties": {"status": schema["properties"]["status"]}}
    part = {"status": stored["status"]}
    errors, warnings = [], []
    if field_validation == "Strict":
        errors += list(_unknown_fields(only_status, part))
    elif field_validation == "Warn":
        warnings = [f'unknown field "{path}"' for path in unknown_fields(part, only_status)]
    _prune(only_status, part)
    errors += _schema_errors(only_status, part)
    stored["status"] = part["status"]
    return AdmissionResult(stored, errors, warnings)


def admit(obj: dict[str, Any], field_validation: str = "Strict") -> AdmissionResult:
    """Prune, default, validate and CEL-check a kubeloop custom resource as the API server
    would; `field_validation` (Ignore, Warn, Strict) decides what an unknown field does."""
    schema = _schema_for(obj, field_validation)
    if isinstance(schema, AdmissionResult):
        return schema
    stored = copy.deepcopy(obj)
    errors = list(_metadata_errors(stored.get("metadata") or {}))
    warnings: list[str] = []
    if field_validation == "Strict":
        errors += list(_unknown_fields(schema, stored))
    elif field_validation == "Warn":
        warnings = [f'unknown field "{path}"' for path in unknown_fields(stored)]
    _prune(schema, stored)
    _apply_defaults(schema, stored)
    schema_errors = _schema_errors(schema, stored) + list(_duplicates(schema, stored))
    errors += schema_errors
    # The API server runs CEL only on values that passed the schema.
    if not schema_errors:
        errors += list(_cel_errors(schema, stored))
    return AdmissionResult(stored, errors, warnings)
