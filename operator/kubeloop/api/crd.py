"""Generate the three CustomResourceDefinitions from the pydantic models.

The models are the single source of truth: `make crds` writes `crds/*.yaml` from here and a test
fails when the committed files differ from what this module renders.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticUndefined, core_schema

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from kubeloop.api.monitor import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from kubeloop.api.training import TrainingPipeline, TrainingPipelineSpec, TrainingPipelineStatus

__all__ = ["KINDS", "CrdKind", "build_crd", "render_crds", "structural_schema"]

_DROP = {"title", "additionalProperties_false"}
_HEADER = "# Generated from kubeloop.api by `make crds`. Do not edit by hand.\n"


@dataclass(frozen=True)
class CrdKind:
    """What a CRD needs besides the schema."""

    kind: str
    plural: str
    short_name: str
    resource: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: list[dict[str, Any]]
    scale: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The CRD's metadata.name, `<plural>.<group>`."""
        return f"{self.plural}.{API_GROUP}"


def _ready_column() -> dict[str, Any]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Status of the Ready condition.",
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        kind="TrainingPipeline",
        plural="trainingpipelines",
        short_name="tp",
        resource=TrainingPipeline,
        spec=TrainingPipelineSpec,
        status=TrainingPipelineStatus,
        columns=[
            {
                "name": "Phase",
                "type": "string",
                "jsonPath": ".status.phase",
                "description": "State of the latest run.",
            },
            {
                "name": "Champion",
                "type": "string",
                "jsonPath": ".status.champion.version",
                "description": "Promoted model version.",
            },
            {
                "name": "Metric",
                "type": "string",
                "jsonPath": ".spec.promotion.metric",
                "description": "Gate metric.",
            },
            {
                "name": "Score",
                "type": "number",
                "jsonPath": ".status.champion.score",
                "description": "The champion's gate metric.",
            },
            {
                "name": "Progress",
                "type": "integer",
                "jsonPath": ".status.currentRun.progress.percent",
                "description": "Percent done of the run in progress.",
            },
            {
                "name": "Trials",
                "type": "string",
                "jsonPath": ".status.search.progress",
                "description": "Search trials finished/planned of the latest run's search.",
            },
            _AGE,
        ],
    ),
    CrdKind(
        kind="ModelDeployment",
        plural="modeldeployments",
        short_name="md",
        resource=ModelDeployment,
        spec=ModelDeploymentSpec,
        status=ModelDeploymentStatus,
        columns=[
            {
                "name": "Version",
                "type": "string",
                "jsonPath": ".status.modelVersion",
                "description": "Version serving all traffic.",
            },
            {
                "name": "Ready",
                "type": "integer",
                "jsonPath": ".status.readyReplicas",
                "description": "Ready serving pods.",
            },
            {
                "name": "Canary",
                "type": "integer",
                "jsonPath": ".status.canary.trafficPercent",
                "description": "Percent of traffic the version being rolled out really gets: "
                "its share of the serving pods.",
                "priority": 1,
            },
            {
                "name": "Step",
                "type": "integer",
                "jsonPath": ".status.canary.stepPercent",
                "description": "The canary step declared in spec.rollout.canary.steps, percent.",
                "priority": 1,
            },
            {
                "name": "URL",
                "type": "string",
                "jsonPath": ".status.url",
                "description": "V2 inference endpoint.",
            },
            _AGE,
        ],
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    ),
    CrdKind(
        kind="DriftMonitor",
        plural="driftmonitors",
        short_name="dm",
        resource=DriftMonitor,
        spec=DriftMonitorSpec,
        status=DriftMonitorStatus,
        columns=[
            {
                "name": "Drifted",
                "type": "boolean",
                "jsonPath": ".status.drifted",
                "description": "Whether the last check found drift.",
            },
            {
                "name": "Share",
                "type": "number",
                "jsonPath": ".status.driftShare",
                "description": "Share of features drifted.",
            },
            {
                "name": "Last Run",
                "type": "date",
                "jsonPath": ".status.lastRunTime",
                "description": "Time of the last check.",
            },
            _AGE,
        ],
    ),
)


class _KubeJsonSchema(GenerateJsonSchema):
    """Emit defaults for `default_factory` fields so the API server fills nested defaults."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        json_schema = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            json_schema["default"] = {}
        elif isinstance(value, list) and value:
            json_schema["default"] = value
        return json_schema


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    merged.update(over)
    return merged


def structural_schema(node: Any, defs: dict[str, Any]) -> Any:
    """Turn pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

    Inlines `$ref`, removes `null` from optionals (absent means unset), maps draft-2020
    exclusive bounds to OpenAPI's boolean form, and drops what structural schemas forbid.
    """
    if isinstance(node, list):
        return [structural_schema(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        ref = node.pop("$ref").split("/")[-1]
        node = _merge(copy.deepcopy(defs[ref]), node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"a union cannot be expressed structurally: {options}")
        node = _merge(structural_schema(options[0], defs), node)
    if node.get("default", PydanticUndefined) is None:
        node.pop("default")
    node.pop("title", None)
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        node.pop("additionalProperties", None)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out[key] = {k: structural_schema(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural_schema(value, defs)
        else:
            out[key] = value
    out.pop("$defs", None)
    return out


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_KubeJsonSchema)
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = structural_schema(raw, defs)
    return result


def _root_rules(kind: CrdKind) -> dict[str, Any]:
    """Rules on the whole object (e.g. on metadata.name), from the resource model."""
    rules = getattr(kind.resource, "cel_rules", ())
    return {"x-kubernetes-validations": [r.to_schema() for r in rules]} if rules else {}


def build_crd(kind: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest of one kind."""
    spec_schema = _schema_of(kind.spec)
    status_schema = _schema_of(kind.status)
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = dict(kind.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.name,
            "labels": {
                "app.kubernetes.io/name": "kubeloop",
                "app.kubernetes.io/part-of": "kubeloop",
            },
            "annotations": {"argocd.argoproj.io/sync-wave": "-10"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["kubeloop"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": kind.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (kind.resource.__doc__ or "").strip(),
                            "required": ["spec"],
                            **_root_rules(kind),
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "APIVersion of this object: "
                                    f"{API_GROUP}/{API_VERSION}.",
                                },
                                "kind": {"type": "string", "description": f"{kind.kind}."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name -> YAML text for every CRD, as committed under crds/."""
    return {
        f"{API_GROUP}_{kind.plural}.yaml": _HEADER
        + yaml.safe_dump(build_crd(kind), sort_keys=False, width=100)
        for kind in KINDS
    }
