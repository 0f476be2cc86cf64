"""What the emulated API server says about itself and wraps around objects, as pure functions.

kubectl resolves `tp`, `kubeloop` or `po` through discovery alone (`/api`, `/api/v1`, `/apis`,
`/apis/<group>/<version>`), decodes every list by its `kind`, and `kubectl scale` finds the
`autoscaling/v1` Scale through the `<plural>/scale` entry. These builders answer those documents
from one table of served resources (`ServedResource`): the kubeloop.io entries take their names
from `kubeloop.api.crd`, the code `crds/*.yaml` is generated from, so the emulator and the CRDs
cannot disagree; the built-in kinds carry the names a real API server serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeloop.api.crd import KINDS, build_crd

__all__ = [
    "SCALE_VERBS",
    "VERBS",
    "ServedResource",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "crd_resources",
    "get_path",
    "initial_events_end",
    "list_document",
    "scale_document",
    "scale_patch",
    "served_resources",
]

VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SCALE_VERBS = ("get", "patch", "update")
# Subresources whose verbs are not get/patch/update; kinds that are not stored (a review is
# answered, never kept: `kubectl auth can-i` creates one).
_SUBRESOURCE_VERBS = {"log": ("get",)}
_BUILTIN_VERBS = {"authorization.k8s.io/v1/selfsubjectaccessreviews": ("create",)}

# The names a real API server serves for the built-in kinds the emulator knows, by
# `group/version/plural`: (shortNames, categories). `all` is kubectl's `get all`.
_BUILTIN_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "v1/namespaces": (("ns",), ()),
    "v1/pods": (("po",), ("all",)),
    "v1/services": (("svc",), ("all",)),
    "v1/serviceaccounts": (("sa",), ()),
    "v1/configmaps": (("cm",), ()),
    "v1/events": (("ev",), ()),
    "events.k8s.io/v1/events": (("ev",), ()),
    "batch/v1/jobs": ((), ("all",)),
    "batch/v1/cronjobs": (("cj",), ("all",)),
    "apps/v1/deployments": (("deploy",), ("all",)),
    "autoscaling/v2/horizontalpodautoscalers": (("hpa",), ("all",)),
    "networking.k8s.io/v1/networkpolicies": (("netpol",), ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": (("crd", "crds"), ("api-extensions",)),
}

# Deployments' scale paths; a CRD declares its own.
_DEPLOYMENT_SCALE = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}


@dataclass(frozen=True)
class ServedResource:
    """One resource as discovery serves it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # The CRD's `subresources.scale` (JSON paths of the replicas) when it has one.
    scale: Mapping[str, str] = field(default_factory=dict)
    verbs: tuple[str, ...] = VERBS

    @property
    def group_version(self) -> str:
        """`v1` for the core group, `<group>/<version>` otherwise (an object's apiVersion)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """`group/version/plural` (core: `v1/plural`), as the emulator's RESOURCES."""
        return f"{self.group_version}/{self.plural}"


def crd_resources() -> dict[str, ServedResource]:
    """The kubeloop.io resources, names and scale paths read from the generated CRDs."""
    out: dict[str, ServedResource] = {}
    for kind in KINDS:
        spec = build_crd(kind)["spec"]
        names, version = spec["names"], spec["versions"][0]
        served = ServedResource(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec["scope"] == "Namespaced",
            subresources=tuple(version.get("subresources", {})),
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            scale=dict(version.get("subresources", {}).get("scale", {})),
        )
        out[served.key] = served
    return out


def served_resources(
    table: Mapping[str, tuple[str, bool, tuple[str, ...]]],
) -> dict[str, ServedResource]:
    """Every resource of `table` (`group/version/plural` -> (kind, namespaced, subresources))."""
    crds = crd_resources()
    out: dict[str, ServedResource] = {}
    for key, (kind, namespaced, subresources) in table.items():
        if key in crds:
            out[key] = crds[key]
            continue
        *group, version, plural = key.split("/")
        short_names, categories = _BUILTIN_NAMES.get(key, ((), ()))
        out[key] = ServedResource(
            group=group[0] if group else "",
            version=version,
            plural=plural,
            kind=kind,
            namespaced=namespaced,
            subresources=subresources,
            short_names=short_names,
            categories=categories,
            scale=_DEPLOYMENT_SCALE if "scale" in subresources else {},
            verbs=_BUILTIN_VERBS.get(key, VERBS),
        )
    return out


