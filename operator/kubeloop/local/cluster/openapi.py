"""The OpenAPI v3 documents of the emulated API, as kubectl reads them (pure functions).

kubectl fetches `/openapi/v3` (an index of one document per group/version) and then the
documents it needs:

- `kubectl explain` finds the schema whose `x-kubernetes-group-version-kind` names the kind in
  `components.schemas` and prints its fields' descriptions;
- `kubectl apply`/`create` look for the kind's PATCH operation and, when it lists the
  `fieldValidation` query parameter, leave validation to the server (`fieldValidation=Strict`,
  which the emulator honours) instead of validating client-side.

The kubeloop.io schemas are the CRDs' `openAPIV3Schema` (from `kubeloop.api.crd`, what
crds/*.yaml is generated from) with `metadata` referring to ObjectMeta, as a real API server
publishes a CRD. The built-in kinds get a reduced schema: apiVersion, kind, metadata, and the
rest kept as unknown fields (the emulator stores them as sent).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from kubeloop.api.admission import crd_schema
from kubeloop.local.cluster.discovery import ServedResource

__all__ = ["OBJECT_META", "document", "document_path", "index", "schema_name"]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_META_REF = {"$ref": f"#/components/schemas/{OBJECT_META}"}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": description,
    }


_OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Standard object's metadata: every persisted resource must have it.",
    "properties": {
        "name": _string("Name, unique within a namespace; it cannot be updated."),
        "generateName": _string("A prefix the server uses to generate a unique name."),
        "namespace": _string("The namespace the object is in; empty for cluster-scoped kinds."),
        "labels": _map("Key/value pairs to organize and select objects."),
        "annotations": _map("Key/value pairs for tools and libraries (not selectable)."),
        "uid": _string("Unique in time and space; set by the server (read-only)."),
        "resourceVersion": _string("The internal version of this object (read-only)."),
        "generation": {"type": "integer", "format": "int64", "description": "Spec version."},
        "creationTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "Set by the server.",
        },
        "deletionTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "When deleted.",
        },
        "finalizers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Must be empty before the object is deleted from the registry.",
        },
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "Objects this object depends on (garbage collection).",
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "Which field manager owns which fields (server-side apply).",
        },
    },
}

# The group segment of the built-in kinds' schema names (`io.k8s.api.<segment>.<v>.<Kind>`).
_GROUP_SEGMENT = {"": "core", "rbac.authorization.k8s.io": "rbac", "events.k8s.io": "events"}


def schema_name(res: ServedResource) -> str:
    """The components.schemas name a real API server gives the kind."""
    if crd_schema(res.group_version, res.kind) is not None:
        return ".".join([*reversed(res.group.split(".")), res.version, res.kind])
    if res.group == "apiextensions.k8s.io":
        prefix = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"
        return f"{prefix}.{res.version}.{res.kind}"
    segment = _GROUP_SEGMENT.get(res.group, res.group.split(".")[0])
    return f"io.k8s.api.{segment}.{res.version}.{res.kind}"


def _gvk(res: ServedResource, kind: str | None = None) -> dict[str, str]:
    return {"group": res.group, "version": res.version, "kind": kind or res.kind}


def _kind_schema(res: ServedResource) -> dict[str, Any]:
    schema = crd_schema(res.group_version, res.kind)
    if schema is not None:
        out = copy.deepcopy(schema)
        out["properties"]["metadata"] = {
            "allOf": [_META_REF],
            "description": "Standard object's metadata.",
        }
    else:
        out = {
            "type": "object",
            "description": f"{res.kind} ({res.group_version}): a built-in kind, served as sent.",
            "properties": {
                "apiVersion": _string(f"APIVersion of this object: {res.group_version}."),
                "kind": _string(f"{res.kind}."),
                "metadata": {"allOf": [_META_REF], "description": "Standard object's metadata."},
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
    out["x-kubernetes-group-version-kind"] = [_gvk(res)]
    return out


def _list_schema(res: ServedResource) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"A list of {res.kind}.",
        "required": ["items"],
        "properties": {
            "apiVersion": _string("APIVersion of this list."),
            "kind": _string(f"{res.kind}List."),
            "items": {
                "type": "array",
                "items": {"$ref": f"#/components/schemas/{schema_name(res)}"},
            },
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "x-kubernetes-group-version-kind": [_gvk(res, f"{res.kind}List")],
    }


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}


_DRY_RUN = _query("dryRun", "`All`: admit the request but store nothing.")
_FIELD_MANAGER = _query("fieldManager", "The name of the actor making the change.")
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "Unknown fields: `Ignore` (prune), `Warn` (prune, warn) or `Strict` (refuse).",
)
_FORCE = {
    "name": "force",
    "in": "query",
    "description": "Server-side apply: take the fields other managers own.",
    "schema": {"type": "boolean"},
}
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
)


def _operation(
    res: ServedResource, action: str, parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema_name(res)}"}}
    op: dict[str, Any] = {
        "operationId": f"{action}{res.kind}",
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": ref}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(res),
    }
    if action in {"post", "put"}:
        op["requestBody"] = {"content": {"application/json": ref}, "required": True}
    if action == "patch":
        body = {"schema": {"type": "object"}}
        op["requestBody"] = {"content": dict.fromkeys(_PATCH_TYPES, body), "required": True}
    return op


def _paths(res: ServedResource) -> dict[str, Any]:
    prefix = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    scope = "/namespaces/{namespace}" if res.namespaced else ""
    collection = f"{prefix}{scope}/{res.plural}"
    write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    return {
        collection: {
            "get": _operation(res, "list", []),
            "post": _operation(res, "post", write),
        },
        collection + "/{name}": {
            "get": _operation(res, "get", []),
            "put": _operation(res, "put", write),
            "patch": _operation(res, "patch", [*write, _FORCE]),
            "delete": _operation(res, "delete", [_DRY_RUN]),
        },
    }


def document_path(res: ServedResource) -> str:
    """The index key of the resource's document: `api/v1` or `apis/<group>/<version>`."""
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def document(resources: Iterable[ServedResource], path: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version (`api/v1`, `apis/<g>/<v>`), or None."""
    chosen = [r for r in resources if document_path(r) == path]
    if not chosen:
        return None
    schemas: dict[str, Any] = {OBJECT_META: _OBJECT_META_SCHEMA}
    paths: dict[str, Any] = {}
    for res in chosen:
        schemas[schema_name(res)] = _kind_schema(res)
        schemas[f"{schema_name(res)}List"] = _list_schema(res)
        paths.update(_paths(res))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubeloop local)", "version": "v1alpha1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()


def index(resources: Iterable[ServedResource]) -> dict[str, Any]:
    """`GET /openapi/v3`: one entry per group/version, its URL carrying the content's hash."""
    served = list(resources)
    out: dict[str, Any] = {}
    for path in sorted({document_path(r) for r in served}):
        doc = document(served, path)
        assert doc is not None  # the path came from a served resource
        out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(doc)}"}
    return {"paths": out}