def api_versions() -> dict[str, Any]:
    """`GET /api`: the core group's versions."""
    return {
        "kind": "APIVersions",
        "apiVersion": "v1",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group_versions(resources: Iterable[ServedResource]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for res in resources:
        if res.group and res.version not in groups.setdefault(res.group, []):
            groups[res.group].append(res.version)
    return groups


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(resources: Iterable[ServedResource]) -> dict[str, Any]:
    """`GET /apis`: every named group (the core group is under /api)."""
    groups = _group_versions(resources)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in sorted(groups.items())],
    }


def api_group(resources: Iterable[ServedResource], group: str) -> dict[str, Any] | None:
    """`GET /apis/<group>`, or None when the group is not served."""
    versions = _group_versions(resources).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _entries(res: ServedResource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": res.plural,
        "singularName": res.kind.lower(),
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": list(res.verbs),
    }
    if res.short_names:
        main["shortNames"] = list(res.short_names)
    if res.categories:
        main["categories"] = list(res.categories)
    out = [main]
    for sub in res.subresources:
        entry: dict[str, Any] = {
            "name": f"{res.plural}/{sub}",
            "singularName": "",
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(_SUBRESOURCE_VERBS.get(sub, SCALE_VERBS)),
        }
        if sub == "scale":  # kubectl scale reads the Scale's group/version from here
            entry.update(group="autoscaling", version="v1", kind="Scale")
        out.append(entry)
    return out


def api_resource_list(
    resources: Iterable[ServedResource], group: str, version: str
) -> dict[str, Any] | None:
    """`GET /api/v1` (group "") or `/apis/<group>/<version>`, or None when not served."""
    chosen = [r for r in resources if r.group == group and r.version == version]
    if not chosen and group:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for res in chosen for entry in _entries(res)],
    }


def list_document(
    res: ServedResource, items: list[dict[str, Any]], resource_version: str
) -> dict[str, Any]:
    """A list response: `<Kind>List` with the group's apiVersion, as clients decode it."""
    return {
        "kind": f"{res.kind}List",
        "apiVersion": res.group_version,
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    }


def initial_events_end(res: ServedResource, resource_version: str) -> dict[str, Any]:
    """The BOOKMARK that ends a watch's initial events (`sendInitialEvents=true`).

    kubectl's informers (`wait`, `rollout status`) list by watching ("watch-list"): they wait
    for this event, annotated `k8s.io/initial-events-end`, before they judge what they saw.
    """
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": res.kind,
            "apiVersion": res.group_version,
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }


def get_path(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a CRD JSON path such as `.spec.replicas` (None when absent)."""
    node: Any = obj
    for part in path.lstrip(".").split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def scale_document(res: ServedResource, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The `autoscaling/v1` Scale of an object, read through its scale paths."""
    meta = obj.get("metadata", {})
    status: dict[str, Any] = {
        "replicas": get_path(obj, res.scale.get("statusReplicasPath", ".status.replicas")) or 0
    }
    selector = (
        get_path(obj, res.scale["labelSelectorPath"]) if "labelSelectorPath" in res.scale else None
    )
    if isinstance(selector, str) and selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {
            "replicas": get_path(obj, res.scale.get("specReplicasPath", ".spec.replicas")) or 0
        },
        "status": status,
    }


def scale_patch(res: ServedResource, scale: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that sets the object's replicas from a (patched) Scale; {} if none."""
    replicas = get_path(scale, ".spec.replicas")
    if replicas is None:
        return {}
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"spec.replicas: must be a non-negative integer, got {replicas!r}")
    patch: dict[str, Any] = {}
    node = patch
    *parents, leaf = res.scale.get("specReplicasPath", ".spec.replicas").lstrip(".").split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = replicas
    return patch
